"""The producer sends each partition's batches to the worker that owns it (its
door, from metadata), and finds a partition's door again when it moves."""

from __future__ import annotations

import os
import signal

from appliance.client import Admin, Producer
from tests.integration.conftest import start_appliance


def test_produce_is_answered_by_the_workers_while_the_front_end_is_stopped(tmp_path):
    """With the supervisor frozen, only the workers can answer: an acks=all
    produce to every partition still completes, so it never went through it."""
    appliance = start_appliance(tmp_path)
    try:
        with Admin(appliance.bootstrap) as admin:
            admin.create_topic("doors", partitions=4)
        producer = Producer(appliance.bootstrap, acks="all", linger_ms=0,
                            request_timeout_ms=10_000)
        for p in range(4):  # learn the routes while the front end answers
            producer.send("doors", b"warm", partition=p).result(10)
        os.kill(appliance.process.pid, signal.SIGSTOP)
        try:
            offsets = [producer.send("doors", b"v%d" % p, partition=p).result(10).offset
                       for p in range(4)]
        finally:
            os.kill(appliance.process.pid, signal.SIGCONT)
        assert offsets == [1, 1, 1, 1]
        producer.close()
    finally:
        assert appliance.stop() == 0, appliance.stderr()


def test_a_partition_without_a_door_is_produced_through_the_front_end(tmp_path):
    """Metadata that names no door (as while a worker opens) routes to the
    front end, which serves every partition with the same answers."""
    appliance = start_appliance(tmp_path)
    try:
        with Admin(appliance.bootstrap) as admin:
            admin.create_topic("front", partitions=2)
        producer = Producer(appliance.bootstrap, acks="all", linger_ms=0)
        producer.partitions_for_topic("front")
        producer._sender.routes.learn("front", [{"endpoint": None}, {"endpoint": None}])
        assert [producer.send("front", b"x", partition=p).result(10).offset
                for p in (0, 1, 0)] == [0, 0, 1]
        producer.close()
    finally:
        assert appliance.stop() == 0, appliance.stderr()
