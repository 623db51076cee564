"""Log lines for journald: the priority in a "<N>" prefix, no timestamp of our own."""

from __future__ import annotations

import logging
import os
import sys

from appliance.systemd import JournalFormatter, stderr_is_journal


def record(level: int, message: str, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("ringlog.supervisor", level, __file__, 1, message, (), exc_info)


def test_each_level_gets_its_syslog_priority() -> None:
    formatter = JournalFormatter()
    assert formatter.format(record(logging.INFO, "serving")) == "<6>ringlog.supervisor: serving"
    assert formatter.format(record(logging.WARNING, "w")).startswith("<4>")
    assert formatter.format(record(logging.ERROR, "e")).startswith("<3>")
    assert formatter.format(record(logging.CRITICAL, "c")).startswith("<2>")


def test_every_line_of_a_traceback_keeps_the_priority() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        lines = JournalFormatter().format(record(logging.ERROR, "failed", sys.exc_info()))
    assert len(lines.splitlines()) > 2
    assert all(line.startswith("<3>") for line in lines.splitlines())
    assert lines.splitlines()[-1] == "<3>ValueError: broken"


def test_stderr_is_the_journal_only_when_journal_stream_names_it(monkeypatch) -> None:
    stat = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    assert stderr_is_journal()
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino + 1}")
    assert not stderr_is_journal()
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not stderr_is_journal()
