"""A standalone ZooKeeper server for tests and `make cluster`: Debian's
`zookeeper` package run straight from its jar, no service manager.

    server = ZooKeeperServer(directory)      # a free port on 127.0.0.1
    server.wait_until_serving()              # `ruok` answered `imok`
    ... kazoo.client.KazooClient(server.connect) ...
    server.stop()

Decisions (measured in ../shared/notes/replication.md): `tickTime=500` so
sessions of 1-2 s are allowed (the minimum is two ticks); the admin server
is off (it would bind 8080 on every interface); only the four-letter words
`ruok`, `srvr`, `mntr`, `stat`; `forceSync=no` unless `durable`, since a
test's ZooKeeper need not survive a power failure. The server runs in a
session of its own and gets SIGTERM if the thread that started it dies, as
the appliance does; kill() is SIGKILL of the process, for fault tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ZOOKEEPER_JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
INSTALL_HINT = "install Debian's zookeeper package: apt-get install zookeeper (.ci/system-packages)"

_RUNNING: list[ZooKeeperServer] = []


class ZooKeeperFailed(RuntimeError):
    """ZooKeeper exited, or was not serving by its deadline."""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def four_letter_word(host: str, port: int, word: str, timeout_s: float = 1.0) -> str:
    """ZooKeeper's answer to a four-letter command ('' if it does not answer)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(word.encode())
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class ZooKeeperServer:
    """One standalone ZooKeeper on `host`, its data and log under `directory`."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int | None = None,
                 tick_ms: int = 500, durable: bool = False):
        missing = [jar for jar in ZOOKEEPER_JARS if not os.path.exists(jar)]
        if missing:
            raise ZooKeeperFailed(f"{missing[0]} not found; {INSTALL_HINT}")
        self.directory = directory
        self.host = host
        self.port = port or _free_port(host)
        self.tick_ms = tick_ms
        self.durable = durable
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "zoo.cfg"
        self.log_path = directory / "zookeeper.log"
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def connect(self) -> str:
        """HOST:PORT, as `zookeeper.connect` takes it."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Start (or restart, on the same port and data) the server."""
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        self.config_path.write_text("\n".join([
            f"tickTime={self.tick_ms}",
            f"dataDir={data}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,srvr,mntr,stat",
            f"forceSync={'yes' if self.durable else 'no'}",
            "",
        ]))
        from workers.__main__ import die_with_parent

        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["java", "-Xmx256m", "-XX:+UseSerialGC", "-cp", ":".join(ZOOKEEPER_JARS),
                 MAIN_CLASS, str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, preexec_fn=die_with_parent)
        _RUNNING.append(self)

    def wait_until_serving(self, timeout_s: float = 30) -> float:
        """Seconds until `ruok` is answered `imok`."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            if self.process is None or self.process.poll() is not None:
                raise ZooKeeperFailed(f"ZooKeeper exited:\n{self.log_tail()}")
            if four_letter_word(self.host, self.port, "ruok", 0.5) == "imok":
                return time.monotonic() - began
            time.sleep(0.05)
        raise ZooKeeperFailed(f"ZooKeeper was not serving after {timeout_s:.0f} s:\n"
                              + self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM, then SIGKILL of its session past `timeout_s`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)


def kill_leftovers() -> None:
    """Kill every ZooKeeper this process started and did not stop."""
    while _RUNNING:
        _RUNNING.pop().kill()
