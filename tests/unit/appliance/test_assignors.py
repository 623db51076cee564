"""Assignment strategies: Kafka's documented examples, then properties for any input."""

from __future__ import annotations

from collections import Counter

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from appliance.assignors import (
    ASSIGNORS,
    DEFAULT_ASSIGNOR,
    cooperative_sticky_assign,
    range_assign,
    round_robin_assign,
)


def tps(*names: str) -> set[tuple[str, int]]:
    """tps("t0p1", "t1p0") -> {("t0", 1), ("t1", 0)}"""
    result = set()
    for name in names:
        topic, partition = name.rsplit("p", 1)
        result.add((topic, int(partition)))
    return result


ALL4 = ["t0", "t1", "t2", "t3"]


# --------------------------------------------------------------------------- registry


def test_the_registry_names_three_assignors_and_cooperative_sticky_is_the_default():
    assert dict(ASSIGNORS) == {
        "range": range_assign,
        "roundrobin": round_robin_assign,
        "cooperative-sticky": cooperative_sticky_assign,
    }
    assert DEFAULT_ASSIGNOR == "cooperative-sticky"


# --------------------------------------------------------------------------- range


def test_range_matches_kafkas_documented_example():
    # RangeAssignor javadoc: C0, C1 on t0, t1 with 3 partitions each.
    result = range_assign({"C0": ["t0", "t1"], "C1": ["t0", "t1"]}, {"t0": 3, "t1": 3}, {})
    assert result == {"C0": tps("t0p0", "t0p1", "t1p0", "t1p1"), "C1": tps("t0p2", "t1p2")}


def test_range_gives_the_first_members_one_extra_contiguous_partition():
    result = range_assign({"c": ["t"], "a": ["t"], "b": ["t"]}, {"t": 7}, {})
    assert result == {"a": tps("tp0", "tp1", "tp2"), "b": tps("tp3", "tp4"), "c": tps("tp5", "tp6")}


def test_range_splits_each_topic_among_its_own_subscribers_only():
    result = range_assign({"a": ["x"], "b": ["x", "y"]}, {"x": 2, "y": 2}, {})
    assert result == {"a": tps("xp0"), "b": tps("xp1", "yp0", "yp1")}


# --------------------------------------------------------------------------- round robin


def test_round_robin_matches_kafkas_documented_example_with_equal_subscriptions():
    result = round_robin_assign({"C0": ["t0", "t1"], "C1": ["t0", "t1"]}, {"t0": 3, "t1": 3}, {})
    assert result == {"C0": tps("t0p0", "t0p2", "t1p1"), "C1": tps("t0p1", "t1p0", "t1p2")}


def test_round_robin_matches_kafkas_documented_example_with_different_subscriptions():
    # RoundRobinAssignor javadoc: t0, t1, t2 with 1, 2, 3 partitions.
    subscriptions = {"C0": ["t0"], "C1": ["t0", "t1"], "C2": ["t0", "t1", "t2"]}
    result = round_robin_assign(subscriptions, {"t0": 1, "t1": 2, "t2": 3}, {})
    assert result == {
        "C0": tps("t0p0"),
        "C1": tps("t1p0"),
        "C2": tps("t1p1", "t2p0", "t2p1", "t2p2"),
    }


def test_round_robin_matches_kafkas_sticky_javadoc_example_1():
    result = round_robin_assign({c: ALL4 for c in ("C0", "C1", "C2")}, dict.fromkeys(ALL4, 2), {})
    assert result == {
        "C0": tps("t0p0", "t1p1", "t3p0"),
        "C1": tps("t0p1", "t2p0", "t3p1"),
        "C2": tps("t1p0", "t2p1"),
    }
    # ... and after C1 leaves, round robin reshuffles everything
    after = round_robin_assign({"C0": ALL4, "C2": ALL4}, dict.fromkeys(ALL4, 2), result)
    assert after == {
        "C0": tps("t0p0", "t1p0", "t2p0", "t3p0"),
        "C2": tps("t0p1", "t1p1", "t2p1", "t3p1"),
    }


