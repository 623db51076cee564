"""The group coordinator, specified through members that follow the protocol.

A well-behaved member (``Member`` below) heartbeats with what it owns, consumes
exactly its view's ``assignment``, and for every partition it loses: commits its
position (with the generation its last view carried), then leaves it out of
``owned`` in its next heartbeat. Against such members the coordinator promises:
no partition is ever in two members' assignments at once, and a clean rebalance
hands every partition over at exactly the committed position (no record twice).
"""

from __future__ import annotations

import itertools
import weakref

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from appliance.group_coordinator import (
    GroupCoordinator,
    GroupIdNotFoundError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    InvalidSessionTimeoutError,
    MemberView,
    NonEmptyGroupError,
    RebalanceInProgressError,
    UnknownMemberIdError,
    UnsupportedAssignorError,
)
from shm.errors import RinglogError

SESSION = 10_000


def tps(*names: str) -> tuple[tuple[str, int], ...]:
    """tps("t0p1", "t1p0") -> (("t0", 1), ("t1", 0)), sorted"""
    result = []
    for name in names:
        topic, partition = name.rsplit("p", 1)
        result.append((topic, int(partition)))
    return tuple(sorted(result))


def counting_ids():
    counter = itertools.count()
    return lambda client_id: f"{client_id or 'member'}-{next(counter)}"


def make(topics: dict[str, int | None], **kwargs) -> GroupCoordinator:
    """A coordinator over a mutable topic table, with readable member ids."""
    kwargs.setdefault("member_id_factory", counting_ids())
    return GroupCoordinator(topics.get, **kwargs)


# committed offsets per coordinator and group (the server's job in production)
_OFFSETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Member:
    """A consumer that follows the protocol; `offsets` is the group's committed store."""

    def __init__(self, coord, group, topics, now=0, assignor="cooperative-sticky",
                 client_id="", offsets=None, session=SESSION):
        self.coord, self.group = coord, group
        self.topics = list(topics)
        if offsets is None:
            offsets = _OFFSETS.setdefault(coord, {}).setdefault(group, {})
        self.offsets = offsets
        self.position: dict[tuple[str, int], int] = {}
        self.consuming: set[tuple[str, int]] = set()
        self.uncommitted: set[tuple[str, int]] = set()  # revoked, offsets not committed yet
        view = coord.join(group, None, self.topics, session, assignor, now, client_id)
        self.id = view.member_id
        self.apply(view)

    def apply(self, view: MemberView) -> MemberView:
        assert view.member_id == self.id
        self.generation = view.generation_id
        self.view = view
        new = set(view.assignment)
        lost = self.consuming - new
        assert lost <= set(view.revoke), "a partition vanished from assignment unrevoked"
        self.uncommitted |= lost
        for tp in new - self.consuming:
            if tp in self.uncommitted:  # given back before it was released: carry on
                self.uncommitted.discard(tp)
            else:
                self.position[tp] = self.offsets.get(tp, 0)  # resume from the committed offset
        self.consuming = new
        return view

    def commit(self, partitions) -> bool:
        try:
            self.coord.check_commit(self.group, self.id, self.generation)
        except IllegalGenerationError:
            return False  # learn the new generation from the next heartbeat, then retry
        for tp in partitions:
            self.offsets[tp] = self.position[tp]
        return True

    def heartbeat(self, now) -> MemberView:
        if self.uncommitted and self.commit(self.uncommitted):
            self.uncommitted.clear()
        owned = self.consuming | self.uncommitted
        return self.apply(self.coord.heartbeat(self.group, self.id, self.generation, owned, now))

    def rejoin(self, topics, now, assignor="cooperative-sticky") -> MemberView:
        self.topics = list(topics)
        return self.apply(self.coord.join(self.group, self.id, self.topics, SESSION, assignor, now))

    def consume(self, records=1) -> None:
        for tp in self.consuming:
            self.position[tp] += records

    def leave(self, now) -> None:
        while not self.commit(self.consuming | self.uncommitted):
            self.heartbeat(now)
        self.coord.leave(self.group, self.id, now)


def settle(members, now, rounds=4):
    for _ in range(rounds):
        for m in members:
            m.heartbeat(now)


def assert_disjoint(members):
    seen: dict[tuple[str, int], str] = {}
    for m in members:
        for tp in m.consuming:
            assert tp not in seen, f"{tp} consumed by {seen[tp]} and {m.id} at once"
            seen[tp] = m.id


# --------------------------------------------------------------------------- errors


