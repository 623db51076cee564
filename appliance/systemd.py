"""sd_notify without a library: datagrams to the socket systemd names.

systemd passes NOTIFY_SOCKET (a path, or "@name" for the abstract namespace)
and, with WatchdogSec=, WATCHDOG_USEC. Outside systemd both are absent and
every call here does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*assignments: str) -> bool:
    """Send "READY=1", "STATUS=...", ... in one datagram; False outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
        except OSError:
            return False
    return True


class Watchdog:
    """Pings WATCHDOG=1 at half the interval systemd asked for, while the loop runs."""

    def __init__(self, interval_s: float | None):
        self.interval_s = interval_s
        self._next = 0.0

    @classmethod
    def from_environment(cls) -> Watchdog:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
            return cls(None)
        return cls(int(usec) / 1e6 / 2)

    def maybe_ping(self) -> None:
        if self.interval_s is None:
            return
        now = time.monotonic()
        if now >= self._next:
            notify("WATCHDOG=1")
            self._next = now + self.interval_s
