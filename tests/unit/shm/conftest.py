"""Fixtures for storage-engine tests: real logs in temporary directories."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shm.partition_log import LogConfig, PartitionLog
from shm.records import Record, encode_batch, iter_batches

_counter = itertools.count()


def make_batch(count: int = 1, value_size: int = 10, timestamp: int = 1_000,
               compression: str = "none", tag: int | None = None) -> bytes:
    """A producer's batch: `count` records, distinct values, one timestamp per batch."""
    tag = next(_counter) if tag is None else tag
    records = [
        Record(value=(f"{tag}:{i}:".encode() + b"v" * value_size)[:max(value_size, 1)],
               key=f"k{i}".encode(), timestamp=timestamp + i)
        for i in range(count)
    ]
    return encode_batch(records, compression=compression)


@pytest.fixture
def open_log(tmp_path: Path) -> Iterator[Callable[..., PartitionLog]]:
    """Open (or reopen) a log under tmp_path, with its control block there too."""
    opened: list[PartitionLog] = []

    def _open(config: LogConfig | None = None, name: str = "topic-0") -> PartitionLog:
        log = PartitionLog.open(tmp_path / name, config or LogConfig(),
                                control_path=tmp_path / f"{name}.ctl")
        opened.append(log)
        return log

    yield _open
    for log in opened:
        if log.segments:
            log.close()


def abandon(log: PartitionLog) -> None:
    """Let go of a log as a killed writer would: no trim, no checkpoint, no marker."""
    for segment in log.segments:
        segment.close()
    log.segments.clear()
    log._control.close(unlink=False)
    os.close(log._lock_fd)


def reopen(open_log: Callable[..., PartitionLog], log: PartitionLog, how: str,
           config: LogConfig | None = None) -> PartitionLog:
    """The same log again: `open` keeps it, `clean` closes it first, `crash` abandons it."""
    if how == "open":
        return log
    if how == "clean":
        log.close()
    else:
        abandon(log)
    return open_log(config or log.config)


def record_offsets(data: bytes) -> list[int]:
    """Offsets of every record in a read's batches, in order."""
    return [r.offset for batch in iter_batches(data) for r in batch.records]
