"""The replication wire: a follower's fetch and its leader's answer, as ZeroMQ
frames. Encoding only, no I/O: `encode_*` give frames, `parse_*` take them.

A follower's DEALER talks to the leader broker's replication ROUTER
(`replication.listener`); the ROUTER adds and strips the identity frame.
Every request carries an id, since ZeroMQ may deliver a request queued
during a partition long after its sender gave up on it::

    request   frame 0   b"replica_fetch"
              frame 1   orjson: {"v": 1, "id", "replica_id", "broker_epoch",
                          "max_wait_ms", "min_bytes", "max_bytes",
                          "partitions": [[topic, partition, current_leader_epoch,
                                          fetch_offset, last_fetched_epoch,
                                          log_start_offset], ...]}

    reply     frame 0   b"replica_fetched"
              frame 1   orjson: {"v": 1, "id", "error",
                          "partitions": [[topic, partition, error, high_watermark,
                                          log_start_offset, log_end_offset,
                                          diverging_epoch or null,
                                          records frame index or null], ...]}
              frame 2.. record sets, untouched (the leader's stored batches)

Before it fetches, a follower's broker asks the leader broker's supervisor,
at its `replication.listener`, which worker's ROUTER serves each partition
(once per leader change)::

    request   frame 0   b"replica_locate"
              frame 1   orjson: {"v": 1, "partitions": [[topic, partition], ...]}

    reply     frame 0   b"replica_located"
              frame 1   orjson: {"v": 1, "partitions": [[topic, partition,
                          leader_epoch, endpoint or ""], ...]}

"" means the broker does not lead it (as far as it knows) or its worker
is not serving yet: ask again later.

Whatever does not parse raises ReplicationProtocolError naming what is
wrong; the leader answers it with INVALID_REQUEST and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shm.errors import InvalidRequestError
from workers.follower_fetch import FetchPosition, LeaderReply

Frame = Any  # bytes, memoryview or zmq.Frame
VERSION = 1
FETCH = b"replica_fetch"
FETCHED = b"replica_fetched"
LOCATE = b"replica_locate"
LOCATED = b"replica_located"


class ReplicationProtocolError(InvalidRequestError):
    """A replication message that does not parse."""


@dataclass(frozen=True)
class ReplicaFetch:
    """One follower fetch: every partition this follower's worker follows on
    that leader, one request in flight per (worker, leader)."""

    request_id: int
    replica_id: int  # the follower's broker id
    broker_epoch: int  # its registration's czxid: a restarted broker's old fetches are stale
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    partitions: tuple[tuple[str, int, FetchPosition], ...]


@dataclass(frozen=True)
class ReplicaFetched:
    request_id: int
    error: str | None  # a whole-request error (not leader of any, stale broker epoch)
    partitions: tuple[tuple[str, int, LeaderReply], ...]


def _bytes(frame: Frame) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else bytes(frame)


def _buffer(frame: Frame) -> Any:
    """A record frame's bytes without a copy (zmq.Frame.buffer is a memoryview)."""
    return frame.buffer if hasattr(frame, "buffer") else frame


