"""Produce v0-2, read and refused by hand: kio has no schema for them.

They carry message sets older than record batch v2, which Ringlog does not
store; the door advertises them (see apis.py) and answers every partition
UNSUPPORTED_VERSION, as Kafka 4.0 does. Only the topic and partition names
are read: the message sets are skipped, never parsed.

    request body (after the v1 header), v0-2 alike:
      acks int16 | timeout_ms int32 |
      [topic: name string | [partition: index int32 | message_set bytes]]
    response body:
      [topic: name string | [partition: index int32 | error_code int16 |
                             base_offset int64 | log_append_time_ms int64 (v2)]] |
      throttle_time_ms int32 (v1+)

string: int16 length then UTF-8; bytes: int32 length (-1 null) then the bytes;
[...]: int32 count then the entries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_ACKS_TIMEOUT = struct.Struct(">hi")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_PARTITION_V0 = struct.Struct(">ihq")  # index, error_code, base_offset
_PARTITION_V2 = struct.Struct(">ihqq")  # ... log_append_time_ms
NO_OFFSET = NO_TIMESTAMP = -1


class LegacyProduceUnreadable(ValueError):
    """The body is not a Produce v0-2 request (cut short, negative counts)."""


@dataclass(frozen=True, slots=True)
class LegacyProduce:
    acks: int
    topics: list[tuple[str, list[int]]]  # (name, partition indexes), in request order


def read_legacy_produce(frame: bytes | memoryview, offset: int) -> LegacyProduce:
    """The request's acks and partitions; LegacyProduceUnreadable if the
    bytes from `offset` are not one."""
    data = memoryview(frame)
    try:
        acks, _timeout = _ACKS_TIMEOUT.unpack_from(data, offset)
        offset += _ACKS_TIMEOUT.size
        topics = []
        count, offset = _count(data, offset)
        for _ in range(count):
            name, offset = _string(data, offset)
            partitions = []
            count, offset = _count(data, offset)
            for _ in range(count):
                (index,) = _INT32.unpack_from(data, offset)
                (size,) = _INT32.unpack_from(data, offset + _INT32.size)
                offset += 2 * _INT32.size + max(size, 0)
                if offset > len(data):
                    raise LegacyProduceUnreadable("a message set runs past the request")
                partitions.append(index)
            topics.append((name, partitions))
        return LegacyProduce(acks, topics)
    except struct.error as exc:
        raise LegacyProduceUnreadable(str(exc)) from None


def _count(data: memoryview, offset: int) -> tuple[int, int]:
    """An array's length and where its entries start. They are read one by
    one, so a huge count in a short frame ends in struct.error, never in a
    huge allocation."""
    (count,) = _INT32.unpack_from(data, offset)
    if count < 0:
        raise LegacyProduceUnreadable(f"an array of {count} entries")
    return count, offset + _INT32.size


def _string(data: memoryview, offset: int) -> tuple[str, int]:
    (length,) = _INT16.unpack_from(data, offset)
    start = offset + _INT16.size
    if length < 0 or start + length > len(data):
        raise LegacyProduceUnreadable("a topic name runs past the request")
    return bytes(data[start:start + length]).decode(errors="replace"), start + length


def legacy_produce_error(version: int, correlation_id: int, request: LegacyProduce,
                         code: int) -> bytes:
    """The response (header v0 and body, no size prefix): `code` for every
    partition asked for."""
    out = [_INT32.pack(correlation_id), _INT32.pack(len(request.topics))]
    for name, partitions in request.topics:
        encoded = name.encode()
        out += [_INT16.pack(len(encoded)), encoded, _INT32.pack(len(partitions))]
        for index in partitions:
            out.append(_PARTITION_V2.pack(index, code, NO_OFFSET, NO_TIMESTAMP) if version >= 2
                       else _PARTITION_V0.pack(index, code, NO_OFFSET))
    if version >= 1:
        out.append(_INT32.pack(0))  # throttle_time_ms
    return b"".join(out)
