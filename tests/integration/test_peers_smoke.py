"""`python -m loadtest.peers` end to end against a real Ringlog appliance, and the
comparison table's Ringlog/peer column.

The peer brokers themselves (Redis, NATS, RabbitMQ) are Debian packages that CI
does not install, so the runs here cover Ringlog only; the ratio column is
checked on measurements built by hand (it is pure arithmetic over them)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtest.peers.report import comparison_table, ratio
from loadtest.peers.workload import Measurement

REPO = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "loadtest.peers"]


def run_peers(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, "--peers", "ringlog", "--dir", str(tmp_path), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_quick_run_against_ringlog_prints_one_table_and_cleans_up(tmp_path: Path) -> None:
    out_json = tmp_path / "peers.json"
    done = run_peers(tmp_path, "--quick", "--records", "3000", "--json", str(out_json))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    header = next(line for line in out.splitlines() if "records/s" in line and "MB/s" in line
                  and "peer" in line)
    assert "Ringlog/peer" in header and "e2e ms p50 / p99 / p99.9" in header
    rows = [line for line in out.splitlines() if re.match(r"W[1-4]  ", line)]
    assert [r[:2] for r in rows] == ["W1", "W2", "W3", "W4"], out
    assert "ack: acks=1 with flush policy `batch`" in out
    figures = json.loads(out_json.read_text())
    by_workload = {r["workload"]: r for r in figures["results"]}
    assert by_workload["W2"]["records"] == 3000
    assert by_workload["W4"]["value_bytes"] == 1024
    assert by_workload["W3"]["latency_ms"]["received"] == by_workload["W3"]["records"] == 1000
    assert all(r["records_per_s"] > 0 and r["error"] is None for r in figures["results"])
    assert not any(tmp_path.glob("peers-*")), "the run left its data directory behind"


def test_a_workload_past_its_timeout_is_named_and_the_run_fails(tmp_path: Path) -> None:
    done = run_peers(tmp_path, "--workloads", "W1", "--records", "5000000", "--timeout", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "W1 on ringlog did not finish within 1 s" in done.stdout
    assert "FAILED" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not any(tmp_path.glob("peers-*"))


def test_sigterm_stops_the_appliance_and_removes_the_data(tmp_path: Path) -> None:
    run = subprocess.Popen([*COMMAND, "--peers", "ringlog", "--workloads", "W3", "--rate",
                            "1000", "--seconds", "60", "--dir", str(tmp_path)],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        appliance = None
        deadline = time.monotonic() + 30
        while appliance is None and time.monotonic() < deadline and run.poll() is None:
            for child in psutil.Process(run.pid).children(recursive=True):
                try:
                    if "serve" in child.cmdline() and "appliance" in child.cmdline():
                        appliance = child
                except psutil.Error:
                    continue
            time.sleep(0.05)
        assert appliance is not None, "the appliance never started"
        # Wait until W3 is under way (its data directory holds the topic).
        while not list(tmp_path.glob("peers-*/ringlog/data/peers-w3*")):
            assert time.monotonic() < deadline, "W3 never created its topic"
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        run.wait(30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(5)
    assert run.returncode != 0
    assert not appliance.is_running() or appliance.status() == psutil.STATUS_ZOMBIE
    assert not any(tmp_path.glob("peers-*")), "SIGTERM left the data directory behind"


def _m(workload: str, peer: str, seconds: float, latency: dict | None = None) -> Measurement:
    return Measurement(workload, peer, records=1000, seconds=seconds, latency_ms=latency)


def test_ratio_is_ringlog_over_peer_for_rates_and_latencies() -> None:
    fast, slow = _m("W1", "ringlog", 0.5), _m("W1", "redis-always", 2.0)
    assert ratio(fast, slow) == "4.00"  # 2,000 rec/s over 500 rec/s
    assert ratio(fast, fast) == "-"  # Ringlog's own row
    lat = {"p50": 1.0, "p99": 4.0, "p99.9": 9.0}
    theirs = {"p50": 2.0, "p99": 2.0, "p99.9": 3.0}
    assert ratio(_m("W3", "ringlog", 1, lat), _m("W3", "nats", 1, theirs)) == "0.50 / 2.00 / 3.00"
    failed = Measurement("W1", "nats", error="blocked: nats-server missing")
    assert ratio(fast, failed) == "-"


@pytest.mark.parametrize("peers", [["ringlog", "rabbitmq"], ["rabbitmq", "ringlog"]])
def test_table_groups_by_workload_whatever_the_peer_order(peers: list[str]) -> None:
    seconds = {"ringlog": 0.25, "rabbitmq": 1.0}
    measurements = [_m(w, p, seconds[p]) for p in peers for w in ("W1", "W2")]
    measurements.append(Measurement("W4", "rabbitmq", error="TimeoutError"))
    lines = comparison_table(measurements).splitlines()
    body = lines[2:]
    assert [line[:2] for line in body] == ["W1", "  ", "W2", "  ", "W4"]
    rabbit_w1 = next(line for line in body[:2] if "rabbitmq" in line)
    assert rabbit_w1.rstrip().endswith("4.00")
    assert "FAILED" in body[4]
