"""Consumer groups: membership through the coordinator, commits through the
committed-offsets store, and the lag reports that join the two.

The coordinator (appliance.group_coordinator) decides membership and
assignment and fences stale generations; this module feeds it requests
and the clock, and adds what only the broker knows: committed offsets and
high watermarks.
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
    DescribeGroupsRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
)
from appliance.group_coordinator import GroupCoordinator, MemberView
from shm.errors import CoordinatorLoadInProgressError, RinglogError

log = logging.getLogger("ringlog.groups")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Groups:
    def __init__(self, coordinator: GroupCoordinator, committed: CommittedOffsets,
                 readers: PartitionReaders, outbox: Outbox):
        self.coordinator = coordinator
        self.committed = committed
        self.readers = readers
        self.outbox = outbox

    def join(self, request: JoinGroupRequest) -> r.GroupViewReply:
        self.committed.coordinates(request.group_id)
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

    def commit(self, client: Any, request: OffsetCommitRequest) -> None:
        """Fence a stale generation, then store; answered once durable."""
        self.committed.coordinates(request.group_id)
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
            described = self.coordinator.describe(group)
            described["state"] = self._state(group, described.get("state"))
            described["group_id"] = group
            described["offsets"] = self._lag(group)
            groups.append(described)
        return r.DescribeGroupsReply(groups)

    def list_groups(self) -> r.ListGroupsReply:
        listed = {g["group_id"]: g for g in self.coordinator.list_groups()}
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
        return [{"group_id": group,
                 "state": self._state(group, self.coordinator.describe(group).get("state")),
                 "offsets": self._lag(group)} for group in sorted(names)]

    def expire(self) -> None:
        deadline = self.coordinator.next_deadline_ms()
        if deadline is not None and deadline <= now_ms():
            for group, member in self.coordinator.expire(now_ms()):
                log.info("group %s: member %s missed its session timeout; evicted", group,
                         member)

    def next_deadline(self) -> float | None:
        """The coordinator's next deadline on the time.monotonic() clock."""
        deadline_ms = self.coordinator.next_deadline_ms()
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
