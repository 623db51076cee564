"""One log, two doors: what is produced through the native door reads back
identically through Kafka's, and the other way round; both see the same
offsets and high watermarks; each door's idempotent producer keeps its
sequence on the same log."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka import TopicPartition as KafkaPartition

from appliance.client import Admin, Consumer, Producer


def native_records(bootstrap: str, topic: str, expected: int) -> list:
    consumer = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    consumer.assign([(topic, 0)])
    messages: list = []
    deadline = time.monotonic() + 20
    while len(messages) < expected and time.monotonic() < deadline:
        messages += consumer.poll(timeout_ms=500)
    consumer.close()
    return [(m.offset, m.timestamp, m.key, m.value, list(m.headers)) for m in messages]


def kafka_records(bootstrap: str, topic: str, expected: int) -> list:
    consumer = KafkaConsumer({"bootstrap.servers": bootstrap, "group.id": f"two-{topic}",
                              "enable.auto.commit": False})
    consumer.assign([KafkaPartition(topic, 0, 0)])
    messages: list = []
    deadline = time.monotonic() + 20
    while len(messages) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            messages.append((message.offset(), message.timestamp()[1], message.key(),
                             message.value(), message.headers() or []))
    consumer.close()
    return messages


RECORDS = [(1_700_000_000_000 + i, b"k%d" % i if i % 4 else None, b"v%d" % i * (i % 7),
            [("a", b"%d" % i), ("b", None)] if i % 3 else []) for i in range(120)]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_what_the_native_door_takes_kafkas_door_gives_back(kafka_appliance, name, codec):
    with Producer(kafka_appliance.bootstrap, compression_type=codec, linger_ms=5) as producer:
        for timestamp, key, value, headers in RECORDS:
            producer.send(name, value=value, key=key, timestamp=timestamp, headers=headers,
                          partition=0)
        producer.flush()
    expected = [(i, *record) for i, record in enumerate(RECORDS)]
    assert native_records(kafka_appliance.bootstrap, name, len(RECORDS)) == expected
    assert kafka_records(kafka_appliance.kafka_bootstrap, name, len(RECORDS)) == expected


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_what_kafkas_door_takes_the_native_door_gives_back(kafka_appliance, name, codec):
    producer = KafkaProducer({"bootstrap.servers": kafka_appliance.kafka_bootstrap,
                              "compression.type": codec, "enable.idempotence": True,
                              "linger.ms": 5})
    for timestamp, key, value, headers in RECORDS:
        producer.produce(name, value=value, key=key, timestamp=timestamp, headers=headers,
                         partition=0)
    assert producer.flush(20) == 0
    expected = [(i, *record) for i, record in enumerate(RECORDS)]
    assert kafka_records(kafka_appliance.kafka_bootstrap, name, len(RECORDS)) == expected
    assert native_records(kafka_appliance.bootstrap, name, len(RECORDS)) == expected


def test_both_doors_agree_on_offsets_and_high_watermarks(kafka_appliance, name):
    with Producer(kafka_appliance.bootstrap) as native:
        for i in range(30):
            native.send(name, value=b"n%d" % i, partition=0)
        native.flush()
    kafka = KafkaProducer({"bootstrap.servers": kafka_appliance.kafka_bootstrap,
                           "enable.idempotence": True})
    for i in range(20):
        kafka.produce(name, value=b"k%d" % i, partition=0)
    assert kafka.flush(20) == 0
    with Admin(kafka_appliance.bootstrap) as admin:
        [partition] = admin.describe_topic(name)["partitions"]
    consumer = KafkaConsumer({"bootstrap.servers": kafka_appliance.kafka_bootstrap,
                              "group.id": name})
    low, high = consumer.get_watermark_offsets(KafkaPartition(name, 0), timeout=10)
    consumer.close()
    assert (low, high) == (partition["log_start_offset"], partition["high_watermark"]) == (0, 50)