# --------------------------------------------------------------------------- sticky


def test_sticky_matches_kafkas_javadoc_example_1_member_leaves():
    # StickyAssignor javadoc, example 1: fresh assignment as round robin ...
    fresh = cooperative_sticky_assign(
        {c: ALL4 for c in ("C0", "C1", "C2")}, dict.fromkeys(ALL4, 2), {}
    )
    assert sorted(Counter(len(v) for v in fresh.values()).elements()) == [2, 3, 3]
    current = {
        "C0": tps("t0p0", "t1p1", "t3p0"),
        "C1": tps("t0p1", "t2p0", "t3p1"),
        "C2": tps("t1p0", "t2p1"),
    }
    # ... C1 leaves: everybody keeps what they had, C1's three partitions are spread.
    after = cooperative_sticky_assign({"C0": ALL4, "C2": ALL4}, dict.fromkeys(ALL4, 2), current)
    assert after == {
        "C0": tps("t0p0", "t1p1", "t3p0", "t2p0"),
        "C2": tps("t1p0", "t2p1", "t0p1", "t3p1"),
    }


def test_sticky_matches_kafkas_javadoc_example_2_different_subscriptions():
    subscriptions = {"C0": ["t0"], "C1": ["t0", "t1"], "C2": ["t0", "t1", "t2"]}
    partitions = {"t0": 1, "t1": 2, "t2": 3}
    result = cooperative_sticky_assign(subscriptions, partitions, {})
    assert result == {
        "C0": tps("t0p0"), "C1": tps("t1p0", "t1p1"), "C2": tps("t2p0", "t2p1", "t2p2")
    }
    # C0 leaves: sticky preserves all five other assignments (round robin keeps three).
    del subscriptions["C0"]
    after = cooperative_sticky_assign(subscriptions, partitions, result)
    assert after == {"C1": tps("t1p0", "t1p1", "t0p0"), "C2": tps("t2p0", "t2p1", "t2p2")}


def test_sticky_joining_member_takes_only_its_share_from_the_most_loaded():
    current = {"a": tps(*[f"tp{i}" for i in range(5)]), "b": tps(*[f"tp{i}" for i in range(5, 9)])}
    result = cooperative_sticky_assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 9}, current)
    assert [len(result[m]) for m in "abc"] == [3, 3, 3]
    assert result["a"] <= current["a"] and result["b"] <= current["b"]


def test_sticky_drops_partitions_the_member_no_longer_subscribes_to_or_that_vanished():
    current = {"a": tps("xp0", "xp5", "yp0"), "b": set()}
    result = cooperative_sticky_assign({"a": ["x"], "b": ["x", "y"]}, {"x": 2, "y": 1}, current)
    # a keeps xp0; xp5 does not exist and a left y, so yp0 goes to b, its only
    # subscriber; xp1 goes to the least loaded of a and b (a tie, a sorts first).
    assert result == {"a": tps("xp0", "xp1"), "b": tps("yp0")}


def test_sticky_resolves_a_partition_claimed_twice_deterministically():
    current = {"a": tps("tp0"), "b": tps("tp0", "tp1")}
    result = cooperative_sticky_assign({"a": ["t"], "b": ["t"]}, {"t": 2}, current)
    assert result == {"a": tps("tp0"), "b": tps("tp1")}


@given(st.sampled_from(sorted(ASSIGNORS)))
def test_no_members_or_no_partitions_is_fine(name):
    assign = ASSIGNORS[name]
    assert assign({}, {"t": 3}, {}) == {}
    assert assign({"a": ["t"], "b": []}, {}, {}) == {"a": set(), "b": set()}
    assert assign({"a": ["t"]}, {"t": 0}, {"a": tps("tp0")}) == {"a": set()}


# --------------------------------------------------------------------------- properties

TOPICS = ["t0", "t1", "t2", "t3"]


