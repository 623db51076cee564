"""A real appliance for integration tests: `ringlog serve` on loopback, random port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.client import Admin
from shm.errors import RequestTimedOutError

REPO = Path(__file__).resolve().parents[2]
_STARTED: list[subprocess.Popen] = []  # every appliance a test started


def kill_leftovers() -> None:
    """Kill appliances a failed test left running (its whole process group)."""
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Appliance:
    process: subprocess.Popen
    bootstrap: str
    log_dir: Path
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        import psutil

        pids = []
        for child in psutil.Process(self.process.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "worker" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                continue  # exited or not yet reaped: not a live worker
        return pids

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def start_appliance(tmp_path: Path, *overrides: str, workers: int = 2,
                    env: dict[str, str] | None = None, port: int | None = None,
                    wait: bool = True, config_path: Path | None = None) -> Appliance:
    """Start `ringlog serve` in its own session (so a test can kill the whole group)."""
    port = port or free_port()
    log_dir = tmp_path / "data"
    env = {**os.environ, "RINGLOG_SHM_DIR": str(tmp_path / "shm"), **(env or {})}
    stderr_path = tmp_path / "appliance.log"
    args = [sys.executable, "-m", "appliance", "serve",
            "--override", f"listeners=tcp://127.0.0.1:{port}",
            "--override", f"log.dirs={log_dir}",
            "--override", f"num.workers={workers}",
            # Any free port, so that appliances started side by side never clash on
            # the default 7094; a test that scrapes it passes its own http.listener.
            "--override", "http.listener=127.0.0.1:0"]
    for item in overrides:
        args += ["--override", item]
    if config_path is not None:
        args += ["--config", str(config_path)]
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=open(stderr_path, "a"),  # noqa: SIM115
                               start_new_session=True)
    _STARTED.append(process)
    appliance = Appliance(process, f"127.0.0.1:{port}", log_dir, stderr_path)
    if wait:
        wait_until_serving(appliance, workers)
    return appliance


def wait_until_serving(appliance: Appliance, workers: int, timeout_s: float = 30) -> None:
    """Poll the status API until every worker has reported ready."""
    deadline = time.monotonic() + timeout_s
    with Admin(appliance.bootstrap, request_timeout_ms=500) as admin:
        while time.monotonic() < deadline:
            if appliance.process.poll() is not None:
                raise AssertionError(f"appliance exited:\n{appliance.stderr()}")
            try:
                status = admin._request("status").fields
            except RequestTimedOutError:
                continue
            if len(status["workers"]) == workers:
                return
            time.sleep(0.05)
    raise AssertionError(f"appliance not serving after {timeout_s}s:\n{appliance.stderr()}")


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    running = start_appliance(tmp_path)
    yield running
    assert running.stop() == 0, running.stderr()
