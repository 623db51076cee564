"""Kafka records inside a v2 record batch: build batches and read them back.

Clients, tools and tests use this module; the broker never does on its hot
path, which only needs `shm.record_batch` (header, CRC, offsets). The layout of
the records section, after the 61-byte batch header, is Kafka's DefaultRecord::

    records section (compressed as one stream when the codec is not none)
    +----------+----------+-----+----------+
    | record 0 | record 1 | ... | record N |     N + 1 = recordCount
    +----------+----------+-----+----------+

    one record
    +--------+-------+---------+----------+--------+-----+--------+-------+----------+---------+
    | length | attrs | tsDelta | offDelta | keyLen | key | valLen | value | hdrCount | headers |
    | varint | int8  | varlong | varint   | varint |     | varint |       | varint   |   ...   |
    +--------+-------+---------+----------+--------+-----+--------+-------+----------+---------+
      length counts the bytes after itself; attrs is unused and 0;
      timestamp = baseTimestamp + tsDelta; offset = baseOffset + offDelta;
      keyLen and valLen are -1 for null; when the record is read back, every
      length must land exactly on the record's end

    one header
    +-----------+------------------+-----------+-------+
    | keyLen    | key (UTF-8)      | valLen    | value |
    | varint    | never null       | varint    |       |   valLen -1 for null
    +-----------+------------------+-----------+-------+

Every varint and varlong is zigzag-encoded (Kafka's ByteUtils.writeVarint):
a signed value n becomes (n << 1) ^ (n >> 31) (>> 63 for a varlong), then 7
bits per byte, low group first, high bit set on every byte but the last. A
varint takes at most 5 bytes, a varlong at most 10.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from crc32c import crc32c

from shm.compression import codec_of, compress, decompress
from shm.errors import CorruptRecordError
from shm.record_batch import (
    ATTR_CONTROL,
    ATTR_TIMESTAMP_TYPE,
    ATTR_TRANSACTIONAL,
    COMPRESSION_NONE,
    CRC_OFFSET,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    MIN_RECORD_SIZE,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    BatchHeader,
    validate_batch,
)

Buffer = bytes | bytearray | memoryview

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX = 2**32 - 1
VARINT_MAX_BYTES = 5
VARLONG_MAX_BYTES = 10

_CRC = struct.Struct(">I")
_BATCH_LENGTH = struct.Struct(">i")


# --- varints -----------------------------------------------------------------


def _uvarint(n: int) -> bytes:
    """Unsigned LEB128 bytes of a non-negative n, no range check."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Encoded bytes of every zigzag value below this bound, so that small lengths,
# offset deltas and timestamp deltas (nearly all of them) cost one list lookup.
# 2**13 covers signed values -4096..4095 and costs about 300 KB.
_CACHE_SIZE = 1 << 13
_CACHE: list[bytes] = [_uvarint(z) for z in range(_CACHE_SIZE)]


def encode_unsigned_varint(n: int) -> bytes:
    """Kafka's unsigned varint (ByteUtils.writeUnsignedVarint), 0 <= n <= 2**32-1.

    Used by the flexible protocol versions for lengths and tagged fields; the
    record format itself uses the zigzag forms below.
    """
    if not 0 <= n <= UINT32_MAX:
        raise ValueError(f"unsigned varint out of range: {n}")
    return _CACHE[n] if n < _CACHE_SIZE else _uvarint(n)


def encode_varint(n: int) -> bytes:
    """Kafka's zigzag varint of a signed 32-bit integer (ByteUtils.writeVarint)."""
    if not INT32_MIN <= n <= INT32_MAX:
        raise ValueError(f"varint out of the int32 range: {n}")
    z = (n << 1) ^ (n >> 31)
    return _CACHE[z] if z < _CACHE_SIZE else _uvarint(z)


