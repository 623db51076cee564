"""`python -m loadtest.bench --quick` runs end to end against a real appliance."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_quick_prints_the_table(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--quick", "--records", "5000",
         "--producer-settings", "5:65536,50:1048576:many",
         "--w4-producer-settings", "5:1048576,5:1048576:many", "--dir", str(tmp_path),
         "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Ringlog appliance bench" in out
    header = next(line for line in out.splitlines() if "records/s" in line and "MB/s" in line)
    assert "e2e ms p50/p99/p99.9" in header
    rows = [line for line in out.splitlines() if re.match(r"W[1-4]  ", line)]
    assert [r[:2] for r in rows] == ["W1", "W1", "W2", "W3", "W4", "W4"], out
    assert "send_many" in rows[1] and "send_many" not in rows[0]
    assert "Targets (issue #3)" in out
    figures = json.loads(out_json.read_text())
    by_workload = {r["workload"]: r for r in figures["results"]}
    assert by_workload["W2"]["records"] == 5000
    assert by_workload["W3"]["extra"]["received"] == by_workload["W3"]["records"] > 0
    assert all(r["records_per_s"] > 0 for r in figures["results"])
    assert not any(tmp_path.glob("appliance-*")), "the bench left its data directory behind"


def test_latency_pieces_prints_every_step(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.latency_pieces", "--requests", "20",
         "--dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if re.search(r"\d / \d", line)]
    assert len(rows) == 11, done.stdout  # 4 steps per flush policy, fdatasync, 2 echoes
    for row in rows:
        p50, p99, p999 = (float(x) for x in row.rsplit(None, 5)[-5::2])
        assert 0 < p50 <= p99 <= p999
    assert not any(tmp_path.iterdir()), "it left its data directory behind"


def test_w3_steps_times_every_step_of_the_client_and_the_worker(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.w3_steps", "--rate", "500", "--seconds", "0.5",
         "--dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split("  ")[1].strip(): line for line in done.stdout.splitlines()
            if line.startswith("  ")}
    assert len(rows) == 7, done.stdout
    for name, row in rows.items():
        count = int(re.search(r"\(n=([\d,]+)\)", row).group(1).replace(",", ""))
        assert count > 0, f"no sample of {name}: {done.stdout}"
    assert not any(tmp_path.iterdir()), "it left its data directory behind"
