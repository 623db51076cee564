"""Cluster mode (`zookeeper.connect` set): membership, the controller
election and the cluster's state in ZooKeeper, through kazoo."""

from appliance.cluster.controller import ControllerElection, NotControllerError
from appliance.cluster.membership import ClusterError, Membership, connect, split_connect
from appliance.cluster.znodes import (
    BrokerRegistration,
    ControllerRegistration,
    PartitionState,
    ProducerIdBlock,
    TopicAssignment,
)

__all__ = [
    "BrokerRegistration",
    "ClusterError",
    "ControllerElection",
    "ControllerRegistration",
    "Membership",
    "NotControllerError",
    "PartitionState",
    "ProducerIdBlock",
    "TopicAssignment",
    "connect",
    "split_connect",
]
