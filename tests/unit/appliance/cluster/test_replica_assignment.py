"""Replica assignment: distinct brokers per partition, leaders and followers
spread evenly, as Kafka's rack-unaware assignment."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.cluster.replica_assignment import assign_replicas


@given(brokers=st.sets(st.integers(0, 50), min_size=1, max_size=8),
       partitions=st.integers(1, 64), data=st.data())
def test_every_partition_gets_distinct_brokers_and_leaders_go_round(brokers, partitions, data):
    factor = data.draw(st.integers(1, len(brokers)))
    start = data.draw(st.integers(0, 20))
    assignment = assign_replicas(list(brokers), partitions, factor, start)
    assert len(assignment) == partitions
    for replicas in assignment:
        assert len(replicas) == factor == len(set(replicas))
        assert set(replicas) <= brokers
    leaders = Counter(r[0] for r in assignment)
    assert max(leaders.values()) - min(leaders.get(b, 0) for b in brokers) <= 1


def test_three_brokers_six_partitions_factor_three_hold_two_leaderships_each():
    assignment = assign_replicas([1, 2, 3], 6, 3, start=0)
    assert [r[0] for r in assignment] == [1, 2, 3, 1, 2, 3]
    replicas_per_broker = Counter(b for r in assignment for b in r)
    assert replicas_per_broker == {1: 6, 2: 6, 3: 6}
    assert assignment[0] != assignment[3], "the second round shifts the followers"


@pytest.mark.parametrize("factor", [0, 4])
def test_a_replication_factor_the_brokers_cannot_hold_is_refused(factor):
    with pytest.raises(ValueError, match="between 1 and 3 live brokers"):
        assign_replicas([1, 2, 3], 1, factor)


def test_partitions_added_later_go_on_as_if_the_topic_had_been_made_with_them():
    """CreatePartitions: the new partitions continue the topic's round of
    leaders (Kafka's addPartitions passes the existing start and count)."""
    whole = assign_replicas([1, 2, 3], 5, 2, start=1)
    added = assign_replicas([1, 2, 3], 3, 2, start=1, first_partition=2)
    assert added == whole[2:]
