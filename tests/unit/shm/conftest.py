"""Fixtures for storage-engine tests: real logs in temporary directories."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shm.partition_log import LogConfig, PartitionLog
from shm.records import Record, encode_batch

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
