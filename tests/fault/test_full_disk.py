"""A full disk refuses appends with KAFKA_STORAGE_ERROR and loses nothing acknowledged.

The disk is a 2 MiB tmpfs mounted in a private mount namespace (unshare -m),
so the host's mounts are untouched. Needs root, as CI and the appliance's
test machines have.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]


def test_a_full_disk_refuses_appends_and_keeps_every_acked_batch(tmp_path):
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    script = (
        f"mount -t tmpfs -o size=2m tmpfs {mountpoint} && "
        f"exec {sys.executable} -m tests.fault.full_disk_child {mountpoint}"
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert seen["acked"] > 100  # about 2 MiB of 8 KiB batches went in first
    assert seen["refusals"] == 5