def _body(frames: Sequence[Frame], kind: bytes) -> dict:
    if len(frames) < 2 or _bytes(frames[0]) != kind:
        raise ReplicationProtocolError(f"not a {kind.decode()} message")
    try:
        body = orjson.loads(_bytes(frames[1]))
    except orjson.JSONDecodeError as exc:
        raise ReplicationProtocolError(f"{kind.decode()} header is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise ReplicationProtocolError(f"{kind.decode()} header is not version {VERSION}")
    return body


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise ReplicationProtocolError(f"{what} must be an integer, not {value!r}")
    return value


def encode_fetch(fetch: ReplicaFetch) -> list[bytes]:
    partitions = [[t, p, f.current_leader_epoch, f.fetch_offset, f.last_fetched_epoch,
                   f.log_start_offset] for t, p, f in fetch.partitions]
    return [FETCH, orjson.dumps({
        "v": VERSION, "id": fetch.request_id, "replica_id": fetch.replica_id,
        "broker_epoch": fetch.broker_epoch, "max_wait_ms": fetch.max_wait_ms,
        "min_bytes": fetch.min_bytes, "max_bytes": fetch.max_bytes, "partitions": partitions})]


def parse_fetch(frames: Sequence[Frame]) -> ReplicaFetch:
    body = _body(frames, FETCH)
    names = ("current_leader_epoch", "fetch_offset", "last_fetched_epoch", "log_start_offset")
    try:
        partitions = []
        for topic, partition, *rest in body["partitions"]:
            if not isinstance(topic, str):
                raise ReplicationProtocolError(f"topic must be a string, not {topic!r}")
            position = FetchPosition(*(_int(v, name) for v, name in zip(rest, names,
                                                                        strict=True)))
            partitions.append((topic, _int(partition, "partition"), position))
        return ReplicaFetch(*(_int(body[k], k) for k in (
            "id", "replica_id", "broker_epoch", "max_wait_ms", "min_bytes", "max_bytes")),
            partitions=tuple(partitions))
    except ReplicationProtocolError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplicationProtocolError(f"malformed replica_fetch: {exc!r}") from None


def encode_fetched(reply: ReplicaFetched) -> list:
    """Header and record frames; the record sets go as they are (no copy)."""
    frames: list = []
    partitions = []
    for topic, partition, r in reply.partitions:
        index = None
        if r.records is not None:
            index = len(frames)
            frames.append(r.records)
        partitions.append([topic, partition, r.error, r.high_watermark, r.log_start_offset,
                           r.log_end_offset, list(r.diverging_epoch) if r.diverging_epoch
                           else None, index])
    header = orjson.dumps({"v": VERSION, "id": reply.request_id, "error": reply.error,
                           "partitions": partitions})
    return [FETCHED, header, *frames]


def parse_fetched(frames: Sequence[Frame]) -> ReplicaFetched:
    body = _body(frames, FETCHED)
    records = frames[2:]
    try:
        partitions = []
        for topic, partition, error, hw, start, end, diverging, index in body["partitions"]:
            if index is not None and not 0 <= _int(index, "records index") < len(records):
                raise ReplicationProtocolError(f"records frame {index} is missing")
            partitions.append((topic, _int(partition, "partition"), LeaderReply(
                error, _int(hw, "high_watermark"), _int(start, "log_start_offset"),
                _int(end, "log_end_offset"),
                tuple(_int(v, "diverging_epoch") for v in diverging) if diverging else None,
                None if index is None else _buffer(records[index]))))
        return ReplicaFetched(_int(body["id"], "id"), body.get("error"), tuple(partitions))
    except ReplicationProtocolError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplicationProtocolError(f"malformed replica_fetched: {exc!r}") from None


def encode_locate(partitions: Sequence[tuple[str, int]]) -> list[bytes]:
    return [LOCATE, orjson.dumps({"v": VERSION, "partitions": [list(p) for p in partitions]})]


def parse_locate(frames: Sequence[Frame]) -> list[tuple[str, int]]:
    body = _body(frames, LOCATE)
    try:
        return [(_str(topic), _int(partition, "partition"))
                for topic, partition in body["partitions"]]
    except ReplicationProtocolError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplicationProtocolError(f"malformed replica_locate: {exc!r}") from None


def encode_located(partitions: Sequence[tuple[str, int, int, str]]) -> list[bytes]:
    return [LOCATED, orjson.dumps({"v": VERSION, "partitions": [list(p) for p in partitions]})]


def parse_located(frames: Sequence[Frame]) -> list[tuple[str, int, int, str]]:
    body = _body(frames, LOCATED)
    try:
        return [(_str(topic), _int(partition, "partition"), _int(epoch, "leader_epoch"),
                 _str(endpoint)) for topic, partition, epoch, endpoint in body["partitions"]]
    except ReplicationProtocolError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplicationProtocolError(f"malformed replica_located: {exc!r}") from None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ReplicationProtocolError(f"expected a string, not {value!r}")
    return value