def test_group_errors_carry_kafkas_names_and_codes():
    expected = {
        IllegalGenerationError: (22, "ILLEGAL_GENERATION"),
        InconsistentGroupProtocolError: (23, "INCONSISTENT_GROUP_PROTOCOL"),
        InvalidGroupIdError: (24, "INVALID_GROUP_ID"),
        UnknownMemberIdError: (25, "UNKNOWN_MEMBER_ID"),
        InvalidSessionTimeoutError: (26, "INVALID_SESSION_TIMEOUT"),
        RebalanceInProgressError: (27, "REBALANCE_IN_PROGRESS"),
        NonEmptyGroupError: (68, "NON_EMPTY_GROUP"),
        GroupIdNotFoundError: (69, "GROUP_ID_NOT_FOUND"),
        UnsupportedAssignorError: (112, "UNSUPPORTED_ASSIGNOR"),
    }
    for cls, (code, name) in expected.items():
        assert issubclass(cls, RinglogError)
        assert (cls.code, cls.name, cls.retriable) == (code, name, False)


# --------------------------------------------------------------------------- queue semantics


def test_a_lone_member_gets_every_partition_of_its_topics_at_once():
    coord = make({"t": 4, "u": 2, "other": 3})
    a = Member(coord, "g", ["t", "u"], client_id="app")
    assert a.id == "app-0"
    assert a.view == MemberView("app-0", 1, tps("tp0", "tp1", "tp2", "tp3", "up0", "up1"),
                                (), False, 1, ())


def test_generated_member_ids_are_client_id_and_a_uuid():
    coord = GroupCoordinator({"t": 1}.get)
    view = coord.join("g", None, ["t"], SESSION, "range", 0, client_id="billing")
    prefix, _, suffix = view.member_id.rpartition("-")
    assert prefix == "billing" and len(suffix) == 32 and int(suffix, 16) >= 0
    other = coord.join("g", "", ["t"], SESSION, "range", 0)
    assert other.member_id.startswith("member-") and other.member_id != view.member_id


def test_two_members_split_the_partitions_with_a_two_step_handover():
    coord = make({"t": 4})
    a = Member(coord, "g", ["t"])
    a.consume(5)
    b = Member(coord, "g", ["t"], now=100)
    # b's share is still a's: b waits, a is told to give it up
    assert b.view.assignment == () and b.view.pending == tps("tp2", "tp3")
    assert b.view.rebalancing and b.view.generation_id == 2 and b.view.members == 2
    assert_disjoint([a, b])
    a.heartbeat(200)
    assert a.view.revoke == tps("tp2", "tp3") and a.view.assignment == tps("tp0", "tp1")
    assert a.uncommitted == set(tps("tp2", "tp3"))
    assert_disjoint([a, b])
    a.heartbeat(300)  # commits tp2, tp3 at 5 and releases them
    assert a.uncommitted == set() and a.offsets == {("t", 2): 5, ("t", 3): 5}
    assert not a.view.rebalancing
    b.heartbeat(400)
    assert b.view.assignment == tps("tp2", "tp3") and b.view.pending == ()
    assert b.position == {("t", 2): 5, ("t", 3): 5}  # picks up exactly where a stopped
    assert coord.describe("g")["state"] == "Stable"
    assert_disjoint([a, b])


def test_no_partition_is_ever_consumed_twice_through_joins_leaves_and_expiry():
    topics = {"t": 6}
    coord = make(topics)
    offsets: dict = {}
    now = 0
    members = [Member(coord, "g", ["t"], now, offsets=offsets)]
    for step in range(40):
        now += 500
        if step % 7 == 0:
            members.append(Member(coord, "g", ["t"], now, offsets=offsets))
        elif step % 11 == 0 and len(members) > 1:
            members.pop(0).leave(now)
        for m in members:
            m.consume()
            m.heartbeat(now)
            assert_disjoint(members)
    settle(members, now)
    assert set().union(*(m.consuming for m in members)) == {("t", p) for p in range(6)}


# --------------------------------------------------------------------------- stickiness


def test_a_joining_member_moves_only_the_partitions_it_must():
    coord = make({"t": 9})
    members = [Member(coord, "g", ["t"]) for _ in range(3)]
    settle(members, 0)
    before = {m.id: set(m.consuming) for m in members}
    assert sorted(len(s) for s in before.values()) == [3, 3, 3]
    newcomer = Member(coord, "g", ["t"], now=10)
    settle([*members, newcomer], 20)
    after = {m.id: m.consuming for m in members}
    assert len(newcomer.consuming) == 2  # 9 // 4: exactly two partitions move
    for m in members:
        assert after[m.id] <= before[m.id]  # nobody gains, nobody trades
    assert sum(len(before[i] - after[i]) for i in before) == 2
    assert sorted(len(m.consuming) for m in [*members, newcomer]) == [2, 2, 2, 3]


