"""`ringlog perf produce|consume|e2e`, run as subprocesses against a real appliance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import REPO, free_port


def perf(bootstrap: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m appliance perf ARGS` against `bootstrap`."""
    env = {k: v for k, v in os.environ.items() if k != "RINGLOG_BOOTSTRAP_SERVER"}
    return subprocess.run([sys.executable, "-m", "appliance", "perf", *args,
                           "--bootstrap-server", bootstrap],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def result_of(run: subprocess.CompletedProcess) -> dict:
    """The one JSON object a --json run prints, checked for consistency."""
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 1, run.stdout
    result = json.loads(run.stdout)
    assert result["records_per_sec"] > 0 and result["mb_per_sec"] > 0
    assert result["seconds"] > 0
    assert abs(result["records"] / result["seconds"] - result["records_per_sec"]) \
        <= 0.01 * result["records_per_sec"] + 0.1
    assert abs(result["bytes"] / 1e6 / result["seconds"] - result["mb_per_sec"]) \
        <= 0.01 * result["mb_per_sec"] + 0.001
    latency = result["latency_ms"]
    assert set(latency) == {"avg", "p50", "p95", "p99", "p999", "max"}
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["p999"] \
        <= latency["max"]
    assert latency["avg"] <= latency["max"]
    return result


def one_error_line(run: subprocess.CompletedProcess, code: int) -> str:
    assert run.returncode == code, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringlog: "), run.stderr
    assert run.stdout == ""
    return lines[0]


def test_produce_then_consume(appliance):
    bootstrap = appliance.bootstrap
    produced = result_of(perf(bootstrap, "produce", "--topic", "perf", "--num-records", "3000",
                              "--record-size", "200", "--partitions", "3", "--acks", "1",
                              "--compression", "lz4", "--json"))
    assert produced["records"] == 3000 and produced["bytes"] == 3000 * 200

    consumed = result_of(perf(bootstrap, "consume", "--topic", "perf", "--num-records", "3000",
                              "--json"))
    assert consumed["records"] == 3000 and consumed["bytes"] == 3000 * 200
    assert consumed["polls"] >= 6  # 500 records a poll at most

    # Text mode: one line of results on stdout.
    text = perf(bootstrap, "produce", "--topic", "perf", "--num-records", "100")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("100 records sent in ")
    assert "records/sec" in text.stdout and "99.9th" in text.stdout
    assert len(text.stdout.splitlines()) == 1

    line = one_error_line(perf(bootstrap, "consume", "--topic", "perf",
                               "--num-records", "5000"), 2)
    assert "holds 3100 records, fewer than --num-records 5000" in line
    line = one_error_line(perf(bootstrap, "consume", "--topic", "absent",
                               "--num-records", "1"), 1)
    assert "topic 'absent' does not exist" in line


def test_e2e(appliance):
    result = result_of(perf(appliance.bootstrap, "e2e", "--topic", "latency",
                            "--num-records", "2000", "--partitions", "2", "--json"))
    assert result["records"] == 2000 and result["bytes"] == 2000 * 100
    assert result["ack_latency_ms"]["p50"] <= result["ack_latency_ms"]["max"]


def test_throughput_caps_the_rate(appliance):
    cap = 400
    produced = result_of(perf(appliance.bootstrap, "produce", "--topic", "capped",
                              "--num-records", "800", "--throughput", str(cap), "--json"))
    assert produced["records"] == 800
    assert produced["records_per_sec"] <= 1.25 * cap, produced
    e2e = result_of(perf(appliance.bootstrap, "e2e", "--topic", "capped-e2e",
                         "--num-records", "800", "--throughput", str(cap), "--json"))
    assert e2e["records"] == 800
    assert e2e["records_per_sec"] <= 1.25 * cap, e2e


def test_a_run_longer_than_its_timeout_stops_with_one_line(appliance):
    run = perf(appliance.bootstrap, "produce", "--topic", "slow", "--num-records", "100",
               "--throughput", "10", "--timeout", "1")  # needs 10 s
    line = one_error_line(run, 1)
    assert "records acknowledged within --timeout 1 s" in line


def test_no_appliance_is_one_line_for_every_command():
    bootstrap = f"127.0.0.1:{free_port()}"
    for command in ("produce", "consume", "e2e"):
        run = perf(bootstrap, command, "--topic", "t", "--num-records", "10",
                   "--request-timeout-ms", "500")
        line = one_error_line(run, 1)
        assert f"no reply from {bootstrap} within 500 ms" in line, line


def test_bad_options_are_one_line_and_exit_2():
    bootstrap = f"127.0.0.1:{free_port()}"  # never contacted: the options are refused first
    for args, words in (
            (["produce", "--topic", "t", "--num-records", "10", "--throughput", "0"],
             "--throughput"),
            (["produce", "--num-records", "10"], "--topic"),
            (["produce", "--topic", "t", "--num-records", "0"], "--num-records"),
            (["produce", "--topic", "t", "--num-records", "1", "--compression", "brotli"],
             "--compression"),
            (["e2e", "--topic", "t", "--num-records", "1", "--record-size", "8"],
             "--record-size must be at least 16"),
            (["nonsense"], "No such command")):
        line = one_error_line(perf(bootstrap, *args), 2)
        assert words in line, line
