"""PartitionReader: another process follows a log through the maps and the control block."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from shm.errors import OffsetOutOfRangeError
from shm.partition_log import LogConfig
from shm.reader import PartitionReader
from shm.records import iter_batches
from tests.unit.shm.conftest import make_batch, record_offsets, reopen


def follow(directory: str, control: str, until: int, deadline_s: float, out,
           start: int = 0) -> None:
    """Child process: read from `start` until `until`, polling the reader only."""
    reader = PartitionReader.open(directory, control_path=control)
    offset, values = start, []
    deadline = time.monotonic() + deadline_s
    while offset < until and time.monotonic() < deadline:
        data = reader.read(offset, 64 * 1024)
        for batch in iter_batches(data):
            values.extend(r.value for r in batch.records)
            offset = batch.header.next_offset
    reader.close()
    out.send((offset, values))


def test_a_reader_in_another_process_follows_the_writer_without_messages(open_log, tmp_path):
    log = open_log(LogConfig(segment_bytes=16 * 1024))
    total = 600
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=follow, args=(str(tmp_path / "topic-0"),
                                            str(tmp_path / "topic-0.ctl"), total, 60, child))
    proc.start()
    expected = []
    for i in range(total // 3):
        batch = make_batch(3, value_size=100, tag=i)
        expected.extend(r.value for r in next(iter_batches(batch)).records)
        log.append(batch)
        if i % 7 == 0:
            log.flush()
    log.flush()
    assert parent.poll(60), "the reader did not finish"
    offset, values = parent.recv()
    proc.join(10)
    assert offset == total
    assert values == expected
    assert len(log.segments) > 3  # it followed across rolls


def test_a_reader_sees_only_what_is_below_the_high_watermark(open_log, tmp_path):
    log = open_log(LogConfig(flush_policy="batch"))
    reader = PartitionReader.open(tmp_path / "topic-0", control_path=tmp_path / "topic-0.ctl")
    log.append(make_batch(2))
    assert reader.log_end_offset == 2
    assert reader.high_watermark == 0
    assert reader.read(0) == b""
    log.flush()
    assert reader.read(0) == log.read(0)
    reader.close()


def test_a_reader_follows_retention_and_truncation(open_log, tmp_path):
    log = open_log(LogConfig(segment_bytes=4096, retention_ms=10_000))
    for i in range(60):
        log.append(make_batch(2, value_size=300, timestamp=1_000_000 + 1_000 * i, tag=i))
    log.flush()
    reader = PartitionReader.open(tmp_path / "topic-0", control_path=tmp_path / "topic-0.ctl")
    assert reader.read(0, 1) == log.read(0, 1)
    log.apply_retention(log.segments[1].max_timestamp + 10_001)
    with pytest.raises(OffsetOutOfRangeError):
        reader.read(0)
    start = log.log_start_offset
    assert reader.read(start, 1) == log.read(start, 1)
    log.truncate_to(100)
    assert reader.log_end_offset == 100
    assert reader.read(98, 1) == log.read(98, 1)
    log.append(make_batch(5, tag=999))
    log.flush()
    assert reader.read(100, 1) == log.read(100, 1)  # new data where the cut was
    reader.close()


def test_a_reader_reads_every_offset_like_the_writer(open_log, tmp_path):
    log = open_log(LogConfig(segment_bytes=8192, index_interval_bytes=512))
    for i in range(80):
        log.append(make_batch(1 + i % 4, value_size=150, tag=i))
    log.flush()
    reader = PartitionReader.open(tmp_path / "topic-0", control_path=tmp_path / "topic-0.ctl")
    for offset in range(log.log_end_offset):
        assert reader.read(offset, 2000) == log.read(offset, 2000), offset
    reader.close()


def test_opening_a_reader_without_a_writer_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="is its writer running"):
        PartitionReader.open(tmp_path, control_path=Path(tmp_path / "none.ctl"))


def test_a_reader_follows_the_log_across_a_writer_restart(open_log, tmp_path):
    log = open_log()
    log.append(make_batch(2))
    log.flush()
    reader = PartitionReader.open(tmp_path / "topic-0", control_path=tmp_path / "topic-0.ctl")
    assert reader.high_watermark == 2
    log.close()
    with pytest.raises(FileNotFoundError):
        reader.position()  # no writer: the caller answers "not available, retry"
    log = open_log()
    log.append(make_batch(3))
    log.flush()
    assert reader.high_watermark == 5
    assert reader.read(2) == log.read(2)
    reader.close()


# --- across a truncation point ------------------------------------------------------


def open_reader(tmp_path: Path) -> PartitionReader:
    return PartitionReader.open(tmp_path / "topic-0", control_path=tmp_path / "topic-0.ctl")


@pytest.mark.parametrize("how", ["open", "clean", "crash"])
def test_a_reader_reads_below_a_truncation_point_into_what_was_appended_after(
        open_log, tmp_path, how):
    """The issue's reproduction through the shared maps, with a reader that had
    already read the batches the cut removed (its maps and hints are warm)."""
    log = open_log()
    for i in range(10):
        log.append(make_batch(5, tag=i))
    log.flush()
    warm = open_reader(tmp_path)
    assert record_offsets(warm.read(0, 1 << 20)) == list(range(50))
    assert record_offsets(warm.read(20, 1 << 20)) == list(range(20, 50))
    log.truncate_to(20)
    log.append(make_batch(5, tag=99))
    log.flush()
    log = reopen(open_log, log, how)
    cold = open_reader(tmp_path)
    for reader in (warm, cold):
        assert record_offsets(reader.read(15, 1 << 20)) == list(range(15, 25))
        assert record_offsets(reader.read(0, 1 << 20)) == list(range(25))
        assert record_offsets(reader.read(20, 1 << 20)) == list(range(20, 25))
        assert reader.read(20, 1 << 20) == log.read(20, 1 << 20)
        with pytest.raises(OffsetOutOfRangeError):
            reader.read(26)
        reader.close()


@pytest.mark.parametrize("how", ["open", "clean", "crash"])
def test_a_reader_follows_truncation_into_an_earlier_segment(open_log, tmp_path, how):
    config = LogConfig(segment_bytes=4096, index_interval_bytes=256)
    log = open_log(config)
    for i in range(40):
        log.append(make_batch(2, value_size=200, tag=i))
    log.flush()
    reader = open_reader(tmp_path)
    for offset in range(0, log.log_end_offset, 5):
        assert reader.read(offset, 2000) == log.read(offset, 2000)
    cut = log.segments[1].base_offset + 3  # inside a batch of the second segment
    log.truncate_to(cut)
    for i in range(12):  # rolls again
        log.append(make_batch(2, value_size=200, tag=100 + i))
    log.flush()
    log = reopen(open_log, log, how)
    assert reader.log_end_offset == log.log_end_offset == cut - 1 + 24
    for offset in range(log.log_end_offset):
        assert reader.read(offset, 2000) == log.read(offset, 2000), offset
    reader.close()


@pytest.mark.parametrize("below", [False, True])
def test_a_reader_in_another_process_reads_across_a_truncation_point(open_log, tmp_path,
                                                                    below):
    """A cut, then appends; a child process reads the log from its start
    through the maps alone and sees exactly the surviving and the new records."""
    log = open_log(LogConfig(segment_bytes=4096, retention_bytes=0))
    values = []
    for i in range(30):
        batch = make_batch(2, value_size=200, tag=i)
        values.extend(r.value for r in next(iter_batches(batch)).records)
        log.append(batch)
    log.flush()
    if below:  # retention first, then a cut below the new log start
        log.apply_retention()
        cut = log.log_start_offset - 4
        values = []
    else:
        cut = 33  # inside batch [32, 33]
        values = values[:32]
    log.truncate_to(cut)
    start = log.log_start_offset
    for i in range(10):
        batch = make_batch(3, value_size=200, tag=100 + i)
        values.extend(r.value for r in next(iter_batches(batch)).records)
        log.append(batch)
    log.flush()
    assert log.log_end_offset == start + len(values)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=follow, args=(str(tmp_path / "topic-0"),
                                            str(tmp_path / "topic-0.ctl"),
                                            log.log_end_offset, 60, child, start))
    proc.start()
    assert parent.poll(60), "the reader did not finish"
    offset, read = parent.recv()
    proc.join(10)
    assert offset == log.log_end_offset
    assert read == values