def test_a_rejoin_that_changes_nothing_keeps_the_generation():
    coord = make({"t": 2})
    a = Member(coord, "g", ["t"])
    assert a.rejoin(["t"], 10).generation_id == 1
    assert a.rejoin(["t", "t"], 10).generation_id == 1
    assert a.rejoin(["t", "u"], 10).generation_id == 2


def test_a_subscription_change_revokes_the_topics_dropped():
    coord = make({"t": 2, "u": 2})
    a = Member(coord, "g", ["t", "u"])
    view = a.rejoin(["u"], 10)
    assert view.assignment == tps("up0", "up1") and view.revoke == tps("tp0", "tp1")
    assert coord.describe("g")["state"] == "Reconciling"
    a.heartbeat(20)
    assert coord.describe("g")["members"][0]["owned"] == tps("up0", "up1")
    assert coord.describe("g")["state"] == "Stable"


# --------------------------------------------------------------------------- leave, expiry


def test_leaving_frees_the_partitions_immediately():
    coord = make({"t": 4})
    a, b = Member(coord, "g", ["t"]), Member(coord, "g", ["t"])
    settle([a, b], 0)
    b.leave(100)
    view = a.heartbeat(200)
    assert view.assignment == tps("tp0", "tp1", "tp2", "tp3") and view.members == 1
    with pytest.raises(UnknownMemberIdError):
        coord.heartbeat("g", b.id, b.generation, [], 300)
    with pytest.raises(UnknownMemberIdError):
        coord.leave("g", b.id, 300)


def test_a_silent_member_is_evicted_at_its_session_deadline_and_its_partitions_freed():
    coord = make({"t": 4})
    a = Member(coord, "g", ["t"], now=0)
    b = Member(coord, "g", ["t"], now=1_000)
    settle([a, b], 1_000)
    assert coord.next_deadline_ms() == 1_000 + SESSION
    a.heartbeat(5_000)
    assert coord.next_deadline_ms() == 1_000 + SESSION  # b's, the earliest
    assert coord.expire(1_000 + SESSION - 1) == []
    assert coord.expire(1_000 + SESSION) == [("g", b.id)]
    assert coord.next_deadline_ms() == 5_000 + SESSION
    assert a.heartbeat(11_500).assignment == tps("tp0", "tp1", "tp2", "tp3")
    # b was only slow, not dead: it is a zombie now, fenced
    with pytest.raises(UnknownMemberIdError):
        coord.heartbeat("g", b.id, b.generation, b.consuming, 12_000)
    with pytest.raises(UnknownMemberIdError):
        coord.check_commit("g", b.id, b.generation)
    with pytest.raises(UnknownMemberIdError):
        coord.join("g", b.id, ["t"], SESSION, "cooperative-sticky", 12_000)


def test_expiring_the_last_member_leaves_an_empty_group_and_no_deadline():
    coord = make({"t": 1})
    Member(coord, "g", ["t"], now=0)
    assert coord.expire(SESSION)[0][0] == "g"
    assert coord.next_deadline_ms() is None
    assert coord.describe("g")["state"] == "Empty"
    assert coord.describe("g")["generation_id"] == 2


def test_a_late_heartbeat_counts_until_the_timer_runs_expire():
    coord = make({"t": 1})
    a = Member(coord, "g", ["t"], now=0)
    a.heartbeat(SESSION + 5)
    assert coord.expire(SESSION + 5) == []


# --------------------------------------------------------------------------- initial delay

DELAY = 3_000


def test_the_first_generation_of_an_empty_group_waits_for_the_initial_delay():
    coord = make({"t": 4}, initial_rebalance_delay_ms=DELAY)
    a = Member(coord, "g", ["t"], now=0)
    assert a.view == MemberView(a.id, 0, (), (), True, 1, ())  # nothing yet, rebalance pending
    assert coord.describe("g")["state"] == "PreparingRebalance"
    assert coord.next_deadline_ms() == DELAY  # the server's timer wakes for the delay's end
    assert a.heartbeat(DELAY - 1).assignment == () and a.view.rebalancing
    assert coord.expire(DELAY - 1) == [] and coord.describe("g")["state"] == "PreparingRebalance"
    view = a.heartbeat(DELAY)
    assert view.assignment == tps("tp0", "tp1", "tp2", "tp3") and view.generation_id == 1
    assert not view.rebalancing and coord.describe("g")["state"] == "Stable"


