"""Kafka's classic consumer-group protocol, broker side: pure and sans I/O.

The protocol Kafka's clients (kafka-python, librdkafka, aiokafka, the Java
client before KIP-848) speak: the broker only gathers members and picks a
protocol; the assignment is computed by one member, the leader, and
handed back through the broker. Member metadata and assignments are
opaque bytes here.

    JoinGroup  (each member) ----> PreparingRebalance: wait until every known
                                   member has rejoined, or the rebalance timeout
               <---- all at once:  generation + 1, the chosen protocol, the
                                   leader; the leader also gets every member's
                                   metadata
    SyncGroup  (the leader, with every member's assignment; the others with
                none) -> Stable: each member gets its own assignment
    Heartbeat  REBALANCE_IN_PROGRESS tells a member to join again

No clock, no sockets: callers pass `now_ms` and an opaque `client` for each
join and sync, which are answered later; `take_completions()` hands back
(client, reply) pairs, replies being the broker core's JoinGroupReply,
SyncGroupReply or ErrorReply.

Decisions where Kafka's behaviour has several versions:
- JoinGroup v4+ without a member id (and no group.instance.id) is answered at
  once with MEMBER_ID_REQUIRED and a new id, which must come back within a
  session timeout (KIP-394); older versions join with the new id directly.
- The protocol is chosen as Kafka does: among the protocols every member
  supports, each member votes for the first of its own list that is
  among them; most votes wins, ties by the first voter's order.
- The initial rebalance delay (group.initial.rebalance.delay.ms) applies to
  a group that was Empty: the join completes `delay` after the last new
  member, no later than the first join plus the rebalance timeout.
- A known static member (group.instance.id) that rejoins without a member id
  while the group is Stable replaces its old member id without a rebalance
  (KIP-345); it gets the current generation, and its previous assignment at
  SyncGroup. The old id is fenced (FENCED_INSTANCE_ID).
- A member whose session expires is removed, static or not; a member waiting
  in a join is not expired (it is waiting for the others).
- A heartbeat during CompletingRebalance is answered NONE (Kafka 2.4+).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from appliance.broker import replies as r
from appliance.consumer_group import check_group_id
from shm.errors import (
    FencedInstanceIdError,
    GroupIdNotFoundError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidSessionTimeoutError,
    MemberIdRequiredError,
    NonEmptyGroupError,
    RebalanceInProgressError,
    RinglogError,
    UnknownMemberIdError,
)

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead")


@dataclass(slots=True)
class _Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    heard_ms: int
    joining: Any = None  # the client of its pending JoinGroup
    syncing: Any = None  # the client of its pending SyncGroup
    assignment: bytes = b""

    def metadata(self, protocol: str) -> bytes:
        return next((m for name, m in self.protocols if name == protocol), b"")


@dataclass(slots=True)
class _Group:
    group_id: str
    state: str = EMPTY
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, _Member] = field(default_factory=dict)
    static: dict[str, str] = field(default_factory=dict)  # group.instance.id -> member id
    pending: dict[str, int] = field(default_factory=dict)  # ids given, not joined: -> expiry
    join_deadline_ms: int | None = None
    delay_cap_ms: int | None = None  # the initial delay's end, at the latest

    def supported(self) -> set[str]:
        """The protocols every member supports."""
        sets = [{name for name, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()


class ClassicGroups:
    def __init__(self, min_session_timeout_ms: int, max_session_timeout_ms: int,
                 initial_rebalance_delay_ms: int = 0):
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self._groups: dict[str, _Group] = {}
        self._completions: list[tuple[Any, r.Reply]] = []

    # --- calls -----------------------------------------------------------------------

    def join(self, client: Any, group_id: str, member_id: str, group_instance_id: str | None,
             protocol_type: str, protocols: list[tuple[str, bytes]], session_timeout_ms: int,
             rebalance_timeout_ms: int, now_ms: int, *, client_id: str = "",
             client_host: str = "", require_known_member_id: bool = True) -> None:
        """A JoinGroup: answered now (errors, MEMBER_ID_REQUIRED, a static member's
        replacement) or when the rebalance completes, through take_completions()."""
        check_group_id(group_id)
        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            raise InvalidSessionTimeoutError(
                f"session timeout {session_timeout_ms} ms is outside the broker's "
                f"[{self.min_session_timeout_ms}, {self.max_session_timeout_ms}] "
                "(group.min/max.session.timeout.ms)")
        if not protocols:
            raise InconsistentGroupProtocolError("a JoinGroup must name at least one protocol")
        group = self._groups.setdefault(group_id, _Group(group_id))
        if group.members and (protocol_type != group.protocol_type or not (
                group.supported() & {name for name, _ in protocols})):
            raise InconsistentGroupProtocolError(
                f"group {group_id!r} runs protocol type {group.protocol_type!r} with "
                f"{sorted(group.supported())}; this member offers {protocol_type!r} with "
                f"{[name for name, _ in protocols]}")
        rebalance_timeout_ms = rebalance_timeout_ms if rebalance_timeout_ms > 0 \
            else session_timeout_ms
        fields = dict(client_id=client_id, client_host=client_host, protocol_type=protocol_type,
                      protocols=list(protocols), session_timeout_ms=session_timeout_ms,
                      rebalance_timeout_ms=rebalance_timeout_ms, heard_ms=now_ms)
        if not member_id:
            if group_instance_id is not None and group_instance_id in group.static:
                self._replace_static(client, group, group_instance_id, fields, now_ms)
                return
            member_id = f"{client_id or 'member'}-{uuid.uuid4()}"
            if group_instance_id is None and require_known_member_id:
                group.pending[member_id] = now_ms + session_timeout_ms
                raise _member_id_required(member_id)
            self._add(client, group, member_id, group_instance_id, fields, now_ms)
            return
        member = group.members.get(member_id)
        if member is None:
            if group.pending.pop(member_id, None) is None:
                raise UnknownMemberIdError(
                    f"member {member_id!r} is not in group {group_id!r}; join without one")
            self._add(client, group, member_id, group_instance_id, fields, now_ms)
            return
        self._check_instance(group, member_id, group_instance_id)
        changed = member.protocols != fields["protocols"]
        for key, value in fields.items():
            setattr(member, key, value)
        # Nothing to rebalance for: a follower's rejoin of a Stable group, or a
        # repeated join while the leader computes: the current generation again.
        unchanged = not changed and (
            (group.state == STABLE and member_id != group.leader_id) or group.state == COMPLETING)
        if unchanged:
            self._completions.append((client, self._join_reply(group, member_id)))
            return
        if member.joining is not None:  # a retried join replaces the one waiting
            self._completions.append((member.joining, r.ErrorReply(UnknownMemberIdError(
                "superseded by a later JoinGroup of the same member"))))
        member.joining = client
        self._rebalance(group, now_ms)

    def sync(self, client: Any, group_id: str, generation_id: int, member_id: str,
             group_instance_id: str | None, assignments: dict[str, bytes], now_ms: int) -> None:
        """A SyncGroup: the leader's assignments are stored and every waiting member
        answered; a follower waits for the leader's."""
        group, member = self._member(group_id, member_id, group_instance_id)
        if generation_id != group.generation_id:
            raise IllegalGenerationError(
                f"generation {generation_id} is not group {group_id!r}'s {group.generation_id}")
        member.heard_ms = now_ms
        if group.state == PREPARING:
            raise RebalanceInProgressError(f"group {group_id!r} is rebalancing; join again")
        if group.state == STABLE:
            self._completions.append((client, self._sync_reply(group, member)))
            return
        member.syncing = client  # CompletingRebalance: wait for the leader's assignments
        if member_id == group.leader_id:
            for other in group.members.values():
                other.assignment = assignments.get(other.member_id, b"")
            group.state = STABLE
            for other in group.members.values():
                if other.syncing is not None:
                    self._completions.append((other.syncing, self._sync_reply(group, other)))
                    other.syncing = None

    def heartbeat(self, group_id: str, generation_id: int, member_id: str,
                  group_instance_id: str | None, now_ms: int) -> None:
        group, member = self._member(group_id, member_id, group_instance_id)
        member.heard_ms = now_ms
        if group.state == PREPARING:
            raise RebalanceInProgressError(f"group {group_id!r} is rebalancing; join again")
        if generation_id != group.generation_id:
            raise IllegalGenerationError(
                f"generation {generation_id} is not group {group_id!r}'s {group.generation_id}")

    def leave(self, group_id: str, members: list[tuple[str, str | None]], now_ms: int
              ) -> list[tuple[str, str | None, RinglogError | None]]:
        """LeaveGroup (v3: several members, by member id or group.instance.id):
        each one's outcome."""
        check_group_id(group_id)
        group = self._groups.get(group_id)
        results: list[tuple[str, str | None, RinglogError | None]] = []
        for member_id, instance_id in members:
            if not member_id and instance_id is not None and group is not None:
                member_id = group.static.get(instance_id, "")
            try:
                if group is None or member_id not in group.members:
                    raise UnknownMemberIdError(f"member {member_id!r} is not in group "
                                               f"{group_id!r}")
                self._check_instance(group, member_id, instance_id)
                self._remove(group, member_id)
                results.append((member_id, instance_id, None))
            except RinglogError as exc:
                results.append((member_id, instance_id, exc))
        if group is not None and any(error is None for *_, error in results):
            self._membership_changed(group, now_ms)
        return results

    def check_commit(self, group_id: str, member_id: str | None, generation_id: int) -> None:
        """An OffsetCommit may go ahead: a standalone commit (no member, generation
        -1) only while the group has no members; else a current member of the
        current generation, not while the leader's assignment is awaited."""
        group = self._groups.get(group_id)
        if generation_id < 0 and not member_id:
            if group is None or not group.members:
                return
            raise UnknownMemberIdError(f"group {group_id!r} has members; commit as one")
        if group is None or member_id not in group.members:
            raise UnknownMemberIdError(f"member {member_id!r} is not in group {group_id!r}")
        if group.state == COMPLETING:
            raise RebalanceInProgressError(f"group {group_id!r} is rebalancing; join again")
        if generation_id != group.generation_id:
            raise IllegalGenerationError(
                f"generation {generation_id} is not group {group_id!r}'s {group.generation_id}")

    # --- the clock -------------------------------------------------------------------

    def expire(self, now_ms: int) -> list[tuple[str, str]]:
        """Evict members past their session, complete joins past their deadline;
        the (group, member) pairs evicted."""
        evicted = []
        for group in list(self._groups.values()):
            group.pending = {m: t for m, t in group.pending.items() if t > now_ms}
            gone = [m.member_id for m in group.members.values()
                    if m.joining is None and now_ms >= m.heard_ms + m.session_timeout_ms]
            for member_id in gone:
                self._remove(group, member_id)
                evicted.append((group.group_id, member_id))
            if gone:
                self._membership_changed(group, now_ms)
            if group.state == PREPARING and group.join_deadline_ms is not None and \
                    now_ms >= group.join_deadline_ms:
                self._complete_join(group, now_ms)
        return evicted

    def next_deadline_ms(self) -> int | None:
        deadlines = []
        for group in self._groups.values():
            deadlines += [m.heard_ms + m.session_timeout_ms for m in group.members.values()
                          if m.joining is None]
            deadlines += group.pending.values()
            if group.state == PREPARING and group.join_deadline_ms is not None:
                deadlines.append(group.join_deadline_ms)
        return min(deadlines, default=None)

    def take_completions(self) -> list[tuple[Any, r.Reply]]:
        done, self._completions = self._completions, []
        return done

    # --- admin -----------------------------------------------------------------------

    def knows(self, group_id: str) -> bool:
        """The group has members (it is served by this protocol now)."""
        group = self._groups.get(group_id)
        return group is not None and bool(group.members)

    def describe(self, group_id: str) -> dict[str, Any] | None:
        """DescribeGroups' view, None for a group this coordinator never had."""
        group = self._groups.get(group_id)
        if group is None:
            return None
        protocol = group.protocol_name or ""
        return {"group_id": group_id, "state": group.state,
                "protocol_type": group.protocol_type or "", "protocol": protocol,
                "generation_id": group.generation_id, "leader": group.leader_id,
                "members": [{"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                             "client_id": m.client_id, "client_host": m.client_host,
                             "metadata": m.metadata(protocol) if group.state != PREPARING
                             else b"", "assignment": m.assignment,
                             "partitions": consumer_assignment(m.assignment)
                             if group.protocol_type == "consumer" else None}
                            for m in group.members.values()]}

    def list_groups(self) -> list[dict[str, Any]]:
        return [{"group_id": g.group_id, "state": g.state,
                 "protocol_type": g.protocol_type or "consumer"}
                for g in sorted(self._groups.values(), key=lambda g: g.group_id)]

    def delete_group(self, group_id: str) -> None:
        group = self._groups.get(group_id)
        if group is None:
            raise GroupIdNotFoundError(f"group {group_id!r} does not exist")
        if group.members:
            raise NonEmptyGroupError(f"group {group_id!r} has {len(group.members)} members")
        del self._groups[group_id]

    # --- internals -------------------------------------------------------------------

    def _member(self, group_id: str, member_id: str, instance_id: str | None
                ) -> tuple[_Group, _Member]:
        check_group_id(group_id)
        group = self._groups.get(group_id)
        if group is not None:  # an old id of a known instance is fenced, not unknown
            self._check_instance(group, member_id, instance_id)
        if group is None or member_id not in group.members:
            raise UnknownMemberIdError(f"member {member_id!r} is not in group {group_id!r}")
        return group, group.members[member_id]

    @staticmethod
    def _check_instance(group: _Group, member_id: str, instance_id: str | None) -> None:
        if instance_id is not None and group.static.get(instance_id, member_id) != member_id:
            raise FencedInstanceIdError(
                f"group.instance.id {instance_id!r} belongs to a newer member of group "
                f"{group.group_id!r}; this one is fenced")

    def _add(self, client: Any, group: _Group, member_id: str, instance_id: str | None,
             fields: dict, now_ms: int) -> None:
        member = _Member(member_id, instance_id, **fields)
        member.joining = client
        group.members[member_id] = member
        if instance_id is not None:
            group.static[instance_id] = member_id
        if not group.protocol_type:
            group.protocol_type = member.protocol_type
        self._rebalance(group, now_ms)

    def _replace_static(self, client: Any, group: _Group, instance_id: str, fields: dict,
                        now_ms: int) -> None:
        """KIP-345: a known instance comes back under a new member id."""
        old = group.members.pop(group.static[instance_id])
        new_id = f"{fields['client_id'] or 'member'}-{uuid.uuid4()}"
        member = _Member(new_id, instance_id, **fields)
        member.assignment = old.assignment
        group.members[new_id] = member
        group.static[instance_id] = new_id
        if group.leader_id == old.member_id:
            group.leader_id = new_id
        for stale in (old.joining, old.syncing):
            if stale is not None:
                self._completions.append((stale, r.ErrorReply(FencedInstanceIdError(
                    f"group.instance.id {instance_id!r} rejoined as another member"))))
        if group.state == STABLE and old.protocols == member.protocols:
            self._completions.append((client, self._join_reply(group, new_id)))
            return
        member.joining = client
        self._rebalance(group, now_ms)

    def _remove(self, group: _Group, member_id: str) -> None:
        member = group.members.pop(member_id)
        if member.group_instance_id is not None:
            group.static.pop(member.group_instance_id, None)
        for waiting in (member.joining, member.syncing):
            if waiting is not None:
                self._completions.append((waiting, r.ErrorReply(UnknownMemberIdError(
                    f"member {member_id!r} left group {group.group_id!r}"))))
        if group.leader_id == member_id:
            group.leader_id = None

    def _membership_changed(self, group: _Group, now_ms: int) -> None:
        if not group.members:
            group.state, group.protocol_type, group.protocol_name = EMPTY, None, None
            group.generation_id += 1
            group.join_deadline_ms = group.delay_cap_ms = None
            return
        if group.state in (STABLE, COMPLETING):
            self._rebalance(group, now_ms)
        elif group.state == PREPARING:
            self._maybe_complete_join(group, now_ms)

    def _rebalance(self, group: _Group, now_ms: int) -> None:
        """Into PreparingRebalance (or on in it): members waiting in a sync learn
        of it, and the join completes when every member has rejoined."""
        longest = max(m.rebalance_timeout_ms for m in group.members.values())
        if group.state == EMPTY and self.initial_rebalance_delay_ms > 0:
            group.delay_cap_ms = now_ms + max(longest, self.initial_rebalance_delay_ms)
        if group.delay_cap_ms is not None:  # in the initial delay: each join extends it
            group.join_deadline_ms = min(now_ms + self.initial_rebalance_delay_ms,
                                         group.delay_cap_ms)
        elif group.state != PREPARING:
            group.join_deadline_ms = now_ms + longest
        if group.state != PREPARING:
            for member in group.members.values():
                if member.syncing is not None:
                    self._completions.append((member.syncing, r.ErrorReply(
                        RebalanceInProgressError(f"group {group.group_id!r} is rebalancing"))))
                    member.syncing = None
        group.state = PREPARING
        self._maybe_complete_join(group, now_ms)

    def _maybe_complete_join(self, group: _Group, now_ms: int) -> None:
        if group.delay_cap_ms is not None:
            return  # the initial delay ends by the clock (expire)
        if all(m.joining is not None for m in group.members.values()):
            self._complete_join(group, now_ms)

    def _complete_join(self, group: _Group, now_ms: int) -> None:
        """A new generation of the members that rejoined: the others are out."""
        for member_id in [m.member_id for m in group.members.values() if m.joining is None]:
            self._remove(group, member_id)
        group.join_deadline_ms = group.delay_cap_ms = None
        group.generation_id += 1
        if not group.members:
            group.state, group.protocol_type, group.protocol_name = EMPTY, None, None
            return
        group.protocol_name = _vote(group.supported(), group.members.values())
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members))
        group.state = COMPLETING
        for member in group.members.values():
            member.heard_ms = now_ms
            self._completions.append((member.joining, self._join_reply(group, member.member_id)))
            member.joining = None

    def _join_reply(self, group: _Group, member_id: str) -> r.JoinGroupReply:
        protocol = group.protocol_name or ""
        members = [(m.member_id, m.group_instance_id, m.metadata(protocol))
                   for m in group.members.values()] if member_id == group.leader_id else []
        return r.JoinGroupReply(group.generation_id, group.protocol_type or "", protocol,
                                group.leader_id or "", member_id, members)

    @staticmethod
    def _sync_reply(group: _Group, member: _Member) -> r.SyncGroupReply:
        return r.SyncGroupReply(group.protocol_type or "", group.protocol_name or "",
                                member.assignment)


