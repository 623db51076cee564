"""Retention deletes whole closed segments from the head, never the active one."""

from __future__ import annotations

import pytest

from shm.errors import OffsetOutOfRangeError
from shm.partition_log import LogConfig
from tests.unit.shm.conftest import make_batch


def fill(log, batches: int, timestamp_step: int = 1_000) -> None:
    for i in range(batches):
        log.append(make_batch(2, value_size=300, timestamp=1_000_000 + i * timestamp_step, tag=i))
    log.flush()


def test_time_retention_deletes_segments_whose_newest_record_is_too_old(open_log):
    log = open_log(LogConfig(segment_bytes=4096, retention_ms=10_000))
    fill(log, 60)
    segments = list(log.segments)
    assert len(segments) > 3
    # Everything up to the second segment's newest timestamp is older than the horizon.
    now = segments[1].max_timestamp + 10_001
    assert log.apply_retention(now) == 2
    assert log.log_start_offset == segments[2].base_offset
    assert not segments[0].log_path.exists() and not segments[1].index_path.exists()
    with pytest.raises(OffsetOutOfRangeError, match=rf"\[{segments[2].base_offset}, "):
        log.read(0)
    assert log.read(log.log_start_offset)  # the new head reads


def test_time_retention_never_deletes_the_active_segment(open_log):
    log = open_log(LogConfig(segment_bytes=4096, retention_ms=0))
    fill(log, 60)
    deleted = log.apply_retention(10**15)
    assert deleted > 0
    assert len(log.segments) == 1
    assert log.log_start_offset == log.active.base_offset
    assert log.log_end_offset == 120


def test_size_retention_deletes_the_oldest_segments_that_fit_in_the_excess(open_log):
    """Kafka's rule: delete the oldest segment while the log stays at or above
    retention.bytes without it; so afterwards the excess is under one segment."""
    log = open_log(LogConfig(segment_bytes=4096, retention_bytes=10_000, retention_ms=-1))
    fill(log, 60)
    assert log.size_bytes > 10_000 + 4096
    assert log.apply_retention() > 0
    assert 10_000 <= log.size_bytes < 10_000 + log.segments[0].size


def test_unlimited_retention_deletes_nothing(open_log):
    log = open_log(LogConfig(segment_bytes=4096, retention_bytes=-1, retention_ms=-1))
    fill(log, 60)
    assert log.apply_retention(10**15) == 0
    assert log.log_start_offset == 0


def test_retention_survives_a_reopen(open_log):
    config = LogConfig(segment_bytes=4096, retention_ms=10_000)
    log = open_log(config)
    fill(log, 60)
    log.apply_retention(log.segments[1].max_timestamp + 10_001)
    start, end = log.log_start_offset, log.log_end_offset
    log.close()
    log = open_log(config)
    assert (log.log_start_offset, log.log_end_offset) == (start, end)