def test_members_that_join_during_the_delay_share_the_first_generation_without_handover():
    coord = make({"t": 4}, initial_rebalance_delay_ms=DELAY)
    a = Member(coord, "g", ["t"], now=0)
    b = Member(coord, "g", ["t"], now=1_000)  # extends the wait to 1_000 + DELAY
    assert b.view.assignment == () and b.view.rebalancing and b.view.members == 2
    assert coord.next_deadline_ms() == 1_000 + DELAY
    assert a.heartbeat(DELAY).assignment == ()  # a's original deadline passed: still waiting
    first = a.heartbeat(1_000 + DELAY)
    second = b.heartbeat(1_000 + DELAY)
    assert first.generation_id == second.generation_id == 1  # one generation for both
    assert sorted(first.assignment + second.assignment) == list(tps("tp0", "tp1", "tp2", "tp3"))
    assert len(first.assignment) == len(second.assignment) == 2
    assert first.revoke == second.revoke == () and not first.rebalancing  # nothing moved
    assert coord.describe("g")["state"] == "Stable"


def test_the_delay_ends_without_a_heartbeat_when_the_timer_calls_expire():
    coord = make({"t": 2}, initial_rebalance_delay_ms=DELAY)
    a = Member(coord, "g", ["t"], now=0)
    b = Member(coord, "g", ["t"], now=500)
    assert coord.expire(500 + DELAY) == []
    desc = coord.describe("g")  # assigned; the members pick it up with their next heartbeat
    assert desc["state"] == "Reconciling" and desc["generation_id"] == 1
    assert [m["assignment"] for m in desc["members"]] == [tps("tp0"), tps("tp1")]
    assert coord.next_deadline_ms() == 0 + SESSION  # only sessions are left to watch
    # a late heartbeat (after the end, before the timer) would have made it too:
    assert a.heartbeat(600 + DELAY).assignment == tps("tp0")
    assert b.heartbeat(600 + DELAY).assignment == tps("tp1")
    assert coord.describe("g")["state"] == "Stable"


def test_joins_extend_the_delay_only_up_to_the_largest_session_timeout():
    coord = make({"t": 4}, initial_rebalance_delay_ms=DELAY)
    members = [Member(coord, "g", ["t"], now=0, session=6_000)]
    for now in (2_500, 5_000, 5_900):  # each alone would push the end past 6_000
        for m in members:
            m.heartbeat(now)
        members.append(Member(coord, "g", ["t"], now=now, session=6_000))
        assert coord.next_deadline_ms() == min(now + DELAY, 6_000)
    assert coord.expire(6_000) == []  # the sessions were refreshed; the first generation is made
    assert all(len(m.heartbeat(6_000).assignment) == 1 for m in members)
    # a longer session timeout among the members allows a longer wait, as Kafka's
    # rebalance timeout does
    coord = make({"t": 4}, initial_rebalance_delay_ms=DELAY)
    first = Member(coord, "h", ["t"], now=0, session=6_000)
    Member(coord, "h", ["t"], now=2_500, session=SESSION)
    first.heartbeat(5_000)
    Member(coord, "h", ["t"], now=5_000, session=6_000)
    assert coord.next_deadline_ms() == 5_000 + DELAY  # past 6_000, within SESSION


def test_a_delay_longer_than_the_session_timeouts_is_waited_in_full():
    coord = make({"t": 1}, initial_rebalance_delay_ms=8_000)
    a = Member(coord, "g", ["t"], now=0, session=6_000)
    b = Member(coord, "g", ["t"], now=1_000, session=6_000)
    assert coord.next_deadline_ms() == 6_000  # a's session, then the delay's end
    a.heartbeat(5_000)
    assert coord.describe("g")["state"] == "PreparingRebalance"
    assert coord.expire(7_000) == [("g", b.id)]  # the silent one goes; the wait goes on
    assert coord.describe("g")["state"] == "PreparingRebalance"
    a.heartbeat(7_999)
    assert a.view.assignment == () and coord.next_deadline_ms() == 8_000
    assert a.heartbeat(8_000).assignment == tps("tp0")


def test_a_group_with_members_rebalances_at_once():
    coord = make({"t": 4}, initial_rebalance_delay_ms=DELAY)
    a = Member(coord, "g", ["t"], now=0)
    coord.expire(DELAY)
    a.heartbeat(DELAY)
    b = Member(coord, "g", ["t"], now=DELAY + 100)  # not the first: no wait
    assert b.view.generation_id == 2 and b.view.pending == tps("tp2", "tp3")
    assert coord.describe("g")["state"] == "Reconciling"
    assert coord.next_deadline_ms() == DELAY + SESSION  # a's session; no delay to wait for
    settle([a, b], DELAY + 200)
    assert a.consuming == set(tps("tp0", "tp1")) and b.consuming == set(tps("tp2", "tp3"))