_I16, _I32 = struct.Struct(">h"), struct.Struct(">i")


def consumer_assignment(data: bytes) -> list[tuple[str, int]] | None:
    """The partitions in a "consumer" protocol assignment, for people to read
    (Kafka's ConsumerProtocolAssignment: int16 version, then an int32 count of
    (int16-length topic, int32 count of int32 partitions), then user data);
    None when it does not parse."""
    try:
        offset = _I16.size
        (topics,) = _I32.unpack_from(data, offset)
        offset += _I32.size
        partitions = []
        for _ in range(topics):
            (length,) = _I16.unpack_from(data, offset)
            topic = bytes(data[offset + 2:offset + 2 + length]).decode()
            offset += 2 + length
            (count,) = _I32.unpack_from(data, offset)
            offset += _I32.size
            for _ in range(count):
                partitions.append((topic, _I32.unpack_from(data, offset)[0]))
                offset += _I32.size
        return partitions
    except (struct.error, UnicodeDecodeError, ValueError):
        return None


def _vote(candidates: set[str], members: Iterable[_Member]) -> str:
    """Each member votes for its most preferred protocol among the candidates."""
    votes: dict[str, int] = {}
    for member in members:
        choice = next(name for name, _ in member.protocols if name in candidates)
        votes[choice] = votes.get(choice, 0) + 1
    return max(votes, key=lambda name: votes[name])  # ties: the first voter's choice


def _member_id_required(member_id: str) -> MemberIdRequiredError:
    error = MemberIdRequiredError(f"rejoin with member id {member_id}")
    error.member_id = member_id  # type: ignore[attr-defined]  (the reply carries it)
    return error
