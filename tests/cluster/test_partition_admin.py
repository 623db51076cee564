"""Partition admin in a three-broker cluster with a real ZooKeeper: partitions
added to a replicated topic get leaders and full ISRs and take acks=all
records; records deleted at the leader are gone on every follower within a
fetch, and stay gone after the leader is killed and a follower leads."""

from __future__ import annotations

import os
import signal
import time

from appliance.client import Admin, Consumer, Producer
from tests.cluster.brokers import start_broker
from tests.polling import wait_for

TOPIC = "ledger"


def bootstrap(brokers) -> str:
    return ",".join(a.bootstrap for a in brokers.values())


def partitions(admin: Admin) -> list[dict]:
    return admin.describe_topic(TOPIC)["partitions"]


def replicated(admin: Admin, count: int, replicas: int = 3) -> bool:
    found = partitions(admin)
    return len(found) == count and all(p["leader"] >= 0 and len(p["isr"]) == replicas
                                       for p in found)


def log_start_on(appliance, partition: int) -> int | None:
    """The log start offset of the broker's own replica (describe reads its control block)."""
    with Admin(appliance.bootstrap) as admin:
        return partitions(admin)[partition].get("log_start_offset")


def first_offset(bootstrap_servers: str, partition: int, expected_at_least: int) -> int | None:
    consumer = Consumer(bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest")
    consumer.assign([(TOPIC, partition)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            messages = consumer.poll(timeout_ms=500)
            if messages:
                assert messages[0].offset >= expected_at_least
                return messages[0].offset
        return None
    finally:
        consumer.close()


def test_added_partitions_replicate_and_deleted_records_stay_deleted_after_failover(
        tmp_path, zookeeper_connect):
    brokers = {b: start_broker(tmp_path, zookeeper_connect, b) for b in (1, 2, 3)}
    try:
        with Admin(bootstrap(brokers)) as admin:
            admin.create_topic(TOPIC, partitions=1, replication_factor=3,
                               configs={"min.insync.replicas": "2"})
            wait_for(lambda: replicated(admin, 1), 15, "a leader and a full ISR")

            admin.create_partitions(TOPIC, 3)
            wait_for(lambda: replicated(admin, 3), 20, "leaders and full ISRs of the new ones")
            assert {p["leader"] for p in partitions(admin)} == {1, 2, 3}  # spread on
        with Producer(bootstrap(brokers), acks="all") as producer:
            sent = producer.send(TOPIC, b"in-a-new-partition", partition=2).result(10)
            assert (sent.partition, sent.offset) == (2, 0)
            for i in range(10):
                producer.send(TOPIC, b"v%d" % i, partition=0).result(10)

        with Admin(bootstrap(brokers)) as admin:
            assert admin.delete_records(TOPIC, 0, 6) == 6  # sent to the leader
            leader = partitions(admin)[0]["leader"]
        for b, appliance in brokers.items():
            wait_for(lambda appliance=appliance: log_start_on(appliance, 0) == 6, 10,
                     f"broker {b}'s replica following the leader's log start")

        os.killpg(brokers[leader].process.pid, signal.SIGKILL)
        brokers[leader].process.wait(10)
        survivors = ",".join(a.bootstrap for b, a in brokers.items() if b != leader)
        with Admin(survivors) as admin:
            wait_for(lambda: partitions(admin)[0]["leader"] not in (leader, -1), 30,
                     "a new leader")
        assert first_offset(survivors, 0, 6) == 6  # the new leader resurrects nothing
    finally:
        for appliance in brokers.values():
            appliance.stop()
