"""kafka-python, unmodified, against the Kafka listener: produce and consume
with every codec, admin operations, offsets for times, committed offsets."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def consume(bootstrap: str, topic: str, partitions: int, expected: int, **config) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, **config)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    records: list = []
    deadline = time.monotonic() + 20
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records += batch
    consumer.close()
    return records


@pytest.mark.parametrize("codec", CODECS)
def test_records_come_back_with_their_keys_values_headers_and_timestamps(
        kafka_appliance, name, codec):
    producer = KafkaProducer(bootstrap_servers=kafka_appliance.kafka_bootstrap,
                             compression_type=codec, linger_ms=5)
    futures = [producer.send(name, key=b"k%d" % (i % 5), value=b"v%d" % i,
                             headers=[("n", b"%d" % i)], timestamp_ms=1_700_000_000_000 + i)
               for i in range(200)]
    producer.flush()
    sent = [f.get(timeout=10) for f in futures]
    producer.close()
    records = consume(kafka_appliance.kafka_bootstrap, name, 1, 200)
    assert [r.offset for r in records] == [m.offset for m in sent] == list(range(200))
    assert [(r.key, r.value, r.headers, r.timestamp) for r in records] == [
        (b"k%d" % (i % 5), b"v%d" % i, [("n", b"%d" % i)], 1_700_000_000_000 + i)
        for i in range(200)]


def topic_configs(admin: KafkaAdminClient, topic: str) -> dict:
    return admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                  config_filter="all")["topic"][topic]


def test_admin_creates_describes_alters_and_deletes_topics(kafka_appliance, name):
    admin = KafkaAdminClient(bootstrap_servers=kafka_appliance.kafka_bootstrap)
    admin.create_topics([NewTopic(name, 3, 1, topic_configs={"retention.ms": "3600000"})])
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(name, 3, 1)])
    assert name in admin.list_topics()
    [described] = admin.describe_topics([name])
    assert len(described["partitions"]) == 3
    configs = topic_configs(admin, name)
    assert configs["retention.ms"] == {"value": "3600000", "read_only": False,
                                       "config_source": "DYNAMIC_TOPIC_CONFIG",
                                       "is_sensitive": False, "synonyms": []}
    assert configs["segment.bytes"]["config_source"] == "DEFAULT_CONFIG"
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                        configs={"retention.ms": "7200000"})])
    configs = topic_configs(admin, name)
    assert configs["retention.ms"]["value"] == "7200000"
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                        configs={"segment.ms": "60000"})])
    configs = topic_configs(admin, name)  # IncrementalAlterConfigs: the others are kept
    assert configs["segment.ms"]["value"] == "60000"
    assert configs["retention.ms"]["value"] == "7200000"
    admin.reset_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=["segment.ms"])])
    configs = topic_configs(admin, name)  # DELETE: back to the default, the rest kept
    assert configs["segment.ms"]["config_source"] == "DEFAULT_CONFIG"
    assert configs["retention.ms"]["value"] == "7200000"
    admin.delete_topics([name])
    assert name not in admin.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([name])
    admin.close()


def test_offsets_for_times_find_the_first_record_at_or_after_a_time(kafka_appliance, name):
    producer = KafkaProducer(bootstrap_servers=kafka_appliance.kafka_bootstrap)
    for i in range(10):
        producer.send(name, value=b"%d" % i, timestamp_ms=1_000_000 + 1000 * i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_appliance.kafka_bootstrap)
    tp = TopicPartition(name, 0)
    found = consumer.offsets_for_times({tp: 1_004_500})[tp]
    assert (found.offset, found.timestamp) == (5, 1_005_000)
    assert consumer.offsets_for_times({tp: 2_000_000})[tp] is None  # after the last record
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: 10}
    consumer.close()


def test_committed_offsets_are_read_back(kafka_appliance, name):
    producer = KafkaProducer(bootstrap_servers=kafka_appliance.kafka_bootstrap)
    for i in range(5):
        producer.send(name, value=b"%d" % i)
    producer.flush()
    producer.close()
    tp = TopicPartition(name, 0)
    consumer = KafkaConsumer(bootstrap_servers=kafka_appliance.kafka_bootstrap,
                             group_id=name, enable_auto_commit=False)
    consumer.assign([tp])
    from kafka.structs import OffsetAndMetadata
    consumer.commit({tp: OffsetAndMetadata(3, "meta", -1)})
    assert consumer.committed(tp) == 3
    consumer.close()