def test_a_join_after_the_delay_ended_but_before_the_timer_ran_is_not_delayed():
    coord = make({"t": 2}, initial_rebalance_delay_ms=DELAY)
    a = Member(coord, "g", ["t"], now=0)
    b = Member(coord, "g", ["t"], now=DELAY + 50)  # the first generation was due at DELAY
    assert b.view.generation_id == 2 and b.view.assignment == tps("tp1")
    assert a.heartbeat(DELAY + 60).assignment == tps("tp0")
    assert coord.next_deadline_ms() == DELAY + 50 + SESSION  # b's session; no delay left


def test_a_group_that_empties_waits_again_for_its_next_first_generation():
    coord = make({"t": 2}, initial_rebalance_delay_ms=DELAY)
    a = Member(coord, "g", ["t"], now=0)
    a.leave(1_000)  # the last member goes during the wait: the wait is over
    assert coord.describe("g")["state"] == "Empty" and coord.next_deadline_ms() is None
    b = Member(coord, "g", ["t"], now=2_000)
    assert b.view.assignment == () and coord.next_deadline_ms() == 2_000 + DELAY
    assert b.heartbeat(2_000 + DELAY).assignment == tps("tp0", "tp1")
    b.leave(6_000)
    c = Member(coord, "g", ["t"], now=7_000)
    assert c.view.assignment == () and c.view.rebalancing
    with pytest.raises(UnknownMemberIdError):  # the old generation's members stay fenced
        coord.check_commit("g", b.id, b.generation)


def test_during_the_delay_leaves_rejoins_and_new_topics_do_not_end_or_extend_it():
    topics: dict[str, int | None] = {"t": 2, "u": 1}
    coord = make(topics, initial_rebalance_delay_ms=DELAY)
    a = Member(coord, "g", ["t"], now=0)
    b = Member(coord, "g", ["t"], now=100)
    b.leave(200)
    assert coord.next_deadline_ms() == 100 + DELAY
    assert a.rejoin(["t", "u"], 300).assignment == ()  # a new subscription is no new member
    topics["t"] = 3
    assert coord.topics_changed() == []
    assert coord.describe("g")["state"] == "PreparingRebalance"
    assert coord.next_deadline_ms() == 100 + DELAY
    view = a.heartbeat(100 + DELAY)
    assert view.assignment == tps("tp0", "tp1", "tp2", "up0") and view.generation_id == 1


def test_a_delay_of_zero_makes_the_first_generation_at_the_first_join():
    for coord in (make({"t": 2}), make({"t": 2}, initial_rebalance_delay_ms=0)):
        a = Member(coord, "g", ["t"], now=0)
        assert a.view == MemberView(a.id, 1, tps("tp0", "tp1"), (), False, 1, ())
        assert coord.next_deadline_ms() == SESSION
        b = Member(coord, "g", ["t"], now=10)
        assert b.view.generation_id == 2 and b.view.pending == tps("tp1")


@pytest.mark.parametrize("delay", [-1, 1.5, None])
def test_an_invalid_initial_delay_is_refused(delay):
    with pytest.raises(ValueError, match="initial_rebalance_delay_ms"):
        GroupCoordinator({"t": 1}.get, initial_rebalance_delay_ms=delay)


# --------------------------------------------------------------------------- fencing


def test_a_commit_with_a_stale_generation_is_fenced():
    coord = make({"t": 2})
    a = Member(coord, "g", ["t"])
    coord.check_commit("g", a.id, a.generation)
    stale = a.generation
    Member(coord, "g", ["t"], now=10)
    with pytest.raises(IllegalGenerationError):
        coord.check_commit("g", a.id, stale)
    a.heartbeat(20)  # a heartbeat with an old generation is fine: it learns the new one
    assert a.generation == stale + 1
    coord.check_commit("g", a.id, a.generation)
    with pytest.raises(IllegalGenerationError):
        coord.check_commit("g", a.id, -1)


def test_a_heartbeat_from_the_future_is_refused():
    coord = make({"t": 2})
    a = Member(coord, "g", ["t"])
    with pytest.raises(IllegalGenerationError):
        coord.heartbeat("g", a.id, a.generation + 1, [], 10)


def test_a_member_cannot_claim_a_partition_it_was_not_given():
    coord = make({"t": 2})
    a, b = Member(coord, "g", ["t"]), Member(coord, "g", ["t"])
    settle([a, b], 0)
    (theirs,) = b.consuming
    view = coord.heartbeat("g", a.id, a.generation, [*a.consuming, theirs, ("x", 9)], 10)
    assert theirs not in view.assignment and view.revoke == ()
    assert b.heartbeat(20).assignment == (theirs,)


