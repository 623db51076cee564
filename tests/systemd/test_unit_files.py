"""The shipped unit files, checked offline by systemd's own tools.

`systemd-analyze verify` only warns (exit 0) about unknown keys, bad time
values or bad escapes, so a unit passes only when it prints nothing at all.
It also insists that the ExecStart= binary exists: the units are checked in
a scratch root (`--root`) holding the standard targets and the paths the
units name, laid out as docs/operations.md installs them.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
# What the units execute, as docs/operations.md installs it.
EXECUTABLES = ("/opt/ringlog/venv/bin/ringlog", "/bin/kill")
# Debian's hardened redis-server.service scores 1.2 on this machine.
MAX_EXPOSURE = 1.2
TIMEOUT_S = 30


def scratch_root(root: Path, *extra_units: Path) -> Path:
    """A root for `systemd-analyze --root` with the targets, the executables
    the units name, and the units themselves in /etc/systemd/system."""
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").symlink_to("usr/bin")
    for executable in EXECUTABLES:
        path = root / executable.lstrip("/")
        if path.parent == root / "bin":
            path = root / "usr/bin" / path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in (*sorted(UNITS.glob("*.service")), *extra_units):
        shutil.copy(unit, target / unit.name)
    return root


def verify(root: Path, unit: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", unit],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def exposure(unit: Path) -> float:
    """The "Overall exposure level" systemd-analyze security gives the unit file."""
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, f"no exposure level in:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))


def test_the_units_exist() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == ["ringlog.service",
                                                               "ringlog@.service"]


@pytest.mark.parametrize("unit", ["ringlog.service", "ringlog@.service", "ringlog@b1.service"])
def test_verify_prints_nothing(tmp_path: Path, unit: str) -> None:
    result = verify(scratch_root(tmp_path), unit)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_reports_what_it_only_warns_about(tmp_path: Path) -> None:
    """The check above can fail: an unknown key exits 0 but is printed."""
    broken = tmp_path / "broken.service"
    text = (UNITS / "ringlog.service").read_text()
    broken.write_text(text.replace("[Service]\n", "[Service]\nWatchdogSecs=30s\n", 1))
    result = verify(scratch_root(tmp_path / "root", broken), "broken.service")
    assert result.returncode == 0
    assert "Unknown key 'WatchdogSecs'" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", ["ringlog.service", "ringlog@.service"])
def test_exposure_is_as_low_as_a_hardened_debian_service(unit: str) -> None:
    assert exposure(UNITS / unit) <= MAX_EXPOSURE


def test_a_bare_unit_scores_far_worse(tmp_path: Path) -> None:
    """The score parsed above moves with the sandbox: without it, 9-ish."""
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nType=notify\nExecStart=/opt/ringlog/venv/bin/ringlog serve\n")
    assert exposure(bare) > 5


def test_sysusers_creates_a_system_account_without_a_login(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(UNITS / "ringlog.sysusers")],
                   capture_output=True, text=True, timeout=TIMEOUT_S, check=True)
    entry = next(line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()
                 if line.startswith("ringlog:"))
    assert int(entry[2]) < 1000  # a system account
    assert entry[5:] == ["/var/lib/ringlog", "/usr/sbin/nologin"]
    assert "ringlog:" in (tmp_path / "etc/group").read_text()
