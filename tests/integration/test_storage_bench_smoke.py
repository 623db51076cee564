"""The storage benchmark still runs end to end (tiny sizes; figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]


def test_the_storage_bench_quick_run_completes_and_cleans_up(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.storage_bench", "--quick", "--dir", str(tmp_path),
         "--json", str(tmp_path / "figures.json")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ceiling" in result.stdout and "PartitionReader" in result.stdout
    figures = orjson.loads((tmp_path / "figures.json").read_bytes())
    assert figures
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.json"]  # no files left
