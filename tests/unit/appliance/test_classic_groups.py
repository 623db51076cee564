"""Kafka's classic group protocol, broker side, without processes: joins
gathered into generations, the leader's assignments handed out, fencing,
static members, the initial delay, expiry."""

from __future__ import annotations

import pytest

from appliance.broker import replies as r
from appliance.classic_groups import ClassicGroups, consumer_assignment
from shm.errors import (
    FencedInstanceIdError,
    GroupIdNotFoundError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidSessionTimeoutError,
    MemberIdRequiredError,
    NonEmptyGroupError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

RANGE = [("range", b"r-meta")]


def coordinator(delay_ms: int = 0) -> ClassicGroups:
    return ClassicGroups(1000, 60_000, delay_ms)


def join(groups: ClassicGroups, client: str, member_id: str = "", protocols=RANGE,
         now: int = 0, instance: str | None = None, **kw) -> None:
    groups.join(client, "g", member_id, instance, "consumer", protocols, 10_000,
                kw.pop("rebalance_ms", 5000), now, client_id=client, **kw)


def answers(groups: ClassicGroups) -> dict:
    return dict(groups.take_completions())


def member_id_of(groups: ClassicGroups, client: str, now: int = 0, **kw) -> str:
    """Join without an id: MEMBER_ID_REQUIRED carries the one to rejoin with."""
    with pytest.raises(MemberIdRequiredError) as raised:
        join(groups, client, now=now, **kw)
    return raised.value.member_id


def test_a_v4_join_without_a_member_id_is_told_to_rejoin_with_one():
    groups = coordinator()
    member = member_id_of(groups, "a")
    assert member.startswith("a-")
    join(groups, "a", member)
    [(client, reply)] = groups.take_completions()
    assert client == "a" and reply.member_id == member and reply.generation_id == 1
    assert reply.leader == member and reply.members == [(member, None, b"r-meta")]


def test_a_rebalance_completes_when_every_member_has_rejoined_and_only_the_leader_sees_members():
    groups = coordinator()
    a = member_id_of(groups, "a")
    join(groups, "a", a)
    groups.take_completions()
    groups.sync("a-sync", "g", 1, a, None, {a: b"all"}, 0)
    assert answers(groups) == {"a-sync": r.SyncGroupReply("consumer", "range", b"all")}
    b = member_id_of(groups, "b")
    join(groups, "b", b)
    assert answers(groups) == {}  # a must rejoin first
    with pytest.raises(RebalanceInProgressError):
        groups.heartbeat("g", 1, a, None, 10)
    join(groups, "a", a)
    replies = answers(groups)
    assert replies["a"].generation_id == replies["b"].generation_id == 2
    assert replies["a"].leader == a and {m for m, *_ in replies["a"].members} == {a, b}
    assert replies["b"].members == []
    groups.sync("b-sync", "g", 2, b, None, {}, 0)
    assert answers(groups) == {}  # waits for the leader's assignments
    groups.sync("a-sync", "g", 2, a, None, {a: b"p0", b: b"p1"}, 0)
    assert {c: x.assignment for c, x in answers(groups).items()} == {"a-sync": b"p0",
                                                                     "b-sync": b"p1"}
    assert groups.describe("g")["state"] == "Stable"


def test_a_leader_rejoining_a_stable_group_waits_for_the_follower_its_heartbeat_calls_back():
    """Kafka's answer to a leader that rejoins with unchanged metadata (kafka-python's
    leader does when the topic metadata it assigned with has changed): a rebalance,
    the leader's JoinGroup held, not answered with the current generation, until the
    follower, told REBALANCE_IN_PROGRESS by its heartbeat, rejoins too. The wait
    outlasts a short poll; kafka-python 3.0.12 can strand its leader there
    (docs/protocol.md §11.5)."""
    groups = coordinator()
    a, b = member_id_of(groups, "a"), member_id_of(groups, "b")
    join(groups, "a", a)
    join(groups, "b", b)
    join(groups, "a", a)  # generation 2: both, a leads
    groups.take_completions()
    groups.sync("b-sync", "g", 2, b, None, {}, 0)
    groups.sync("a-sync", "g", 2, a, None, {a: b"", b: b""}, 0)
    groups.take_completions()
    join(groups, "a", a, now=100)
    assert answers(groups) == {} and groups.describe("g")["state"] == "PreparingRebalance"
    with pytest.raises(RebalanceInProgressError):
        groups.heartbeat("g", 2, b, None, 600)
    join(groups, "b", b, now=600)
    replies = answers(groups)
    assert replies["a"].generation_id == replies["b"].generation_id == 3
    assert replies["a"].leader == a and {m for m, *_ in replies["a"].members} == {a, b}
    groups.sync("a-sync", "g", 3, a, None, {a: b"p0", b: b"p1"}, 700)
    groups.sync("b-sync", "g", 3, b, None, {}, 700)
    assert {c: x.assignment for c, x in answers(groups).items()} == {"a-sync": b"p0",
                                                                     "b-sync": b"p1"}


def test_members_that_do_not_rejoin_by_the_rebalance_timeout_are_dropped():
    groups = coordinator()
    a, b = member_id_of(groups, "a"), member_id_of(groups, "b")
    join(groups, "a", a)  # alone: generation 1 at once
    join(groups, "b", b)  # a must rejoin for generation 2
    join(groups, "a", a)
    assert [x.generation_id for _, x in groups.take_completions()] == [1, 2, 2]
    c = member_id_of(groups, "c")
    join(groups, "c", c, now=100)  # a new member: a and b must rejoin
    join(groups, "a", a, now=200)
    assert answers(groups) == {}
    groups.expire(100 + 5000)  # the rebalance timeout: b never came back
    replies = answers(groups)
    assert set(replies) == {"a", "c"} and replies["a"].generation_id == 3
    assert {m["member_id"] for m in groups.describe("g")["members"]} == {a, c}


def test_the_protocol_is_the_members_vote_among_those_all_support():
    groups = coordinator()
    a, b = member_id_of(groups, "a"), member_id_of(groups, "b")
    join(groups, "a", a, protocols=[("sticky", b"s"), ("range", b"r")])
    join(groups, "b", b, protocols=[("range", b"r"), ("sticky", b"s")])
    replies = answers(groups)
    assert replies["a"].protocol_name in ("sticky", "range")
    c = member_id_of(groups, "c")
    join(groups, "c", c, protocols=[("range", b"r")])  # sticky is out: not everyone has it
    join(groups, "a", a, protocols=[("sticky", b"s"), ("range", b"r")])
    join(groups, "b", b, protocols=[("range", b"r"), ("sticky", b"s")])
    assert {x.protocol_name for x in answers(groups).values()} == {"range"}


def test_a_member_that_shares_no_protocol_or_type_is_refused():
    groups = coordinator()
    a = member_id_of(groups, "a")
    join(groups, "a", a)
    with pytest.raises(InconsistentGroupProtocolError):
        join(groups, "b", protocols=[("roundrobin", b"")])
    with pytest.raises(InconsistentGroupProtocolError):
        groups.join("c", "g", "", None, "connect", RANGE, 10_000, 5000, 0)


def test_stale_generations_and_unknown_members_are_fenced():
    groups = coordinator()
    a = member_id_of(groups, "a")
    join(groups, "a", a)
    groups.take_completions()
    with pytest.raises(IllegalGenerationError):
        groups.sync("s", "g", 7, a, None, {}, 0)
    with pytest.raises(UnknownMemberIdError):
        groups.heartbeat("g", 1, "nobody", None, 0)
    with pytest.raises(UnknownMemberIdError):
        join(groups, "x", "made-up-id")
    with pytest.raises(InvalidSessionTimeoutError):
        groups.join("y", "g", "", None, "consumer", RANGE, 10, 5000, 0)


def test_a_static_member_rejoining_a_stable_group_keeps_its_assignment_without_a_rebalance():
    groups = coordinator()
    join(groups, "a", instance="host-1")  # static members need no MEMBER_ID_REQUIRED
    [(_, first)] = groups.take_completions()
    groups.sync("s", "g", 1, first.member_id, "host-1", {first.member_id: b"mine"}, 0)
    groups.take_completions()
    join(groups, "a2", instance="host-1", now=50)  # restarted: a new member id, same instance
    [(client, again)] = groups.take_completions()
    assert client == "a2" and again.generation_id == 1 and again.member_id != first.member_id
    groups.sync("s2", "g", 1, again.member_id, "host-1", {}, 60)
    assert answers(groups)["s2"].assignment == b"mine"
    with pytest.raises(FencedInstanceIdError):
        groups.heartbeat("g", 1, first.member_id, "host-1", 70)
    assert groups.describe("g")["state"] == "Stable"


def test_the_initial_delay_gathers_members_of_an_empty_group_before_the_first_generation():
    groups = coordinator(delay_ms=3000)
    a = member_id_of(groups, "a")
    join(groups, "a", a, now=0, rebalance_ms=10_000)
    groups.expire(2000)
    assert answers(groups) == {}
    b = member_id_of(groups, "b", now=2500)
    join(groups, "b", b, now=2500)  # extends the wait to 5500
    groups.expire(5000)
    assert answers(groups) == {}
    assert groups.next_deadline_ms() == 5500
    groups.expire(5500)
    replies = answers(groups)
    assert set(replies) == {"a", "b"} and replies["a"].generation_id == 1


def test_a_silent_member_is_evicted_and_the_others_rebalance():
    groups = coordinator()
    a, b = member_id_of(groups, "a"), member_id_of(groups, "b")
    join(groups, "a", a)
    join(groups, "b", b)
    join(groups, "a", a)  # generation 2: both
    groups.take_completions()
    groups.sync("sa", "g", 2, a, None, {}, 0)
    groups.take_completions()
    groups.heartbeat("g", 2, a, None, 9000)
    assert groups.expire(10_000) == [("g", b)]
    with pytest.raises(RebalanceInProgressError):
        groups.heartbeat("g", 2, a, None, 10_001)


def test_leave_takes_members_by_id_or_instance_and_says_who_was_unknown():
    groups = coordinator()
    join(groups, "a", instance="i-1")
    [(_, reply)] = groups.take_completions()
    results = groups.leave("g", [("", "i-1"), ("ghost", None)], 0)
    assert results[0] == (reply.member_id, "i-1", None)
    assert isinstance(results[1][2], UnknownMemberIdError)
    assert groups.describe("g")["state"] == "Empty"


def test_commits_need_the_current_generation_and_standalone_ones_an_empty_group():
    groups = coordinator()
    groups.check_commit("g", None, -1)  # unknown group: a consumer that assigns itself
    a = member_id_of(groups, "a")
    join(groups, "a", a)
    groups.take_completions()
    with pytest.raises(RebalanceInProgressError):  # the leader has not synced yet
        groups.check_commit("g", a, 1)
    groups.sync("s", "g", 1, a, None, {}, 0)
    groups.check_commit("g", a, 1)
    with pytest.raises(IllegalGenerationError):
        groups.check_commit("g", a, 0)
    with pytest.raises(UnknownMemberIdError):
        groups.check_commit("g", None, -1)


def test_only_an_empty_group_is_deleted():
    groups = coordinator()
    with pytest.raises(GroupIdNotFoundError):
        groups.delete_group("g")
    a = member_id_of(groups, "a")
    join(groups, "a", a)
    with pytest.raises(NonEmptyGroupError):
        groups.delete_group("g")
    groups.leave("g", [(a, None)], 0)
    groups.delete_group("g")
    assert groups.describe("g") is None


def test_a_consumer_protocol_assignment_reads_as_partitions():
    data = (b"\x00\x01" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\x00\x00\x00\x02"
            + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x03" + b"\xff\xff\xff\xff")
    assert consumer_assignment(data) == [("t", 0), ("t", 3)]
    assert consumer_assignment(b"\x00") is None