def test_standalone_commits_are_allowed_only_while_the_group_has_no_members():
    coord = make({"t": 2})
    coord.check_commit("offsets-only", None, -1)  # unknown group: fine
    coord.check_commit("offsets-only", "", -1)
    a = Member(coord, "g", ["t"])
    with pytest.raises(UnknownMemberIdError):
        coord.check_commit("g", None, -1)  # would overwrite a live group's offsets
    with pytest.raises(UnknownMemberIdError):
        coord.check_commit("g", None, a.generation)
    with pytest.raises(UnknownMemberIdError):
        coord.check_commit("g", "stranger", a.generation)
    with pytest.raises(UnknownMemberIdError):
        coord.check_commit("nope", "stranger", 3)
    a.leave(10)
    coord.check_commit("g", None, -1)  # Empty again


# --------------------------------------------------------------------------- pub-sub


def test_two_groups_each_get_every_partition_independently():
    coord = make({"t": 3})
    billing = [Member(coord, "billing", ["t"]), Member(coord, "billing", ["t"])]
    audit = Member(coord, "audit", ["t"])
    settle([*billing, audit], 0)
    assert audit.consuming == {("t", 0), ("t", 1), ("t", 2)}
    assert billing[0].consuming | billing[1].consuming == audit.consuming
    assert_disjoint(billing)
    assert audit.generation == 1 and billing[0].generation == 2
    billing[1].leave(10)
    assert coord.describe("audit")["generation_id"] == 1
    assert [g["group_id"] for g in coord.list_groups()] == ["audit", "billing"]


# --------------------------------------------------------------------------- assignors


@pytest.mark.parametrize(
    ("assignor", "c0", "c1"),
    [
        ("range", tps("t0p0", "t0p1", "t1p0", "t1p1"), tps("t0p2", "t1p2")),
        ("roundrobin", tps("t0p0", "t0p2", "t1p1"), tps("t0p1", "t1p0", "t1p2")),
    ],
)
def test_the_group_uses_the_assignor_asked_for(assignor, c0, c1):
    coord = GroupCoordinator({"t0": 3, "t1": 3}.get, member_id_factory=lambda client: client)
    m0 = Member(coord, "g", ["t0", "t1"], assignor=assignor, client_id="C0")
    m1 = Member(coord, "g", ["t0", "t1"], assignor=assignor, client_id="C1")
    settle([m0, m1], 0)
    assert tuple(sorted(m0.consuming)) == c0 and tuple(sorted(m1.consuming)) == c1
    assert coord.describe("g")["assignor"] == assignor


def test_a_member_asking_for_another_assignor_is_refused():
    coord = make({"t": 2})
    a = Member(coord, "g", ["t"], assignor="range")
    with pytest.raises(InconsistentGroupProtocolError):
        coord.join("g", None, ["t"], SESSION, "roundrobin", 0)
    assert coord.describe("g")["assignor"] == "range" and len(coord.describe("g")["members"]) == 1
    # the only member may switch; once the group is empty, the next first member picks
    assert a.rejoin(["t"], 10, assignor="roundrobin").generation_id == 2
    a.leave(20)
    Member(coord, "g", ["t"], assignor="cooperative-sticky", now=30)
    assert coord.describe("g")["assignor"] == "cooperative-sticky"


def test_an_unknown_assignor_is_refused():
    coord = make({"t": 2})
    with pytest.raises(UnsupportedAssignorError, match="cooperative-sticky"):
        coord.join("g", None, ["t"], SESSION, "sticky-ish", 0)
    assert coord.list_groups() == []


# --------------------------------------------------------------------------- topics


def test_new_partitions_are_assigned_after_topics_changed():
    topics: dict[str, int | None] = {"t": 2}
    coord = make(topics)
    a, b = Member(coord, "g", ["t"]), Member(coord, "g", ["t", "later"])
    settle([a, b], 0)
    generation = a.generation
    assert coord.topics_changed() == []  # nothing changed, nothing happens
    topics["t"] = 4
    topics["later"] = 2  # created after b subscribed to it
    assert coord.topics_changed() == ["g"]
    settle([a, b], 10)
    assert a.generation == generation + 1
    assert a.consuming | b.consuming == set(tps("tp0", "tp1", "tp2", "tp3", "laterp0", "laterp1"))
    assert {tp for tp in a.consuming if tp[0] == "later"} == set()
    assert sorted([len(a.consuming), len(b.consuming)]) == [3, 3]
    assert_disjoint([a, b])


def test_a_deleted_topic_is_revoked():
    topics: dict[str, int | None] = {"t": 2, "gone": 1}
    coord = make(topics)
    a = Member(coord, "g", ["t", "gone"])
    del topics["gone"]
    assert coord.topics_changed() == ["g"]
    view = a.heartbeat(10)
    assert view.revoke == tps("gonep0") and view.assignment == tps("tp0", "tp1")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("timeout", [5_999, 1_800_001, 0, -1, "6000", True, 6000.0])
