"""PartitionLog: the writer's view of one partition (append, flush, read, roll, cut)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

import pytest

from shm.errors import (
    CorruptRecordError,
    KafkaStorageError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from shm.partition_log import LogConfig, PartitionLog
from shm.record_batch import HEADER_SIZE, parse_header, stamp, validate_record_set
from shm.records import decode_batch, iter_batches
from tests.unit.shm.conftest import make_batch, record_offsets, reopen


def stored_form(batch: bytes, base_offset: int, epoch: int = 0) -> bytes:
    """A batch as the engine stores it: base offset and leader epoch stamped."""
    return stamp(base_offset, len(batch) - 12, epoch) + batch[16:]


def test_appends_take_consecutive_offsets_by_record_count(open_log):
    log = open_log()
    assert (log.log_start_offset, log.log_end_offset) == (0, 0)
    assert log.append(make_batch(3)) == 0
    assert log.append(make_batch(1)) == 3
    assert log.append(make_batch(5)) == 4
    assert log.log_end_offset == 9


def test_read_returns_the_stored_batch_holding_the_offset(open_log):
    log = open_log()
    batches = [make_batch(4, tag=i) for i in range(3)]
    for batch in batches:
        log.append(batch)
    log.flush()
    assert log.read(0, 1) == stored_form(batches[0], 0)
    assert log.read(6, 1) == stored_form(batches[1], 4)  # 6 lies inside [4, 7]
    decoded = decode_batch(log.read(9, 1))
    assert [r.offset for r in decoded.records] == [8, 9, 10, 11]


def test_read_takes_whole_batches_up_to_max_bytes_but_always_one(open_log):
    log = open_log()
    batches = [make_batch(1, value_size=500, tag=i) for i in range(4)]
    for batch in batches:
        log.append(batch)
    log.flush()
    size = len(batches[0])
    assert len(log.read(0, 10)) == size  # the first batch comes whole, however small max_bytes
    assert len(log.read(0, 2 * size + size // 2)) == 2 * size
    assert len(log.read(0, 1 << 20)) == 4 * size


def test_several_batches_in_one_append_are_all_or_nothing(open_log):
    log = open_log()
    good = make_batch(2) + make_batch(3)
    assert log.append(good) == 0
    assert log.log_end_offset == 5
    bad = bytearray(make_batch(2) + make_batch(3))
    bad[-1] ^= 0xFF  # corrupt only the second batch
    with pytest.raises(CorruptRecordError):
        log.append(bytes(bad))
    assert log.log_end_offset == 5


def test_batch_policy_publishes_the_high_watermark_at_flush(open_log):
    log = open_log(LogConfig(flush_policy="batch"))
    log.append(make_batch(2))
    assert log.high_watermark == 0
    assert log.read(0) == b""  # consumers see only what is durable
    assert log.maybe_flush() is True
    assert log.high_watermark == 2
    assert log.maybe_flush() is False  # nothing new


@pytest.mark.parametrize("policy", ["os", "interval"])
def test_other_policies_publish_the_high_watermark_at_append(open_log, policy):
    log = open_log(LogConfig(flush_policy=policy, flush_interval_ms=60_000))
    log.append(make_batch(2))
    assert log.high_watermark == 2
    assert log.maybe_flush() is False  # os never; interval not yet due


def test_reads_outside_the_log_name_the_valid_range(open_log):
    log = open_log()
    log.append(make_batch(3))
    log.flush()
    assert log.read(3) == b""  # at the end: nothing yet, not an error
    with pytest.raises(OffsetOutOfRangeError, match=r"\[0, 3\)"):
        log.read(4)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1)


def test_segments_roll_at_segment_bytes_and_closed_ones_are_trimmed(open_log, tmp_path):
    log = open_log(LogConfig(segment_bytes=8192))
    for i in range(40):
        log.append(make_batch(2, value_size=300, tag=i))
    log.flush()
    assert len(log.segments) > 2
    names = sorted(p.name for p in (tmp_path / "topic-0").glob("*.log"))
    assert names[0] == "00000000000000000000.log"
    assert all(len(n) == len("00000000000000000000.log") for n in names)
    for segment in log.segments[:-1]:
        assert segment.log_path.stat().st_size == segment.size <= 8192
        assert segment.next_offset == log.segments[log.segments.index(segment) + 1].base_offset
    assert log.active.log_path.stat().st_size == 8192  # preallocated, sparse
    offset = 0
    while offset < log.log_end_offset:  # every offset reads back across segments
        data = log.read(offset, 1)
        header = parse_header(data)
        assert header.base_offset <= offset <= header.last_offset
        offset = header.next_offset


def test_segments_roll_when_timestamps_span_segment_ms(open_log):
    log = open_log(LogConfig(segment_ms=1_000))
    log.append(make_batch(1, timestamp=10_000))
    log.append(make_batch(1, timestamp=10_500))
    assert len(log.segments) == 1
    log.append(make_batch(1, timestamp=11_001))
    assert len(log.segments) == 2


def test_offset_for_timestamp_finds_the_first_record_at_or_after(open_log):
    log = open_log(LogConfig(segment_bytes=4096, index_interval_bytes=256))
    for i in range(50):  # batch i holds records at 10_000 + 100*i + j, j < 3
        log.append(make_batch(3, value_size=100, timestamp=10_000 + 100 * i, tag=i))
    log.flush()
    assert len(log.segments) > 3
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(10_000) == 0
    assert log.offset_for_timestamp(10_001) == 1  # inside the first batch
    assert log.offset_for_timestamp(12_502) == 3 * 25 + 2
    assert log.offset_for_timestamp(12_503) == 3 * 26  # past batch 25's last record
    assert log.offset_for_timestamp(10_000 + 100 * 49 + 2) == 149
    assert log.offset_for_timestamp(10_000 + 100 * 49 + 3) is None
    assert log.record_at_or_after(10_001) == (1, 10_001)
    assert log.record_at_or_after(12_503) == (3 * 26, 10_000 + 100 * 26)  # the record's own


def test_offset_for_timestamp_ignores_what_is_not_yet_durable(open_log):
    log = open_log()
    log.append(make_batch(1, timestamp=5_000))
    assert log.offset_for_timestamp(5_000) is None
    log.flush()
    assert log.offset_for_timestamp(5_000) == 0


def test_truncate_to_drops_the_batch_holding_the_offset_and_later(open_log):
    log = open_log(LogConfig(segment_bytes=4096))
    batches = [make_batch(3, value_size=200, tag=i) for i in range(30)]
    for batch in batches:
        log.append(batch)
    log.flush()
    segments_before = len(log.segments)
    log.truncate_to(31)  # batch [30, 32] goes
    assert log.log_end_offset == 30
    assert log.high_watermark == 30
    assert len(log.segments) < segments_before
    assert log.append(make_batch(1)) == 30
    log.flush()
    log.close()
    log = open_log(LogConfig(segment_bytes=4096))  # the cut survives a reopen
    assert log.log_end_offset == 31
    assert log.read(27, 1) == stored_form(batches[9], 27)


def test_truncate_below_the_log_start_restarts_the_log_there(open_log):
    log = open_log(LogConfig(segment_bytes=2048, retention_bytes=0))
    for i in range(20):
        log.append(make_batch(2, value_size=200, tag=i))
    log.flush()
    log.apply_retention()
    start = log.log_start_offset
    assert start > 0
    log.truncate_to(start - 1)
    assert (log.log_start_offset, log.log_end_offset) == (start - 1, start - 1)
    assert log.append(make_batch(1)) == start - 1


def test_corrupt_input_raises_and_changes_nothing(open_log, tmp_path):
    log = open_log()
    log.append(make_batch(2))
    log.flush()
    directory = tmp_path / "topic-0"

    def disk_state() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(directory.iterdir()) if p.name != ".lock"}

    before = disk_state()
    good = make_batch(3)

    def corrupted(position: int, value: bytes) -> bytes:
        bad = bytearray(good)
        bad[position : position + len(value)] = value
        return bytes(bad)

    cases = {
        "bad crc": corrupted(len(good) - 1, bytes([good[-1] ^ 1])),
        "bad magic": corrupted(16, b"\x01"),
        "length past the end": corrupted(8, (len(good)).to_bytes(4, "big")),
        "length too short": corrupted(8, (10).to_bytes(4, "big")),
        "truncated": good[:-5],
        "header only": good[:HEADER_SIZE - 1],
        "zero records": corrupted(57, (0).to_bytes(4, "big")),
        "count mismatch": corrupted(57, (4).to_bytes(4, "big")),
        "unknown codec": corrupted(22, b"\x07"),
        "empty": b"",
        "garbage": bytes(range(256)) * 4,
    }
    for name, data in cases.items():
        with pytest.raises(CorruptRecordError):
            log.append(data)
        assert log.log_end_offset == 2, name
    assert disk_state() == before


@pytest.mark.parametrize("settings, refused", [
    ({"flush_policy": "sometimes"}, "flush_policy 'sometimes' is unknown; use one of batch"),
    ({"segment_bytes": 1023}, "segment_bytes 1023 must be at least 1024"),
    ({"segment_bytes": 2**31}, "segment_bytes 2147483648 must be at most 2147483647"),
    ({"segment_ms": 0}, "segment_ms 0 must be at least 1"),
    ({"retention_ms": -2}, "retention_ms -2 must be at least -1"),
    ({"index_interval_bytes": "4096"}, "index_interval_bytes '4096' must be an integer"),
])
def test_log_config_refuses_what_its_fields_declare_out_of_bounds(settings, refused):
    """The bounds declared on the fields are the ones the settings table shows."""
    with pytest.raises(ValueError, match=re.escape(refused)):
        LogConfig(**settings)


def test_a_batch_over_the_maximum_is_refused(open_log):
    log = open_log(LogConfig(max_batch_bytes=2_000))
    with pytest.raises(RecordTooLargeError, match="2000"):
        log.append(make_batch(1, value_size=3_000))
    assert log.log_end_offset == 0
    log.append(make_batch(1, value_size=1_000))
    assert log.log_end_offset == 1


def test_a_clean_close_and_reopen_keeps_everything(open_log):
    config = LogConfig(segment_bytes=8192)
    log = open_log(config)
    batches = [make_batch(2, value_size=300, tag=i) for i in range(30)]
    for batch in batches:
        log.append(batch)
    log.flush()
    log.close()
    log = open_log(config)
    assert log.log_end_offset == 60
    assert log.high_watermark == 60
    data = b"".join(log.read(o, 1) for o in range(0, 60, 2))
    assert data == b"".join(stored_form(b, 2 * i) for i, b in enumerate(batches))
    assert log.append(make_batch(1)) == 60


def test_a_second_writer_is_refused(open_log, tmp_path):
    open_log()
    with pytest.raises(RuntimeError, match="another writer"):
        PartitionLog.open(tmp_path / "topic-0", control_path=tmp_path / "other.ctl")


def test_batches_carry_the_leader_epoch_and_the_cache_records_where_it_began(open_log):
    log = open_log()
    log.append(make_batch(2))
    log.set_leader_epoch(3)
    log.append(make_batch(2))
    log.append(make_batch(2))
    log.flush()
    epochs = [b.header.partition_leader_epoch for b in iter_batches(log.read(0, 1 << 20))]
    assert epochs == [0, 3, 3]
    assert log.epochs.entries == [(0, 0), (3, 2)]
    assert log.epochs.end_offset_for(0, log.log_end_offset) == (0, 2)
    assert log.epochs.end_offset_for(3, log.log_end_offset) == (3, 6)
    log.truncate_to(2)
    assert log.epochs.entries == [(0, 0)]
    with pytest.raises(ValueError):
        log.set_leader_epoch(2)


def test_compressed_batches_are_stored_as_they_came(open_log):
    log = open_log()
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        log.append(make_batch(20, value_size=100, compression=codec))
    log.flush()
    decoded = list(iter_batches(log.read(0, 1 << 20)))
    assert [b.header.compression for b in decoded] == [1, 2, 3, 4]
    assert [r.offset for b in decoded for r in b.records] == list(range(80))
    assert validate_record_set(log.read(0, 1 << 20))


def test_the_log_directory_holds_only_what_the_format_describes(open_log, tmp_path):
    log = open_log(LogConfig(segment_bytes=4096))
    for i in range(20):
        log.append(make_batch(2, value_size=200, tag=i))
    log.flush()
    log.close()
    names = {p.suffix or p.name for p in Path(tmp_path / "topic-0").iterdir()}
    assert names == {".log", ".index", ".timeindex", ".lock", ".clean-shutdown",
                     "leader-epoch-checkpoint"}


def test_a_closed_segment_holds_at_most_three_descriptors(open_log):
    """Its three maps keep their own descriptors; the raw ones are closed, so a
    log of many segments fits under the usual open-file limit."""
    log = open_log(LogConfig(segment_bytes=4096))
    before = len(os.listdir("/proc/self/fd"))
    for i in range(80):
        log.append(make_batch(2, value_size=300, tag=i))
    closed = len(log.segments) - 1
    assert closed > 10
    assert len(os.listdir("/proc/self/fd")) - before <= 3 * closed + 6


def test_storage_errors_name_the_fix_for_their_cause():
    full = KafkaStorageError.from_os_error("cannot write", OSError(errno.ENOSPC, "No space"))
    assert str(full) == "cannot write: No space; free disk space or lower retention"
    files = KafkaStorageError.from_os_error("cannot roll", OSError(errno.EMFILE, "Too many"))
    assert "LimitNOFILE" in str(files)
    assert full.name == "KAFKA_STORAGE_ERROR" and full.retriable


def test_timestamps_are_found_across_a_clean_reopen(open_log):
    """The segment that was active at close takes appends again after reopen;
    its time index must still answer for records on both sides of the close."""
    config = LogConfig(index_interval_bytes=256)
    log = open_log(config)
    for i in range(10):
        log.append(make_batch(3, value_size=100, timestamp=10_000 + 100 * i, tag=i))
    log.flush()
    log.close()
    log = open_log(config)
    for i in range(10, 20):
        log.append(make_batch(3, value_size=100, timestamp=10_000 + 100 * i, tag=i))
    log.flush()
    assert log.offset_for_timestamp(10_902) == 29
    assert log.offset_for_timestamp(10_903) == 30  # first record after the reopen
    assert log.offset_for_timestamp(11_500) == 45
    log.close()
    log = open_log(config)
    assert log.offset_for_timestamp(10_903) == 30
    assert log.offset_for_timestamp(11_902) == 59


# --- reads and indexes across a truncation point ---------------------------------
#
# A follower cuts its log back to where it agrees with the leader and appends
# the leader's batches from there, over and over: every read that starts
# below the cut must run on into what was appended after it.

REOPENS = ["open", "clean", "crash"]


def read_all_from(log: PartitionLog, offset: int) -> list[int]:
    """Record offsets from `offset` to the log end, read by read() after read()."""
    offsets: list[int] = []
    while offset < log.log_end_offset:
        data = log.read(offset, 1 << 20)
        assert data, f"read({offset}) is empty below the log end {log.log_end_offset}"
        offsets += [o for o in record_offsets(data) if o >= offset]
        offset = offsets[-1] + 1
    return offsets


def assert_indexes_agree_with_the_log(log: PartitionLog) -> None:
    """Each offset-index entry points at the batch it names, each time-index
    entry (but a closed segment's closing one) at a batch with that largest
    timestamp, and each batch is found by its first and last offset."""
    for segment in log.segments:
        headers = list(segment.headers_from(segment.base_offset))
        at = {pos: header for pos, header in headers}
        for rel, pos in segment.offset_index.entries():
            assert pos in at and at[pos].base_offset == segment.base_offset + rel, (rel, pos)
        entries = segment.time_index.entries()
        closing = (segment.max_timestamp, segment.next_offset - 1 - segment.base_offset)
        if segment.closed and entries and entries[-1] == closing:
            entries.pop()  # (largest timestamp, last offset): see shm.segment
        for ts, rel in entries:
            holding = [h for _, h in headers if h.base_offset <= segment.base_offset + rel
                       <= h.last_offset]
            assert holding and holding[0].max_timestamp == ts, (ts, rel)
        for pos, header in headers:
            assert segment.position_of(header.base_offset) == pos
            assert segment.position_of(header.last_offset) == pos
        if headers:
            assert segment.next_offset == headers[-1][1].next_offset
            assert segment.max_timestamp == max(h.max_timestamp for _, h in headers)


@pytest.mark.parametrize("how", REOPENS)
def test_reads_below_a_truncation_point_run_on_into_what_was_appended_after(open_log, how):
    """The issue's reproduction: ten batches of five, cut at 20, one batch appended."""
    log = open_log()
    for i in range(10):
        log.append(make_batch(5, tag=i))
    log.flush()
    log.truncate_to(20)
    log.append(make_batch(5, tag=99))
    log.flush()
    log = reopen(open_log, log, how)
    assert record_offsets(log.read(15, 1 << 20)) == list(range(15, 25))
    assert record_offsets(log.read(0, 1 << 20)) == list(range(25))
    assert record_offsets(log.read(20, 1 << 20)) == list(range(20, 25))
    assert decode_batch(log.read(20, 1)).records[0].value.startswith(b"99:")


@pytest.mark.parametrize("how", REOPENS)
@pytest.mark.parametrize("cut", [20, 22, 24])  # a batch boundary, inside a batch, its last record
def test_truncation_inside_a_batch_drops_the_whole_batch(open_log, how, cut):
    config = LogConfig(index_interval_bytes=100)  # an index entry at nearly every batch
    log = open_log(config)
    for i in range(10):
        log.append(make_batch(5, value_size=30, timestamp=1_000 * (i + 1), tag=i))
    log.flush()
    log.truncate_to(cut)
    assert (log.log_end_offset, log.high_watermark) == (20, 20)
    assert log.append(make_batch(3, value_size=30, timestamp=50_000, tag=99)) == 20
    log.append(make_batch(3, value_size=30, timestamp=60_000, tag=100))
    log.flush()
    log = reopen(open_log, log, how)
    assert read_all_from(log, 0) == list(range(26))
    for offset in range(26):
        assert read_all_from(log, offset) == list(range(offset, 26))
    assert_indexes_agree_with_the_log(log)
    # Timestamps from the cut batches (up to 10,004) are gone; the new ones are found.
    assert log.offset_for_timestamp(4_004) == 19
    assert log.offset_for_timestamp(4_005) == 20
    assert log.offset_for_timestamp(9_000) == 20
    assert log.offset_for_timestamp(50_003) == 23
    assert log.offset_for_timestamp(60_003) is None


@pytest.mark.parametrize("how", REOPENS)
def test_truncation_into_an_earlier_segment_makes_it_active_again(open_log, how):
    config = LogConfig(segment_bytes=4096, index_interval_bytes=256)
    log = open_log(config)
    for i in range(40):
        log.append(make_batch(2, value_size=200, timestamp=1_000 * (i + 1), tag=i))
    log.flush()
    assert len(log.segments) >= 4
    second = log.segments[1]
    cut = second.base_offset + 5  # inside a batch of the second segment
    log.truncate_to(cut)
    end = cut - 1  # batches of two start at even offsets
    assert [s.base_offset for s in log.segments] == [0, second.base_offset]
    assert log.log_end_offset == end
    for i in range(12):  # enough to roll again
        log.append(make_batch(2, value_size=200, timestamp=100_000 + 1_000 * i, tag=100 + i))
    log.flush()
    assert len(log.segments) > 2
    log = reopen(open_log, log, how)
    total = end + 24
    assert log.log_end_offset == total
    for offset in range(0, total, 3):
        assert read_all_from(log, offset) == list(range(offset, total))
    assert_indexes_agree_with_the_log(log)
    assert log.offset_for_timestamp(1_000 * (end // 2)) == end - 2  # last batch kept
    assert log.offset_for_timestamp(1_000 * (end // 2) + 2) == end  # first appended
    assert log.offset_for_timestamp(100_000 + 1_000 * 11) == total - 2


@pytest.mark.parametrize("how", REOPENS)
def test_truncation_below_the_log_start_then_appends_read_from_the_new_start(open_log, how):
    config = LogConfig(segment_bytes=2048, retention_bytes=0)
    log = open_log(config)
    for i in range(20):
        log.append(make_batch(2, value_size=200, tag=i))
    log.flush()
    log.apply_retention()
    start = log.log_start_offset
    log.truncate_to(start - 3)
    for i in range(4):
        log.append(make_batch(2, value_size=200, tag=100 + i))
    log.flush()
    log = reopen(open_log, log, how)
    assert (log.log_start_offset, log.log_end_offset) == (start - 3, start + 5)
    assert read_all_from(log, start - 3) == list(range(start - 3, start + 5))
    assert record_offsets(log.read(start, 1 << 20))[:1] == [start - 1]  # the batch holding it
    assert_indexes_agree_with_the_log(log)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(start - 4)


def test_repeated_truncations_and_appends_read_like_a_model_of_the_log(open_log):
    """A follower's life: cut back, append, cut back again, with reopens between."""
    config = LogConfig(segment_bytes=4096, index_interval_bytes=200)
    log = open_log(config)
    model: list[int] = []  # the tag of the batch holding each offset
    tag = 0
    for round_, cut in enumerate([37, 12, 30, 30, 3, 44, 0, 25]):
        for _ in range(8):
            tag += 1
            count = 1 + tag % 4
            assert log.append(make_batch(count, value_size=150, timestamp=tag, tag=tag)) \
                == len(model)
            model += [tag] * count
        log.flush()
        end_before = len(model)
        log.truncate_to(cut)
        model = model[: log.log_end_offset]
        if cut < end_before:  # the batch holding `cut` went, and nothing before it
            assert len(model) <= cut < len(model) + 4
        else:
            assert len(model) == end_before
        log = reopen(open_log, log, REOPENS[round_ % 3])
        assert log.log_end_offset == len(model)
        for offset in range(len(model)):
            first = decode_batch(log.read(offset, 1)).records
            assert first[0].value.startswith(f"{model[offset]}:".encode()), offset
            assert read_all_from(log, offset) == list(range(offset, len(model)))
        assert_indexes_agree_with_the_log(log)