@st.composite
def groups(draw, same_subscriptions: bool = False, max_members: int = 7):
    n = draw(st.integers(1, max_members))
    members = [f"m{i}" for i in draw(st.lists(st.integers(0, 99), min_size=n, max_size=n,
                                               unique=True))]
    if same_subscriptions:
        topics = draw(st.lists(st.sampled_from(TOPICS), min_size=1, unique=True))
        subscriptions = {m: list(topics) for m in members}
    else:
        subscriptions = {
            m: draw(st.lists(st.sampled_from(TOPICS), unique=True)) for m in members
        }
    # some topics unknown (absent), some with zero partitions
    partitions = {
        t: draw(st.integers(0, 12)) for t in TOPICS if draw(st.integers(0, 5)) > 0
    }
    every = [(t, p) for t, n in partitions.items() for p in range(n)] + [("t9", 0), ("t0", 99)]
    current = {
        m: set(draw(st.lists(st.sampled_from(every), max_size=8)))
        for m in members
        if draw(st.booleans())
    }
    return subscriptions, partitions, current


def expected_partitions(subscriptions, partitions):
    topics = {t for ts in subscriptions.values() for t in ts}
    return {(t, p) for t in topics for p in range(partitions.get(t, 0))}


def check_valid(result, subscriptions, partitions):
    assert set(result) == set(subscriptions)
    owners = Counter(tp for assigned in result.values() for tp in assigned)
    assert set(owners) == expected_partitions(subscriptions, partitions)
    assert all(count == 1 for count in owners.values()), "a partition has two owners"
    for member, assigned in result.items():
        assert {t for t, _ in assigned} <= set(subscriptions[member])


def check_kafka_balanced(result, subscriptions):
    """No partition could move to an eligible member with 2+ fewer partitions."""
    for giver, given_ in result.items():
        for receiver, received in result.items():
            if len(given_) >= len(received) + 2:
                movable = [tp for tp in given_ if tp[0] in subscriptions[receiver]]
                assert not movable, f"{giver} could give {movable[0]} to {receiver}"


def check_same_subscriptions_balanced(result, subscriptions):
    by_subscription: dict[frozenset, list[int]] = {}
    for member, topics in subscriptions.items():
        by_subscription.setdefault(frozenset(topics), []).append(len(result[member]))
    for counts in by_subscription.values():
        assert max(counts) - min(counts) <= 1


def moved(before, after) -> int:
    owner_before = {tp: m for m, s in before.items() for tp in s}
    owner_after = {tp: m for m, s in after.items() for tp in s}
    return sum(1 for tp, m in owner_after.items() if tp in owner_before and owner_before[tp] != m)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(ASSIGNORS)), groups())
def test_every_subscribed_partition_goes_to_exactly_one_subscribed_member(name, group):
    subscriptions, partitions, current = group
    check_valid(ASSIGNORS[name](subscriptions, partitions, current), subscriptions, partitions)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(ASSIGNORS)), groups())
def test_assignment_is_deterministic_whatever_the_dict_order(name, group):
    subscriptions, partitions, current = group
    result = ASSIGNORS[name](subscriptions, partitions, current)
    reversed_subs = {m: list(reversed(subscriptions[m])) for m in reversed(list(subscriptions))}
    reversed_parts = dict(reversed(list(partitions.items())))
    reversed_current = {m: set(current[m]) for m in reversed(list(current))}
    assert ASSIGNORS[name](reversed_subs, reversed_parts, reversed_current) == result


@settings(max_examples=200, deadline=None)
@given(groups(same_subscriptions=True))
def test_round_robin_with_equal_subscriptions_is_balanced(group):
    subscriptions, partitions, _ = group
    check_same_subscriptions_balanced(round_robin_assign(subscriptions, partitions, {}),
                                      subscriptions)


