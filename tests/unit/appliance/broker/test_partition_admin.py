"""The core's partition admin without processes: DeleteRecords through the
owners (log start moved, reads below it out of range, errors per partition)
and CreatePartitions on a single node (metadata, Open for the new
partitions only, groups rebalanced)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from appliance import protocol
from appliance.broker import Broker, PartitionReaders
from appliance.broker import replies as r
from appliance.broker import requests as q
from appliance.config import load_config
from appliance.metadata import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS, Metadata
from appliance.metrics import RequestMetrics
from shm.errors import (
    InvalidPartitionsError,
    InvalidRequestError,
    InvalidTopicError,
    LeaderNotAvailableError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from shm.records import Record, encode_batch
from tests.unit.appliance.broker.conftest import Cluster, LocalWorkers
from workers import protocol as wp


def create(cluster: Cluster, name: str, partitions: int) -> None:
    [reply] = cluster.call(object(), q.CreateTopicsRequest([q.TopicSpec(name, partitions)]))
    assert reply.topics[0].error is None


def produce(cluster: Cluster, topic: str, partition: int, count: int) -> None:
    records = encode_batch([Record(value=b"v%d" % i) for i in range(count)])
    [reply] = cluster.call(object(), q.ProduceRequest(1, [(topic, partition)], [records]))
    assert reply.partitions[0].error is None


def delete_records(cluster: Cluster, *partitions: tuple[str, int, int]) -> r.DeleteRecordsReply:
    client = object()
    [reply] = cluster.call(client, q.DeleteRecordsRequest(list(partitions)))
    return reply


def earliest(cluster: Cluster, topic: str, partition: int) -> int:
    client = object()
    [reply] = cluster.call(client, q.ListOffsetsRequest([(topic, partition, q.EARLIEST)]))
    return reply.partitions[0].offset


# --- DeleteRecords ------------------------------------------------------------------------

def test_delete_records_moves_the_log_start_and_earliest_answers_it(cluster):
    create(cluster, "t", 2)
    produce(cluster, "t", 0, 10)
    produce(cluster, "t", 1, 4)
    reply = delete_records(cluster, ("t", 0, 6), ("t", 1, q.DELETE_TO_HIGH_WATERMARK))
    assert [(p.topic, p.partition, p.low_watermark, p.error) for p in reply.partitions] == [
        ("t", 0, 6, None), ("t", 1, 4, None)]
    assert earliest(cluster, "t", 0) == 6
    assert earliest(cluster, "t", 1) == 4


def test_a_fetch_below_the_new_log_start_is_out_of_range(cluster):
    create(cluster, "t", 1)
    produce(cluster, "t", 0, 10)
    delete_records(cluster, ("t", 0, 6))
    client = object()
    [reply] = cluster.call(client, q.FetchRequest([q.FetchPartition("t", 0, 5)], max_wait_ms=0))
    assert isinstance(reply.partitions[0].error, OffsetOutOfRangeError)
    [reply] = cluster.call(object(), q.FetchRequest([q.FetchPartition("t", 0, 6)], max_wait_ms=0))
    assert reply.partitions[0].error is None and reply.partitions[0].records


def test_each_partition_gets_its_own_error_and_the_others_are_deleted(cluster):
    create(cluster, "t", 1)
    produce(cluster, "t", 0, 3)
    reply = delete_records(cluster, ("t", 0, 4), ("t", 7, 1), ("nope", 0, 1),
                           (OFFSETS_TOPIC, 0, 0), ("t", 0, -5), ("t", 0, 2))
    errors = [type(p.error) for p in reply.partitions]
    assert errors == [OffsetOutOfRangeError, UnknownTopicOrPartitionError,
                      UnknownTopicOrPartitionError, InvalidTopicError, OffsetOutOfRangeError,
                      type(None)]
    assert reply.partitions[-1].low_watermark == 2


def test_an_owner_that_dies_before_answering_fails_its_part_retriably(cluster):
    create(cluster, "t", 1)
    produce(cluster, "t", 0, 3)
    owner = cluster.broker.metadata.owner("t", 0)
    cluster.hold = {owner}
    client = object()
    assert cluster.call(client, q.DeleteRecordsRequest([("t", 0, 1)])) == []
    cluster.broker.worker_lost(owner)
    cluster.run()
    [reply] = cluster.replies[client]
    assert isinstance(reply.partitions[0].error, LeaderNotAvailableError)


# --- CreatePartitions ---------------------------------------------------------------------

def test_create_partitions_grows_the_topic_and_opens_only_the_new_partitions(cluster):
    create(cluster, "t", 2)
    sent = len(cluster.sent)
    [reply] = cluster.call(object(), q.CreatePartitionsRequest([("t", 5)]))
    assert reply.topics == [r.TopicResult("t")]
    opened = sorted((e.topic, e.partition) for _, m in cluster.sent[sent:]
                    if isinstance(m, wp.Open) for e in m.partitions)
    assert opened == [("t", 2), ("t", 3), ("t", 4)]
    [metadata] = cluster.call(object(), q.MetadataRequest(["t"]))
    assert [p.partition for p in metadata.topics[0].partitions] == [0, 1, 2, 3, 4]
    assert set(cluster.broker.metadata.get("t").owners) == {0, 1}  # spread over both
    produce(cluster, "t", 4, 2)


def test_the_new_partition_count_is_persisted(cluster, tmp_path):
    create(cluster, "t", 1)
    cluster.call(object(), q.CreatePartitionsRequest([("t", 3)]))
    assert Metadata(tmp_path, 2).get("t").partitions == 3


def test_create_partitions_refuses_what_kafka_refuses_per_topic(cluster):
    create(cluster, "t", 3)
    [reply] = cluster.call(object(), q.CreatePartitionsRequest(
        [("t", 3), ("t", 2), ("nope", 4), (OFFSETS_TOPIC, 10), ("t", 4)]))
    assert [type(t.error) for t in reply.topics] == [
        InvalidPartitionsError, InvalidPartitionsError, UnknownTopicOrPartitionError,
        InvalidRequestError, type(None)]
    assert cluster.broker.metadata.get("t").partitions == 4


def test_validate_only_changes_nothing(cluster):
    create(cluster, "t", 1)
    sent = len(cluster.sent)
    [reply] = cluster.call(object(), q.CreatePartitionsRequest([("t", 4)], validate_only=True))
    assert reply.topics[0].error is None
    assert cluster.broker.metadata.get("t").partitions == 1
    assert cluster.sent[sent:] == []


@pytest.fixture
def quick_groups(tmp_path: Path) -> Iterator[Cluster]:
    """The core of conftest's `cluster`, with groups formed at once (no initial delay)."""
    config = load_config(overrides=[f"log.dirs={tmp_path}", "num.workers=2",
                                    "offsets.topic.num.partitions=2",
                                    "group.initial.rebalance.delay.ms=0"], environ={})
    metadata = Metadata(tmp_path, 2)
    metadata.create(OFFSETS_TOPIC, 2, 1, dict(OFFSETS_TOPIC_CONFIGS))
    broker = Broker(config, metadata, PartitionReaders(metadata),
                    RequestMetrics(protocol.SCHEMAS, CollectorRegistry()))
    cluster = Cluster(broker, LocalWorkers())
    for worker in (0, 1):
        broker.on_worker_message(worker, wp.Ready(worker, 0))
    cluster.run()
    yield cluster
    broker.close()
    cluster.workers.close()


def test_a_group_subscribed_to_the_topic_is_assigned_the_new_partitions(quick_groups):
    cluster = quick_groups
    create(cluster, "t", 1)
    [view] = cluster.call(object(), q.JoinGroupRequest("g", ["t"]))
    assert view.assignment == [("t", 0)]
    cluster.call(object(), q.CreatePartitionsRequest([("t", 3)]))
    [beat] = cluster.call(object(), q.HeartbeatRequest("g", view.member_id, view.generation_id,
                                                   [("t", 0)]))
    if beat.generation_id == view.generation_id:  # the new generation may need one more beat
        [beat] = cluster.call(object(), q.HeartbeatRequest("g", view.member_id, beat.generation_id,
                                                       list(beat.assignment)))
    assert beat.generation_id > view.generation_id
    assert sorted(beat.assignment) == [("t", 0), ("t", 1), ("t", 2)]