def encode_varlong(n: int) -> bytes:
    """Kafka's zigzag varlong of a signed 64-bit integer (ByteUtils.writeVarlong)."""
    if not INT64_MIN <= n <= INT64_MAX:
        raise ValueError(f"varlong out of the int64 range: {n}")
    z = (n << 1) ^ (n >> 63)
    return _CACHE[z] if z < _CACHE_SIZE else _uvarint(z)


def _read_uvarint(buf: Buffer, pos: int, max_bytes: int, bits: int) -> tuple[int, int]:
    """Unsigned LEB128 at pos; IndexError when the buffer ends inside it."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    for i in range(pos + 1, pos + max_bytes):
        b = buf[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value >> bits:
                raise CorruptRecordError(f"varint at byte {pos} overflows {bits} bits")
            return value, i + 1
        shift += 7
    raise CorruptRecordError(f"varint at byte {pos} is longer than {max_bytes} bytes")


def decode_unsigned_varint(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """Read an unsigned varint at pos; return (value, position after it).

    Raises CorruptRecordError if the buffer ends inside it, if it takes more
    than 5 bytes (Kafka's reader refuses that too) or if it overflows 32 bits
    (Kafka's reader silently drops the excess bits; a validator should not).
    """
    try:
        return _read_uvarint(buf, pos, VARINT_MAX_BYTES, 32)
    except IndexError:
        raise CorruptRecordError(f"varint at byte {pos} runs past the end") from None


def decode_varint(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """Read a zigzag varint (int32) at pos; return (value, position after it)."""
    z, end = decode_unsigned_varint(buf, pos)
    return (z >> 1) ^ -(z & 1), end


def decode_varlong(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """Read a zigzag varlong (int64) at pos; return (value, position after it)."""
    try:
        z, end = _read_uvarint(buf, pos, VARLONG_MAX_BYTES, 64)
    except IndexError:
        raise CorruptRecordError(f"varlong at byte {pos} runs past the end") from None
    return (z >> 1) ^ -(z & 1), end


# --- records -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as a client sees it.

    `timestamp` is milliseconds since the epoch; None on encode means "now".
    `offset` is only meaningful on decoded records: encode_batch numbers the
    records of a batch 0, 1, 2... from its base offset and ignores it.
    """

    value: bytes | None
    key: bytes | None = None
    timestamp: int | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    offset: int = -1


@dataclass
class DecodedBatch:
    """A batch read back: its header as stored and its records in order."""

    header: BatchHeader
    records: list[Record]


_NULL = _CACHE[1]  # zigzag -1: a null key, value or header value
_NO_HEADERS = _CACHE[0]
_ATTRIBUTES = b"\x00"  # record attributes: unused by Kafka, always 0


def _headers_bytes(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    cache = _CACHE
    out = bytearray(encode_varint(len(headers)))
    for name, value in headers:
        raw = name.encode("utf-8")
        n = len(raw)
        out += cache[n << 1] if n < _CACHE_SIZE >> 1 else encode_varint(n)
        out += raw
        if value is None:
            out += _NULL
        else:
            n = len(value)
            out += cache[n << 1] if n < _CACHE_SIZE >> 1 else encode_varint(n)
            out += value
    return bytes(out)


def _py_encode_records(
    values: Sequence[Buffer | None],
    keys: Sequence[Buffer | None] | None = None,
    timestamp_deltas: Sequence[int] | None = None,
    headers: Sequence[Sequence[tuple[str, bytes | None]] | None] | None = None,
) -> bytes:
    """The records section of a batch, uncompressed: record i has offsetDelta i.

    Columns rather than Record objects, so that a producer can keep a batch as
    lists and encode it in one pass. `keys`, `timestamp_deltas` and `headers`
    may be None, meaning every key null, every delta 0, no headers. This is the
    reference implementation; shm._codec does the same in C when it is built.
    """
    count = len(values)
    for name, column in (("keys", keys), ("timestamp_deltas", timestamp_deltas),
                         ("headers", headers)):
        if column is not None and len(column) != count:
            raise ValueError(f"{name} has {len(column)} entries for {count} values")
    cache = _CACHE
    cache_size = _CACHE_SIZE
    half = _CACHE_SIZE >> 1
    uvarint = _uvarint
    null = _NULL
    no_headers = _NO_HEADERS
    attributes = _ATTRIBUTES
    zero_delta = cache[0]
    out = bytearray()
    for index in range(count):
        if timestamp_deltas is None:
            ts_bytes = zero_delta
        else:
            delta = timestamp_deltas[index]
            if not INT64_MIN <= delta <= INT64_MAX:
                raise ValueError(f"record {index} timestamp delta out of the int64 range")
            z = (delta << 1) ^ (delta >> 63)
            ts_bytes = cache[z] if z < cache_size else uvarint(z)
        offset_bytes = cache[index << 1] if index < half else uvarint(index << 1)

        size = 1 + len(ts_bytes) + len(offset_bytes)
        key = None if keys is None else keys[index]
        if key is None:
            key_len = null
            size += 1
        else:
            n = len(key)
            key_len = cache[n << 1] if n < half else uvarint(n << 1)
            size += len(key_len) + n
        value = values[index]
        if value is None:
            value_len = null
            size += 1
        else:
            n = len(value)
            value_len = cache[n << 1] if n < half else uvarint(n << 1)
            size += len(value_len) + n
        record_headers = None if headers is None else headers[index]
        header_bytes = _headers_bytes(record_headers) if record_headers else no_headers
        size += len(header_bytes)
        if size > INT32_MAX:
            raise ValueError(f"record {index} of {size} bytes is too large for Kafka")

        out += cache[size << 1] if size < half else uvarint(size << 1)
        out += attributes
        out += ts_bytes
        out += offset_bytes
        out += key_len
        if key:
            out += key
        out += value_len
        if value:
            out += value
        out += header_bytes
    return bytes(out)


def encode_batch(
    records: Sequence[Record],
    *,
    now_ms: int | None = None,
    **batch_fields: Any,
) -> bytes:
    """Build one v2 record batch from Record objects (see encode_columns).

    Records without a timestamp get `now_ms` (default: the clock).
    """
    if not records:
        raise ValueError("a record batch needs at least one record")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    timestamps = [now if r.timestamp is None else r.timestamp for r in records]
    headers = [r.headers for r in records] if any(r.headers for r in records) else None
    keys = [r.key for r in records]
    return encode_columns(
        [r.value for r in records],
        keys if any(k is not None for k in keys) else None,
        timestamps,
        headers,
        **batch_fields,
    )


def encode_columns(
    values: Sequence[Buffer | None],
    keys: Sequence[Buffer | None] | None = None,
    timestamps: Sequence[int] | int | None = None,
    headers: Sequence[Sequence[tuple[str, bytes | None]] | None] | None = None,
    *,
    base_offset: int = 0,
    compression: str | int = "none",
    timestamp_type: int = TIMESTAMP_CREATE_TIME,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
) -> bytes:
    """Build one v2 record batch, laid out field for field as Kafka's Java producer does.

    Records are given as columns: `values`, and `keys` (None: all null),
    `timestamps` (one per record, or one int for all, or None for the clock's
    now) and `headers` (None: none). Records are numbered by offset delta
    0..n-1; baseTimestamp is the first record's timestamp and maxTimestamp the
    largest (as MemoryRecordsBuilder does). A compressed batch compresses the
    whole records section, even when that does not make it smaller, as the
    Java client does. The CRC-32C is filled in, so the result passes
    record_batch.validate_batch as is.

    Raises ValueError for an empty batch, an unknown codec or a field out of
    its Kafka range.
    """
    count = len(values)
    if count == 0:
        raise ValueError("a record batch needs at least one record")
    codec = codec_of(compression)
    if timestamp_type not in (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME):
        raise ValueError(f"timestamp type must be 0 or 1, not {timestamp_type}")
    if timestamps is None:
        timestamps = int(time.time() * 1000)
    if isinstance(timestamps, int):
        base_ts = max_ts = timestamps
        deltas = None
    else:
        if len(timestamps) != count:
            raise ValueError(f"timestamps has {len(timestamps)} entries for {count} values")
        base_ts, max_ts, min_ts = timestamps[0], max(timestamps), min(timestamps)
        if not (INT64_MIN <= min_ts <= max_ts <= INT64_MAX
                and min_ts - base_ts >= INT64_MIN and max_ts - base_ts <= INT64_MAX):
            raise ValueError("record timestamps and their deltas from the first must fit "
                             "an int64")
        deltas = None if min_ts == max_ts else [t - base_ts for t in timestamps]
    section = encode_records(values, keys, deltas, headers)
    if codec != COMPRESSION_NONE:
        section = compress(codec, section)

    attrs = codec
    if timestamp_type == TIMESTAMP_LOG_APPEND_TIME:
        attrs |= ATTR_TIMESTAMP_TYPE
    if is_transactional:
        attrs |= ATTR_TRANSACTIONAL
    if is_control:
        attrs |= ATTR_CONTROL
    size = HEADER_SIZE + len(section)
    if size - LOG_OVERHEAD > INT32_MAX:
        raise ValueError(f"record batch of {size} bytes is too large for Kafka")
    try:
        header = HEADER.pack(
            base_offset,
            size - LOG_OVERHEAD,
            partition_leader_epoch,
            MAGIC,
            0,  # the CRC, computed over the bytes after it just below
            attrs,
            count - 1,
            base_ts,
            max_ts,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        )
    except struct.error as exc:
        raise ValueError(f"record batch header field out of range: {exc}") from None
    # The CRC runs over the header's tail, then the section: one pass, and the
    # batch is assembled by a single join (growing a bytearray by a MiB section
    # and copying it out cost ~1.3 ms a MiB here, six times the encoding).
    crc = crc32c(section, crc32c(header[CRC_START:]))
    return b"".join((header[:CRC_OFFSET], _CRC.pack(crc), header[CRC_OFFSET + 4:], section))


def read_batch(
    buf: Buffer,
    pos: int = 0,
    *,
    skip_below: int = 0,
    row_type: type[tuple] | None = None,
    context: tuple | Callable[[BatchHeader], tuple] = (),
) -> tuple[BatchHeader, list[tuple]]:
    """Validate the batch at pos (length, magic, count, CRC), then read its records
    as rows (offset, timestamp, key, value, headers) + context.

    Records with an offset below `skip_below` are checked but not returned;
    `row_type`, a tuple subclass such as a NamedTuple, types each row;
    `context` may be a function of the batch's header. Offsets
    are baseOffset + offsetDelta. Timestamps are baseTimestamp + delta, except
    in a LOG_APPEND_TIME batch, where the broker's time in maxTimestamp is
    every record's timestamp (Kafka's rule). Any malformed records section
    raises CorruptRecordError.
    """
    header = validate_batch(buf, pos)
    with memoryview(buf) as view, view[pos + HEADER_SIZE : pos + header.size] as section:
        data = decompress(header.compression, section)
    override = (
        header.max_timestamp if header.timestamp_type == TIMESTAMP_LOG_APPEND_TIME else None
    )
    if callable(context):
        context = context(header)
    try:
        rows = decode_records(data, header.record_count, header.base_offset,
                              header.base_timestamp, override, skip_below, row_type, context)
    except ValueError as exc:
        raise CorruptRecordError(str(exc)) from None
    return header, rows


def decode_batch(buf: Buffer, pos: int = 0) -> DecodedBatch:
    """The batch at pos with its records as Record objects (see read_batch)."""
    header, rows = read_batch(buf, pos)
    return DecodedBatch(header, [Record(value, key, ts, headers, offset)
                                 for offset, ts, key, value, headers in rows])


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Zigzag varint at pos, with the two-byte case (lengths up to 8 KiB) inline."""
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    b2 = buf[pos + 1]
    if b2 < 0x80:
        z = (b & 0x7F) | (b2 << 7)
        return (z >> 1) ^ -(z & 1), pos + 2
    z, pos = _read_uvarint(buf, pos, VARINT_MAX_BYTES, 32)
    return (z >> 1) ^ -(z & 1), pos


def _read_varlong(buf: bytes, pos: int) -> tuple[int, int]:
    z, pos = _read_uvarint(buf, pos, VARLONG_MAX_BYTES, 64)
    return (z >> 1) ^ -(z & 1), pos


# The signed value of every one-byte zigzag varint: the decoder's fast path.
_ONE_BYTE = [(b >> 1) ^ -(b & 1) for b in range(0x80)]


def _py_decode_records(
    data: Buffer,
    count: int,
    base_offset: int,
    base_timestamp: int,
    timestamp_override: int | None = None,
    skip_below: int = 0,
    row_type: type[tuple] | None = None,
    context: tuple = (),
) -> list[tuple]:
    """Read `count` records that must fill `data` exactly, as rows
    (offset, timestamp, key, value, headers) + context, typed `row_type` if given.

    Raises ValueError on any malformed record (read_batch turns it into
    CorruptRecordError). Each varint is read inline when it is one byte (nearly
    always) and by _read_varint otherwise. This is the reference
    implementation; shm._codec does the same in C when it is built.
    """
    try:
        return _py_decode_rows(bytes(data), count, base_offset, base_timestamp,
                               timestamp_override, skip_below, row_type, context)
    except IndexError:
        raise ValueError("record batch records section ends inside a record") from None
    except UnicodeDecodeError:
        raise ValueError("record header key is not valid UTF-8") from None


def _py_decode_rows(data: bytes, count: int, base_offset: int, base_ts: int,
                    timestamp_override: int | None, skip_below: int,
                    row_type: type[tuple] | None, context: tuple) -> list[tuple]:
    one_byte = _ONE_BYTE
    read_varint = _read_varint
    make = tuple.__new__
    end_of_data = len(data)
    rows = []
    pos = 0
    for index in range(count):
        b = data[pos]
        if b < 0x80:
            length = one_byte[b]
            pos += 1
        else:
            length, pos = read_varint(data, pos)
        end = pos + length
        if length < MIN_RECORD_SIZE - 1 or end > end_of_data:
            raise ValueError(
                f"record {index} claims {length} bytes, {end_of_data - pos} left in the batch"
            )
        pos += 1  # attributes: unused, ignored as Kafka ignores them
        b = data[pos]
        if b < 0x80:
            ts_delta = one_byte[b]
            pos += 1
        else:
            ts_delta, pos = _read_varlong(data, pos)
        b = data[pos]
        if b < 0x80:
            offset_delta = one_byte[b]
            pos += 1
        else:
            offset_delta, pos = read_varint(data, pos)

        b = data[pos]
        if b < 0x80:
            n = one_byte[b]
            pos += 1
        else:
            n, pos = read_varint(data, pos)
        if n < 0:
            if n != -1:
                raise ValueError(f"record {index} has key length {n}")
            key = None
        elif pos + n > end:
            raise ValueError(f"record {index} key runs past the record")
        else:
            key = data[pos : pos + n]
            pos += n

        b = data[pos]
        if b < 0x80:
            n = one_byte[b]
            pos += 1
        else:
            n, pos = read_varint(data, pos)
        if n < 0:
            if n != -1:
                raise ValueError(f"record {index} has value length {n}")
            value = None
        elif pos + n > end:
            raise ValueError(f"record {index} value runs past the record")
        else:
            value = data[pos : pos + n]
            pos += n

        header_count, pos = read_varint(data, pos)
        if header_count == 0:
            headers = ()
        elif header_count < 0 or header_count > end - pos:
            raise ValueError(f"record {index} has header count {header_count}")
        else:
            headers, pos = _decode_headers(data, pos, end, header_count, index)

        if pos != end:
            raise ValueError(
                f"record {index} length says {length} bytes but its fields take "
                f"{length + pos - end}"
            )
        offset = base_offset + offset_delta
        if offset > INT64_MAX:
            raise ValueError(f"record {index} offset is past the int64 range")
        if offset < skip_below:
            continue
        row = (offset, base_ts + ts_delta if timestamp_override is None else timestamp_override,
               key, value, headers, *context)
        rows.append(row if row_type is None else make(row_type, row))
    if pos != end_of_data:
        raise ValueError(f"record batch has {end_of_data - pos} bytes after its {count} records")
    return rows


def _decode_headers(
    data: bytes, pos: int, end: int, count: int, index: int
) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    """Read `count` record headers of record `index`, which ends at `end`."""
    headers = []
    for _ in range(count):
        n, pos = _read_varint(data, pos)
        if n < 0 or pos + n > end:
            raise ValueError(f"record {index} has a header key of length {n}")
        name = data[pos : pos + n].decode("utf-8")
        pos += n
        n, pos = _read_varint(data, pos)
        if n < 0:
            if n != -1:
                raise ValueError(f"record {index} has a header value length {n}")
            value = None
        elif pos + n > end:
            raise ValueError(f"record {index} header value runs past the record")
        else:
            value = data[pos : pos + n]
            pos += n
        headers.append((name, value))
    return tuple(headers), pos


try:  # the C codec, built by `pip install` when a compiler is present
    from shm._codec import decode_records, encode_records
except ImportError:  # pragma: no cover - exercised where no compiler is present
    encode_records = _py_encode_records
    decode_records = _py_decode_records


def iter_batch_rows(
    buf: Buffer,
    *,
    skip_below: int = 0,
    row_type: type[tuple] | None = None,
    context: Callable[[BatchHeader], tuple] = lambda header: (),
) -> Iterator[tuple[BatchHeader, list[tuple]]]:
    """Read every whole batch of a log read, in order, as read_batch does;
    `context(header)` gives the fields appended to each row of that batch.

    A fetch result may end with the first part of a batch cut off by the size
    limit (Kafka returns such partial batches); it is ignored. A whole batch
    that fails validation raises CorruptRecordError.
    """
    pos = 0
    end = len(buf)
    while end - pos >= LOG_OVERHEAD:
        (batch_length,) = _BATCH_LENGTH.unpack_from(buf, pos + 8)  # after baseOffset
        if pos + LOG_OVERHEAD + batch_length > end:
            return
        header, rows = read_batch(buf, pos, skip_below=skip_below, row_type=row_type,
                                  context=context)
        yield header, rows
        pos += header.size


def next_fetch_offset(buf: Buffer) -> int | None:
    """The offset after the last whole batch of a log read, from the batch
    headers alone (no CRC check, no record decoded); None if none is whole.

    A consumer uses it to ask for what follows before it decodes this read.
    """
    pos, end, following = 0, len(buf), None
    while end - pos >= HEADER_SIZE:
        (batch_length,) = _BATCH_LENGTH.unpack_from(buf, pos + 8)  # after baseOffset
        if batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + LOG_OVERHEAD + batch_length > end:
            break
        header = HEADER.unpack_from(buf, pos)
        following = header[0] + header[6] + 1  # baseOffset + lastOffsetDelta + 1
        pos += LOG_OVERHEAD + batch_length
    return following


def iter_batches(buf: Buffer) -> Iterator[DecodedBatch]:
    """Decode every whole batch of a log read, in order, with Record objects
    (see iter_batch_rows)."""
    for header, rows in iter_batch_rows(buf):
        yield DecodedBatch(header, [Record(value, key, ts, headers, offset)
                                    for offset, ts, key, value, headers in rows])
