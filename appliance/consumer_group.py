"""One consumer group's state, as the coordinator keeps it, and what it shows.

A group has members in join order, each with its subscription, session, the
target partitions the assignor gave it and the partitions it owns (what it
was handed and has not reported released). The coordinator
(appliance.group_coordinator) changes these; this module holds them, derives
the group's state and builds the views and descriptions members and admins
read. Pure data: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from appliance.assignors import ASSIGNORS, DEFAULT_ASSIGNOR, TopicPartition
from shm.errors import InvalidGroupIdError

PROTOCOL_TYPE = "consumer"


@dataclass(frozen=True)
class MemberView:
    """What one member learns from a join or heartbeat.

    ``assignment``: the partitions it may consume now, sorted.
    ``revoke``: partitions it owns but must give up: commit, stop, report released.
    ``rebalancing``: some partition in the group still waits to be released by its
    previous owner, or the group's first generation waits for the initial
    rebalance delay to end (members may heartbeat more often until it is False).
    ``members``: how many members the group has.
    ``pending``: target partitions it will get once their previous owner releases
    them (not in ``assignment`` yet).
    """

    member_id: str
    generation_id: int
    assignment: tuple[TopicPartition, ...]
    revoke: tuple[TopicPartition, ...]
    rebalancing: bool
    members: int
    pending: tuple[TopicPartition, ...] = ()


@dataclass
class Member:
    member_id: str
    client_id: str
    topics: tuple[str, ...]
    session_timeout_ms: int
    last_seen_ms: int
    target: set[TopicPartition] = field(default_factory=set)
    owned: set[TopicPartition] = field(default_factory=set)

    @property
    def deadline_ms(self) -> int:
        return self.last_seen_ms + self.session_timeout_ms


@dataclass
class Group:
    group_id: str
    generation_id: int = 0
    assignor: str | None = None
    members: dict[str, Member] = field(default_factory=dict)  # in join order
    partition_counts: dict[str, int] = field(default_factory=dict)
    # While the first generation waits for more members: when the wait began
    # and when it ends (None otherwise).
    initial_delay_start_ms: int | None = None
    initial_delay_end_ms: int | None = None

    def rebalancing(self) -> bool:
        return self.initial_delay_end_ms is not None or any(
            m.owned - m.target for m in self.members.values()
        )

    def state(self) -> str:
        if not self.members:
            return "Empty"
        if self.initial_delay_end_ms is not None:
            return "PreparingRebalance"
        if all(m.owned == m.target for m in self.members.values()):
            return "Stable"
        return "Reconciling"

    def extend_initial_delay(self, delay_ms: int, now_ms: int) -> None:
        """A new member joined during the initial rebalance delay: wait
        `delay_ms` more from now, capped at the first join plus the members'
        largest session timeout (Kafka caps the wait by the rebalance timeout,
        which Ringlog's members do not send)."""
        assert self.initial_delay_start_ms is not None and self.initial_delay_end_ms is not None
        longest = max(m.session_timeout_ms for m in self.members.values())
        cap = self.initial_delay_start_ms + max(delay_ms, longest)
        self.initial_delay_end_ms = max(self.initial_delay_end_ms, min(now_ms + delay_ms, cap))

    def reassign(self, partitions_for: Callable[[str], int | None], *,
                 membership_changed: bool) -> bool:
        """Recompute the target assignment with the group's assignor; bump the
        generation when the membership changed or the target did. Returns
        whether the target changed."""
        if not self.members:
            self.partition_counts = {}
            self.assignor = None  # the next first member picks again, as in Kafka
            self.generation_id += 1
            return True
        counts = self.subscribed_counts(partitions_for)
        self.partition_counts = counts
        assign = ASSIGNORS[self.assignor or DEFAULT_ASSIGNOR]
        new = assign(
            {m.member_id: m.topics for m in self.members.values()},
            counts,
            {m.member_id: set(m.target) for m in self.members.values()},
        )
        target_changed = False
        for member in self.members.values():
            target = new.get(member.member_id, set())
            if target != member.target:
                member.target = set(target)
                target_changed = True
        if membership_changed or target_changed:
            self.generation_id += 1
        return target_changed

    def subscribed_counts(self, partitions_for: Callable[[str], int | None]) -> dict[str, int]:
        """Partitions of every topic a member subscribes to (0: not there)."""
        counts: dict[str, int] = {}
        for topic in sorted({t for m in self.members.values() for t in m.topics}):
            n = partitions_for(topic)
            counts[topic] = n if isinstance(n, int) and n > 0 else 0
        return counts

    def owners(self) -> dict[TopicPartition, str]:
        return {tp: m.member_id for m in self.members.values() for tp in m.owned}

    def view(self, member: Member) -> MemberView:
        """The member's view; what it is handed now counts as owned from here on."""
        owners = self.owners()
        mine = member.member_id
        assignment = {tp for tp in member.target if owners.get(tp, mine) == mine}
        revoke = member.owned - member.target
        member.owned |= assignment  # handed out: owned until the member reports otherwise
        return MemberView(
            member_id=mine,
            generation_id=self.generation_id,
            assignment=sorted_partitions(assignment),
            revoke=sorted_partitions(revoke),
            rebalancing=self.rebalancing(),
            members=len(self.members),
            pending=sorted_partitions(member.target - assignment),
        )

    def describe(self) -> dict[str, Any]:
        """State, assignor, generation and, per member, its target, what it owns,
        what it waits for and what it must give up (GroupCoordinator.describe)."""
        owners = self.owners()
        return {
            **self._heading(),
            "members": [
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "topics": list(m.topics),
                    "session_timeout_ms": m.session_timeout_ms,
                    "last_heartbeat_ms": m.last_seen_ms,
                    "assignment": sorted_partitions(m.target),
                    "owned": sorted_partitions(m.owned),
                    "pending": sorted_partitions(
                        tp for tp in m.target if owners.get(tp, m.member_id) != m.member_id
                    ),
                    "revoke": sorted_partitions(m.owned - m.target),
                }
                for m in sorted(self.members.values(), key=lambda m: m.member_id)
            ],
        }

    def summary(self) -> dict[str, Any]:
        """One line of a group listing."""
        return {**self._heading(), "members": len(self.members)}

    def _heading(self) -> dict[str, Any]:
        """What a description and a listing both begin with."""
        return {
            "group_id": self.group_id,
            "state": self.state(),
            "protocol_type": PROTOCOL_TYPE if self.members else "",
            "assignor": self.assignor or "",
            "generation_id": self.generation_id,
        }


