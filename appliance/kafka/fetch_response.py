"""FetchResponse v4-v11, written by hand so that record sets go out as the
memoryviews of the shared maps they are: the header bytes are built, the
batches are referenced, nothing is copied (tests check it byte for byte
against kio's writer).

    ResponseHeader v0   correlation_id int32
    throttle_time_ms    int32
    error_code          int16              (v7+)
    session_id          int32              (v7+)
    [topics]            int32 count, each:
      topic             int16 length + UTF-8
      [partitions]      int32 count, each:
        partition_index       int32
        error_code            int16
        high_watermark        int64
        last_stable_offset    int64
        log_start_offset      int64        (v5+)
        aborted_transactions  int32 count, -1 for null (always null here)
        preferred_read_replica int32       (v11+)
        records               int32 length (0 when empty, never -1), then the batches
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_I16, _I32 = struct.Struct(">h"), struct.Struct(">i")
_HEAD = struct.Struct(">ii")  # correlation_id, throttle_time_ms
_HEAD_V7 = struct.Struct(">iihi")  # + error_code, session_id
_PARTITION = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, lso
_NO_SESSION = 0  # every fetch is a full one: Ringlog keeps no fetch sessions (KIP-227)


@dataclass(frozen=True, slots=True)
class FetchedPartition:
    topic: str
    partition: int
    error_code: int
    high_watermark: int
    log_start_offset: int
    records: Any | None  # a buffer of whole batches, or None


def encode_fetch_response(version: int, correlation_id: int,
                          partitions: Sequence[FetchedPartition], error_code: int = 0
                          ) -> list[Any]:
    """The response's buffers (header and records alternate), without the
    frame's size prefix. Partitions of one topic are grouped, in order."""
    if version >= 7:
        out: list[Any] = [_HEAD_V7.pack(correlation_id, 0, error_code, _NO_SESSION)]
    else:
        out = [_HEAD.pack(correlation_id, 0)]
    topics: list[tuple[str, list[FetchedPartition]]] = []
    for fetched in partitions:
        if not topics or topics[-1][0] != fetched.topic:
            topics.append((fetched.topic, []))
        topics[-1][1].append(fetched)
    head = bytearray(_I32.pack(len(topics)))
    for topic, members in topics:
        name = topic.encode()
        head += _I16.pack(len(name)) + name + _I32.pack(len(members))
        for fetched in members:
            head += _PARTITION.pack(fetched.partition, fetched.error_code,
                                    fetched.high_watermark, fetched.high_watermark)
            if version >= 5:
                head += struct.pack(">q", fetched.log_start_offset)
            head += _I32.pack(-1)  # aborted_transactions: null, no transactions
            if version >= 11:
                head += _I32.pack(-1)  # preferred_read_replica: none
            if fetched.records is None or not len(fetched.records):
                head += _I32.pack(0)  # empty, never null: librdkafka refuses a null set
            else:
                head += _I32.pack(len(fetched.records))
                out.append(bytes(head))
                out.append(fetched.records)
                head = bytearray()
    if head:
        out.append(bytes(head))
    return out
