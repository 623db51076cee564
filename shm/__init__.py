"""Ringlog's storage engine: record batches in memory-mapped, fsync'd segment files.

Knows nothing of sockets or processes beyond the files it shares.

The public names below are loaded on first use (PEP 562), not at import:
the client imports only the codec (`shm.records`) and the error registry
(`shm.errors`), and importing those must not load segments, indexes and
control blocks into every client process.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_OF = {
    "LogPosition": "shm.control_block",
    "control_block_path": "shm.control_block",
    "CorruptRecordError": "shm.errors",
    "KafkaStorageError": "shm.errors",
    "OffsetOutOfRangeError": "shm.errors",
    "RecordTooLargeError": "shm.errors",
    "RinglogError": "shm.errors",
    "LogConfig": "shm.partition_log",
    "PartitionLog": "shm.partition_log",
    "PartitionReader": "shm.reader",
    "HEADER_SIZE": "shm.record_batch",
    "BatchHeader": "shm.record_batch",
    "parse_header": "shm.record_batch",
    "set_base_offset": "shm.record_batch",
    "validate_batch": "shm.record_batch",
    "validate_record_set": "shm.record_batch",
    "DecodedBatch": "shm.records",
    "Record": "shm.records",
    "decode_batch": "shm.records",
    "encode_batch": "shm.records",
    "iter_batches": "shm.records",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'shm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])
