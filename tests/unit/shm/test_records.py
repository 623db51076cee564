"""Records in a v2 batch: varints, building, reading back, and refusing bad data."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shm.errors import CorruptRecordError
from shm.record_batch import (
    ATTR_CONTROL,
    ATTR_TIMESTAMP_TYPE,
    ATTR_TRANSACTIONAL,
    COMPRESSION_NAMES,
    CRC_OFFSET,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    TIMESTAMP_LOG_APPEND_TIME,
    compute_crc,
    parse_header,
    validate_batch,
)
from shm.records import (
    DecodedBatch,
    Record,
    decode_batch,
    decode_unsigned_varint,
    decode_varint,
    decode_varlong,
    encode_batch,
    encode_unsigned_varint,
    encode_varint,
    encode_varlong,
    iter_batches,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CODEC_NAMES = list(COMPRESSION_NAMES.values())

# --- strategies --------------------------------------------------------------

nullable_bytes = st.none() | st.binary(max_size=300)
headers = st.lists(st.tuples(st.text(max_size=20), nullable_bytes), max_size=4).map(tuple)
# Timestamps within +-(2**62 - 1), so that any two are less than 2**63 apart
# as a varlong delta needs.
timestamps = st.integers(-(2**62) + 1, 2**62 - 1)
records = st.builds(
    Record, value=nullable_bytes, key=nullable_bytes, timestamp=timestamps, headers=headers
)
record_lists = st.lists(records, min_size=1, max_size=50)


def reseal(batch: bytes | bytearray) -> bytes:
    """Recompute batchLength and the CRC after a test has edited the batch."""
    buf = bytearray(batch)
    struct.pack_into(">i", buf, 8, len(buf) - LOG_OVERHEAD)
    struct.pack_into(">I", buf, CRC_OFFSET, compute_crc(buf))
    return bytes(buf)


def with_records_section(batch: bytes, section: bytes, *, count: int | None = None) -> bytes:
    """The batch with its records section replaced (uncompressed) and resealed."""
    fields = list(HEADER.unpack_from(batch))
    if count is not None:
        fields[6], fields[12] = count - 1, count
    return reseal(HEADER.pack(*fields) + section)


def with_header(batch: bytes, **changes: int) -> bytes:
    """The batch with header fields replaced by name, resealed."""
    header = parse_header(batch)._replace(**changes)
    return reseal(HEADER.pack(*header) + batch[HEADER_SIZE:])


def expected(records: list[Record], base_offset: int = 0) -> list[Record]:
    """What decoding gives back: the same records, numbered from base_offset."""
    return [
        Record(r.value, r.key, r.timestamp, r.headers, base_offset + i)
        for i, r in enumerate(records)
    ]


# --- varints -----------------------------------------------------------------

VARINT_VECTORS = [
    (0, b"\x00"),
    (-1, b"\x01"),
    (1, b"\x02"),
    (63, b"\x7e"),
    (-64, b"\x7f"),
    (64, b"\x80\x01"),
    (-65, b"\x81\x01"),
    (300, b"\xd8\x04"),
    (INT32_MAX, b"\xfe\xff\xff\xff\x0f"),
    (INT32_MIN, b"\xff\xff\xff\xff\x0f"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINT_VECTORS)
def test_varint_is_kafkas_zigzag_encoding(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(encoded) == (value, len(encoded))
    assert encode_varlong(value) == encoded  # the same bytes for an int32 value


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (INT64_MAX, b"\xfe" + b"\xff" * 8 + b"\x01"),
        (INT64_MIN, b"\xff" * 9 + b"\x01"),
        (2**31, b"\x80\x80\x80\x80\x10"),
    ],
)
def test_varlong_edges_take_up_to_ten_bytes(value: int, encoded: bytes) -> None:
    assert encode_varlong(value) == encoded
    assert decode_varlong(encoded) == (value, len(encoded))


@given(st.integers(INT32_MIN, INT32_MAX))
def test_varint_round_trips_every_int32(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) <= 5
    assert decode_varint(b"\xaa" + encoded + b"\xbb", 1) == (value, 1 + len(encoded))


@given(st.integers(INT64_MIN, INT64_MAX))
def test_varlong_round_trips_every_int64(value: int) -> None:
    encoded = encode_varlong(value)
    assert len(encoded) <= 10
    assert decode_varlong(encoded + b"\x00") == (value, len(encoded))


@pytest.mark.parametrize(
    ("value", "encoded"), [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"),
                           (2**32 - 1, b"\xff\xff\xff\xff\x0f")]
)
def test_unsigned_varint_is_plain_leb128(value: int, encoded: bytes) -> None:
    assert encode_unsigned_varint(value) == encoded
    assert decode_unsigned_varint(encoded) == (value, len(encoded))


@pytest.mark.parametrize(
    ("encode", "value"),
    [
        (encode_varint, INT32_MAX + 1),
        (encode_varint, INT32_MIN - 1),
        (encode_varlong, INT64_MAX + 1),
        (encode_varlong, INT64_MIN - 1),
        (encode_unsigned_varint, -1),
        (encode_unsigned_varint, 2**32),
    ],
)
def test_encoding_out_of_range_is_a_value_error(
    encode: Callable[[int], bytes], value: int
) -> None:
    with pytest.raises(ValueError, match="range"):
        encode(value)


@pytest.mark.parametrize(
    ("decode", "data", "message"),
    [
        (decode_varint, b"", "past the end"),
        (decode_varint, b"\x80\x80", "past the end"),
        (decode_varint, b"\x80\x80\x80\x80\x80\x01", "longer than 5 bytes"),
        (decode_varint, b"\xff\xff\xff\xff\x1f", "overflows 32 bits"),
        (decode_unsigned_varint, b"\x80", "past the end"),
        (decode_varlong, b"\xff" * 9, "past the end"),
        (decode_varlong, b"\x80" * 10 + b"\x01", "longer than 10 bytes"),
        (decode_varlong, b"\xff" * 9 + b"\x7f", "overflows 64 bits"),
    ],
)
def test_decoding_a_broken_varint_is_a_corrupt_record_error(
    decode: Callable[[bytes], tuple[int, int]], data: bytes, message: str
) -> None:
    with pytest.raises(CorruptRecordError, match=message):
        decode(data)


# --- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("compression", CODEC_NAMES)
@given(batch=record_lists, base_offset=st.integers(0, 2**62))
@settings(deadline=None)
def test_any_records_round_trip_with_every_codec(
    compression: str, batch: list[Record], base_offset: int
) -> None:
    encoded = encode_batch(batch, base_offset=base_offset, compression=compression)
    decoded = decode_batch(encoded)
    assert decoded.records == expected(batch, base_offset)
    header = decoded.header
    assert COMPRESSION_NAMES[header.compression] == compression
    assert header.size == len(encoded)
    assert header.base_offset == base_offset
    assert header.record_count == len(batch)
    assert header.last_offset_delta == len(batch) - 1
    assert header.base_timestamp == batch[0].timestamp
    assert header.max_timestamp == max(r.timestamp for r in batch if r.timestamp is not None)


@given(batch=record_lists)
def test_a_decoded_batch_decodes_at_any_position_in_a_buffer(batch: list[Record]) -> None:
    encoded = encode_batch(batch, base_offset=7)
    padded = b"\xee" * 13 + encoded + b"\xee" * 5
    assert decode_batch(padded, 13).records == expected(batch, 7)
    assert decode_batch(memoryview(padded), 13).records == expected(batch, 7)


def test_codec_may_be_given_by_number() -> None:
    batch = [Record(b"v" * 200)]
    assert encode_batch(batch, compression=4, now_ms=1) == encode_batch(
        batch, compression="zstd", now_ms=1
    )


def test_the_batch_is_compressed_even_when_that_does_not_pay_as_java_does() -> None:
    encoded = encode_batch([Record(b"x")], compression="gzip", now_ms=1)
    assert parse_header(encoded).compression == 1
    assert decode_batch(encoded).records == [Record(b"x", timestamp=1, offset=0)]


def test_record_bytes_are_kafkas_default_record_layout() -> None:
    encoded = encode_batch(
        [Record(b"vv", key=b"k", timestamp=1005, headers=(("h", b"x"), ("n", None))),
         Record(None, timestamp=1000)],
        now_ms=0,
    )
    assert encoded[HEADER_SIZE:] == bytes(
        [
            # record 0: length 16, attributes, tsDelta 0, offsetDelta 0
            32, 0, 0, 0,
            2, ord("k"),  # key length 1, key
            4, ord("v"), ord("v"),  # value length 2, value
            4,  # two headers
            2, ord("h"), 2, ord("x"),  # "h" = b"x"
            2, ord("n"), 1,  # "n" = null
            # record 1: length 6, attributes, tsDelta -5, offsetDelta 1, null key and value
            12, 0, 9, 2, 1, 1, 0,
        ]
    )


def test_the_producer_fields_land_in_the_header() -> None:
    encoded = encode_batch(
        [Record(b"a", timestamp=5), Record(b"b", timestamp=9)],
        base_offset=100,
        producer_id=4242,
        producer_epoch=3,
        base_sequence=17,
        partition_leader_epoch=8,
        is_transactional=True,
        compression="snappy",
    )
    header = validate_batch(encoded)
    assert header.base_offset == 100
    assert header.partition_leader_epoch == 8
    assert header.producer_id == 4242
    assert header.producer_epoch == 3
    assert header.base_sequence == 17
    assert header.attributes == 2 | ATTR_TRANSACTIONAL
    assert header.is_transactional and not header.is_control
    assert header.last_offset == 101


def test_the_defaults_are_a_plain_producers() -> None:
    header = validate_batch(encode_batch([Record(b"a")]))
    assert header.attributes == 0
    assert header.partition_leader_epoch == -1
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (-1, -1, -1)


def test_a_control_batch_sets_its_attribute() -> None:
    commit = Record(b"\x00\x00\x00\x00\x00\x00", key=b"\x00\x00\x00\x01", timestamp=3)
    encoded = encode_batch([commit], is_control=True, is_transactional=True, producer_id=1,
                           producer_epoch=0)
    decoded = decode_batch(encoded)
    assert decoded.header.attributes == ATTR_CONTROL | ATTR_TRANSACTIONAL
    assert decoded.records == [Record(commit.value, commit.key, 3, (), 0)]


def test_the_offset_of_a_record_is_ignored_on_encode() -> None:
    encoded = encode_batch([Record(b"a", timestamp=1, offset=99)], base_offset=5)
    assert decode_batch(encoded).records[0].offset == 5


# --- timestamps ----------------------------------------------------------------


def test_records_without_a_timestamp_take_now() -> None:
    batch = [Record(b"a"), Record(b"b", timestamp=2_000), Record(b"c")]
    decoded = decode_batch(encode_batch(batch, now_ms=1_000))
    assert [r.timestamp for r in decoded.records] == [1_000, 2_000, 1_000]
    assert decoded.header.base_timestamp == 1_000
    assert decoded.header.max_timestamp == 2_000


def test_now_defaults_to_the_clock() -> None:
    import time

    before = int(time.time() * 1000)
    (record,) = decode_batch(encode_batch([Record(b"a")])).records
    assert record.timestamp is not None
    assert before <= record.timestamp <= int(time.time() * 1000)


def test_base_timestamp_is_the_first_records_not_the_smallest() -> None:
    # Java's MemoryRecordsBuilder does the same; deltas may then be negative.
    batch = [Record(b"a", timestamp=500), Record(b"b", timestamp=100), Record(b"c", timestamp=900)]
    decoded = decode_batch(encode_batch(batch))
    assert decoded.header.base_timestamp == 500
    assert decoded.header.max_timestamp == 900
    assert [r.timestamp for r in decoded.records] == [500, 100, 900]


def test_log_append_time_gives_every_record_the_max_timestamp() -> None:
    batch = [Record(b"a", timestamp=10), Record(b"b", timestamp=30), Record(b"c", timestamp=20)]
    encoded = encode_batch(batch, timestamp_type=TIMESTAMP_LOG_APPEND_TIME)
    decoded = decode_batch(encoded)
    assert decoded.header.attributes & ATTR_TIMESTAMP_TYPE
    assert decoded.header.timestamp_type == TIMESTAMP_LOG_APPEND_TIME
    assert [r.timestamp for r in decoded.records] == [30, 30, 30]


def test_log_append_time_stamped_by_a_broker_overrides_the_create_times() -> None:
    # A broker with message.timestamp.type=LogAppendTime sets the attribute bit
    # and maxTimestamp, and recomputes the CRC; record deltas stay as sent.
    batch = [Record(b"a", timestamp=10), Record(b"b", timestamp=30)]
    created = encode_batch(batch, compression="lz4")
    appended = with_header(
        created, attributes=parse_header(created).attributes | ATTR_TIMESTAMP_TYPE,
        max_timestamp=77_777,
    )
    assert [r.timestamp for r in decode_batch(appended).records] == [77_777, 77_777]


def test_timestamp_deltas_may_span_the_whole_int64_range() -> None:
    batch = [Record(b"a", timestamp=0), Record(b"b", timestamp=INT64_MAX),
             Record(b"c", timestamp=-1)]
    assert [r.timestamp for r in decode_batch(encode_batch(batch)).records] == [
        0, INT64_MAX, -1
    ]


@pytest.mark.parametrize(
    "stamps", [[INT64_MIN, 1], [-1, INT64_MAX], [0, INT64_MAX + 1], [INT64_MIN - 1]]
)
def test_timestamps_outside_int64_or_too_far_apart_for_a_delta_are_refused(
    stamps: list[int],
) -> None:
    with pytest.raises(ValueError, match="timestamps"):
        encode_batch([Record(b"x", timestamp=t) for t in stamps])


# --- bad arguments -------------------------------------------------------------


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        encode_batch([])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compression": "brotli"},
        {"compression": 5},
        {"timestamp_type": 2},
        {"producer_epoch": 2**15},
        {"base_offset": 2**63},
    ],
)
def test_bad_batch_arguments_are_value_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        encode_batch([Record(b"a")], **kwargs)


# --- corrupt records sections ----------------------------------------------------


@pytest.mark.parametrize("compression", CODEC_NAMES)
@given(batch=record_lists, data=st.data())
@settings(deadline=None)
def test_a_truncated_records_section_is_a_corrupt_record_error(
    compression: str, batch: list[Record], data: st.DataObject
) -> None:
    encoded = encode_batch(batch, compression=compression)
    cut = data.draw(st.integers(HEADER_SIZE, len(encoded) - 1), label="cut")
    with pytest.raises(CorruptRecordError):
        decode_batch(reseal(encoded[:cut]))


@pytest.mark.parametrize("compression", CODEC_NAMES)
@given(batch=record_lists, data=st.data())
@settings(deadline=None)
def test_a_garbled_records_section_never_escapes_as_another_error(
    compression: str, batch: list[Record], data: st.DataObject
) -> None:
    # The CRC is recomputed, so only the record decoding can notice; it may
    # find valid records or raise CorruptRecordError, but nothing else.
    encoded = bytearray(encode_batch(batch, compression=compression))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(HEADER_SIZE, len(encoded) - 1), label="at")
        encoded[at] = data.draw(st.integers(0, 255), label="byte")
    with contextlib.suppress(CorruptRecordError):
        decode_batch(reseal(encoded))


@given(
    count_and_section=st.integers(1, 20).flatmap(
        # at least 7 bytes a record, else the header check refuses it first
        lambda n: st.tuples(st.just(n), st.binary(min_size=7 * n, max_size=7 * n + 100))
    )
)
def test_arbitrary_bytes_as_records_never_escape_as_another_error(
    count_and_section: tuple[int, bytes],
) -> None:
    count, section = count_and_section
    with contextlib.suppress(CorruptRecordError):
        decode_batch(with_records_section(encode_batch([Record(b"")]), section, count=count))


GOOD_RECORD = bytes([12, 0, 0, 0, 1, 1, 0])  # length 6, null key and value, no headers


@pytest.mark.parametrize(
    ("section", "count", "message"),
    [
        (GOOD_RECORD + b"\x00" * 7, 1, "bytes after"),
        (GOOD_RECORD + bytes([40, 0, 0, 0, 1, 1, 0]), 2, "record 1 claims 20 bytes, 6 left"),
        (bytes([12, 0, 0, 0, 3, 1, 0]), 1, "key length -2"),
        (bytes([12, 0, 0, 0, 1, 5, 0]), 1, "value length -3"),
        (bytes([12, 0, 0, 0, 1, 1, 1]), 1, "header count -1"),
        (bytes([10, 0, 0, 0, 1, 1, 0]), 1, "claims 5 bytes"),
        (bytes([14, 0, 0, 0, 1, 1, 0, 0]), 1, "length says 7 bytes but its fields take 6"),
        (bytes([18, 0, 0, 0, 1, 1, 2, 2, 0xFF, 1]), 1, "UTF-8"),
        (bytes([18, 0, 0, 0, 1, 1, 2, 1, 1, 1]), 1, "header key of length -1"),
        (bytes([18, 0, 0, 0, 1, 1, 2, 2, 65, 9]), 1, "header value length -5"),
        (bytes([14, 0, 0, 0, 1, 12, 65, 0]), 1, "value runs past"),
        (bytes([14, 0, 0, 0, 20, 65, 1, 0]), 1, "key runs past"),
        (bytes([12, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), 1, "ends inside|longer"),
    ],
)
def test_malformed_records_are_named_in_the_error(
    section: bytes, count: int, message: str
) -> None:
    batch = with_records_section(encode_batch([Record(b"")]), section, count=count)
    with pytest.raises(CorruptRecordError, match=message):
        decode_batch(batch)


def test_a_bad_header_is_refused_before_records_are_read() -> None:
    encoded = bytearray(encode_batch([Record(b"abc")]))
    encoded[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        decode_batch(encoded)


def test_undecompressible_records_are_a_corrupt_record_error() -> None:
    encoded = encode_batch([Record(b"abc" * 100)], compression="zstd")
    garbled = with_records_section(encoded, b"\x00" * 40)
    garbled = with_header(garbled, attributes=4)
    with pytest.raises(CorruptRecordError, match="zstd"):
        decode_batch(garbled)


# --- iter_batches ----------------------------------------------------------------


def log_of(batches: list[list[Record]], codec: str = "none") -> tuple[bytes, list[Record]]:
    """Batches laid end to end at consecutive offsets, as a log read returns them."""
    out, want, offset = b"", [], 0
    for batch in batches:
        out += encode_batch(batch, base_offset=offset, compression=codec)
        want += expected(batch, offset)
        offset += len(batch)
    return out, want


@pytest.mark.parametrize("compression", CODEC_NAMES)
@given(batches=st.lists(record_lists, min_size=1, max_size=5))
@settings(deadline=None, max_examples=30)
def test_iter_batches_reads_a_log_in_order(
    compression: str, batches: list[list[Record]]
) -> None:
    log, want = log_of(batches, compression)
    decoded = list(iter_batches(log))
    assert all(isinstance(b, DecodedBatch) for b in decoded)
    assert [len(b.records) for b in decoded] == [len(b) for b in batches]
    assert [r for b in decoded for r in b.records] == want


def test_iter_batches_ignores_a_trailing_partial_batch() -> None:
    log, want = log_of([[Record(b"a", timestamp=1)], [Record(b"b", timestamp=2)]])
    first_size = parse_header(log).size
    for cut in range(first_size, len(log)):
        records = [r for b in iter_batches(log[:cut]) for r in b.records]
        assert records == want[:1], cut
    assert list(iter_batches(b"")) == []


def test_iter_batches_raises_on_a_whole_but_corrupt_batch() -> None:
    log = bytearray(log_of([[Record(b"a")], [Record(b"b")]])[0])
    log[-1] ^= 0x01
    batches = iter_batches(log)
    assert next(batches).records[0].value == b"a"
    with pytest.raises(CorruptRecordError, match="CRC"):
        next(batches)


def test_iter_batches_raises_on_a_length_below_the_minimum() -> None:
    log = encode_batch([Record(b"a")]) + struct.pack(">qi", 0, 4) + b"\x00" * 60
    with pytest.raises(CorruptRecordError):
        list(iter_batches(log))
