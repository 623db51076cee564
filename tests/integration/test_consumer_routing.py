"""The consumer fetches each partition at the worker that owns it (its door,
from metadata), and finds the door again when its worker is replaced."""

from __future__ import annotations

import os
import signal
import time

from appliance.client import Admin, Consumer, Producer
from tests.integration.conftest import start_appliance
from tests.polling import wait_for

TOPIC, PARTITIONS = "doors", 4


def poll_until(consumer: Consumer, count: int, timeout_s: float) -> list:
    """Poll until `count` messages came or the deadline passed."""
    messages: list = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < count and time.monotonic() < deadline:
        messages += consumer.poll(timeout_ms=200)
    return messages


def test_fetches_are_answered_by_the_workers_while_the_front_end_is_stopped(tmp_path):
    """With the supervisor frozen only the workers can answer: records produced
    then still reach a long-polling consumer, so neither went through it."""
    appliance = start_appliance(tmp_path)
    try:
        with Admin(appliance.bootstrap) as admin:
            admin.create_topic(TOPIC, partitions=PARTITIONS)
            # Routes learnt while a worker still opens its partitions go by the
            # front end and are asked again later, which the frozen front end
            # would not answer: start once every partition is at its door.
            wait_for(lambda: all(p["endpoint"] for p in admin._request(
                "metadata", {"topics": [TOPIC]}).fields["topics"][0]["partitions"]),
                10, "every partition served at its worker's door")
        producer = Producer(appliance.bootstrap, acks="all", linger_ms=0,
                            request_timeout_ms=10_000)
        consumer = Consumer(bootstrap_servers=appliance.bootstrap,
                            auto_offset_reset="earliest", fetch_max_wait_ms=200)
        consumer.assign([(TOPIC, p) for p in range(PARTITIONS)])
        for p in range(PARTITIONS):  # learn routes and positions while the front end answers
            producer.send(TOPIC, b"warm", partition=p).result(10)
        assert len(poll_until(consumer, PARTITIONS, 10)) == PARTITIONS
        os.kill(appliance.process.pid, signal.SIGSTOP)
        try:
            for p in range(PARTITIONS):
                producer.send(TOPIC, b"frozen-%d" % p, partition=p).result(10)
            got = poll_until(consumer, PARTITIONS, 10)
        finally:
            os.kill(appliance.process.pid, signal.SIGCONT)
        assert sorted((m.partition, m.offset, m.value) for m in got) == [
            (p, 1, b"frozen-%d" % p) for p in range(PARTITIONS)]
        consumer.close()
        producer.close()
    finally:
        assert appliance.stop() == 0, appliance.stderr()


def test_a_consumer_long_polling_a_killed_worker_reads_on_from_its_successor(tmp_path):
    """SIGKILL of the worker a fetch waits on loses that fetch, not the
    consumer: it asks where the partitions went and reads what is produced
    after the respawn, at the offsets that follow."""
    appliance = start_appliance(tmp_path)
    try:
        with Admin(appliance.bootstrap) as admin:
            admin.create_topic(TOPIC, partitions=PARTITIONS)
        producer = Producer(appliance.bootstrap, acks="all", linger_ms=0)
        for p in range(PARTITIONS):
            producer.send(TOPIC, b"before", partition=p).result(10)
        consumer = Consumer(bootstrap_servers=appliance.bootstrap,
                            auto_offset_reset="earliest", fetch_max_wait_ms=500)
        consumer.assign([(TOPIC, p) for p in range(PARTITIONS)])
        assert len(poll_until(consumer, PARTITIONS, 10)) == PARTITIONS
        consumer.poll(timeout_ms=100)  # a long poll is now in flight at every door
        victim = appliance.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while victim in appliance.worker_pids() or len(appliance.worker_pids()) < 2:
            assert time.monotonic() < deadline, "the worker was not respawned"
            time.sleep(0.02)
        for p in range(PARTITIONS):
            producer.send(TOPIC, b"after", partition=p).result(20)
        got = poll_until(consumer, PARTITIONS, 20)
        assert sorted((m.partition, m.offset, m.value) for m in got) == [
            (p, 1, b"after") for p in range(PARTITIONS)]
        consumer.close()
        producer.close()
    finally:
        assert appliance.stop() == 0, appliance.stderr()
