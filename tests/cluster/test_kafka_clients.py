"""Unmodified Kafka clients against a three-broker cluster's Kafka listeners:
every broker advertises its own, metadata names each partition's leader, and
when the leader is killed with kill -9 each client follows the new one with
no acknowledged record lost or duplicated (idempotent producers, acks=all)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time

import pytest

from appliance.client import Admin
from tests.cluster.brokers import start_broker
from tests.cluster.test_replication import bootstrap, fully_replicated, partitions
from tests.polling import wait_for

TOPIC = "failover"


def kafka_bootstrap(brokers) -> str:
    return ",".join(a.kafka_bootstrap for a in brokers.values())


class SyncProducer:
    """One client's idempotent producer, one acknowledged send at a time."""

    def __init__(self, client: str, servers: str):
        self.client = client
        if client == "kafka-python":
            from kafka import KafkaProducer
            self._producer = KafkaProducer(bootstrap_servers=servers, acks="all",
                                           enable_idempotence=True, retry_backoff_ms=100)
        elif client == "confluent-kafka":
            from confluent_kafka import Producer
            self._producer = Producer({"bootstrap.servers": servers, "acks": "all",
                                       "enable.idempotence": True})
        else:
            from aiokafka import AIOKafkaProducer
            async def started() -> AIOKafkaProducer:
                producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all",
                                            enable_idempotence=True)
                await producer.start()
                return producer

            self._loop = asyncio.new_event_loop()
            self._producer = self._loop.run_until_complete(started())

    def send(self, value: bytes) -> None:
        if self.client == "kafka-python":
            self._producer.send(TOPIC, value=value, partition=0).get(timeout=60)
        elif self.client == "confluent-kafka":
            failed: list = []
            self._producer.produce(TOPIC, value=value, partition=0,
                                   on_delivery=lambda e, _m: e and failed.append(e))
            assert self._producer.flush(60) == 0 and not failed, failed
        else:
            self._loop.run_until_complete(self._producer.send_and_wait(TOPIC, value,
                                                                       partition=0))

    def close(self) -> None:
        if self.client == "kafka-python":
            self._producer.close()
        elif self.client == "aiokafka":
            self._loop.run_until_complete(self._producer.stop())
            self._loop.close()


def read_back(client: str, servers: str, expected: int) -> list[bytes]:
    """Partition 0 from the beginning, through the same client."""
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    if client == "kafka-python":
        from kafka import KafkaConsumer, TopicPartition
        consumer = KafkaConsumer(bootstrap_servers=servers, auto_offset_reset="earliest")
        consumer.assign([TopicPartition(TOPIC, 0)])
        while len(values) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in batch]
        consumer.close()
    elif client == "confluent-kafka":
        from confluent_kafka import Consumer, TopicPartition
        # No commits: this is the group's first use of __consumer_offsets, which (as in
        # Kafka) is created only once offsets.topic.replication.factor (3) brokers are
        # live, so a commit at close() would wait for a coordinator that cannot come.
        consumer = Consumer({"bootstrap.servers": servers, "group.id": "reader",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value())
        consumer.close()
    else:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def read() -> None:
            consumer = AIOKafkaConsumer(bootstrap_servers=servers, auto_offset_reset="earliest")
            await consumer.start()
            consumer.assign([TopicPartition(TOPIC, 0)])
            try:
                while len(values) < expected and time.monotonic() < deadline:
                    for batch in (await consumer.getmany(timeout_ms=500)).values():
                        values.extend(r.value for r in batch)
            finally:
                await consumer.stop()
        asyncio.run(read())
    return values


class Writer(threading.Thread):
    """Sends 000000, 000001, ... until stopped; what was acknowledged, in order."""

    def __init__(self, client: str, servers: str):
        super().__init__(daemon=True)
        self.producer = SyncProducer(client, servers)
        self.acknowledged: list[bytes] = []
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            for i in range(100_000):  # bounded; stopped long before
                if self._stopping.is_set():
                    break
                value = b"%06d" % i
                self.producer.send(value)
                self.acknowledged.append(value)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def finish(self) -> list[bytes]:
        self._stopping.set()
        self.join(90)
        self.producer.close()
        assert self.error is None, repr(self.error)
        return self.acknowledged


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka", "aiokafka"])
def test_each_kafka_client_follows_a_killed_leader(tmp_path, zookeeper_connect, client):
    brokers = {b: start_broker(tmp_path, zookeeper_connect, b) for b in (1, 2, 3)}
    try:
        with Admin(bootstrap(brokers)) as admin:
            admin.create_topic(TOPIC, partitions=1, replication_factor=3,
                               configs={"min.insync.replicas": "2"})
            wait_for(lambda: fully_replicated(admin, topic=TOPIC), 15, "a leader and a full ISR")
            victim = partitions(admin, TOPIC)[0]["leader"]
        listing = subprocess.run(["kcat", "-b", kafka_bootstrap(brokers), "-L", "-t", TOPIC],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
        assert "3 brokers:" in listing
        for b, appliance in brokers.items():
            assert f"broker {b} at {appliance.kafka_bootstrap}" in listing
        assert f"partition 0, leader {victim}, replicas:" in listing
        writer = Writer(client, kafka_bootstrap(brokers))
        writer.start()
        wait_for(lambda: len(writer.acknowledged) >= 100 or not writer.is_alive(), 30,
                 "acks before the fault")
        before = len(writer.acknowledged)
        os.killpg(brokers[victim].process.pid, signal.SIGKILL)
        brokers[victim].process.wait(10)
        wait_for(lambda: len(writer.acknowledged) >= before + 100 or not writer.is_alive(), 60,
                 "acks from the new leader")
        acknowledged = writer.finish()
        survivors = ",".join(a.kafka_bootstrap for b, a in brokers.items() if b != victim)
        assert read_back(client, survivors, len(acknowledged)) == acknowledged
    finally:
        for appliance in brokers.values():
            appliance.stop()
