"""loadtest/locustfile.py run headless by Locust against a real appliance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import REPO, free_port

LOCUSTFILE = REPO / "loadtest" / "locustfile.py"


def locust(tmp_path: Path, host: str, *args: str, timeout: float = 60
           ) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run Locust headless; its exit and the final per-request stats of --json-file."""
    prefix = tmp_path / "locust"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
         "--host", host, "--json-file", str(prefix), "--only-summary", *args],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    stats_path = prefix.with_suffix(".json")
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else []
    return result, stats


def test_producers_and_a_consumer_group_without_failures(appliance, tmp_path):
    result, stats = locust(tmp_path, appliance.bootstrap, "-u", "10", "-r", "10", "-t", "10s",
                           "--topic", "smoke", "--partitions", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    by_type = {entry["method"]: entry for entry in stats}
    assert set(by_type) == {"produce", "consume", "join_group"}, stats
    assert by_type["produce"]["num_requests"] > 0
    assert by_type["consume"]["num_requests"] > 0
    assert by_type["join_group"]["num_requests"] == 5
    assert sum(entry["num_failures"] for entry in stats) == 0, stats
    # What the group read came from the producers: 100 bytes a record.
    assert by_type["produce"]["total_content_length"] == 100 * by_type["produce"]["num_requests"]
    assert by_type["consume"]["total_content_length"] > 0
    assert by_type["consume"]["total_content_length"] % 100 == 0


def test_no_appliance_is_one_error_line_and_exit_1(tmp_path):
    result, stats = locust(tmp_path, f"tcp://127.0.0.1:{free_port()}", "-u", "2", "-r", "2",
                           "-t", "20s")
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "cannot create topic locust at 127.0.0.1:" in errors[0], \
        result.stderr
    assert "Traceback" not in result.stderr
    assert stats == []
