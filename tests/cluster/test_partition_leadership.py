"""The controller gives every partition a leader and moves leadership off
brokers that leave, at a higher leader epoch, never to an out-of-sync
replica unless unclean election is on."""

from __future__ import annotations

import time

import pytest

from appliance.cluster import BrokerRegistration, ControllerElection, Membership, connect
from appliance.cluster.partition_leadership import (
    PartitionLeadership,
    create_topic,
    read_state,
)
from appliance.cluster.replica_assignment import assign_replicas
from appliance.cluster.znodes import NO_LEADER, PartitionState, TopicAssignment

SESSION_MS = 2000


class Broker:
    """What a cluster broker does in ZooKeeper: register, stand for
    controller, and do the controller's partition duty when elected."""

    def __init__(self, zookeeper_connect: str, broker_id: int, unclean: bool = False):
        self.broker_id = broker_id
        client = connect(zookeeper_connect, SESSION_MS)
        host = f"127.0.0.{10 + broker_id}"
        self.membership = Membership(client, BrokerRegistration(
            broker_id, f"tcp://{host}:7092", f"tcp://{host}:7093"), SESSION_MS)
        self.membership.register()
        self.election = ControllerElection(client, broker_id)
        self.leadership = PartitionLeadership(self.election, lambda topic: unclean)
        self.election.start()

    def leave(self) -> None:
        self.election.close()
        self.membership.close()


def wait_for_states(client, topic: str, partitions: int, predicate, timeout_s: float = 15
                    ) -> list[PartitionState]:
    deadline = time.monotonic() + timeout_s
    while True:
        states = [read_state(client, topic, p) for p in range(partitions)]
        if all(states) and predicate([s for s, _ in states]):
            return [s for s, _ in states]
        assert time.monotonic() < deadline, f"partition states never matched: {states}"
        time.sleep(0.05)


def test_a_new_topic_gets_its_preferred_leaders_and_full_isrs(zookeeper_connect):
    brokers = [Broker(zookeeper_connect, b) for b in (1, 2, 3)]
    try:
        client = brokers[0].membership.client
        assignment = TopicAssignment("orders", assign_replicas([1, 2, 3], 6, 3))
        create_topic(client, assignment)
        states = wait_for_states(client, "orders", 6, lambda s: True)
        assert [s.leader for s in states] == [r[0] for r in assignment.replicas]
        assert all(s.isr == r and s.leader_epoch == 0 for s, r in zip(states, assignment.replicas,
                                                                      strict=True))
    finally:
        for broker in brokers:
            broker.leave()


@pytest.mark.parametrize("who", ["a follower broker", "the controller"])
def test_a_leaving_broker_hands_its_leaderships_to_live_isr_members(zookeeper_connect, who):
    """Leaving as the controller too: the next one takes over the duty."""
    brokers = {b: Broker(zookeeper_connect, b) for b in (1, 2, 3)}
    try:
        client = brokers[1].membership.client
        create_topic(client, TopicAssignment("orders", assign_replicas([1, 2, 3], 3, 3)))
        before = wait_for_states(client, "orders", 3, lambda s: True)
        controller = next(b for b in brokers.values() if b.election.is_controller)
        leaving = controller.broker_id if who == "the controller" else next(
            b for b in brokers if b != controller.broker_id)
        brokers.pop(leaving).leave()
        client = next(iter(brokers.values())).membership.client
        after = wait_for_states(client, "orders", 3,
                                lambda s: all(leaving not in x.isr for x in s))
        for old, new in zip(before, after, strict=True):
            assert new.leader != leaving and new.leader in old.isr
            assert new.leader_epoch == old.leader_epoch + 1
    finally:
        for broker in brokers.values():
            broker.leave()


def test_with_no_live_isr_member_the_partition_has_no_leader_until_it_returns(
        zookeeper_connect):
    brokers = {b: Broker(zookeeper_connect, b) for b in (1, 2)}
    try:
        client = brokers[1].membership.client
        create_topic(client, TopicAssignment("solo", ((2,),)))  # one replica, on broker 2
        wait_for_states(client, "solo", 1, lambda s: s[0].leader == 2)
        brokers.pop(2).leave()
        offline = wait_for_states(client, "solo", 1, lambda s: s[0].leader == NO_LEADER)
        assert offline[0].isr == (2,), "the last ISR member stays in it"
        brokers[2] = Broker(zookeeper_connect, 2)
        back = wait_for_states(client, "solo", 1, lambda s: s[0].leader == 2)
        assert back[0].leader_epoch == offline[0].leader_epoch + 1
    finally:
        for broker in brokers.values():
            broker.leave()


def test_unclean_election_hands_leadership_to_an_out_of_sync_replica(zookeeper_connect):
    brokers = {b: Broker(zookeeper_connect, b, unclean=True) for b in (1, 2)}
    try:
        client = brokers[1].membership.client
        create_topic(client, TopicAssignment("lossy", ((2, 1),)))
        wait_for_states(client, "lossy", 1, lambda s: s[0].isr == (2, 1))
        # Broker 1 falls out of sync (as its leader would record), then the leader goes.
        state, version = read_state(client, "lossy", 0)
        client.set("/brokers/topics/lossy/partitions/0/state",
                   PartitionState(2, state.leader_epoch, (2,), state.controller_epoch).encode(),
                   version=version)
        brokers.pop(2).leave()
        after = wait_for_states(client, "lossy", 1, lambda s: s[0].leader == 1)
        assert after[0].isr == (1,)
    finally:
        for broker in brokers.values():
            broker.leave()
