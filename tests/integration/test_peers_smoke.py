"""`python -m loadtest.peers` end to end against a real Ringlog appliance, and the
comparison table's Ringlog/peer column.

The peer brokers themselves (Redis, NATS, RabbitMQ) are Debian packages that CI
does not install, so the runs here cover Ringlog only; the ratio column is
checked on measurements built by hand (it is pure arithmetic over them)."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtest.peers.report import (
    comparison_table,
    ratio,
    ratio_cell,
    side_by_side,
    side_by_side_table,
    spread,
)
from loadtest.peers.workload import Measurement, Run

REPO = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "loadtest.peers"]


def run_peers(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, "--peers", "ringlog", "--dir", str(tmp_path), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def table_body(out: str, header: str) -> list[str]:
    """The rows of the table under `header`: from its dashes to the first blank line."""
    lines = out.splitlines()
    start = lines.index(header) + 2
    return lines[start:lines.index("", start)]


def test_quick_run_against_ringlog_prints_one_table_and_cleans_up(tmp_path: Path) -> None:
    out_json = tmp_path / "peers.json"
    done = run_peers(tmp_path, "--quick", "--records", "3000", "--json", str(out_json))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    header = next(line for line in out.splitlines() if "records/s" in line and "MB/s" in line
                  and "peer" in line)
    assert "Ringlog/peer" in header and "e2e ms p50 / p99 / p99.9 / max" in header
    rows = table_body(out, header)
    assert [r[:2] for r in rows] == ["W1", "  ", "W2", "W3", "W4"], out
    assert "ringlog (send) " in rows[0] and "ringlog (send_many) " in rows[1]
    w3_latency = re.search(r"ringlog +1,000 .*?((?:[\d.]+ / ){3}[\d.]+)", rows[3])
    assert w3_latency, rows[3]
    p50, p99, p999, top = (float(v) for v in w3_latency.group(1).split(" / "))
    assert 0 < p50 <= p99 <= p999 <= top
    assert "ack: acks=1 with flush policy `batch`" in out
    assert "Runs side by side" not in out  # one run: its table is the whole story
    figures = json.loads(out_json.read_text())
    assert figures["plan"]["runs"] == 1 and len(figures["runs"]) == 1
    results = figures["runs"][0]["results"]
    by_row = {(r["workload"], r["call"]): r for r in results}
    assert set(by_row) == {("W1", "send"), ("W1", "send_many"), ("W2", ""), ("W3", ""),
                           ("W4", "")}
    assert "send_many" not in by_row["W1", "send"]["settings"]
    assert "send_many" in by_row["W1", "send_many"]["settings"]
    assert by_row["W1", "send"]["records"] == by_row["W2", ""]["records"] == 3000
    assert by_row["W4", ""]["value_bytes"] == 1024
    w3 = by_row["W3", ""]
    assert w3["latency_ms"]["received"] == w3["records"] == 1000
    assert f"{w3['latency_ms']['max']:.2f}" == f"{top:.2f}"  # the table shows the JSON's max
    assert all(r["records_per_s"] > 0 and r["error"] is None for r in results)
    assert not any(tmp_path.glob("peers-*")), "the run left its data directory behind"


def test_runs_are_reported_one_by_one_then_side_by_side(tmp_path: Path) -> None:
    out_json = tmp_path / "peers.json"
    done = run_peers(tmp_path, "--quick", "--runs", "2", "--workloads", "W1,W3",
                     "--seconds", "0.5", "--json", str(out_json))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Run 1 of 2: load average" in out and "Run 2 of 2: load average" in out
    side = out[out.index("Runs side by side"):]
    header = next(line for line in side.splitlines() if line.endswith("spread"))
    assert header.split() == ["peer", "figure", "run", "1", "run", "2", "spread"]
    rows = table_body(side, header)
    assert [r.split()[0] for r in rows] == ["W1", "ringlog", "W3", "p99", "p99.9", "max"], side
    assert "ringlog (send) " in rows[0] and "ringlog (send_many) " in rows[1]
    assert "ringlog " in rows[2] and " p50 ms " in rows[2]
    record = json.loads(out_json.read_text())
    assert [r["run"] for r in record["runs"]] == [1, 2]
    rows = {(r["workload"], r["call"], r["figure"]): r for r in record["side_by_side"]}
    assert set(rows) == {("W1", "send", "records/s"), ("W1", "send_many", "records/s"),
                         *(("W3", "", k) for k in ("p50", "p99", "p99.9", "max"))}
    for run, result in enumerate(record["runs"]):
        w3 = next(r for r in result["results"] if r["workload"] == "W3")
        assert rows["W3", "", "max"]["values"][run] == w3["latency_ms"]["max"]
    assert all(len(r["values"]) == 2 and r["spread"] is not None for r in rows.values())
    assert not any(tmp_path.glob("peers-*"))


def test_bad_runs_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_peers(tmp_path, "--runs", "0")
    assert done.returncode == 2
    assert "--runs must be between 1 and 100" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_workload_past_its_timeout_is_named_and_the_run_fails(tmp_path: Path) -> None:
    done = run_peers(tmp_path, "--workloads", "W1", "--records", "5000000", "--timeout", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "W1 (send) on ringlog did not finish within 1 s" in done.stdout
    assert "W1 on ringlog (send_many): not run: an earlier workload failed" in done.stdout
    assert "FAILED" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not any(tmp_path.glob("peers-*"))


# What the run may take to stop, by its own bounds: the W3 producer's close (10 s), the
# consumer process's join, terminate and kill (5 s each), the appliance's drain (30 s)
# and its kill (10 s). Passing means it stopped and cleaned up, not how fast.
STOP_S = 70


def wait_or_show_stacks(run: subprocess.Popen, timeout_s: float) -> None:
    """Wait for `run` to exit; if it does not, fail with where its threads are
    (SIGUSR1: faulthandler's dump) and what it printed."""
    try:
        run.wait(timeout_s)
        return
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGUSR1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        run.communicate(timeout=3)  # the dump, then still running
    run.kill()
    out, err = run.communicate()
    pytest.fail(f"no exit {timeout_s} s after SIGTERM; stdout:\n{out[-2000:]}\n"
                f"stderr (with every thread's stack):\n{err[-8000:]}")


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
        wait_or_show_stacks(run, STOP_S)
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


def test_w1_ratio_is_given_against_each_ringlog_call() -> None:
    send = Measurement("W1", "ringlog", records=1000, seconds=1.0, call="send")
    many = Measurement("W1", "ringlog", records=1000, seconds=0.1, call="send_many")
    redis = _m("W1", "redis-always", 0.5)
    assert ratio_cell([send, many], redis) == "send 0.50 / send_many 5.00"
    assert ratio_cell([send, many], send) == "-"  # Ringlog's own rows
    assert ratio_cell([], redis) == "-"  # no Ringlog in the run
    failed_send = Measurement("W1", "ringlog", error="BenchTimeout", call="send")
    assert ratio_cell([failed_send, many], redis) == "send - / send_many 5.00"
    body = comparison_table([send, many, redis]).splitlines()[2:]
    assert "ringlog (send) " in body[0] and "ringlog (send_many) " in body[1]
    assert body[2].rstrip().endswith("send 0.50 / send_many 5.00")


def test_w3_shows_max_and_compares_p50_to_p999() -> None:
    lat = {"p50": 1.0, "p99": 4.0, "p99.9": 9.0, "max": 40.0}
    theirs = {"p50": 2.0, "p99": 2.0, "p99.9": 3.0, "max": 5.0}
    mine, nats = _m("W3", "ringlog", 1, lat), _m("W3", "nats", 1, theirs)
    assert ratio_cell([mine], nats) == "0.50 / 2.00 / 3.00"  # max is shown, not compared
    body = comparison_table([mine, nats]).splitlines()[2:]
    assert "1.00 / 4.00 / 9.00 / 40.00" in body[0]
    assert "2.00 / 2.00 / 3.00 / 5.00" in body[1]


def test_spread_is_max_minus_min_over_the_median() -> None:
    assert spread([90.0, 100.0, 130.0]) == pytest.approx(0.4)
    assert spread([100.0, None, 50.0]) == pytest.approx(50 / 75)  # a failed run left out
    assert spread([100.0]) is None and spread([None, None]) is None


def test_side_by_side_lists_each_row_and_figure_per_run() -> None:
    def run(send_s: float, p99: float, nats_error: str | None = None) -> Run:
        lat = {"p50": 1.0, "p99": p99, "p99.9": 9.0, "max": 20.0}
        return Run([Measurement("W1", "ringlog", records=1000, seconds=send_s, call="send"),
                    Measurement("W1", "ringlog", records=1000, seconds=0.1,
                                call="send_many"),
                    _m("W3", "ringlog", 1, lat),
                    Measurement("W1", "nats", records=1000, seconds=1.0, error=nats_error)],
                   (1.0, 1.0), 5.0)

    runs = [run(1.0, 4.0), run(0.5, 6.0, nats_error="TimeoutError"), run(2.0, 5.0)]
    rows = {(r["workload"], r["peer"], r["call"], r["figure"]): r for r in side_by_side(runs)}
    assert list(rows) == [("W1", "ringlog", "send", "records/s"),
                          ("W1", "ringlog", "send_many", "records/s"),
                          ("W1", "nats", "", "records/s"),
                          *(("W3", "ringlog", "", k) for k in ("p50", "p99", "p99.9", "max"))]
    assert rows["W1", "ringlog", "send", "records/s"]["values"] == [1000.0, 2000.0, 500.0]
    assert rows["W1", "ringlog", "send", "records/s"]["spread"] == pytest.approx(1.5)
    assert rows["W1", "nats", "", "records/s"]["values"] == [1000.0, None, 1000.0]
    assert rows["W3", "ringlog", "", "p99"]["values"] == [4.0, 6.0, 5.0]
    assert rows["W3", "ringlog", "", "p99"]["spread"] == pytest.approx(0.4)
    lines = side_by_side_table(runs).splitlines()
    assert lines[0].split() == ["peer", "figure", "run", "1", "run", "2", "run", "3", "spread"]
    assert lines[2].split() == ["W1", "ringlog", "(send)", "records/s", "1,000", "2,000", "500",
                                "150.0%"]
    assert lines[4].split() == ["nats", "records/s", "1,000", "-", "1,000", "0.0%"]
    assert lines[6].split() == ["p99", "ms", "4.00", "6.00", "5.00", "40.0%"]
