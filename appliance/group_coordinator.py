"""The consumer-group coordinator: pure, sans-IO logic.

No sockets, no threads, no clock: the server calls these methods from its event
loop, passes the time in as ``now_ms`` and turns the errors below into Kafka error
replies. Committed offsets are the server's business; this module only decides
whether a commit is allowed (``check_commit``).

Protocol (cooperative, incremental, assignment computed here)
-------------------------------------------------------------
* ``join`` adds a member (or updates a known member's subscription). Every change
  of membership or subscription recomputes the group's *target* assignment with the
  group's assignor and bumps the generation.
* Each member then calls ``heartbeat`` every few seconds with the partitions it
  *owns*: those of its last view's ``assignment`` plus any revoked partition whose
  offsets it has not committed yet. The reply is a ``MemberView``:

  - ``assignment``: what the member may consume now. A target partition is handed
    out only when no other member owns it.
  - ``revoke``: partitions the member owns that are no longer in its target. It
    stops fetching them at once (they are not in ``assignment``), commits their
    offsets, and leaves them out of ``owned`` in its next heartbeat. Only then can
    the next owner get them: this two-step release is what makes a clean rebalance
    deliver no record twice.

The coordinator's record of what a member owns only shrinks by the member's
reports and only grows by what a view hands out (a report never adds a partition:
a member cannot claim what it was not given). So the owned sets of the members of
a group are always disjoint, and since each member's ``assignment`` is a subset of
what it owns, no partition is in two members' assignments at the same time.
Contract for the client: at most one join/heartbeat in flight per member, and a
member that gets ``UNKNOWN_MEMBER_ID`` has lost its partitions: it stops fetching
all of them (its commits are fenced) and joins again without a member id.

Initial rebalance delay (Kafka's ``group.initial.rebalance.delay.ms``): the
first member to join an *empty* group does not get every partition at once.
The group waits ``initial_rebalance_delay_ms`` for more members (state
``PreparingRebalance``); each new member moves the end of the wait to
``delay`` after its join, but never past the first join plus the members'
largest session timeout (or the delay itself, if that is longer), as Kafka caps
it by the rebalance timeout. Meanwhile joins and heartbeats answer an empty
assignment with ``rebalancing`` True; the first generation is made when the
wait is over, by the first heartbeat, join or ``expire`` call at or after its
end (``next_deadline_ms`` includes it, so the server's timer wakes for it).
Consumers started together thus share the partitions from the first
generation instead of the first one reading everything before the others
arrive. A group that has members rebalances at once, as before; a delay of 0
makes the first generation at the first join.

Session timeouts: a member is evicted by ``expire(now_ms)`` once
``now_ms >= last join/heartbeat + session_timeout_ms``; until the server's timer
calls ``expire``, a late heartbeat still counts. An evicted or departed member's
partitions are free at once.

Groups that lose their last member stay known in state ``Empty`` (the generation
keeps counting, so a zombie from an earlier generation stays fenced) until the
server calls ``delete_group``. A group this coordinator has never seen is
described as state ``Dead`` with no members, as Kafka's DescribeGroups (v0-v5)
answers for a group it does not know; the server may hold committed offsets for
such a group (offsets-only consumers), which is outside this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from appliance.assignors import ASSIGNORS, TopicPartition
from appliance.consumer_group import (
    Group,
    Member,
    MemberView,
    check_group_id,
    dead_group,
    default_member_id,
    partition_set,
    topic_tuple,
)
from shm.errors import (
    GroupIdNotFoundError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    InvalidSessionTimeoutError,
    NonEmptyGroupError,
    RebalanceInProgressError,
    UnknownMemberIdError,
    UnsupportedAssignorError,
)

__all__ = [
    "GroupCoordinator",
    "GroupIdNotFoundError",
    "IllegalGenerationError",
    "InconsistentGroupProtocolError",
    "InvalidGroupIdError",
    "InvalidSessionTimeoutError",
    "MemberView",
    "NonEmptyGroupError",
    "RebalanceInProgressError",
    "UnknownMemberIdError",
    "UnsupportedAssignorError",
]



# --------------------------------------------------------------------------- coordinator


class GroupCoordinator:
    """Consumer groups of one broker: membership, target assignments, fencing.

    ``partitions_for(topic)`` returns a topic's partition count, or None when the
    topic does not exist (it then contributes no partitions until it is created
    and the server calls ``topics_changed``). ``initial_rebalance_delay_ms`` is
    the broker's ``group.initial.rebalance.delay.ms``; it is 0 here (no wait) so
    that the coordinator alone behaves as the simplest model of a group.
    """

    def __init__(
        self,
        partitions_for: Callable[[str], int | None],
        min_session_timeout_ms: int = 6000,
        max_session_timeout_ms: int = 1800000,
        *,
        initial_rebalance_delay_ms: int = 0,
        member_id_factory: Callable[[str], str] = default_member_id,
    ) -> None:
        if not 0 < min_session_timeout_ms <= max_session_timeout_ms:
            raise ValueError(
                "need 0 < min_session_timeout_ms <= max_session_timeout_ms, got "
                f"{min_session_timeout_ms} and {max_session_timeout_ms}"
            )
        if not isinstance(initial_rebalance_delay_ms, int) or initial_rebalance_delay_ms < 0:
            raise ValueError(
                f"need initial_rebalance_delay_ms >= 0, got {initial_rebalance_delay_ms!r}"
            )
        self._partitions_for = partitions_for
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self._new_member_id = member_id_factory
        self._groups: dict[str, Group] = {}

    # ------------------------------------------------------------------ membership

    def join(
        self,
        group_id: str,
        member_id: str | None,
        topics: list[str],
        session_timeout_ms: int,
        assignor: str,
        now_ms: int,
        client_id: str = "",
    ) -> MemberView:
        """Join a group (``member_id`` None or "") or update a member's subscription.

        A new member gets a generated id (``<client_id or "member">-<uuid4 hex>``).
        A join with an id the group does not know raises UnknownMemberIdError: the
        member was evicted or the coordinator restarted; it joins again without an
        id. The first member of an empty group picks the assignor; a different one
        from another member raises InconsistentGroupProtocolError. A join that
        changes nothing (a retry) does not start a new generation. A new member of
        an empty group, or of one still in its initial rebalance delay, starts or
        extends that delay and gets an empty assignment with ``rebalancing`` True.
        """
        check_group_id(group_id)
        self._check_session_timeout(session_timeout_ms)
        if assignor not in ASSIGNORS:
            raise UnsupportedAssignorError(
                f"unknown assignor {assignor!r}; supported: {', '.join(sorted(ASSIGNORS))}"
            )
        subscription = topic_tuple(topics)
        group = self._groups.get(group_id)
        if member_id and (group is None or member_id not in group.members):
            raise UnknownMemberIdError(
                f"member {member_id!r} is not in group {group_id!r}; join without a member id"
            )
        others = [m for m in (group.members if group else ()) if m != member_id]
        if group is not None and others and assignor != group.assignor:
            raise InconsistentGroupProtocolError(
                f"group {group_id!r} uses assignor {group.assignor!r}, not {assignor!r}"
            )
        if group is None:
            group = self._groups[group_id] = Group(group_id)
        self._end_initial_delay_if_due(group, now_ms)

        changed = group.assignor != assignor
        group.assignor = assignor
        if member_id:
            member = group.members[member_id]
            changed = changed or member.topics != subscription
            member.topics = subscription
            member.session_timeout_ms = session_timeout_ms
            member.last_seen_ms = now_ms
            if client_id:
                member.client_id = client_id
        else:
            new_id = self._new_member_id(client_id)
            if any(new_id in g.members for g in self._groups.values()):
                raise RuntimeError(f"member id factory returned a duplicate id {new_id!r}")
            if not group.members and self.initial_rebalance_delay_ms > 0:
                group.initial_delay_start_ms = now_ms
                group.initial_delay_end_ms = now_ms
            member = Member(new_id, client_id, subscription, session_timeout_ms, now_ms)
            group.members[new_id] = member
            changed = True
            if group.initial_delay_end_ms is not None:
                group.extend_initial_delay(self.initial_rebalance_delay_ms, now_ms)
        if changed:
            self._membership_changed(group)
        return group.view(member)

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        owned: Iterable[TopicPartition],
        now_ms: int,
    ) -> MemberView:
        """Refresh the member's session, record what it owns, return its view.

        ``owned`` is what the member holds now; partitions it leaves out are
        released (this is how it acknowledges a revocation). A partition it was
        never handed is ignored. A generation older than the group's is fine (the
        view carries the new one); a newer one raises IllegalGenerationError.
        """
        check_group_id(group_id)
        group, member = self._member(group_id, member_id)
        self._end_initial_delay_if_due(group, now_ms)
        if generation_id > group.generation_id:
            raise IllegalGenerationError(
                f"generation {generation_id} is newer than group {group_id!r}'s "
                f"{group.generation_id}"
            )
        member.owned &= partition_set(owned)
        member.last_seen_ms = now_ms
        return group.view(member)

    def leave(self, group_id: str, member_id: str, now_ms: int) -> None:
        """Remove a member: its partitions are free at once, the group rebalances.

        The member is expected to have committed and stopped fetching first.
        During the initial rebalance delay the wait goes on for the others.
        """
        check_group_id(group_id)
        group, _ = self._member(group_id, member_id)
        del group.members[member_id]
        self._membership_changed(group)

    def expire(self, now_ms: int) -> list[tuple[str, str]]:
        """Evict every member whose session has run out; return (group, member) pairs.

        A member expires when ``now_ms >= last join/heartbeat + session_timeout_ms``.
        Its partitions are free at once and its group rebalances. Then every group
        whose initial rebalance delay has ended gets its first generation, so the
        members' next heartbeats carry their assignments.
        """
        evicted: list[tuple[str, str]] = []
        for group_id in sorted(self._groups):
            group = self._groups[group_id]
            dead = sorted(m.member_id for m in group.members.values() if now_ms >= m.deadline_ms)
            for member_id in dead:
                del group.members[member_id]
                evicted.append((group_id, member_id))
            if dead:
                self._membership_changed(group)
            self._end_initial_delay_if_due(group, now_ms)
        return evicted

    def next_deadline_ms(self) -> int | None:
        """When ``expire`` next has work: the earliest session expiry of any member
        or end of an initial rebalance delay; None with no members."""
        deadlines = [m.deadline_ms for g in self._groups.values() for m in g.members.values()]
        deadlines += [
            g.initial_delay_end_ms
            for g in self._groups.values()
            if g.initial_delay_end_ms is not None
        ]
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ commits

    def check_commit(self, group_id: str, member_id: str | None, generation_id: int) -> None:
        """Raise unless an offset commit for the group may go ahead.

        * No member id and a negative generation (-1): a standalone commit from a
          consumer that assigns partitions itself. Allowed while the group has no
          members (unknown or Empty); refused with UnknownMemberIdError while it has
          members, as Kafka refuses it, so it cannot overwrite a live group's offsets.
        * Otherwise the member must be in the group (else UnknownMemberIdError: it
          left or was evicted) and ``generation_id`` must be the group's current
          generation (else IllegalGenerationError: a zombie of an older generation).
          A member learns the current generation from its heartbeat view.
        """
        check_group_id(group_id)
        group = self._groups.get(group_id)
        if not member_id and generation_id < 0:
            if group is None or not group.members:
                return
            raise UnknownMemberIdError(
                f"group {group_id!r} has active members; a commit without a member id "
                "and generation is refused"
            )
        if group is None or not member_id or member_id not in group.members:
            raise UnknownMemberIdError(f"member {member_id!r} is not in group {group_id!r}")
        if generation_id != group.generation_id:
            raise IllegalGenerationError(
                f"generation {generation_id} is not group {group_id!r}'s current "
                f"generation {group.generation_id}"
            )

    # ------------------------------------------------------------------ metadata

    def topics_changed(self) -> list[str]:
        """Re-read partition counts; rebalance groups whose topics changed.

        Call after a topic is created or deleted or gains partitions. Returns the
        ids of the groups whose target assignment changed (their generation bumps).
        A group in its initial rebalance delay reads the counts when the delay ends.
        """
        changed: list[str] = []
        for group_id in sorted(self._groups):
            group = self._groups[group_id]
            if (
                group.members
                and group.initial_delay_end_ms is None
                and group.subscribed_counts(self._partitions_for) != group.partition_counts
                and group.reassign(self._partitions_for, membership_changed=False)
            ):
                changed.append(group_id)
        return changed

    # ------------------------------------------------------------------ admin

    def describe(self, group_id: str) -> dict[str, Any]:
        """The group's state, assignor, generation and members.

        ``state`` is "Empty" (no members), "PreparingRebalance" (the first
        generation waits for the initial rebalance delay; no member has partitions
        yet), "Stable" (every member owns exactly its target), "Reconciling"
        (partitions are moving between members) or, for a
        group this coordinator does not know, "Dead" with no members, as Kafka's
        DescribeGroups answers (error NONE) for an unknown group.
        Per member: ``assignment`` (its target), ``owned`` (what it holds now, as
        far as the coordinator knows), ``pending`` and ``revoke``.
        """
        check_group_id(group_id)
        group = self._groups.get(group_id)
        if group is None:
            return dead_group(group_id)
        return group.describe()

    def list_groups(self) -> list[dict[str, Any]]:
        """Every group this coordinator knows (including Empty ones), by group id."""
        return [g.summary() for g in sorted(self._groups.values(), key=lambda g: g.group_id)]

    def delete_group(self, group_id: str) -> None:
        """Forget an Empty group (Kafka's DeleteGroups; the server drops its offsets).

        Raises GroupIdNotFoundError for an unknown group, NonEmptyGroupError while
        it has members.
        """
        check_group_id(group_id)
        group = self._groups.get(group_id)
        if group is None:
            raise GroupIdNotFoundError(f"group {group_id!r} does not exist")
        if group.members:
            raise NonEmptyGroupError(f"group {group_id!r} has {len(group.members)} members")
        del self._groups[group_id]

    # ------------------------------------------------------------------ internals

    def _check_session_timeout(self, session_timeout_ms: int) -> None:
        if (
            not isinstance(session_timeout_ms, int)
            or isinstance(session_timeout_ms, bool)
            or not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms
        ):
            raise InvalidSessionTimeoutError(
                f"session timeout {session_timeout_ms!r} ms is outside "
                f"[{self.min_session_timeout_ms}, {self.max_session_timeout_ms}]"
            )

    def _member(self, group_id: str, member_id: str) -> tuple[Group, Member]:
        group = self._groups.get(group_id)
        member = group.members.get(member_id) if group is not None and member_id else None
        if group is None or member is None:
            raise UnknownMemberIdError(f"member {member_id!r} is not in group {group_id!r}")
        return group, member

    def _end_initial_delay_if_due(self, group: Group, now_ms: int) -> None:
        if group.initial_delay_end_ms is not None and now_ms >= group.initial_delay_end_ms:
            group.initial_delay_start_ms = group.initial_delay_end_ms = None
            group.reassign(self._partitions_for, membership_changed=True)

    def _membership_changed(self, group: Group) -> None:
        """Rebalance for a join, leave or eviction, unless the group is in its
        initial rebalance delay: its first generation will count every member
        there is when the delay ends. A group whose last member went stops waiting."""
        if group.initial_delay_end_ms is not None:
            if group.members:
                return
            group.initial_delay_start_ms = group.initial_delay_end_ms = None
        group.reassign(self._partitions_for, membership_changed=True)
