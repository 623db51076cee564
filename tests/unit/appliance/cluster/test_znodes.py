"""What each znode holds: every record round-trips, and a znode that is not
Ringlog's is refused with a message naming its path, never misread."""

from __future__ import annotations

import orjson
import pytest

from appliance.cluster import split_connect
from appliance.cluster.membership import ClusterError
from appliance.cluster.znodes import (
    BrokerRegistration,
    ControllerRegistration,
    PartitionState,
    ProducerIdBlock,
    TopicAssignment,
    decode_controller_epoch,
    encode_controller_epoch,
    partition_state_path,
)


def test_a_broker_registration_round_trips_and_names_host_and_port_as_kafka_does():
    registration = BrokerRegistration(2, "tcp://127.0.0.12:7092", "tcp://127.0.0.12:7093", "17")
    data = registration.encode()
    assert orjson.loads(data)["host"] == "127.0.0.12"
    assert orjson.loads(data)["port"] == 7092
    assert BrokerRegistration.decode(2, data) == registration


def test_partition_state_and_assignment_round_trip():
    state = PartitionState(leader=3, leader_epoch=7, isr=(3, 1), controller_epoch=4)
    assert PartitionState.decode("t", 0, state.encode()) == state
    assignment = TopicAssignment("t", ((1, 2, 3), (2, 3, 1)))
    assert TopicAssignment.decode("t", assignment.encode()) == assignment
    block = ProducerIdBlock(1, 1000, 1999)
    assert ProducerIdBlock.decode(block.encode()) == block
    assert ControllerRegistration.decode(ControllerRegistration(5, "9").encode()).broker_id == 5
    assert decode_controller_epoch(encode_controller_epoch(12)) == 12


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b'{"leader": 1}'])
def test_a_foreign_partition_state_is_refused_naming_its_path(data):
    with pytest.raises(ValueError, match=partition_state_path("t", 3)):
        PartitionState.decode("t", 3, data)


def test_an_assignment_with_a_hole_is_refused():
    with pytest.raises(ValueError, match="partitions 0 to 1"):
        TopicAssignment.decode("t", b'{"version": 1, "partitions": {"0": [1], "2": [1]}}')


def test_zookeeper_connect_splits_into_hosts_and_chroot():
    assert split_connect("127.0.0.1:2181") == ("127.0.0.1:2181", "")
    assert split_connect("a:1,b:2/ringlog/prod/") == ("a:1,b:2", "/ringlog/prod")
    with pytest.raises(ClusterError, match="names no host"):
        split_connect("/chroot-only")
