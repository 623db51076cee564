"""SIGKILL of a worker, and of the whole appliance, during acks=all production:
every acknowledged record is read back at the offset it was acknowledged with."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil

from appliance.client import Admin, Consumer, Producer
from tests.integration.conftest import start_appliance
from tests.polling import wait_for

TOPIC, PARTITIONS = "acked", 4


def produce_in_background(bootstrap: str, count: int, stop: threading.Event):
    """Send `count` records (bounded), recording each acknowledgement."""
    acked: dict[tuple[int, int], bytes] = {}
    failed: list[Exception] = []
    lock = threading.Lock()
    producer = Producer(bootstrap, acks="all", linger_ms=2, retry_backoff_ms=50,
                        request_timeout_ms=2_000)

    def on_delivery(error, metadata, value):
        with lock:
            if error is None:
                acked[(metadata.partition, metadata.offset)] = value
            else:
                failed.append(error)

    def run():
        for i in range(count):
            if stop.is_set():
                break
            value = b"record-%06d" % i
            producer.send(TOPIC, value, key=b"%d" % (i % 16),
                          on_delivery=lambda e, m, v=value: on_delivery(e, m, v))
            if i % 50 == 0:
                time.sleep(0.005)  # spread the load over the kill
        producer.flush(timeout=60)
        producer.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, acked, failed


def read_back(bootstrap: str) -> dict[tuple[int, int], bytes]:
    """Every record of the topic, up to each partition's high watermark now."""
    ends: dict[int, int] = {}
    deadline = time.monotonic() + 20
    with Admin(bootstrap) as admin:
        while len(ends) < PARTITIONS and time.monotonic() < deadline:
            # right after a restart a partition may still be opening: ask again
            ends = {p["partition"]: p["high_watermark"]
                    for p in admin.describe_topic(TOPIC)["partitions"] if not p["error"]}
    assert len(ends) == PARTITIONS, "partitions did not reopen"
    consumer = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    consumer.assign([(TOPIC, p) for p in range(PARTITIONS)])
    stored: dict[tuple[int, int], bytes] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
            consumer.position(TOPIC, p) < end for p, end in ends.items()):
        for m in consumer.poll(timeout_ms=500):
            stored[(m.partition, m.offset)] = m.value
    consumer.close()
    return stored


def test_a_killed_worker_is_respawned_and_loses_no_acknowledged_record(tmp_path: Path):
    appliance = start_appliance(tmp_path)
    try:
        with Admin(appliance.bootstrap) as admin:
            admin.create_topic(TOPIC, partitions=PARTITIONS)
        stop = threading.Event()
        thread, acked, failed = produce_in_background(appliance.bootstrap, 4000, stop)
        wait_for(lambda: len(acked) > 300, 30, "first acknowledgements")
        victim = appliance.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        respawn_s = wait_for(
            lambda: victim not in appliance.worker_pids() and len(appliance.worker_pids()) == 2,
            5, "worker respawn")
        assert respawn_s < 2.0
        thread.join(90)
        assert not thread.is_alive()
        assert failed == []
        stored = read_back(appliance.bootstrap)
        missing = {k: v for k, v in acked.items() if stored.get(k) != v}
        assert not missing, f"{len(missing)} acknowledged records not read back as acked"
        values = list(stored.values())
        assert len(values) == len(set(values)), "a retried record was stored twice"
    finally:
        assert appliance.stop() == 0, appliance.stderr()


def test_killing_the_whole_appliance_loses_no_acknowledged_record(tmp_path: Path):
    appliance = start_appliance(tmp_path)
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic(TOPIC, partitions=PARTITIONS)
    stop = threading.Event()
    thread, acked, _ = produce_in_background(appliance.bootstrap, 100_000, stop)
    wait_for(lambda: len(acked) > 500, 30, "first acknowledgements")
    group = [appliance.process.pid, *appliance.worker_pids()]
    os.killpg(appliance.process.pid, signal.SIGKILL)  # every process at once
    appliance.process.wait(10)
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                             for p in group), 10, "all processes gone")
    promised = dict(acked)  # acknowledged before the kill: no reply can come after it
    restarted = start_appliance(tmp_path, port=int(appliance.bootstrap.rsplit(":", 1)[1]))
    try:
        stop.set()
        thread.join(90)
        stored = read_back(restarted.bootstrap)
        missing = {k: v for k, v in promised.items() if stored.get(k) != v}
        assert not missing, f"{len(missing)} of {len(promised)} acknowledged records lost"
        values = list(stored.values())
        assert len(values) == len(set(values)), "a retried record was stored twice"
        restarted.wait_until_serving()
    finally:
        assert restarted.stop() == 0, restarted.stderr()


def test_sigterm_drains_and_a_restart_finds_everything(tmp_path: Path):
    appliance = start_appliance(tmp_path)
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic(TOPIC, partitions=PARTITIONS)
    with Producer(appliance.bootstrap, acks="all") as producer:
        sent = [producer.send(TOPIC, b"%d" % i, partition=i % PARTITIONS)
                for i in range(200)]
        producer.flush(30)
    acked = {(f.result().partition, f.result().offset) for f in sent}
    assert appliance.stop() == 0
    assert list(appliance.log_dir.glob(f"{TOPIC}-*/.clean-shutdown"))
    restarted = start_appliance(tmp_path)
    try:
        stored = read_back(restarted.bootstrap)
        assert set(stored) == acked
    finally:
        assert restarted.stop() == 0
