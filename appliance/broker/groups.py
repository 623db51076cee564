"""Consumer groups: membership through the coordinator, commits through the
committed-offsets store, and the lag reports that join the two.

The coordinator (appliance.group_coordinator) decides membership and
assignment and fences stale generations; this module feeds it requests
and the clock, and adds what only the broker knows: committed offsets and
high watermarks.

Kafka's clients run groups with the classic protocol (appliance.classic_groups,
assignment on the client). A group is served by one protocol at a time: a
join of one kind for a group the other has members in is refused with
INCONSISTENT_GROUP_PROTOCOL, as Kafka refuses a consumer of another
protocol. Both keep their commits in the one committed-offsets store, so
lag and `ringlog groups describe` read the same for either.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from appliance.broker import replies as r
from appliance.broker.offsets import CommittedOffsets
from appliance.broker.outbox import Outbox
from appliance.broker.readers import PartitionReaders
from appliance.broker.requests import (
    ClassicHeartbeatRequest,
    ClassicJoinGroupRequest,
    ClassicLeaveGroupRequest,
    DeleteGroupsRequest,
    DescribeGroupsRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    SyncGroupRequest,
)
from appliance.classic_groups import ClassicGroups
from appliance.group_coordinator import GroupCoordinator, MemberView
from shm.errors import (
    CoordinatorLoadInProgressError,
    GroupIdNotFoundError,
    InconsistentGroupProtocolError,
    RinglogError,
)

log = logging.getLogger("ringlog.groups")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Groups:
    def __init__(self, coordinator: GroupCoordinator, committed: CommittedOffsets,
                 readers: PartitionReaders, outbox: Outbox,
                 classic: ClassicGroups | None = None):
        self.coordinator = coordinator
        self.classic = classic or ClassicGroups(coordinator.min_session_timeout_ms,
                                                coordinator.max_session_timeout_ms,
                                                coordinator.initial_rebalance_delay_ms)
        self.committed = committed
        self.readers = readers
        self.outbox = outbox

    def join(self, request: JoinGroupRequest) -> r.GroupViewReply:
        self.committed.coordinates(request.group_id)
        if self.classic.knows(request.group_id):
            raise InconsistentGroupProtocolError(
                f"group {request.group_id!r} is run by Kafka clients (the classic protocol); "
                "use another group id")
        return _view(self.coordinator.join(
            request.group_id, request.member_id, request.topics, request.session_timeout_ms,
            request.assignor, now_ms(), request.client_id))

    def heartbeat(self, request: HeartbeatRequest) -> r.GroupViewReply:
        self.committed.coordinates(request.group_id)
        return _view(self.coordinator.heartbeat(
            request.group_id, request.member_id, request.generation_id,
            [tuple(tp) for tp in request.owned], now_ms()))

    def leave(self, request: LeaveGroupRequest) -> r.LeaveGroupReply:
        self.committed.coordinates(request.group_id)
        self.coordinator.leave(request.group_id, request.member_id, now_ms())
        return r.LeaveGroupReply()

    # --- the classic protocol ------------------------------------------------------------

    def classic_join(self, client: Any, request: ClassicJoinGroupRequest) -> None:
        self.committed.coordinates(request.group_id)
        if self.coordinator.describe(request.group_id)["members"]:
            raise InconsistentGroupProtocolError(
                f"group {request.group_id!r} is run by Ringlog's own clients; "
                "use another group id")
        self.classic.join(client, request.group_id, request.member_id,
                          request.group_instance_id, request.protocol_type,
                          list(request.protocols), request.session_timeout_ms,
                          request.rebalance_timeout_ms, now_ms(), client_id=request.client_id,
                          client_host=request.client_host,
                          require_known_member_id=request.require_known_member_id)
        self._completed()

    def sync(self, client: Any, request: SyncGroupRequest) -> None:
        self.committed.coordinates(request.group_id)
        self.classic.sync(client, request.group_id, request.generation_id, request.member_id,
                          request.group_instance_id, dict(request.assignments), now_ms())
        self._completed()

    def classic_heartbeat(self, request: ClassicHeartbeatRequest) -> r.HeartbeatReply:
        self.committed.coordinates(request.group_id)
        self.classic.heartbeat(request.group_id, request.generation_id, request.member_id,
                               request.group_instance_id, now_ms())
        return r.HeartbeatReply()

    def classic_leave(self, request: ClassicLeaveGroupRequest) -> r.ClassicLeaveReply:
        self.committed.coordinates(request.group_id)
        results = self.classic.leave(request.group_id, list(request.members), now_ms())
        self._completed()
        return r.ClassicLeaveReply(results)

    def _completed(self) -> None:
        """Joins and syncs the classic coordinator answered (now or late)."""
        for client, reply in self.classic.take_completions():
            self.outbox.reply(client, reply)

    def delete_groups(self, client: Any, request: DeleteGroupsRequest) -> None:
        """Kafka's DeleteGroups: a group without members goes, with its committed
        offsets (a deletion record in __consumer_offsets, durable before the answer)."""
        results: list[tuple[str, RinglogError | None] | None] = [None] * len(request.groups)
        left = [len(request.groups)]

        def settle(i: int, group: str, error: RinglogError | None) -> None:
            results[i] = (group, error)
            left[0] -= 1
            if left[0] == 0:
                self.outbox.reply(client, r.DeleteGroupsReply(results))  # type: ignore[arg-type]

        if not request.groups:
            self.outbox.reply(client, r.DeleteGroupsReply([]))
        for i, group in enumerate(request.groups):
            try:
                self.committed.coordinates(group)
                self._delete_members_of(group)
            except RinglogError as exc:
                settle(i, group, exc)
                continue
            self.committed.delete_group(group, lambda error, i=i, group=group:
                                        settle(i, group, error))

    def _delete_members_of(self, group: str) -> None:
        """Forget the group in whichever coordinator knows it (NON_EMPTY_GROUP while
        it has members); GROUP_ID_NOT_FOUND when nothing at all knows it."""
        found = group in self.committed.groups()
        for coordinator in (self.classic, self.coordinator):
            try:
                coordinator.delete_group(group)
                found = True
            except GroupIdNotFoundError:
                continue
        if not found:
            raise GroupIdNotFoundError(f"group {group!r} does not exist")

    def commit(self, client: Any, request: OffsetCommitRequest) -> None:
        """Fence a stale generation, then store; answered once durable."""
        self.committed.coordinates(request.group_id)
        if self.classic.describe(request.group_id) is not None:
            self.classic.check_commit(request.group_id, request.member_id,
                                      request.generation_id)
        else:
            self.coordinator.check_commit(request.group_id, request.member_id,
                                          request.generation_id)
        if not request.offsets:
            self.outbox.reply(client, r.OffsetCommitReply(0))
            return

        def done(error: RinglogError | None) -> None:
            self.outbox.reply(client, r.ErrorReply(error) if error is not None
                              else r.OffsetCommitReply(len(request.offsets)))

        self.committed.commit(request.group_id, list(request.offsets), done)

    def describe(self, request: DescribeGroupsRequest) -> r.DescribeGroupsReply:
        for group in request.groups:
            self.committed.coordinates(group)
        groups = []
        for group in request.groups:
            described = self._description(group)
            described["state"] = self._state(group, described.get("state"))
            described["group_id"] = group
            described["offsets"] = self._lag(group)
            groups.append(described)
        return r.DescribeGroupsReply(groups)

    def _description(self, group: str) -> dict[str, Any]:
        """The classic coordinator's view of a group it has, else the native one's."""
        classic = self.classic.describe(group)
        native = self.coordinator.describe(group)
        if classic is not None and (classic["members"] or not native["members"]):
            return classic
        return native

    def list_groups(self) -> r.ListGroupsReply:
        listed = {g["group_id"]: g for g in self.classic.list_groups()}
        listed.update({g["group_id"]: g for g in self.coordinator.list_groups()
                       if g["members"] or g["group_id"] not in listed})
        for group in self.committed.groups():
            listed.setdefault(group, {"group_id": group, "state": "Empty"})
        return r.ListGroupsReply([listed[g] for g in sorted(listed)])

    def status(self) -> list[dict] | None:
        """Every group's committed offsets and lag; None while the offsets still load."""
        try:
            names = self.committed.groups()
        except CoordinatorLoadInProgressError:
            return None
        names |= {g["group_id"] for g in self.coordinator.list_groups()}
        names |= {g["group_id"] for g in self.classic.list_groups()}
        return [{"group_id": group,
                 "state": self._state(group, self._description(group).get("state")),
                 "offsets": self._lag(group)} for group in sorted(names)]

    def expire(self) -> None:
        for coordinator in (self.coordinator, self.classic):
            deadline = coordinator.next_deadline_ms()
            if deadline is not None and deadline <= now_ms():
                for group, member in coordinator.expire(now_ms()):
                    log.info("group %s: member %s missed its session timeout; evicted", group,
                             member)
        self._completed()

    def next_deadline(self) -> float | None:
        """The coordinators' next deadline on the time.monotonic() clock."""
        deadline_ms = min((d for d in (self.coordinator.next_deadline_ms(),
                                       self.classic.next_deadline_ms()) if d is not None),
                          default=None)
        if deadline_ms is None:
            return None
        return time.monotonic() + max(deadline_ms - now_ms(), 0) / 1000

    def _state(self, group: str, state: str | None) -> str | None:
        """A group the coordinator does not know but that has committed offsets
        is Empty, as Kafka reports an offsets-only group."""
        return "Empty" if state == "Dead" and group in self.committed.groups() else state

    def _lag(self, group: str) -> list[dict]:
        lag = []
        for (topic, partition), (offset, _) in sorted(self.committed.of(group).items()):
            entry: dict[str, Any] = {"topic": topic, "partition": partition,
                                     "committed": offset}
            try:
                high_watermark = self.readers.position(topic, partition).high_watermark
                entry.update(high_watermark=high_watermark, lag=max(high_watermark - offset, 0))
            except RinglogError:
                entry.update(high_watermark=None, lag=None)
            lag.append(entry)
        return lag


def _view(view: MemberView) -> r.GroupViewReply:
    return r.GroupViewReply(view.member_id, view.generation_id, list(view.assignment),
                            list(view.revoke), view.rebalancing, view.members)
