"""sd_notify, tested by playing systemd: a datagram socket the appliance reports to.

The test binds an AF_UNIX SOCK_DGRAM socket (a path, or "@name" in the
abstract namespace), starts `ringlog serve` with NOTIFY_SOCKET and
WATCHDOG_USEC in its environment, and reads what arrives with recvmsg and
timeouts, never sleeps: READY=1 with a STATUS= line once serving, WATCHDOG=1
at half the watchdog interval, STOPPING=1 on SIGTERM, then exit code 0.
Every datagram's sender (SO_PASSCRED) must be the supervisor, the main
process systemd watches (NotifyAccess=main).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import statistics
import struct
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Appliance, start_appliance

WATCHDOG_USEC = 400_000
WATCHDOG_S = WATCHDOG_USEC / 1e6
READY_DEADLINE_S = 30.0
_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Notification:
    at: float
    pid: int | None
    fields: dict[str, str]
    text: str


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, address: str):
        self.address = address  # as NOTIFY_SOCKET names it
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self.received: list[Notification] = []

    def receive(self, timeout_s: float) -> Notification | None:
        """The next datagram, or None when none came within timeout_s."""
        self.socket.settimeout(max(timeout_s, 0.001))
        try:
            data, ancdata, _, _ = self.socket.recvmsg(4096, socket.CMSG_SPACE(_CREDENTIALS.size))
        except TimeoutError:
            return None
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _CREDENTIALS.unpack(payload[:_CREDENTIALS.size])[0]
        text = data.decode()
        fields = dict(line.partition("=")[::2] for line in text.split("\n") if line)
        note = Notification(time.monotonic(), pid, fields, text)
        self.received.append(note)
        return note

    def wait_for(self, key: str, timeout_s: float) -> Notification:
        """Read until a datagram carries `key`; fail at the deadline."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            note = self.receive(left)
            if note is not None and key in note.fields:
                return note
        raise AssertionError(f"no {key} within {timeout_s}s; got {self.texts()}")

    def texts(self) -> list[str]:
        return [n.text for n in self.received]

    def close(self) -> None:
        self.socket.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)


def _socket_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, unless it is too long for sun_path (108 bytes)."""
    if len(str(tmp_path / "notify.sock")) < 100:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="ringlog-") as short:
        yield Path(short)


@pytest.fixture(params=["path", "abstract"])
def systemd(request, tmp_path: Path) -> Iterator[FakeSystemd]:
    if request.param == "abstract":
        fake = FakeSystemd(f"@ringlog-test-{uuid.uuid4().hex}")
        yield fake
        fake.close()
        return
    for directory in _socket_dir(tmp_path):
        fake = FakeSystemd(str(directory / "notify.sock"))
        yield fake
        fake.close()


def _start(tmp_path: Path, systemd: FakeSystemd, **extra_env: str) -> Appliance:
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": str(WATCHDOG_USEC), **extra_env}
    return start_appliance(tmp_path, env=env, wait=False)


def _stop_and_expect_stopping(appliance: Appliance, systemd: FakeSystemd) -> None:
    appliance.process.send_signal(signal.SIGTERM)
    stopping = systemd.wait_for("STOPPING", timeout_s=10)
    assert stopping.fields["STOPPING"] == "1"
    assert stopping.pid == appliance.process.pid
    assert appliance.process.wait(30) == 0, appliance.stderr()


def test_ready_with_status_then_watchdog_pings_then_stopping(tmp_path, systemd):
    appliance = _start(tmp_path, systemd)
    try:
        ready = systemd.wait_for("READY", timeout_s=READY_DEADLINE_S)
        assert ready.fields["READY"] == "1"
        assert ready.fields.get("STATUS"), f"READY=1 without a STATUS= line: {ready.text!r}"
        assert "2 workers" in ready.fields["STATUS"], ready.fields["STATUS"]
        assert ready.pid == appliance.process.pid, "READY=1 must come from the main process"

        # Pings at half the interval: each one well within 1.5x the interval of the last.
        pings = []
        deadline = time.monotonic() + 10 * WATCHDOG_S
        while len(pings) < 5 and time.monotonic() < deadline:
            note = systemd.receive(1.5 * WATCHDOG_S)
            assert note is not None, (
                f"no datagram within 1.5x the watchdog interval; pings so far at "
                f"{[round(p.at, 3) for p in pings]}")
            if "WATCHDOG" in note.fields:
                assert note.fields["WATCHDOG"] == "1"
                assert note.pid == appliance.process.pid
                pings.append(note)
        assert len(pings) >= 2, systemd.texts()
        gaps = [b.at - a.at for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 1.5 * WATCHDOG_S, gaps
        # roughly half the interval: not a flood (the supervisor spaces them >= 0.2 s)
        assert statistics.median(gaps) > 0.25 * WATCHDOG_S, gaps

        _stop_and_expect_stopping(appliance, systemd)
        assert all(n.pid == appliance.process.pid for n in systemd.received), (
            "a datagram came from another process (a worker?)")
    finally:
        if appliance.process.poll() is None:
            appliance.stop()


def test_no_watchdog_pings_when_watchdog_pid_names_another_process(tmp_path, systemd):
    """systemd sets WATCHDOG_PID to the main pid; a child that inherited the
    variables must not ping. The supervisor is not that pid here."""
    appliance = _start(tmp_path, systemd, WATCHDOG_PID=str(os.getpid()))
    try:
        systemd.wait_for("READY", timeout_s=READY_DEADLINE_S)
        quiet_until = time.monotonic() + 3 * WATCHDOG_S
        while (left := quiet_until - time.monotonic()) > 0:
            note = systemd.receive(left)
            assert note is None or "WATCHDOG" not in note.fields, note.text
        _stop_and_expect_stopping(appliance, systemd)
    finally:
        if appliance.process.poll() is None:
            appliance.stop()


def test_an_empty_notify_socket_is_outside_systemd(tmp_path):
    """NOTIFY_SOCKET="" (as after an `unset` in a wrapper) means no systemd: serve as usual."""
    env = {"NOTIFY_SOCKET": "", "WATCHDOG_USEC": ""}
    appliance = start_appliance(tmp_path, env=env)
    assert appliance.stop() == 0, appliance.stderr()


def test_under_journald_log_lines_carry_their_priority_and_no_timestamp(tmp_path: Path) -> None:
    log = tmp_path / "appliance.log"
    log.touch()  # start_appliance appends to it: the same inode journald would own
    stat = log.stat()
    appliance = start_appliance(tmp_path, env={"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})
    try:
        serving = [line for line in appliance.stderr().splitlines() if "serving on" in line]
        assert serving and serving[0].startswith("<6>ringlog.supervisor: ringlog serving on")
    finally:
        assert appliance.stop() == 0
