"""Kafka's message types, read and written with kio (types generated from
Kafka's JSON schemas; a Rust parser; no per-record work: a record set is
one bytes value).

A response is built from plain values, the same for every version: `build`
keeps the fields the version's class has and fills the rest from the
class's defaults, so the codec writes each API's response once rather than
once per version. Values convert to kio's types here (error codes, time
deltas), where the schema says so.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import types
import typing
from collections.abc import Callable
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.response_header.v0.header import ResponseHeader
from kio.serial import entity_reader, entity_writer

_ERROR_CODES = {code.value: code for code in ErrorCode}
UNKNOWN_SERVER_ERROR = ErrorCode(-1)


def error_code(code: int) -> ErrorCode:
    """kio's enum for a numeric code (an unknown one is UNKNOWN_SERVER_ERROR)."""
    return _ERROR_CODES.get(code, UNKNOWN_SERVER_ERROR)


@functools.cache
def request_reader(api_key: int, version: int) -> Callable[[Any, int], tuple[Any, int]]:
    return entity_reader(load_request_schema(api_key, version))


@functools.cache
def _response_class(api_key: int, version: int) -> type:
    return load_response_schema(api_key, version)


@functools.cache
def _writer(cls: type) -> Callable[[Any, Any], None]:
    return entity_writer(cls)


def encode_response(api_key: int, version: int, correlation_id: int, values: dict) -> bytes:
    """Response header v0 (every non-flexible response's) and the body built
    from `values` for this version."""
    out = io.BytesIO()
    _writer(ResponseHeader)(out, ResponseHeader(correlation_id=correlation_id))
    cls = _response_class(api_key, version)
    _writer(cls)(out, build(cls, values))
    return out.getvalue()


def build(cls: type, values: dict) -> Any:
    """An instance of kio's dataclass `cls` from `values`: keys the class does
    not have at this version are left out, fields not given take their
    defaults, nested entities are built from dicts and lists of dicts."""
    kwargs = {}
    for name, convert in _plan(cls):
        if name in values:
            kwargs[name] = convert(values[name])
    return cls(**kwargs)


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls))


def _converter(hint: Any) -> Callable[[Any], Any]:
    """How a plain value becomes a field of type `hint`."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        inner = _converter(args[0])
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        inner = _converter(args[0])
        return lambda value: tuple(inner(v) for v in value)
    if dataclasses.is_dataclass(hint):
        return lambda value: value if dataclasses.is_dataclass(value) else build(hint, value)
    if hint is ErrorCode:
        return lambda value: value if isinstance(value, ErrorCode) else error_code(value)
    if hint is datetime.timedelta or _base_is(hint, datetime.timedelta):
        return lambda value: (value if isinstance(value, datetime.timedelta)
                              else datetime.timedelta(milliseconds=value))
    if _base_is(hint, datetime.datetime):
        return lambda value: (value if isinstance(value, datetime.datetime)
                              else datetime.datetime.fromtimestamp(value / 1000, datetime.UTC))
    return lambda value: value


def _base_is(hint: Any, base: type) -> bool:
    """kio's phantom types (i32Timedelta, TZAware) subclass the stdlib ones."""
    supertype = getattr(hint, "__supertype__", None)
    if supertype is not None:
        return _base_is(supertype, base)
    return isinstance(hint, type) and issubclass(hint, base)
