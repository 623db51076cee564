"""The controller's leader and ISR rules, case by case (Kafka's ZooKeeper-mode
controller, replication.md rule 11)."""

from __future__ import annotations

from appliance.cluster.partition_state_machine import initial_state, next_state
from appliance.cluster.znodes import NO_LEADER, PartitionState

REPLICAS = (1, 2, 3)


def state(leader: int, epoch: int, isr: tuple[int, ...]) -> PartitionState:
    return PartitionState(leader, epoch, isr, controller_epoch=1)


def test_a_new_partition_is_led_by_its_first_live_replica():
    assert initial_state(REPLICAS, {1, 2, 3}, 1) == state(1, 0, (1, 2, 3))
    assert initial_state(REPLICAS, {2, 3}, 1) == state(2, 0, (2, 3))


def test_a_lost_leader_is_replaced_by_the_first_live_isr_member_at_a_higher_epoch():
    assert next_state(REPLICAS, state(1, 4, (1, 2, 3)), {2, 3}, 2) == PartitionState(
        2, 5, (2, 3), 2)
    # Replica 2 is live but out of sync: 3 leads.
    assert next_state(REPLICAS, state(1, 4, (1, 3)), {2, 3}, 2).leader == 3


def test_a_lost_follower_leaves_the_isr_and_the_leader_stays():
    assert next_state(REPLICAS, state(1, 4, (1, 2, 3)), {1, 3}, 1) == state(1, 5, (1, 3))
    assert next_state(REPLICAS, state(1, 4, (1, 3)), {1, 2, 3}, 1) is None


def test_with_no_live_isr_member_there_is_no_leader_and_the_old_leader_stays_in_the_isr():
    offline = next_state(REPLICAS, state(1, 4, (1,)), {2, 3}, 1)
    assert offline == state(NO_LEADER, 5, (1,))
    assert next_state(REPLICAS, offline, {2, 3}, 1) is None, "nothing to write until 1 returns"
    assert next_state(REPLICAS, offline, {1, 2}, 1) == state(1, 6, (1,))


def test_unclean_election_picks_a_live_out_of_sync_replica():
    unclean = next_state(REPLICAS, state(1, 4, (1,)), {2, 3}, 1, unclean=True)
    assert unclean == state(2, 5, (2,))


def test_the_isr_is_never_emptied_when_every_member_goes_at_once():
    assert next_state(REPLICAS, state(2, 4, (2, 3)), {1}, 1) == state(NO_LEADER, 5, (2,))
