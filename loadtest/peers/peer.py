"""What every peer is: a broker server started on loopback in a temporary
directory, the four workloads run against it with its best Python client, and
a stop that leaves no process and no data behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.peers.workload import Deadline, Measurement

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 90.0  # RabbitMQ boots an Erlang VM and a plugin: ~10-20 s here
STOP_TIMEOUT_S = 30.0


class PeerUnavailable(Exception):
    """A peer cannot be run here: a one-line reason and what would fix it."""


def free_port() -> int:
    """A port nothing listens on now, on loopback (the server binds it just after)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


class ServerProcess:
    """A server in its own session (so one signal reaches its children), its
    output in `log_path`; stopped with SIGTERM, then SIGKILL of the session."""

    def __init__(self, name: str, args: list[str], log_path: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until(self, ready: Callable[[], bool], what: str,
                   timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll `ready` until it is true; fail early if the server exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PeerUnavailable(f"{self.name} exited with {self.process.returncode} "
                                      f"before {what}; its log ends:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if ready():
                    return
            time.sleep(0.1)
        raise PeerUnavailable(f"{self.name}: no {what} after {timeout_s:.0f} s; its log "
                              f"ends:\n{self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM (a clean shutdown flushes), SIGKILL of the whole session if it hangs."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = -9
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children left in the session
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        return code


class Peer:
    """One broker in the comparison. Subclasses set the class attributes and
    implement start/stop and the three workload kinds."""

    name = ""  # as given to --peers
    ack = ""  # what the peer's acknowledgement of a produced record means
    debian_packages: tuple[str, ...] = ()
    python_modules: tuple[str, ...] = ()  # imported by the client; from the `peers` extra
    # W1 runs once per producer call, a row each: one call ("") for a peer whose
    # client has one way to produce; Ringlog reports send() and send_many().
    # W2 reads back what the last one wrote.
    producer_calls: tuple[str, ...] = ("",)

    def __init__(self) -> None:
        self.version = "?"
        self.client = ""

    def start(self, workdir: Path) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def produce(self, workload: str, stream: str, records: int, value_bytes: int,
                deadline: Deadline, call: str = "") -> Measurement:
        """W1/W4: `records` values to one stream, timed until the last is acknowledged;
        `call` is one of producer_calls for W1, "" for W4."""
        raise NotImplementedError

    def consume(self, stream: str, records: int, value_bytes: int,
                deadline: Deadline) -> Measurement:
        """W2: read back what produce() wrote, from the first record."""
        raise NotImplementedError

    def latency(self, stream: str, rate: int, seconds: float, value_bytes: int,
                deadline: Deadline) -> Measurement:
        """W3: send `rate` stamped records per second; another process receives them."""
        raise NotImplementedError
