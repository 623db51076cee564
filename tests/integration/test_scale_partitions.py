"""2,000 partitions on one appliance: created, produced to, read back, stopped cleanly.

What used to stop this short (issue #4): eight descriptors per partition in a
worker and four in the supervisor (Python's mmap keeps one per map), a
leader-epoch checkpoint written with two fsyncs on each partition's first
append, one fdatasync after another for every partition of a tick, and closes
one by one at stop.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from appliance.client import Admin, Consumer, Producer
from tests.integration.conftest import start_appliance

PARTITIONS = 2_000
PER_PARTITION = 3
TOPIC = "wide"
BUDGET_S = 60  # each phase; the whole test takes ~20-30 s on the 2-core test host


def wait_for_every_partition(bootstrap: str, deadline: float) -> None:
    with Admin(bootstrap, request_timeout_ms=30_000) as admin:
        admin.create_topic(TOPIC, PARTITIONS)
        while True:
            entry = admin.describe_topic(TOPIC)
            if all(p.get("error") is None for p in entry["partitions"]):
                return
            assert time.monotonic() < deadline, "the partitions were not all open in time"
            time.sleep(0.2)


def descriptors(appliance) -> dict[str, int]:
    root = psutil.Process(appliance.process.pid)
    counts = {"supervisor": root.num_fds()}
    for pid in appliance.worker_pids():
        counts[f"worker {pid}"] = psutil.Process(pid).num_fds()
    return counts


def test_two_thousand_partitions_round_trip(tmp_path: Path) -> None:
    appliance = start_appliance(tmp_path, workers=2)
    try:
        wait_for_every_partition(appliance.bootstrap, time.monotonic() + BUDGET_S)

        began = time.monotonic()
        with Producer(appliance.bootstrap, acks=1, linger_ms=5, batch_size=1 << 20) as producer:
            for p in range(PARTITIONS):
                producer.send_many(TOPIC, [b"%d-%d" % (p, i) for i in range(PER_PARTITION)],
                                   partition=p)
            producer.flush(timeout=BUDGET_S)
        produce_s = time.monotonic() - began

        consumer = Consumer(bootstrap_servers=appliance.bootstrap, enable_auto_commit=False)
        got: dict[int, list[int]] = {}
        values_ok = True
        try:
            consumer.assign([(TOPIC, p) for p in range(PARTITIONS)])
            for p in range(PARTITIONS):
                consumer.seek(TOPIC, p, 0)
            deadline = time.monotonic() + BUDGET_S
            total = 0
            while total < PARTITIONS * PER_PARTITION and time.monotonic() < deadline:
                for m in consumer.poll(timeout_ms=1000, max_records=100_000):
                    got.setdefault(m.partition, []).append(m.offset)
                    values_ok &= m.value == b"%d-%d" % (m.partition, m.offset)
                    total += 1
        finally:
            consumer.close()
        assert sorted(got) == list(range(PARTITIONS))
        assert all(offsets == list(range(PER_PARTITION)) for offsets in got.values())
        assert values_ok

        fds = descriptors(appliance)
        # The front end's maps hold no descriptor; a worker holds two per partition
        # it owns (1,000 each here), its lock and its active .log, and little else.
        owned = PARTITIONS // 2
        assert fds["supervisor"] < 200, fds
        assert all(n <= 2 * owned + 100 for name, n in fds.items()
                   if name.startswith("worker")), fds
        assert produce_s < BUDGET_S
    finally:
        stopping = time.monotonic()
        code = appliance.stop()
        stop_s = time.monotonic() - stopping
    assert code == 0, appliance.stderr()
    assert stop_s < 30, f"stopping took {stop_s:.1f} s"
    assert "could not open" not in appliance.stderr()
    checkpoints = list(appliance.log_dir.glob(f"{TOPIC}-*/leader-epoch-checkpoint"))
    assert len(checkpoints) == PARTITIONS  # saved at close, every one
