"""Kafka record batch v2 (magic 2): the header layout, validation and offset stamping.

This module is the broker's whole view of a batch on the hot path: it reads the
fixed 61-byte header, checks lengths, magic, record count and CRC-32C, and
rewrites the base offset and partition leader epoch, which the CRC does not
cover. It never decodes records; `shm.records` does that for clients and tests.

Header layout, big-endian, as Kafka's DefaultRecordBatch defines it::

    offset size  field
     0      8    baseOffset             int64   first offset in the batch
     8      4    batchLength            int32   bytes after this field
    12      4    partitionLeaderEpoch   int32   stamped by the leader
    16      1    magic                  int8    always 2
    17      4    crc                    uint32  CRC-32C of bytes 21..end
    21      2    attributes             int16   see ATTR_* below
    23      4    lastOffsetDelta        int32   recordCount - 1 for producers
    27      8    baseTimestamp          int64   ms
    35      8    maxTimestamp           int64   ms
    43      8    producerId             int64   -1 when none
    51      2    producerEpoch          int16   -1 when none
    53      4    baseSequence           int32   -1 when none
    57      4    recordCount            int32
    61      ...  records (possibly compressed as one block)

Attributes bits: 0-2 compression codec, 3 timestamp type (0 create time,
1 log-append time), 4 transactional, 5 control batch, 6 delete horizon set.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from crc32c import crc32c

from shm.errors import CorruptRecordError, RecordTooLargeError

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
assert HEADER_SIZE == 61

LOG_OVERHEAD = 12  # baseOffset + batchLength: bytes not counted by batchLength
CRC_OFFSET = 17
CRC_START = 21  # the CRC covers attributes onwards
MAGIC = 2

# The prefix the broker rewrites: baseOffset, batchLength, partitionLeaderEpoch.
STAMP = struct.Struct(">qii")
STAMP_SIZE = STAMP.size  # 16

# One record is at least 7 bytes: length, attributes, timestamp delta, offset
# delta, key length, value length and header count, one varint byte each.
MIN_RECORD_SIZE = 7

ATTR_COMPRESSION_MASK = 0x07
ATTR_TIMESTAMP_TYPE = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_SNAPPY = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4
COMPRESSION_NAMES = {
    COMPRESSION_NONE: "none",
    COMPRESSION_GZIP: "gzip",
    COMPRESSION_SNAPPY: "snappy",
    COMPRESSION_LZ4: "lz4",
    COMPRESSION_ZSTD: "zstd",
}
TIMESTAMP_CREATE_TIME = 0
TIMESTAMP_LOG_APPEND_TIME = 1


class BatchHeader(NamedTuple):
    """The 61-byte header of one record batch, fields in wire order."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch takes on disk and on the wire."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        return TIMESTAMP_LOG_APPEND_TIME if self.attributes & ATTR_TIMESTAMP_TYPE else 0

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Read the header at `pos` without any check beyond its presence."""
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def validate_batch(
    buf: bytes | bytearray | memoryview, pos: int = 0, max_batch_bytes: int | None = None
) -> BatchHeader:
    """Check the batch at `pos` without decoding its records; return its header.

    Cheap checks come first so that a bad length costs nothing; the CRC-32C
    over the body is last. Raises CorruptRecordError or RecordTooLargeError.
    """
    available = len(buf) - pos
    if available < HEADER_SIZE:
        raise CorruptRecordError(
            f"record batch truncated: {available} bytes, a header needs {HEADER_SIZE}"
        )
    header = parse_header(buf, pos)
    size = header.size
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(
            f"record batch length {header.batch_length} is below the minimum"
        )
    if size > available:
        raise CorruptRecordError(
            f"record batch truncated: length says {size} bytes, {available} present"
        )
    if max_batch_bytes is not None and size > max_batch_bytes:
        raise RecordTooLargeError(
            f"record batch of {size} bytes exceeds the maximum of {max_batch_bytes} bytes"
        )
    if header.magic != MAGIC:
        raise CorruptRecordError(f"record batch magic {header.magic}, only magic 2 is supported")
    codec = header.compression
    if codec not in COMPRESSION_NAMES:
        raise CorruptRecordError(f"record batch compression codec {codec} is unknown")
    count = header.record_count
    if count < 1:
        raise CorruptRecordError(f"record batch has record count {count}")
    if header.last_offset_delta != count - 1:
        raise CorruptRecordError(
            f"record batch last offset delta {header.last_offset_delta} "
            f"does not match its record count {count}"
        )
    if codec == COMPRESSION_NONE and count * MIN_RECORD_SIZE > size - HEADER_SIZE:
        raise CorruptRecordError(
            f"record batch claims {count} records in {size - HEADER_SIZE} bytes"
        )
    body = memoryview(buf)[pos + CRC_START : pos + size]
    if crc32c(body) != header.crc:
        raise CorruptRecordError("record batch CRC-32C mismatch")
    return header


def validate_record_set(
    buf: bytes | bytearray | memoryview, max_batch_bytes: int | None = None
) -> list[BatchHeader]:
    """Validate one or more concatenated batches; all must pass or none is taken."""
    if len(buf) == 0:
        raise CorruptRecordError("empty record set: a produce request needs at least one batch")
    headers = []
    pos = 0
    while pos < len(buf):
        header = validate_batch(buf, pos, max_batch_bytes)
        headers.append(header)
        pos += header.size
    return headers


def stamp(base_offset: int, batch_length: int, partition_leader_epoch: int) -> bytes:
    """The 16-byte prefix the leader writes in place of the producer's."""
    return STAMP.pack(base_offset, batch_length, partition_leader_epoch)


def set_base_offset(buf: bytearray | memoryview, base_offset: int, pos: int = 0) -> None:
    """Rewrite a batch's base offset in place; the CRC stays valid."""
    struct.pack_into(">q", buf, pos, base_offset)


def compute_crc(buf: bytes | bytearray | memoryview, pos: int = 0, size: int | None = None) -> int:
    """CRC-32C of a batch body, as stored in its header."""
    end = len(buf) if size is None else pos + size
    return crc32c(memoryview(buf)[pos + CRC_START : end])
