"""Produce and consume through a real appliance: what is acknowledged comes back, in order."""

from __future__ import annotations

import threading
import time

import pytest

from appliance.client import Admin, Consumer, Producer
from shm.errors import (
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from tests.integration.conftest import start_appliance


def read_all(bootstrap: str, topic: str, partitions: int, expected: int,
             timeout_s: float = 20) -> list:
    consumer = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    consumer.assign([(topic, p) for p in range(partitions)])
    messages = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        messages += consumer.poll(timeout_ms=500)
    consumer.close()
    return messages


def test_synchronous_sends_come_back_in_order_with_their_offsets(appliance):
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic("orders", partitions=3)
    with Producer(appliance.bootstrap, acks="all", linger_ms=2) as producer:
        sent = [producer.send("orders", value=b"v%d" % i, key=b"k%d" % (i % 7),
                              headers=[("h", b"%d" % i)]).result(timeout=10)
                for i in range(60)]
    by_partition: dict[int, list] = {}
    for md in sent:
        by_partition.setdefault(md.partition, []).append(md.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))  # dense, in send order
    messages = read_all(appliance.bootstrap, "orders", 3, 60)
    assert len(messages) == 60
    got = {(m.partition, m.offset): (m.key, m.value, m.headers) for m in messages}
    for i, md in enumerate(sent):
        assert got[(md.partition, md.offset)] == (b"k%d" % (i % 7), b"v%d" % i,
                                                   (("h", b"%d" % i),))
    for m in messages:
        assert m.next_offset == m.offset + 1 and m.high_watermark >= m.next_offset


def test_the_same_key_always_lands_in_the_same_partition(appliance):
    with Producer(appliance.bootstrap, acks=1) as producer:
        results = [producer.send("keys", b"x", key=b"user-42").result(10) for _ in range(5)]
    assert len({md.partition for md in results}) == 1


def test_asynchronous_sends_report_through_callbacks_and_flush(appliance):
    delivered, lock = [], threading.Lock()

    def on_delivery(error, metadata):
        with lock:
            delivered.append((error, metadata))

    producer = Producer(appliance.bootstrap, acks="all", linger_ms=20, batch_size=4096,
                        compression_type="lz4")
    for i in range(500):
        producer.send("async", value=b"%05d" % i, on_delivery=on_delivery)
    producer.flush(timeout=30)
    producer.close()
    assert len(delivered) == 500
    assert all(error is None for error, _ in delivered)
    messages = read_all(appliance.bootstrap, "async", 1, 500)
    assert sorted(m.value for m in messages) == [b"%05d" % i for i in range(500)]


def test_fire_and_forget_sends_arrive(appliance):
    with Producer(appliance.bootstrap, acks=0) as producer:
        for i in range(100):
            producer.send("fnf", value=b"%d" % i)
    assert len(read_all(appliance.bootstrap, "fnf", 1, 100)) == 100


def test_a_waiting_consumer_gets_records_produced_later(appliance):
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic("later")
    consumer = Consumer(bootstrap_servers=appliance.bootstrap, auto_offset_reset="latest")
    consumer.assign([("later", 0)])
    assert consumer.poll(timeout_ms=200) == []
    assert consumer.position("later", 0) == 0

    def produce_soon():
        time.sleep(0.3)
        with Producer(appliance.bootstrap) as producer:
            producer.send("later", b"hello").result(10)

    thread = threading.Thread(target=produce_soon)
    thread.start()
    messages = consumer.poll(timeout_ms=10_000)
    thread.join()
    consumer.close()
    assert [m.value for m in messages] == [b"hello"]


def test_seek_reads_from_any_offset(appliance):
    with Producer(appliance.bootstrap) as producer:
        for i in range(20):
            producer.send("seek", b"%d" % i, partition=0)
    consumer = Consumer(bootstrap_servers=appliance.bootstrap)
    consumer.assign([("seek", 0)])
    consumer.seek("seek", 0, 13)
    messages = consumer.poll(timeout_ms=5000)
    assert [m.offset for m in messages] == list(range(13, 20))
    consumer.seek_to_beginning()
    assert consumer.poll(timeout_ms=5000)[0].offset == 0
    consumer.close()


def test_admin_manages_topics_with_kafka_errors(appliance):
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic("managed", partitions=4, configs={"retention.ms": 60000})
        assert "managed" in admin.list_topics()
        described = admin.describe_topic("managed")
        assert [p["partition"] for p in described["partitions"]] == [0, 1, 2, 3]
        assert described["configs"] == {"retention.ms": "60000"}
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topic("managed")
        with pytest.raises(InvalidReplicationFactorError, match="number of brokers"):
            admin.create_topic("replicated", replication_factor=3)
        with pytest.raises(InvalidTopicError):
            admin.create_topic("bad/name")
        admin.delete_topic("managed")
        assert "managed" not in admin.list_topics()
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.describe_topic("managed")


