"""PartitionLog.flush_due() says what maybe_flush() would do: the worker picks the
due logs with it and flushes them together from its pool."""

from __future__ import annotations

from pathlib import Path

from shm.partition_log import LogConfig, PartitionLog
from tests.unit.shm.conftest import make_batch


def test_flush_due_follows_each_policy(tmp_path: Path) -> None:
    logs = {policy: PartitionLog.open(tmp_path / policy, LogConfig(flush_policy=policy,
                                                                     flush_interval_ms=1000),
                                      control_path=tmp_path / f"{policy}.ctl")
            for policy in ("batch", "interval", "os")}
    try:
        assert not any(log.flush_due() for log in logs.values())  # nothing appended
        for log in logs.values():
            log.append(make_batch(2))
        now = logs["interval"]._last_flush_ms
        assert logs["batch"].flush_due(now)
        assert not logs["interval"].flush_due(now + 999)
        assert logs["interval"].flush_due(now + 1000)
        assert not logs["os"].flush_due(now + 10_000)
        assert logs["batch"].maybe_flush(now) and not logs["batch"].flush_due(now)
        assert logs["batch"].high_watermark == 2
    finally:
        for log in logs.values():
            log.close()
