"""The broker's batch validator and offset stamping (shm.record_batch).

Batches are built with shm.records; each test then breaks one thing and
expects validate_batch to name it without decoding a record.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shm.errors import CorruptRecordError, RecordTooLargeError
from shm.record_batch import (
    COMPRESSION_NAMES,
    CRC_OFFSET,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MIN_RECORD_SIZE,
    STAMP_SIZE,
    BatchHeader,
    compute_crc,
    parse_header,
    set_base_offset,
    stamp,
    validate_batch,
    validate_record_set,
)
from shm.records import Record, decode_batch, encode_batch

RECORDS = [Record(b"value-%d" % i, key=b"k", timestamp=1_000 + i) for i in range(5)]


def good_batch(compression: str = "none", base_offset: int = 0) -> bytes:
    return encode_batch(RECORDS, compression=compression, base_offset=base_offset)


def reseal(buf: bytes | bytearray) -> bytes:
    """Recompute the CRC so that only the intended defect remains."""
    out = bytearray(buf)
    struct.pack_into(">I", out, CRC_OFFSET, compute_crc(out))
    return bytes(out)


def with_header(batch: bytes, *, crc: bool = True, **changes: int) -> bytes:
    """The batch with header fields replaced by name; CRC recomputed unless crc=False."""
    header = parse_header(batch)._replace(**changes)
    out = HEADER.pack(*header) + batch[HEADER_SIZE:]
    return reseal(out) if crc else out


# --- a good batch ----------------------------------------------------------------


@pytest.mark.parametrize("compression", list(COMPRESSION_NAMES.values()))
def test_a_good_batch_passes_and_its_header_is_returned(compression: str) -> None:
    batch = good_batch(compression, base_offset=40)
    header = validate_batch(batch)
    assert isinstance(header, BatchHeader)
    assert header == parse_header(batch)
    assert header.size == len(batch)
    assert (header.base_offset, header.last_offset, header.next_offset) == (40, 44, 45)
    assert header.record_count == 5
    assert COMPRESSION_NAMES[header.compression] == compression
    assert header.crc == compute_crc(batch)


def test_a_batch_validates_at_its_position_in_a_larger_buffer() -> None:
    batch = good_batch()
    assert validate_batch(b"\x00" * 9 + batch + b"\x00" * 9, 9) == parse_header(batch)


# --- the CRC -----------------------------------------------------------------------


@given(data=st.data())
def test_flipping_any_byte_the_crc_covers_is_caught(data: st.DataObject) -> None:
    batch = bytearray(good_batch("lz4"))
    at = data.draw(st.integers(CRC_OFFSET + 4, len(batch) - 1), label="at")
    batch[at] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(CorruptRecordError):  # a header field check may fire first
        validate_batch(batch)


def test_a_flipped_body_byte_is_a_crc_mismatch() -> None:
    batch = bytearray(good_batch())
    batch[-3] ^= 0x40
    with pytest.raises(CorruptRecordError, match="CRC-32C mismatch"):
        validate_batch(batch)


def test_a_wrong_stored_crc_is_a_crc_mismatch() -> None:
    batch = bytearray(good_batch())
    batch[CRC_OFFSET] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC"):
        validate_batch(batch)


def test_the_crc_is_crc32c_not_crc32() -> None:
    # CRC-32C of "123456789" is 0xE3069283 (CRC-32 would be 0xCBF43926).
    buf = b"\x00" * 21 + b"123456789"
    assert compute_crc(buf) == 0xE3069283


# --- header fields -------------------------------------------------------------------


@pytest.mark.parametrize("magic", [0, 1, 3, -1])
def test_a_magic_other_than_2_is_refused(magic: int) -> None:
    # The magic byte sits before the CRC and is not covered by it.
    with pytest.raises(CorruptRecordError, match=f"magic {magic}"):
        validate_batch(with_header(good_batch(), magic=magic, crc=False))


@pytest.mark.parametrize("length", [-1, 0, HEADER_SIZE - LOG_OVERHEAD - 1])
def test_a_batch_length_below_the_header_is_refused(length: int) -> None:
    batch = with_header(good_batch(), batch_length=length, crc=False)
    with pytest.raises(CorruptRecordError, match="below the minimum"):
        validate_batch(batch)


def test_a_batch_length_past_the_buffer_is_truncation() -> None:
    batch = good_batch()
    longer = with_header(batch, batch_length=parse_header(batch).batch_length + 1, crc=False)
    with pytest.raises(CorruptRecordError, match="truncated"):
        validate_batch(longer)


@pytest.mark.parametrize("keep", [0, 1, LOG_OVERHEAD, HEADER_SIZE - 1, HEADER_SIZE, -1])
def test_a_truncated_buffer_is_refused(keep: int) -> None:
    batch = good_batch()
    with pytest.raises(CorruptRecordError, match="truncated"):
        validate_batch(batch[: len(batch) - 1 if keep == -1 else keep])


def test_a_shorter_batch_length_leaves_the_crc_wrong() -> None:
    batch = good_batch()
    shorter = with_header(batch, batch_length=parse_header(batch).batch_length - 1, crc=False)
    with pytest.raises(CorruptRecordError, match="CRC"):
        validate_batch(shorter)


@pytest.mark.parametrize(("count", "last_delta"), [(0, -1), (-1, -2)])
def test_a_batch_without_records_is_refused(count: int, last_delta: int) -> None:
    batch = with_header(good_batch(), record_count=count, last_offset_delta=last_delta)
    with pytest.raises(CorruptRecordError, match=f"record count {count}"):
        validate_batch(batch)


@pytest.mark.parametrize("last_delta", [0, 3, 5, 100])
def test_a_last_offset_delta_not_matching_the_count_is_refused(last_delta: int) -> None:
    batch = with_header(good_batch(), last_offset_delta=last_delta)
    with pytest.raises(CorruptRecordError, match="does not match its record count 5"):
        validate_batch(batch)


def test_more_records_than_the_bytes_can_hold_is_refused() -> None:
    batch = good_batch()
    body = len(batch) - HEADER_SIZE
    count = body // MIN_RECORD_SIZE + 1
    batch = with_header(batch, record_count=count, last_offset_delta=count - 1)
    with pytest.raises(CorruptRecordError, match=f"claims {count} records"):
        validate_batch(batch)


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_an_unknown_codec_is_refused(codec: int) -> None:
    batch = with_header(good_batch(), attributes=codec)
    with pytest.raises(CorruptRecordError, match=f"codec {codec} is unknown"):
        validate_batch(batch)


def test_other_attribute_bits_do_not_disturb_the_codec() -> None:
    batch = with_header(good_batch("zstd"), attributes=0x7C)  # every flag, zstd
    assert validate_batch(batch).compression == 4


# --- size limit ------------------------------------------------------------------------


def test_a_batch_larger_than_the_maximum_is_too_large() -> None:
    batch = good_batch()
    assert validate_batch(batch, max_batch_bytes=len(batch)).size == len(batch)
    with pytest.raises(RecordTooLargeError, match=f"{len(batch)} bytes exceeds the maximum"):
        validate_batch(batch, max_batch_bytes=len(batch) - 1)


def test_a_truncated_batch_is_corrupt_even_when_its_length_is_over_the_maximum() -> None:
    # Only a batch that is wholly present can be too large: a length running
    # past the data (a torn write, a cut request) is corruption.
    header = with_header(good_batch(), batch_length=10**9, crc=False)[:HEADER_SIZE]
    with pytest.raises(CorruptRecordError, match="truncated"):
        validate_batch(header, max_batch_bytes=1 << 20)


def test_errors_carry_kafkas_error_codes() -> None:
    assert (CorruptRecordError.code, CorruptRecordError.name) == (2, "CORRUPT_MESSAGE")
    assert (RecordTooLargeError.code, RecordTooLargeError.name) == (10, "MESSAGE_TOO_LARGE")


# --- record sets ----------------------------------------------------------------------------


def test_a_record_set_of_several_batches_validates_in_order() -> None:
    batches = [good_batch(c, base_offset=i * 5) for i, c in enumerate(COMPRESSION_NAMES.values())]
    headers = validate_record_set(b"".join(batches))
    assert [h.base_offset for h in headers] == [0, 5, 10, 15, 20]
    assert [h.compression for h in headers] == [0, 1, 2, 3, 4]
    assert [h.size for h in headers] == [len(b) for b in batches]


def test_an_empty_record_set_is_refused() -> None:
    with pytest.raises(CorruptRecordError, match="empty record set"):
        validate_record_set(b"")


def test_one_bad_batch_fails_the_whole_set() -> None:
    bad = bytearray(good_batch())
    bad[-1] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC"):
        validate_record_set(good_batch() + bytes(bad) + good_batch())


def test_a_set_with_a_trailing_partial_batch_is_refused() -> None:
    # Unlike a fetch result, a produce request must hold whole batches only.
    with pytest.raises(CorruptRecordError, match="truncated"):
        validate_record_set(good_batch() + good_batch()[:30])


def test_every_batch_of_a_set_is_held_to_the_size_limit() -> None:
    small = encode_batch([Record(b"x")])
    large = good_batch()
    with pytest.raises(RecordTooLargeError):
        validate_record_set(small + large, max_batch_bytes=len(small))


# --- stamping offsets ------------------------------------------------------------------------


@pytest.mark.parametrize("compression", list(COMPRESSION_NAMES.values()))
def test_set_base_offset_keeps_the_crc_valid(compression: str) -> None:
    batch = bytearray(good_batch(compression))
    set_base_offset(batch, 1_000_000)
    header = validate_batch(batch)
    assert header.base_offset == 1_000_000
    decoded = decode_batch(batch)
    assert [r.offset for r in decoded.records] == list(range(1_000_000, 1_000_005))
    assert [r.value for r in decoded.records] == [r.value for r in RECORDS]


def test_set_base_offset_at_a_position_in_a_log_buffer() -> None:
    first, second = good_batch(), good_batch("gzip")
    log = bytearray(first + second)
    set_base_offset(log, 5, len(first))
    assert [h.base_offset for h in validate_record_set(log)] == [0, 5]


@given(base_offset=st.integers(0, 2**63 - 5), epoch=st.integers(-1, 2**31 - 1))
@settings(max_examples=50)
def test_stamp_rewrites_offset_and_epoch_and_keeps_the_crc_valid(
    base_offset: int, epoch: int
) -> None:
    batch = good_batch("snappy")
    header = parse_header(batch)
    stamped = stamp(base_offset, header.batch_length, epoch) + batch[STAMP_SIZE:]
    new = validate_batch(stamped)
    assert new.base_offset == base_offset
    assert new.partition_leader_epoch == epoch
    assert new.crc == header.crc
    decoded = decode_batch(stamped)
    assert [r.offset for r in decoded.records] == [base_offset + i for i in range(5)]


def test_stamp_is_the_16_byte_prefix_the_crc_does_not_cover() -> None:
    assert STAMP_SIZE == 16 < CRC_OFFSET
    assert stamp(1, 2, 3) == struct.pack(">qii", 1, 2, 3)
