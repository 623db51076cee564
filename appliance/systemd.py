"""sd_notify without a library: datagrams to the socket systemd names; and
log lines shaped for journald.

systemd passes NOTIFY_SOCKET (a path, or "@name" for the abstract namespace)
and, with WatchdogSec=, WATCHDOG_USEC. Outside systemd both are absent and
every call here does nothing. With JOURNAL_STREAM naming stderr, log lines
carry their syslog priority as a "<N>" prefix.
"""

from __future__ import annotations

import logging
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


# syslog priorities (RFC 5424) of Python's logging levels, for journald's "<N>" prefix
_SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
                    logging.INFO: 6, logging.DEBUG: 7}


def stderr_is_journal() -> bool:
    """Whether stderr is journald's stream (systemd sets JOURNAL_STREAM to its
    device:inode), so that lines need no timestamp and carry their priority."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(2)
    except OSError:
        return False
    return expected == f"{stat.st_dev}:{stat.st_ino}"


class JournalFormatter(logging.Formatter):
    """`<priority>name: message`: journald files the line at that priority
    (so `journalctl -p warning` finds warnings) and stamps the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())
