"""Ringlog's native protocol, sans I/O: multipart messages in, typed events out.

A message is a ZeroMQ multipart message between a client's DEALER and the
front end's ROUTER (the ROUTER adds and strips the peer's identity frame)::

    frame 0      header: one JSON object (orjson), at most MAX_HEADER_BYTES
    frame 1..n   payloads: raw Kafka record sets, never JSON-encoded

A request header always has "api" (a name in SCHEMAS), "v" (VERSION) and
"id" (an int the client chooses; the reply carries it back, so a client
keeps many requests in flight on one connection). A reply header has "api",
"id" and "error" (null, or a Kafka error name) with "message" beside an error.

This module only turns frames into Request/Response objects and back, and
checks every field's type; it owns no socket, so it is tested without
processes. The caller owns the socket. docs/protocol.md describes each API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from shm.errors import InvalidRequestError, RinglogError, UnsupportedVersionError

VERSION = 1
MAX_HEADER_BYTES = 1 << 20
NO_ID = -1  # the id of a reply to a request whose id could not be read

ACKS_NONE, ACKS_LEADER, ACKS_ALL = 0, 1, -1
EARLIEST, LATEST = -2, -1  # list_offsets timestamps, as in Kafka

Frame = Any  # bytes, memoryview or zmq.Frame: anything with the buffer protocol


# --- field checks ----------------------------------------------------------------------

def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(v: object) -> bool:
    return _is_int(v) and -(2**63) <= v < 2**63  # type: ignore[operator]


def _str(v: object) -> bool:
    return isinstance(v, str)


def _bool(v: object) -> bool:
    return isinstance(v, bool)


def _str_map(v: object) -> bool:
    return isinstance(v, dict) and all(_str(k) and _str(x) for k, x in v.items())


def _list_of(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _tuple_of(*checks: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: (isinstance(v, list) and len(v) == len(checks)
                      and all(c(x) for c, x in zip(checks, v, strict=True)))


def _nullable(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or check(v)


def _topic_spec(v: object) -> bool:
    """A create_topics entry: name, partitions, replication factor, configs."""
    if not isinstance(v, dict) or not _str(v.get("name")):
        return False
    return (_int(v.get("partitions", 1)) and _int(v.get("replication_factor", 1))
            and _str_map(v.get("configs", {})))


# Each API: field name -> (check, required). Fields not listed are refused, so
# a typo in a client shows at once instead of being ignored.
_TOPIC_PARTITION = _tuple_of(_str, _int)
Schema = Mapping[str, tuple[Callable[[object], bool], bool]]
SCHEMAS: dict[str, Schema] = {
    "metadata": {"topics": (_nullable(_list_of(_str)), False),
                 "allow_auto_create": (_bool, False)},
    "create_topics": {"topics": (_list_of(_topic_spec), True)},
    "delete_topics": {"topics": (_list_of(_str), True)},
    "describe_topics": {"topics": (_nullable(_list_of(_str)), False)},
    "alter_configs": {"topic": (_str, True), "configs": (_str_map, True),
                      "deleted": (_list_of(_str), False)},
    "produce": {"acks": (_int, True), "timeout_ms": (_int, False),
                "partitions": (_list_of(_TOPIC_PARTITION), True)},
    "fetch": {"max_wait_ms": (_int, False), "min_bytes": (_int, False),
              "max_bytes": (_int, False),
              # topic, partition, offset, max bytes for the partition
              "partitions": (_list_of(_tuple_of(_str, _int, _int, _int)), True)},
    "list_offsets": {"partitions": (_list_of(_tuple_of(_str, _int, _int)), True)},
    "init_producer_id": {},
    "join_group": {"group_id": (_str, True), "member_id": (_nullable(_str), False),
                   "topics": (_list_of(_str), True), "session_timeout_ms": (_int, False),
                   "assignor": (_str, False), "client_id": (_str, False)},
    "heartbeat": {"group_id": (_str, True), "member_id": (_str, True),
                  "generation_id": (_int, True), "owned": (_list_of(_TOPIC_PARTITION), True)},
    "leave_group": {"group_id": (_str, True), "member_id": (_str, True)},
    "offset_commit": {"group_id": (_str, True), "member_id": (_nullable(_str), False),
                      "generation_id": (_int, False),
                      # topic, partition, offset, metadata
                      "offsets": (_list_of(_tuple_of(_str, _int, _int, _str)), True)},
    "offset_fetch": {"group_id": (_str, True),
                     "partitions": (_nullable(_list_of(_TOPIC_PARTITION)), False)},
    "describe_groups": {"groups": (_list_of(_str), True)},
    "list_groups": {},
    "find_coordinator": {"group_id": (_str, True)},
    "status": {"details": (_bool, False)},
    # topic, partition, offset (-1: the high watermark)
    "delete_records": {"partitions": (_list_of(_tuple_of(_str, _int, _int)), True),
                       "timeout_ms": (_int, False)},
    # topic, new total partition count
    "create_partitions": {"topics": (_list_of(_tuple_of(_str, _int)), True),
                          "validate_only": (_bool, False)},
}
_ENVELOPE = ("api", "v", "id")


# --- messages ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Request:
    """A checked request: its fields and its payload frames, untouched."""

    api: str
    id: int
    fields: dict[str, Any]
    payloads: list[Frame] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Response:
    """A reply as the client sees it; `error` is a Kafka error name or None."""

    api: str
    id: int
    error: str | None
    message: str
    fields: dict[str, Any]
    payloads: list[Frame] = field(default_factory=list)


class ProtocolError(Exception):
    """A request that cannot be served; `reply` is the error reply to send."""

    def __init__(self, error: RinglogError, api: str, request_id: int):
        super().__init__(str(error))
        self.error = error
        self.reply = encode_error(api, request_id, error)


def encode_request(api: str, request_id: int, fields: Mapping[str, Any] | None = None,
                   payloads: Sequence[Frame] = ()) -> list[Frame]:
    """The frames of a request, ready for send_multipart."""
    header = {"api": api, "v": VERSION, "id": request_id, **(fields or {})}
    return [orjson.dumps(header), *payloads]


def parse_request(frames: Sequence[Frame]) -> Request:
    """Check a request's header and return it; raise ProtocolError with the
    error reply for anything malformed, unknown or of the wrong type."""
    if not frames:
        raise ProtocolError(InvalidRequestError("empty message: a header frame is required"),
                            "", NO_ID)
    raw = frames[0]
    raw = raw.buffer if hasattr(raw, "buffer") else raw
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(InvalidRequestError(
            f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}"), "", NO_ID)
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(InvalidRequestError(
            "header frame is not JSON: frame 0 must be a JSON object"), "", NO_ID) from None
    if not isinstance(header, dict):
        raise ProtocolError(InvalidRequestError("header frame is not a JSON object"), "", NO_ID)
    request_id = header.get("id")
    if not _int(request_id):
        raise ProtocolError(InvalidRequestError('header needs an integer "id"'), "", NO_ID)
    api = header.get("api")
    schema = SCHEMAS.get(api) if isinstance(api, str) else None
    api_name = api if isinstance(api, str) else ""
    if schema is None:
        raise ProtocolError(UnsupportedVersionError(
            f"unknown api {api!r}; known: {', '.join(sorted(SCHEMAS))}"), api_name, request_id)
    if header.get("v") != VERSION:
        raise ProtocolError(UnsupportedVersionError(
            f"{api} version {header.get('v')!r} is not supported; use {VERSION}"),
            api_name, request_id)
    fields = {k: v for k, v in header.items() if k not in _ENVELOPE}
    for name in fields:
        if name not in schema:
            raise ProtocolError(InvalidRequestError(f"{api}: unknown field {name!r}"),
                                api, request_id)
    for name, (check, required) in schema.items():
        if name not in fields:
            if required:
                raise ProtocolError(InvalidRequestError(f"{api}: field {name!r} is required"),
                                    api, request_id)
        elif not check(fields[name]):
            raise ProtocolError(InvalidRequestError(
                f"{api}: field {name!r} has the wrong type or shape"), api, request_id)
    return Request(api, request_id, fields, list(frames[1:]))


def encode_response(api: str, request_id: int, fields: Mapping[str, Any] | None = None,
                    payloads: Sequence[Frame] = ()) -> list[Frame]:
    """A successful reply (per-partition errors go inside `fields`)."""
    header = {"api": api, "id": request_id, "error": None, **(fields or {})}
    return [orjson.dumps(header), *payloads]


def encode_error(api: str, request_id: int, error: RinglogError) -> list[Frame]:
    """A whole-request error reply: the Kafka error name and a one-line message."""
    header = {"api": api, "id": request_id, "error": error.name, "message": str(error)}
    return [orjson.dumps(header)]


def parse_response(frames: Sequence[Frame]) -> Response:
    """The client's side: a reply's header and payloads."""
    raw = frames[0]
    raw = raw.buffer if hasattr(raw, "buffer") else raw
    header = orjson.loads(raw)
    api = header.pop("api", "")
    request_id = header.pop("id", NO_ID)
    error = header.pop("error", None)
    message = header.pop("message", "")
    return Response(api, request_id, error, message, header, list(frames[1:]))


def error_entry(error: RinglogError | None) -> dict[str, Any]:
    """The per-partition error fields of a reply entry."""
    if error is None:
        return {"error": None}
    return {"error": error.name, "message": str(error)}
