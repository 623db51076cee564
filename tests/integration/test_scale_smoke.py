"""`python -m loadtest.scale --quick` runs end to end against real appliances."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_scale_quick_creates_produces_consumes_and_measures(tmp_path: Path) -> None:
    out_json = tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.scale", "--quick", "--partitions", "1,200",
         "--records", "4000", "--timeout", "60", "--dir", str(tmp_path),
         "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Ringlog scale in partitions (issue #4)" in out
    assert "Targets (issue #4)" in out
    figures = json.loads(out_json.read_text())
    cases = {c["partitions"]: c for c in figures["cases"]}
    assert sorted(cases) == [1, 200]
    for partitions, case in cases.items():
        assert case["consumed"] == 2 * 4000  # send_many, then send()
        assert case["produce_records_per_s"] > 0 and case["consume_records_per_s"] > 0
        names = {p["name"] for p in case["processes"]}
        assert names == {"supervisor", "worker-0", "worker-1"}, names
        assert all(p["rss"] > 0 and p["fds"] > 0 and p["maps"] > 0 for p in case["processes"])
        assert case["rss_sum"] == sum(p["rss"] for p in case["processes"])
        assert case["disk"]["control_blocks"] >= partitions
        assert case["create_s"] > 0
    assert cases[200]["disk"]["files"] > cases[1]["disk"]["files"]
    assert not any(tmp_path.glob("scale-*")), "the run left its data directory behind"
