"""Ringlog's storage engine: record batches in memory-mapped, fsync'd segment files.

Knows nothing of sockets or processes beyond the files it shares.
"""

from shm.control_block import LogPosition, control_block_path
from shm.errors import (
    CorruptRecordError,
    KafkaStorageError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    RinglogError,
)
from shm.partition_log import LogConfig, PartitionLog
from shm.reader import PartitionReader
from shm.record_batch import (
    HEADER_SIZE,
    BatchHeader,
    parse_header,
    set_base_offset,
    validate_batch,
    validate_record_set,
)
from shm.records import DecodedBatch, Record, decode_batch, encode_batch, iter_batches

__all__ = [
    "HEADER_SIZE",
    "BatchHeader",
    "CorruptRecordError",
    "DecodedBatch",
    "KafkaStorageError",
    "LogConfig",
    "LogPosition",
    "OffsetOutOfRangeError",
    "PartitionLog",
    "PartitionReader",
    "Record",
    "RecordTooLargeError",
    "RinglogError",
    "control_block_path",
    "decode_batch",
    "encode_batch",
    "iter_batches",
    "parse_header",
    "set_base_offset",
    "validate_batch",
    "validate_record_set",
]
