"""confluent-kafka (librdkafka), unmodified, against the Kafka listener."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def produce(bootstrap: str, topic: str, count: int, **config) -> list:
    """Send `count` records; the delivery reports (partition, offset) in send order."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    reports: list = [None] * count

    def delivered(error, message, i):
        reports[i] = error or (message.partition(), message.offset())

    for i in range(count):
        producer.produce(topic, key=b"k%d" % (i % 3), value=b"v%d" % i,
                         headers=[("n", b"%d" % i)], timestamp=1_700_000_000_000 + i,
                         on_delivery=lambda e, m, i=i: delivered(e, m, i))
    assert producer.flush(20) == 0
    return reports


def consume(bootstrap: str, topic: str, expected: int, partition: int = 0,
            start: int = 0) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, start)])
    messages: list = []
    deadline = time.monotonic() + 20
    while len(messages) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            messages.append(message)
    consumer.close()
    return messages


@pytest.mark.parametrize("codec", CODECS)
def test_records_round_trip_through_librdkafka_with_every_codec(kafka_appliance, name, codec):
    reports = produce(kafka_appliance.kafka_bootstrap, name, 300, **{"compression.type": codec})
    assert reports == [(0, i) for i in range(300)]
    messages = consume(kafka_appliance.kafka_bootstrap, name, 300)
    assert [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in messages] == [
        (i, b"k%d" % (i % 3), b"v%d" % i, [("n", b"%d" % i)], 1_700_000_000_000 + i)
        for i in range(300)]


def test_an_idempotent_producer_gets_its_producer_id_and_dense_offsets(kafka_appliance, name):
    reports = produce(kafka_appliance.kafka_bootstrap, name, 1000,
                      **{"enable.idempotence": True, "acks": "all"})
    assert reports == [(0, i) for i in range(1000)]


# alter_configs is deprecated in favour of incremental_alter_configs; the door serves
# both APIs (AlterConfigs, 33, and IncrementalAlterConfigs, 44), so both are judged.
@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_admin_client_creates_describes_and_deletes_topics(kafka_appliance, name):
    admin = AdminClient({"bootstrap.servers": kafka_appliance.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(name, 4, 1, config={"retention.ms": "60000"})],
                                      operation_timeout=10).values():
        future.result(10)
    with pytest.raises(KafkaException) as raised:
        admin.create_topics([NewTopic(name, 4, 1)])[name].result(10)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics[name].partitions) == 4
    [described] = admin.describe_configs([ConfigResource("topic", name)]).values()
    configs = described.result(10)
    assert configs["retention.ms"].value == "60000"
    assert not configs["retention.ms"].is_default and configs["segment.bytes"].is_default
    # AlterConfigs (not the incremental one) sets every config: unnamed ones go back
    # to their defaults, as Kafka does.
    [altered] = admin.alter_configs([ConfigResource("topic", name,
                                                    set_config={"segment.ms": "60000"})]).values()
    altered.result(10)
    [described] = admin.describe_configs([ConfigResource("topic", name)]).values()
    configs = described.result(10)
    assert configs["segment.ms"].value == "60000" and configs["retention.ms"].is_default
    admin.delete_topics([name])[name].result(10)
    assert name not in admin.list_topics(timeout=10).topics


def test_incremental_alter_configs_sets_and_deletes_leaving_the_others(kafka_appliance, name):
    admin = AdminClient({"bootstrap.servers": kafka_appliance.kafka_bootstrap})
    configs = {"retention.ms": "60000", "segment.ms": "70000"}
    admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name].result(10)

    def alter(*entries: ConfigEntry) -> None:
        [done] = admin.incremental_alter_configs(
            [ConfigResource("topic", name, incremental_configs=list(entries))]).values()
        done.result(10)

    def described() -> dict:
        [future] = admin.describe_configs([ConfigResource("topic", name)]).values()
        return future.result(10)

    alter(ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
          ConfigEntry("segment.ms", None, incremental_operation=AlterConfigOpType.DELETE))
    now = described()
    assert now["retention.bytes"].value == "1048576"
    assert now["retention.ms"].value == "60000"  # not named: kept
    assert now["segment.ms"].is_default
    with pytest.raises(KafkaException) as raised:  # a typo deletes nothing and says so
        alter(ConfigEntry("retention.mss", None, incremental_operation=AlterConfigOpType.DELETE))
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert "retention.ms" in raised.value.args[0].str()
    with pytest.raises(KafkaException) as raised:
        alter(ConfigEntry("cleanup.policy", "delete",
                          incremental_operation=AlterConfigOpType.APPEND))
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert described()["retention.ms"].value == "60000"
    assert described()["retention.bytes"].value == "1048576"


def test_offsets_for_times_and_watermarks(kafka_appliance, name):
    produce(kafka_appliance.kafka_bootstrap, name, 10)
    consumer = Consumer({"bootstrap.servers": kafka_appliance.kafka_bootstrap,
                         "group.id": name})
    assert consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=10) == (0, 10)
    [found] = consumer.offsets_for_times([TopicPartition(name, 0, 1_700_000_000_004)], 10)
    assert found.offset == 4
    consumer.close()


def test_committed_offsets_are_read_back(kafka_appliance, name):
    produce(kafka_appliance.kafka_bootstrap, name, 5)
    consumer = Consumer({"bootstrap.servers": kafka_appliance.kafka_bootstrap,
                         "group.id": name, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(name, 0, 4)], asynchronous=False)
    [committed] = consumer.committed([TopicPartition(name, 0)], timeout=10)
    assert committed.offset == 4
    consumer.close()


def test_admin_adds_partitions_and_deletes_records(kafka_appliance, name):
    from confluent_kafka.admin import NewPartitions

    admin = AdminClient({"bootstrap.servers": kafka_appliance.kafka_bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(10)
    admin.create_partitions([NewPartitions(name, 3)])[name].result(10)
    assert len(admin.list_topics(name, timeout=10).topics[name].partitions) == 3
    with pytest.raises(KafkaException, match="INVALID_PARTITIONS"):
        admin.create_partitions([NewPartitions(name, 2)])[name].result(10)
    producer = Producer({"bootstrap.servers": kafka_appliance.kafka_bootstrap})
    for i in range(10):
        producer.produce(name, value=b"%d" % i, partition=0)
    assert producer.flush(10) == 0
    [deleted] = admin.delete_records([TopicPartition(name, 0, 4)]).values()
    assert deleted.result(10).low_watermark == 4
    consumer = Consumer({"bootstrap.servers": kafka_appliance.kafka_bootstrap,
                         "group.id": name})
    assert consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=10) == (4, 10)
    consumer.close()
    from confluent_kafka import OFFSET_BEGINNING
    assert [m.offset() for m in consume(kafka_appliance.kafka_bootstrap, name, 6,
                                        start=OFFSET_BEGINNING)] == list(range(4, 10))
