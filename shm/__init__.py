"""Ringlog's storage engine: record batches in memory-mapped, fsync'd segment files.

Knows nothing of sockets or processes beyond the files it shares.
"""

from shm.errors import (
    CorruptRecordError,
    KafkaStorageError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    RinglogError,
)
from shm.record_batch import (
    HEADER_SIZE,
    BatchHeader,
    parse_header,
    set_base_offset,
    validate_batch,
    validate_record_set,
)

__all__ = [
    "HEADER_SIZE",
    "BatchHeader",
    "CorruptRecordError",
    "KafkaStorageError",
    "OffsetOutOfRangeError",
    "RecordTooLargeError",
    "RinglogError",
    "parse_header",
    "set_base_offset",
    "validate_batch",
    "validate_record_set",
]
