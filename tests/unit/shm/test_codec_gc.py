"""The C decoder's rows stay out of the cyclic garbage collector when they cannot form a cycle.

A fetch decodes thousands of rows at once; if each were tracked, every
collection their allocations trigger would walk all rows still alive.
"""

from __future__ import annotations

import gc
from typing import NamedTuple

import shm._codec as codec
from shm.records import encode_columns, read_batch


class Row(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple
    topic: str


class RowWithDict(tuple):  # no __slots__: its instances have a __dict__
    pass


def section_rows(row_type, context, headers=None):
    batch = encode_columns([b"v1", b"v2"], [b"k", None], 1_000, headers)
    return read_batch(batch, row_type=row_type, context=context)[1]


def test_rows_of_atoms_are_not_tracked_and_neither_are_their_headers() -> None:
    rows = section_rows(Row, ("topic",), headers=[[("h", b"x")], []])
    assert codec.decode_records is not None
    assert [type(r) for r in rows] == [Row, Row]
    assert not any(gc.is_tracked(r) for r in rows)
    assert not gc.is_tracked(rows[0].headers) and not gc.is_tracked(rows[0].headers[0])
    assert rows[0].headers == (("h", b"x"),)


def test_rows_holding_a_container_from_the_context_stay_tracked() -> None:
    shared = []
    rows = section_rows(None, (shared,))
    assert all(gc.is_tracked(r) for r in rows)
    shared.append(rows)  # a real cycle: the collector must be able to see it
    assert rows[0][5] is shared


def test_rows_of_a_type_with_a_dict_stay_tracked() -> None:
    rows = section_rows(RowWithDict, ())
    assert all(type(r) is RowWithDict and gc.is_tracked(r) for r in rows)


def test_rows_holding_a_container_as_timestamp_override_stay_tracked() -> None:
    section = codec.encode_records([b"a", b"b"])
    override = []
    rows = codec.decode_records(section, 2, 0, 0, override)
    assert all(gc.is_tracked(r) and r[1] is override for r in rows)
