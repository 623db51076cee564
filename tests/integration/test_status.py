"""`ringlog status` against a real appliance: processes, partitions, groups' lag."""

from __future__ import annotations

import os
import signal
import time

import psutil

from appliance.client import Admin
from tests.integration.test_cli import ok, ringlog


def sections(text: str) -> list[list[list[str]]]:
    """The output's blank-line separated blocks, each as rows split on whitespace."""
    blocks = [block for block in text.strip().split("\n\n") if block.strip()]
    return [[line.split() for line in block.splitlines()] for block in blocks]


def block_with(text: str, header: str) -> list[list[str]]:
    """The table whose first row starts with `header` (header row left out)."""
    for block in sections(text):
        if block[0] and block[0][0] == header:
            return block[1:]
    raise AssertionError(f"no {header} table in:\n{text}")


def test_status_shows_each_process_partition_and_group_lag(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "watched", "--partitions", "2"))
    ok(ringlog(bootstrap, "produce", "watched", "--partition", "0", stdin=b"a\nb\nc\n"))
    ok(ringlog(bootstrap, "produce", "watched", "--partition", "1", stdin=b"d\n"))
    ok(ringlog(bootstrap, "consume", "watched", "--group", "readers", "--from-beginning",
               "--max-messages", "4"))
    ok(ringlog(bootstrap, "produce", "watched", "--partition", "0", stdin=b"e\nf\n"))

    out = ok(ringlog(None, "status", "--bootstrap-server", bootstrap))
    first = out.splitlines()[0]
    assert "Serving: yes" in first and "Workers ready: 2 of 2" in first, first

    processes = {row[0]: row for row in block_with(out, "PROCESS")}
    assert set(processes) == {"supervisor", "worker-0", "worker-1"}
    assert processes["supervisor"][1] == str(appliance.process.pid)
    assert {processes["worker-0"][1], processes["worker-1"][1]} == {
        str(pid) for pid in appliance.worker_pids()}
    for name, row in processes.items():
        # PROCESS PID RSS(2 words) CPU-TIME CPU% [PARTITIONS RESTARTS] STATE
        rss = psutil.Process(int(row[1])).memory_info().rss
        number, unit = float(row[2]), row[3]
        assert unit == "MiB" and 0.5 * rss < number * 2**20 < 2 * rss, (name, row)
        assert row[4].endswith("s") and float(row[4][:-1]) > 0
        assert float(row[5]) >= 0
    owned = [int(processes[w][6]) for w in ("worker-0", "worker-1")]
    assert sum(owned) == 8 + 2  # __consumer_offsets and watched
    assert processes["worker-0"][8] == "ready" and processes["worker-1"][7] == "0"

    partitions = {(row[0], row[1]): row for row in block_with(out, "TOPIC")}
    assert partitions[("watched", "0")][3:6] == ["0", "5", "5"]  # log start, end, HW
    assert partitions[("watched", "1")][3:6] == ["0", "1", "1"]
    assert partitions[("watched", "0")][7] == "B" and int(partitions[("watched", "0")][6]) > 0

    groups = {(row[0], row[2], row[3]): row for row in block_with(out, "GROUP")}
    # GROUP STATE TOPIC PARTITION COMMITTED HIGH-WATERMARK LAG
    assert groups[("readers", "watched", "0")][4:] == ["3", "5", "2"]
    assert groups[("readers", "watched", "1")][4:] == ["1", "1", "0"]


def test_status_shows_a_killed_worker_down_then_restarted(appliance):
    victim = appliance.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    with Admin(appliance.bootstrap) as admin:
        while time.monotonic() < deadline:
            status = admin.status()
            if status["serving"] and all(p["pid"] != victim for p in status["processes"]):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"no respawn within 30 s: {status}")
    out = ok(ringlog(None, "status", "--bootstrap-server", appliance.bootstrap))
    restarts = sorted(row[7] for row in block_with(out, "PROCESS") if row[0] != "supervisor")
    assert restarts == ["0", "1"]
    assert str(victim) not in [row[1] for row in block_with(out, "PROCESS")]