@settings(max_examples=200, deadline=None)
@given(groups(same_subscriptions=True))
def test_range_with_equal_subscriptions_is_balanced_per_topic(group):
    subscriptions, partitions, _ = group
    result = range_assign(subscriptions, partitions, {})
    for topic in next(iter(subscriptions.values())):
        counts = [sum(1 for t, _ in s if t == topic) for s in result.values()]
        assert max(counts) - min(counts) <= 1


@settings(max_examples=400, deadline=None)
@given(groups())
def test_sticky_is_balanced_for_any_subscriptions(group):
    subscriptions, partitions, current = group
    result = cooperative_sticky_assign(subscriptions, partitions, current)
    check_valid(result, subscriptions, partitions)
    check_kafka_balanced(result, subscriptions)
    check_same_subscriptions_balanced(result, subscriptions)


@settings(max_examples=300, deadline=None)
@given(groups())
def test_sticky_moves_nothing_when_nothing_changed(group):
    subscriptions, partitions, current = group
    result = cooperative_sticky_assign(subscriptions, partitions, current)
    assert cooperative_sticky_assign(subscriptions, partitions, result) == result


def minimum_moves(counts: dict[str, int], members: list[str], total: int) -> int:
    """Fewest partitions that must change owner to reach a balanced assignment (equal
    subscriptions): r members end with q + 1, the rest with q; the cheapest choice
    gives the q + 1 places to the members holding the most."""
    q, r = divmod(total, len(members))
    ordered = sorted(members, key=lambda m: -counts.get(m, 0))
    targets = {m: q + (1 if i < r else 0) for i, m in enumerate(ordered)}
    return sum(max(0, counts.get(m, 0) - targets[m]) for m in members)


@settings(max_examples=400, deadline=None)
@given(groups(same_subscriptions=True))
def test_sticky_moves_the_minimum_from_any_starting_point(group):
    subscriptions, partitions, current = group
    result = cooperative_sticky_assign(subscriptions, partitions, current)
    # what the members can keep: valid, subscribed, first claim wins (as the assignor does)
    valid = expected_partitions(subscriptions, partitions)
    kept: dict[str, set] = {}
    seen: set = set()
    for m in sorted(current):
        kept[m] = {tp for tp in current[m] if tp in valid and tp not in seen}
        seen |= kept[m]
    counts = {m: len(s) for m, s in kept.items()}
    assert moved(kept, result) == minimum_moves(counts, sorted(subscriptions), len(valid))


@settings(max_examples=300, deadline=None)
@given(groups(same_subscriptions=True, max_members=6), st.integers(100, 200))
def test_sticky_member_joining_moves_only_what_balance_needs(group, newcomer):
    subscriptions, partitions, current = group
    before = cooperative_sticky_assign(subscriptions, partitions, current)
    joined = {**subscriptions, f"m{newcomer}": next(iter(subscriptions.values()))}
    after = cooperative_sticky_assign(joined, partitions, before)
    total = len(expected_partitions(subscriptions, partitions))
    counts = {m: len(s) for m, s in before.items()}
    assert moved(before, after) == minimum_moves(counts, sorted(joined), total)
    # the new member gets its share from the others, and nobody else trades partitions
    assert len(after[f"m{newcomer}"]) == total // len(joined)
    for m in subscriptions:
        assert after[m] <= before[m]
    check_same_subscriptions_balanced(after, joined)


@settings(max_examples=300, deadline=None)
@given(groups(same_subscriptions=True), st.data())
def test_sticky_member_leaving_moves_only_its_own_partitions(group, data):
    subscriptions, partitions, current = group
    assume(len(subscriptions) >= 2)
    before = cooperative_sticky_assign(subscriptions, partitions, current)
    leaver = data.draw(st.sampled_from(sorted(subscriptions)))
    remaining = {m: t for m, t in subscriptions.items() if m != leaver}
    after = cooperative_sticky_assign(remaining, partitions, before)
    for m in remaining:
        assert after[m] >= before[m], "a staying member lost a partition"
    assert set().union(*(after[m] - before[m] for m in remaining)) == before[leaver]
    check_same_subscriptions_balanced(after, remaining)
