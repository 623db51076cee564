"""`python -m loadtest.replication_bench`, tiny, runs end to end against a real
ZooKeeper and four real brokers (one alone, three in a cluster) and prints
every row: the benchmark of issue #10 must keep working as the broker changes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.zookeeper import ZOOKEEPER_JARS

REPO = Path(__file__).resolve().parents[2]
ROWS = [("single", "acks=1"), ("single", "acks=all"), ("cluster", "acks=1"),
        ("cluster", "acks=all")]
RATIOS = ("cluster / single, acks=all", "cluster / single, acks=1",
          "cluster acks=all / cluster acks=1", "single acks=all / single acks=1")


@pytest.mark.skipif(not all(Path(jar).exists() for jar in ZOOKEEPER_JARS),
                    reason="Debian's zookeeper package is not installed")
def test_replication_bench_prints_every_row(tmp_path: Path) -> None:
    out_json = tmp_path / "replication.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.replication_bench", "--records", "3000", "--runs", "1",
         "--warmup", "0", "--timeout", "40", "--dir", str(tmp_path), "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    tables = [line for line in lines if re.match(r"(single|cluster) +acks=(1|all) ", line)]
    # each (setup, acks) once in the throughput, CPU and run-queue wait tables, in order
    assert [tuple(line.split()[:2]) for line in tables] == ROWS * 3, done.stdout
    for line in tables[:4]:
        assert int(line.split()[2].replace(",", "")) > 0  # records/s of run 1
    for what in RATIOS:
        ratio = next(line for line in lines if line.strip().startswith(what))
        assert float(ratio.split()[-2]) > 0, ratio
    assert "Cluster ISR after each measurement: 2 of 2 full" in done.stdout
    figures = json.loads(out_json.read_text())
    measured = figures["measurements"]
    assert [(m["setup"], m["acks"]) for m in measured] == [
        ("single", "1"), ("cluster", "1"), ("single", "all"), ("cluster", "all")]
    assert all(m["records"] == 3000 and m["cpu_s"]["client"] >= 0 for m in measured)
    assert all(m["leader"] in (1, 2, 3) for m in measured if m["setup"] == "cluster")
    assert not any(tmp_path.glob("replication-*")), "the bench left its data directory behind"