def test_a_session_timeout_out_of_range_is_refused(timeout):
    coord = make({"t": 1})
    with pytest.raises(InvalidSessionTimeoutError):
        coord.join("g", None, ["t"], timeout, "range", 0)


def test_the_session_timeout_range_is_configurable():
    coord = make({"t": 1}, min_session_timeout_ms=100, max_session_timeout_ms=200)
    coord.join("g", None, ["t"], 100, "range", 0)
    with pytest.raises(InvalidSessionTimeoutError, match=r"\[100, 200\]"):
        coord.join("g", None, ["t"], 201, "range", 0)
    with pytest.raises(ValueError):
        make({}, min_session_timeout_ms=300, max_session_timeout_ms=200)


@pytest.mark.parametrize("group_id", ["", None, 7, b"g"])
def test_an_invalid_group_id_is_refused_everywhere(group_id):
    coord = make({"t": 1})
    calls = [
        lambda: coord.join(group_id, None, ["t"], SESSION, "range", 0),
        lambda: coord.heartbeat(group_id, "m", 0, [], 0),
        lambda: coord.leave(group_id, "m", 0),
        lambda: coord.check_commit(group_id, None, -1),
        lambda: coord.describe(group_id),
        lambda: coord.delete_group(group_id),
    ]
    for call in calls:
        with pytest.raises(InvalidGroupIdError):
            call()


def test_unknown_groups_and_members_are_unknown_members():
    coord = make({"t": 1})
    with pytest.raises(UnknownMemberIdError):
        coord.heartbeat("nope", "m", 0, [], 0)
    with pytest.raises(UnknownMemberIdError):
        coord.join("nope", "m", ["t"], SESSION, "range", 0)
    with pytest.raises(UnknownMemberIdError):
        coord.leave("nope", "m", 0)


def test_malformed_owned_partitions_are_a_type_error():
    coord = make({"t": 1})
    a = Member(coord, "g", ["t"])
    with pytest.raises(TypeError):
        coord.heartbeat("g", a.id, a.generation, [("t", "0")], 0)
    with pytest.raises(TypeError):
        coord.heartbeat("g", a.id, a.generation, [5], 0)
    # JSON lists are fine
    assert coord.heartbeat("g", a.id, a.generation, [["t", 0]], 0).assignment == tps("tp0")


# --------------------------------------------------------------------------- describe


def test_describe_an_unknown_group_says_dead_as_kafka_does():
    coord = make({})
    assert coord.describe("ghost") == {
        "group_id": "ghost",
        "state": "Dead",
        "protocol_type": "",
        "assignor": "",
        "generation_id": -1,
        "members": [],
    }


def test_describe_shows_state_members_targets_and_owned():
    coord = make({"t": 2})
    a = Member(coord, "g", ["t"], client_id="app")
    b = Member(coord, "g", ["t"], now=5, client_id="app")
    desc = coord.describe("g")
    assert desc["state"] == "Reconciling"
    assert (desc["protocol_type"], desc["assignor"], desc["generation_id"]) == (
        "consumer", "cooperative-sticky", 2)
    ma, mb = desc["members"]
    assert ma == {
        "member_id": a.id, "client_id": "app", "topics": ["t"], "session_timeout_ms": SESSION,
        "last_heartbeat_ms": 0, "assignment": tps("tp0"), "owned": tps("tp0", "tp1"),
        "pending": (), "revoke": tps("tp1"),
    }
    assert (mb["member_id"], mb["assignment"], mb["owned"], mb["pending"]) == (
        b.id, tps("tp1"), (), tps("tp1"))
    settle([a, b], 10)
    assert coord.describe("g")["state"] == "Stable"
    assert coord.list_groups() == [{
        "group_id": "g", "state": "Stable", "protocol_type": "consumer",
        "assignor": "cooperative-sticky", "generation_id": 2, "members": 2,
    }]


def test_delete_group_forgets_only_empty_groups():
    coord = make({"t": 1})
    a = Member(coord, "g", ["t"])
    with pytest.raises(NonEmptyGroupError):
        coord.delete_group("g")
    a.leave(1)
    assert coord.list_groups()[0]["state"] == "Empty"
    coord.delete_group("g")
    assert coord.list_groups() == [] and coord.describe("g")["state"] == "Dead"
    with pytest.raises(GroupIdNotFoundError):
        coord.delete_group("g")


# --------------------------------------------------------------------------- random walk

TOPIC_NAMES = ["t0", "t1", "t2"]