def test_list_offsets_by_timestamp_finds_the_first_record_at_or_after(appliance):
    from appliance.client.connection import Connection

    with Producer(appliance.bootstrap) as producer:
        for i in range(10):
            producer.send("times", b"%d" % i, partition=0, timestamp=1_000 + 100 * i).result(10)
    connection = Connection(appliance.bootstrap)
    response = connection.request("list_offsets", {"partitions": [
        ["times", 0, 1_250], ["times", 0, 0], ["times", 0, 5_000], ["times", 0, -2],
        ["times", 0, -1]]})
    found = [(entry["offset"], entry["timestamp"]) for entry in response.fields["partitions"]]
    connection.close()
    # a time query answers with the found record's own timestamp, as Kafka does
    assert found == [(3, 1_300), (0, 1_000), (-1, -1), (0, -1), (10, -1)]


def test_a_full_buffer_makes_send_wait_instead_of_growing(appliance):
    producer = Producer(appliance.bootstrap, linger_ms=5, batch_size=8192, buffer_memory=20_000)
    futures = []
    for i in range(3000):
        futures.append(producer.send("bounded", b"x" * 100 + b"%d" % i))
        assert producer._buffered <= 20_000 + 200  # never more than one record over
    producer.flush(30)
    producer.close()
    assert all(f.result().offset >= 0 for f in futures)


def test_send_many_splits_into_batches_and_every_value_comes_back_at_its_offset(appliance):
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic("bulk", partitions=2)
    values = [b"%06d" % i * (1 + i % 40) for i in range(20_000)]  # 6..240 bytes
    with Producer(appliance.bootstrap, acks="all", batch_size=32 * 1024) as producer:
        first = producer.send_many("bulk", values[:5_000], partition=1)
        second = producer.send_many("bulk", values[5_000:], partition=1, timestamp=1_234)
        one = producer.send("bulk", b"after", partition=1).result(timeout=10)
        landed = first.result(timeout=10) + second.result(timeout=10)
    assert [md.offset for md in landed] == list(range(20_000))
    assert {md.partition for md in landed} == {1} and one.offset == 20_000
    assert {md.timestamp for md in landed[5_000:]} == {1_234}
    messages = read_all(appliance.bootstrap, "bulk", 2, 20_001)
    assert [(m.partition, m.offset) for m in messages] == [(1, i) for i in range(20_001)]
    assert [m.value for m in messages] == [*values, b"after"]
    assert all(m.timestamp == 1_234 for m in messages[5_000:20_000])
    assert all(m.key is None and m.headers == () for m in messages)


def test_send_many_to_a_bad_topic_name_fails_its_future_not_the_caller(appliance):
    with Producer(appliance.bootstrap) as producer:
        future = producer.send_many("bad name!", [b"a", b"b"])
        assert isinstance(future.exception(timeout=10), InvalidTopicError)
        with pytest.raises(InvalidTopicError):
            future.result(timeout=10)


def test_send_many_larger_than_the_buffer_waits_for_room_and_delivers_all(appliance):
    values = [b"%099d" % i for i in range(5_000)]  # about 580 KB against a 64 KiB buffer
    with Producer(appliance.bootstrap, acks=1, batch_size=16 * 1024,
                  buffer_memory=64 * 1024) as producer:
        landed = producer.send_many("tight", values, partition=0).result(timeout=30)
    assert [md.offset for md in landed] == list(range(5_000))
    assert [m.value for m in read_all(appliance.bootstrap, "tight", 1, 5_000)] == values


def test_a_timestamp_kafka_cannot_hold_is_refused_by_send_and_changes_nothing(appliance):
    with Producer(appliance.bootstrap, acks=1, linger_ms=50) as producer:
        good = producer.send("odd", b"fine", partition=0)
        for bad in (-5, 2**63):
            with pytest.raises(ValueError, match="timestamp"):
                producer.send("odd", b"bad", partition=0, timestamp=bad)
            with pytest.raises(ValueError, match="timestamp"):
                producer.send_many("odd", [b"bad"], partition=0, timestamp=bad)
        assert good.result(timeout=10).offset == 0
        assert producer.send("odd", b"again", partition=0).result(timeout=10).offset == 1


def test_fire_and_forget_requests_do_not_use_up_the_in_flight_limit(tmp_path):
    running = start_appliance(tmp_path, "queued.max.requests=3")
    try:
        with Admin(running.bootstrap) as admin:
            admin.create_topic("quiet", partitions=1)
        with Producer(running.bootstrap, acks=0, linger_ms=0) as producer, \
                Consumer(bootstrap_servers=running.bootstrap) as watcher:
            for i in range(12):  # each its own request, one at a time: four times the limit
                producer.send("quiet", b"%d" % i, partition=0)
                producer.flush(timeout=10)
                deadline = time.monotonic() + 10
                while watcher.end_offsets([("quiet", 0)])[("quiet", 0)] < i + 1:
                    assert time.monotonic() < deadline, f"record {i} was not stored"
                    time.sleep(0.01)
        with Producer(running.bootstrap, acks=1, retry_backoff_ms=10_000) as producer:
            landed = producer.send("quiet", b"acked", partition=0).result(timeout=5)
        assert landed.offset == 12  # not refused as "too many requests in flight"
    finally:
        assert running.stop() == 0
