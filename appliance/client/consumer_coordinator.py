"""The group side of the consumer: join, heartbeat, commit and leave, as Kafka's
ConsumerCoordinator.

The member joins on subscribe() and the appliance assigns it partitions.
poll() heartbeats; a partition the group takes away is committed (with
auto-commit on) and released before its new owner gets it, so a clean
rebalance delivers no record twice.

Every request here goes to the group's coordinator through `request`
(Consumer._group_request), which finds the coordinator and retries. When
the coordinator moves, its successor does not know this member: the
heartbeat's UNKNOWN_MEMBER_ID makes it join again, and the group
rebalances, as in Kafka.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from appliance import protocol
from appliance.client.fetcher import Fetcher, TopicPartition
from shm.errors import IllegalGenerationError, UnknownMemberIdError


class GroupRequest(Protocol):
    """A request to the group's coordinator, retried until the request timeout;
    `attempt_timeout_ms` bounds each attempt's wait for a reply."""

    def __call__(self, api: str, fields: dict[str, Any], timeout_ms: int | None = None,
                 attempt_timeout_ms: int | None = None) -> protocol.Response: ...


class ConsumerCoordinator:
    """This member of one group: its id, generation and duties.

    It changes what the fetcher reads (assignment, positions from committed
    offsets) and commits what the fetcher has handed out.
    """

    def __init__(self, fetcher: Fetcher, request: GroupRequest, *,
                 group_id: str, enable_auto_commit: bool, session_timeout_ms: int,
                 heartbeat_interval_s: float, auto_commit_interval_s: float, assignor: str,
                 client_id: str):
        self.group_id = group_id
        self.enable_auto_commit = enable_auto_commit
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_s
        self.auto_commit_interval_s = auto_commit_interval_s
        self.assignor = assignor
        self.client_id = client_id
        self._fetcher = fetcher
        self._request = request
        self._member_id: str | None = None
        self._generation = -1
        self._topics: list[str] = []
        self.next_heartbeat = 0.0  # monotonic time: poll() wakes up for it
        self._next_auto_commit = time.monotonic() + self.auto_commit_interval_s

    def subscribe(self, topics: list[str]) -> None:
        self._topics = list(topics)
        self._join()

    def _join(self) -> None:
        response = self._request("join_group", {
            "group_id": self.group_id, "member_id": self._member_id, "topics": self._topics,
            "session_timeout_ms": self.session_timeout_ms, "assignor": self.assignor,
            "client_id": self.client_id})
        self._member_id = response.fields["member_id"]
        self._apply(response.fields)

    def _heartbeat(self) -> None:
        try:
            # An attempt waits no longer than the session: past it the member
            # is evicted anyway, and, as in Kafka, a coordinator that answered
            # no heartbeat for a session is looked up again.
            response = self._request("heartbeat", {
                "group_id": self.group_id, "member_id": self._member_id,
                "generation_id": self._generation,
                "owned": [list(tp) for tp in self._fetcher.assignment]},
                attempt_timeout_ms=self.session_timeout_ms)
        except UnknownMemberIdError:
            # Evicted (we were silent too long): our partitions are someone
            # else's now. Drop them uncommitted and join as a new member.
            self._member_id = None
            self._fetcher.assign([])
            self._join()
            return
        self._apply(response.fields)

    def _apply(self, view: dict) -> None:
        """Take a join/heartbeat answer: release what is revoked, start what is new."""
        fetcher = self._fetcher
        self._generation = view["generation_id"]
        revoke = {tuple(tp) for tp in view["revoke"]}
        assigned = {tuple(tp) for tp in view["assignment"]}
        if revoke & set(fetcher.assignment):
            if self.enable_auto_commit:
                self._commit_partitions(sorted(revoke & set(fetcher.assignment)))
            fetcher.assign([tp for tp in fetcher.assignment if tp not in revoke])
        added = sorted(assigned - set(fetcher.assignment))
        if added:
            fetcher.assign(sorted(set(fetcher.assignment) | set(added)))
            self._start_from_committed(added)
        released = bool(revoke)
        self.next_heartbeat = time.monotonic() + (
            0 if released else self.heartbeat_interval_s / (4 if view["rebalancing"] else 1))

    def _start_from_committed(self, partitions: list[TopicPartition]) -> None:
        response = self._request("offset_fetch", {
            "group_id": self.group_id, "partitions": [list(tp) for tp in partitions]})
        for topic, partition, offset, _ in response.fields["offsets"]:
            if offset >= 0:
                self._fetcher.positions[(topic, partition)] = offset

    def poll(self) -> None:
        """The member's duties, due or not: auto-commit and heartbeat."""
        if self._member_id is None:
            return
        now = time.monotonic()
        if self.enable_auto_commit and now >= self._next_auto_commit:
            self._commit_partitions(self._fetcher.assignment)
            self._next_auto_commit = now + self.auto_commit_interval_s
        if now >= self.next_heartbeat:
            self._heartbeat()

    def _commit_partitions(self, partitions: list[TopicPartition]) -> None:
        offsets = {tp: self._fetcher.consumed_position(tp) for tp in partitions}
        self.commit({tp: o for tp, o in offsets.items() if o is not None})

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit the positions of the owned partitions (or `offsets`) for the group.

        A commit from a stale generation is refused (ILLEGAL_GENERATION): we
        heartbeat to learn the current one, then commit again once.
        """
        if offsets is None:
            offsets = {tp: o for tp in self._fetcher.assignment
                       if (o := self._fetcher.consumed_position(tp)) is not None}
        if not offsets:
            return
        fields = {"group_id": self.group_id, "member_id": self._member_id or None,
                  "generation_id": self._generation if self._member_id else -1,
                  "offsets": [[t, p, o, ""] for (t, p), o in sorted(offsets.items())]}
        try:
            self._request("offset_commit", fields)
        except IllegalGenerationError:
            self._heartbeat()
            fields["generation_id"] = self._generation
            self._request("offset_commit", fields)

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset for the partition, or None."""
        response = self._request("offset_fetch", {"group_id": self.group_id,
                                                  "partitions": [[topic, partition]]})
        offset = response.fields["offsets"][0][2]
        return offset if offset >= 0 else None

    def close(self) -> None:
        """Commit (with auto-commit on) and leave the group, so it rebalances at once."""
        if self._member_id is not None:
            if self.enable_auto_commit:
                self._commit_partitions(self._fetcher.assignment)
            self._request("leave_group", {"group_id": self.group_id,
                                          "member_id": self._member_id})
