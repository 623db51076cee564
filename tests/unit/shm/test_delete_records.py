"""DeleteRecords in the storage engine: the log start offset moves up to an
offset (even inside a segment), reads below it are out of range, whole
segments below it go, and the offset survives a clean or unclean restart."""

from __future__ import annotations

import pytest

from shm.errors import OffsetOutOfRangeError
from shm.partition_log import LOG_START_OFFSET_CHECKPOINT, LogConfig
from shm.reader import PartitionReader
from tests.unit.shm.conftest import make_batch, record_offsets, reopen

SMALL_SEGMENTS = LogConfig(segment_bytes=4096)


def fill(log, batches: int, records: int = 2, timestamp: int = 1_000_000) -> None:
    for i in range(batches):
        log.append(make_batch(records, value_size=300, timestamp=timestamp + i * 1_000, tag=i))
    log.flush()


def test_the_log_start_moves_inside_a_segment_and_reads_below_it_are_out_of_range(open_log):
    log = open_log()
    fill(log, 10)  # offsets 0-19, one segment
    assert log.advance_log_start_offset(7) == 7
    assert log.log_start_offset == 7
    with pytest.raises(OffsetOutOfRangeError, match=r"\[7, 20\)"):
        log.read(6)
    # Batches are whole: the one holding 7 starts at 6; the client skips record 6.
    assert record_offsets(log.read(7))[:2] == [6, 7]
    assert len(log.segments) == 1


def test_whole_segments_below_the_log_start_are_deleted_at_once(open_log):
    log = open_log(SMALL_SEGMENTS)
    fill(log, 40)
    segments = list(log.segments)
    assert len(segments) > 3
    target = segments[2].base_offset + 1
    log.advance_log_start_offset(target)
    assert log.segments[0] is segments[2]
    assert not segments[0].log_path.exists() and not segments[1].log_path.exists()
    assert log.log_start_offset == target


def test_an_offset_past_the_high_watermark_is_refused_and_changes_nothing(open_log):
    log = open_log()
    fill(log, 3)
    with pytest.raises(OffsetOutOfRangeError, match="high watermark is 6"):
        log.advance_log_start_offset(7)
    assert log.log_start_offset == 0
    assert not (log.directory / LOG_START_OFFSET_CHECKPOINT).exists()


def test_an_offset_at_or_below_the_log_start_changes_nothing(open_log):
    log = open_log()
    fill(log, 5)
    log.advance_log_start_offset(6)
    assert log.advance_log_start_offset(3) == 6
    assert log.log_start_offset == 6


def test_deleting_up_to_the_high_watermark_empties_the_log_for_readers(open_log):
    log = open_log(SMALL_SEGMENTS)
    fill(log, 30)
    end = log.log_end_offset
    assert log.advance_log_start_offset(log.high_watermark) == end
    assert log.read(end) == b""
    assert len(log.segments) == 1  # the active segment stays
    log.append(make_batch(1))
    log.flush()
    assert record_offsets(log.read(end)) == [end]


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_the_log_start_offset_survives_a_restart(open_log, how):
    log = open_log(SMALL_SEGMENTS)
    fill(log, 40)
    target = log.segments[1].base_offset + 3
    log.advance_log_start_offset(target)
    log = reopen(open_log, log, how)
    assert log.log_start_offset == target
    with pytest.raises(OffsetOutOfRangeError):
        log.read(target - 1)


def test_retention_and_the_log_start_offset_agree(open_log):
    log = open_log(LogConfig(segment_bytes=4096, retention_ms=10_000))
    fill(log, 40)
    segments = list(log.segments)
    log.advance_log_start_offset(segments[1].base_offset + 1)
    # Retention deletes by age past the logical start: the start is the first kept base.
    assert log.apply_retention(segments[2].max_timestamp + 10_001) == 2
    assert log.log_start_offset == segments[3].base_offset


def test_time_lookups_do_not_answer_below_the_log_start(open_log):
    log = open_log()
    fill(log, 5, records=4)  # batch i: offsets 4i..4i+3, timestamps 1_000_000 + 1000 i + j
    log.advance_log_start_offset(6)
    assert log.record_at_or_after(0) == (6, 1_001_002)
    assert log.record_at_or_after(1_001_003) == (7, 1_001_003)


def test_a_reader_in_another_process_sees_the_new_log_start(open_log, tmp_path):
    log = open_log(SMALL_SEGMENTS)
    fill(log, 40)
    reader = PartitionReader.open(tmp_path / "topic-0", control_path=tmp_path / "topic-0.ctl")
    try:
        assert record_offsets(reader.read(0))[0] == 0
        target = log.segments[1].base_offset + 1
        log.advance_log_start_offset(target)
        assert reader.log_start_offset == target
        with pytest.raises(OffsetOutOfRangeError):
            reader.read(target - 1)
        assert target in record_offsets(reader.read(target))  # inside the first kept segment
    finally:
        reader.close()


def test_truncating_a_follower_below_the_log_start_brings_the_start_down(open_log):
    log = open_log()
    fill(log, 5)
    log.advance_log_start_offset(8)
    log.truncate_fully_and_start_at(4)
    assert log.log_start_offset == 4
    log = reopen(open_log, log, "clean")
    assert log.log_start_offset == 4