def dead_group(group_id: str) -> dict[str, Any]:
    """How a group the coordinator does not know is described, as Kafka's
    DescribeGroups answers (error NONE) for an unknown group."""
    return {"group_id": group_id, "state": "Dead", "protocol_type": "", "assignor": "",
            "generation_id": -1, "members": []}


def sorted_partitions(tps: Iterable[TopicPartition]) -> tuple[TopicPartition, ...]:
    return tuple(sorted(tps))


def partition_set(owned: Iterable[Any]) -> set[TopicPartition]:
    result: set[TopicPartition] = set()
    for item in owned:
        try:
            topic, partition = item
        except (TypeError, ValueError):
            raise TypeError(
                f"owned partitions must be (topic, partition) pairs, got {item!r}"
            ) from None
        if not isinstance(topic, str) or not isinstance(partition, int) or isinstance(
            partition, bool
        ):
            raise TypeError(f"owned partitions must be (str, int) pairs, got {item!r}")
        result.add((topic, partition))
    return result


def default_member_id(client_id: str) -> str:
    return f"{client_id or 'member'}-{uuid4().hex}"




def check_group_id(group_id: object) -> None:
    if not isinstance(group_id, str) or not group_id:
        raise InvalidGroupIdError(f"invalid group id {group_id!r}: a non-empty string is needed")


def topic_tuple(topics: Iterable[str]) -> tuple[str, ...]:
    if isinstance(topics, str):
        raise TypeError("topics must be a list of topic names, not a string")
    topics = list(topics)
    for topic in topics:
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"topic names must be non-empty strings, got {topic!r}")
    return tuple(sorted(set(topics)))