class GroupMachine(RuleBasedStateMachine):
    """Members join, heartbeat, consume, change subscriptions, leave and crash while
    topics grow and the timer runs, in any order, with or without an initial
    rebalance delay. At every step no partition is consumed by two live members;
    after a clean handover the next owner starts at the committed offset."""

    @initialize(assignor=st.sampled_from(["cooperative-sticky", "range", "roundrobin"]),
                delay=st.sampled_from([0, 150, 450]))
    def setup(self, assignor, delay):
        self.topics: dict[str, int | None] = {"t0": 3, "t1": 2, "t2": None}
        self.coord = make(self.topics, initial_rebalance_delay_ms=delay)
        self.delay = delay
        self.assignor = assignor
        self.offsets: dict = {}
        self.delivered: dict = {}  # partition -> next offset never delivered before
        self.dirty: set = set()  # partitions a crashed member consumed past its commit
        self.members: list[Member] = []
        self.now = 0

    def tick(self, ms=100):
        self.now += ms

    def pick(self, i) -> Member:
        return self.members[i % len(self.members)]

    def after(self, member: Member, before: set):
        for tp in member.consuming - before:  # newly acquired: where does it start?
            if tp in self.dirty:  # after a crash, records past the commit come again
                self.dirty.discard(tp)
                self.delivered[tp] = member.position[tp]
            else:
                assert member.position[tp] == self.delivered.get(tp, 0), (
                    f"{tp} handed over at {member.position[tp]}, "
                    f"but records up to {self.delivered.get(tp, 0)} were delivered"
                )

    @rule(topics=st.lists(st.sampled_from(TOPIC_NAMES), min_size=1, unique=True))
    def join(self, topics):
        self.tick()
        m = Member(self.coord, "g", topics, self.now, self.assignor, offsets=self.offsets)
        self.after(m, set())
        self.members.append(m)

    @precondition(lambda self: self.members)
    @rule(i=st.integers(0, 50))
    def heartbeat(self, i):
        self.tick()
        m = self.pick(i)
        before = set(m.consuming)
        m.heartbeat(self.now)
        self.after(m, before)

    @precondition(lambda self: self.members)
    @rule(records=st.integers(1, 3))
    def consume(self, records):
        for m in self.members:
            m.consume(records)
            for tp in m.consuming:
                self.delivered[tp] = max(self.delivered.get(tp, 0), m.position[tp])

    @precondition(lambda self: self.members)
    @rule(i=st.integers(0, 50), topics=st.lists(st.sampled_from(TOPIC_NAMES), min_size=1,
                                                unique=True))
    def change_subscription(self, i, topics):
        self.tick()
        m = self.pick(i)
        before = set(m.consuming)
        m.rejoin(topics, self.now, self.assignor)
        self.after(m, before)

    @precondition(lambda self: self.members)
    @rule(i=st.integers(0, 50))
    def leave(self, i):
        self.tick()
        m = self.pick(i)
        m.leave(self.now)
        self.members.remove(m)

    @precondition(lambda self: self.members)
    @rule(i=st.integers(0, 50))
    def crash(self, i):
        m = self.pick(i)
        self.members.remove(m)
        self.dirty |= {tp for tp in m.consuming | m.uncommitted
                       if m.position[tp] != self.offsets.get(tp, 0)}
        self.tick(SESSION)
        for other in self.members:  # the living keep their sessions alive
            before = set(other.consuming)
            other.heartbeat(self.now)
            self.after(other, before)
        assert self.coord.expire(self.now) == [("g", m.id)]
        with pytest.raises(UnknownMemberIdError):
            self.coord.check_commit("g", m.id, m.generation)

    @rule()
    def timer(self):
        self.tick()
        assert self.coord.expire(self.now) == []  # every live member is within its session

    @rule(topic=st.sampled_from(TOPIC_NAMES))
    def add_partition(self, topic):
        self.topics[topic] = min((self.topics[topic] or 0) + 1, 8)
        self.coord.topics_changed()

    @precondition(lambda self: self.members)
    @rule()
    def settle_completely(self):
        self.tick(self.delay)  # past any initial rebalance delay
        for _ in range(3):
            for m in self.members:
                self.tick()
                before = set(m.consuming)
                m.heartbeat(self.now)
                self.after(m, before)
        desc = self.coord.describe("g")
        assert desc["state"] == "Stable"
        targets = {d["member_id"]: set(d["assignment"]) for d in desc["members"]}
        for m in self.members:
            assert m.consuming == targets[m.id] and not m.uncommitted
        subscribed = {t for m in self.members for t in m.topics}
        everything = {(t, p) for t in subscribed for p in range(self.topics[t] or 0)}
        assert set().union(*(m.consuming for m in self.members)) == everything

    @invariant()
    def no_partition_in_two_assignments(self):
        if hasattr(self, "members"):
            assert_disjoint(self.members)


GroupMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_group_random_walk = GroupMachine.TestCase
