"""shm._codec, the C record codec, against its pure-Python reference in shm.records.

Both implementations get the same inputs; they must agree byte for byte on
encoding, row for row on decoding, and on what they refuse. The C codec must
be the one in use: a test environment that silently fell back to Python
would hide a broken build.
"""

from __future__ import annotations

import gc
import mmap
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shm._codec as codec
from shm import records
from shm.errors import CorruptRecordError
from shm.records import _py_decode_records, _py_encode_records

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Lengths whose zigzag varint changes size (1 -> 2 bytes at 64, 2 -> 3 at 8192).
BOUNDARY_LENGTHS = [0, 1, 62, 63, 64, 65, 127, 128, 8190, 8191, 8192, 8193, 16384, 20_000]
SETTINGS = settings(deadline=None, max_examples=200,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Row(NamedTuple):
    """A typed row, as the consumer asks for: the five fields and one of context."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple
    partition: int


# --- strategies --------------------------------------------------------------

filled = st.tuples(st.sampled_from(BOUNDARY_LENGTHS) | st.integers(0, 20_000),
                   st.integers(0, 255)).map(lambda t: bytes([t[1]]) * t[0])
payload = st.binary(max_size=100) | filled
buffer_of = st.sampled_from([bytes, bytearray, memoryview])
blob = st.none() | st.builds(lambda data, kind: kind(data), payload, buffer_of)
header_value = st.none() | st.binary(max_size=70) | filled.map(lambda b: b[:9000])
record_headers = st.none() | st.lists(
    st.tuples(st.text(max_size=12), header_value), max_size=3
)
delta = st.integers(INT64_MIN, INT64_MAX) | st.integers(-70, 70) | st.sampled_from(
    [INT64_MIN, INT64_MAX, -1, 0, 63, 64, -64, -65, 2**31, -(2**31) - 1]
)


@st.composite
def columns(draw: st.DrawFn, max_records: int = 12) -> tuple:
    """values, keys, timestamp_deltas, headers: each optional column maybe None."""
    count = draw(st.integers(0, max_records))
    values = draw(st.lists(blob, min_size=count, max_size=count))
    keys = draw(st.none() | st.lists(blob, min_size=count, max_size=count))
    deltas = draw(st.none() | st.lists(delta, min_size=count, max_size=count))
    headers = draw(st.none() | st.lists(record_headers, min_size=count, max_size=count))
    return values, keys, deltas, headers


def outcome(function: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """('ok', result) or ('refused', exception): what a call did."""
    try:
        return "ok", function(*args)
    except (ValueError, CorruptRecordError) as exc:  # the reference may raise either
        return "refused", exc


def fits_int64(rows: list[tuple]) -> bool:
    """Whether every offset and timestamp of the reference's rows is an int64."""
    return all(INT64_MIN <= r[0] <= INT64_MAX and INT64_MIN <= r[1] <= INT64_MAX
               for r in rows)


def assert_same_decoding(data: Any, *args: Any) -> None:
    """C and Python decode `data` alike: equal rows of the same type, or both refuse
    (C always with a ValueError). Where the reference returns an offset or a
    timestamp outside int64, C must refuse instead."""
    expected = outcome(_py_decode_records, data, *args)
    actual = outcome(codec.decode_records, data, *args)
    if expected[0] == "ok" and not fits_int64(expected[1]):
        assert actual[0] == "refused", "an int64 overflow was not detected"
    else:
        assert actual[0] == expected[0], (expected, actual)
    if actual[0] == "refused":
        assert isinstance(actual[1], ValueError), actual[1]
    elif expected[0] == "ok" and fits_int64(expected[1]):
        assert actual[1] == expected[1]
        assert [type(r) for r in actual[1]] == [type(r) for r in expected[1]]


def section(count: int = 20, value_size: int = 100) -> bytes:
    """A valid records section with keys, headers, nulls and multi-byte varints."""
    values = [None if i % 7 == 3 else bytes([i]) * (value_size + i * 13) for i in range(count)]
    keys = [None if i % 2 else f"key-{i}".encode() for i in range(count)]
    deltas = [i * 1_000_003 - 5 for i in range(count)]
    headers = [[("trace", b"t" * i), ("ünïcode", None)] if i % 3 == 0 else None
               for i in range(count)]
    return codec.encode_records(values, keys, deltas, headers)


# --- the C codec is the one in use --------------------------------------------


def test_shm_records_uses_the_c_codec() -> None:
    assert records.encode_records is codec.encode_records
    assert records.decode_records is codec.decode_records


# --- encoding --------------------------------------------------------------------


@given(columns())
@SETTINGS
def test_c_encoding_is_the_references_byte_for_byte(cols: tuple) -> None:
    assert codec.encode_records(*cols) == _py_encode_records(*cols)


@pytest.mark.parametrize("length", BOUNDARY_LENGTHS)
def test_lengths_at_varint_boundaries_encode_alike(length: int) -> None:
    value = bytes(range(256)) * (length // 256) + bytes(length % 256)
    cols = ([value, value[:-1] or None], [value[1:], None], [0, length],
            [[("h" * (length % 100), value)], None])
    assert codec.encode_records(*cols) == _py_encode_records(*cols)


def test_keyword_arguments_and_defaults_match() -> None:
    values = [b"a", None, b"ccc"]
    assert (codec.encode_records(values=values, headers=None, keys=None)
            == _py_encode_records(values))
    assert codec.encode_records([]) == _py_encode_records([]) == b""


@pytest.mark.parametrize(
    "cols",
    [
        ([b"a"], [b"k", b"k"], None, None),  # keys longer than values
        ([b"a", b"b"], None, [0], None),  # deltas shorter
        ([b"a"], None, None, [None, None]),  # headers longer
        ([b"a"], None, [INT64_MAX + 1], None),  # delta out of int64
        ([b"a"], None, [INT64_MIN - 1], None),
        ([b"a"], None, [2**200], None),
        ([b"a"], None, None, [[("k", b"v", b"extra")]]),  # not a pair
        ([b"a"], None, None, [[("\ud800", b"v")]]),  # a lone surrogate has no UTF-8
    ],
)
def test_out_of_range_columns_are_value_errors_in_both(cols: tuple) -> None:
    with pytest.raises(ValueError):
        _py_encode_records(*cols)
    with pytest.raises(ValueError):
        codec.encode_records(*cols)


@pytest.mark.parametrize(
    "cols",
    [
        (5, None, None, None),  # values without len()
        (None, None, None, None),
        ([3], None, None, None),  # an int is not bytes-like
        ([b"a"], [7], None, None),
        ([b"a"], None, [1.5], None),  # a float is not an integer delta
        ([b"a"], None, ["1"], None),
        ([b"a"], None, None, [[("k", 5)]]),  # a header value must be bytes-like
        ([b"a"], None, None, [[5]]),  # a header is a pair
    ],
)
def test_wrong_types_are_type_errors_in_both(cols: tuple) -> None:
    with pytest.raises(TypeError):
        _py_encode_records(*cols)
    with pytest.raises(TypeError):
        codec.encode_records(*cols)


@pytest.mark.parametrize(
    "cols",
    [
        ([b"a"], None, None, [[(b"name", b"v")]]),  # the reference: AttributeError
        (["text"], None, None, None),  # str is not bytes-like
        ([b"a"], [""], None, None),  # not even empty (the reference writes it as b"")
    ],
)
def test_c_refuses_non_bytes_names_and_values_with_a_type_error(cols: tuple) -> None:
    with pytest.raises(TypeError):
        codec.encode_records(*cols)


def test_a_record_over_int32_max_bytes_is_refused_before_any_copy() -> None:
    # 2 GiB of untouched anonymous memory: only the size pass reads its length.
    with mmap.mmap(-1, INT32_MAX) as huge:
        for encode in (_py_encode_records, codec.encode_records):
            with pytest.raises(ValueError, match="too large"):
                encode([b"x", huge])


def test_a_column_changing_between_the_passes_is_refused_not_overrun() -> None:
    class Growing:
        """A values column whose item grows every time it is read."""

        def __init__(self) -> None:
            self.reads = 0

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> bytes:
            self.reads += 1
            return b"x" * (10 * self.reads)

    with pytest.raises(RuntimeError, match="changed"):
        codec.encode_records(Growing())


def test_a_delta_that_empties_the_values_list_cannot_crash() -> None:
    values = [b"a" * 50, b"b" * 50]

    class Emptying:
        """An integer whose conversion clears the values column."""

        def __index__(self) -> int:
            values.clear()
            return 0

    with pytest.raises((IndexError, RuntimeError)):
        codec.encode_records(values, None, [Emptying(), Emptying()])


# --- decoding ----------------------------------------------------------------------


@given(cols=columns(), base_offset=st.integers(INT64_MIN, INT64_MAX - 20),
       base_timestamp=st.integers(INT64_MIN, INT64_MAX))
@SETTINGS
def test_c_decoding_gives_the_references_rows(cols: tuple, base_offset: int,
                                              base_timestamp: int) -> None:
    data = codec.encode_records(*cols)
    count = len(cols[0])
    assert_same_decoding(data, count, base_offset, base_timestamp)


@given(cols=columns(), base_offset=st.integers(-(2**40), 2**40),
       override=st.none() | st.integers(INT64_MIN, INT64_MAX),
       skip=st.integers(-(2**40), 2**40 + 20) | st.sampled_from([2**64, -(2**64)]),
       typed=st.booleans(), kind=buffer_of)
@SETTINGS
def test_c_decoding_with_every_option_gives_the_references_rows(
    cols: tuple, base_offset: int, override: int | None, skip: int, typed: bool, kind: type
) -> None:
    data = kind(codec.encode_records(*cols))
    skip_below = base_offset + skip % 25 if abs(skip) < 2**41 else skip
    args = (len(cols[0]), base_offset, 1_700_000_000_000, override, skip_below,
            Row if typed else None, (7,) if typed else ())
    assert_same_decoding(data, *args)


@given(cols=columns())
@SETTINGS
def test_c_decoding_of_the_c_encoding_gives_the_columns_back(cols: tuple) -> None:
    values, keys, deltas, headers = cols
    count = len(values)
    rows = codec.decode_records(codec.encode_records(*cols), count, 10, 0, None, 0, Row, (3,))
    assert [r.offset for r in rows] == list(range(10, 10 + count))
    assert [r.timestamp for r in rows] == (deltas or [0] * count)
    assert [r.value for r in rows] == [None if v is None else bytes(v) for v in values]
    assert [r.key for r in rows] == [None if k is None else bytes(k)
                                     for k in keys or [None] * count]
    assert [r.headers for r in rows] == [tuple(h or ()) for h in headers or [None] * count]
    assert all(type(r) is Row and r.partition == 3 for r in rows)


def test_rows_are_plain_tuples_without_row_type_and_carry_the_context() -> None:
    data = codec.encode_records([b"v"], [b"k"], [5], [[("h", b"x")]])
    (row,) = codec.decode_records(data, 1, 100, 1_000, context=("topic", 0))
    assert type(row) is tuple
    assert row == (100, 1_005, b"k", b"v", (("h", b"x"),), "topic", 0)
    (row,) = codec.decode_records(memoryview(data), 1, 100, 1_000, 42, row_type=tuple)
    assert type(row) is tuple and row[1] == 42


def test_a_non_contiguous_memoryview_decodes_like_its_bytes() -> None:
    data = section()
    strided = memoryview(bytes(x for b in data for x in (b, 0)))[::2]
    assert codec.decode_records(strided, 20, 0, 0) == _py_decode_records(data, 20, 0, 0)


@pytest.mark.parametrize("base_offset", [INT64_MAX - 18, INT64_MAX, 2**63, -(2**63) - 1])
def test_offsets_past_int64_are_refused_not_wrapped(base_offset: int) -> None:
    with pytest.raises(ValueError, match="int64"):
        codec.decode_records(section(), 20, base_offset, 0)


def test_timestamps_past_int64_are_refused_unless_overridden() -> None:
    data = codec.encode_records([b"a", b"b"], None, [0, 1])
    with pytest.raises(ValueError, match="int64"):
        codec.decode_records(data, 2, 0, INT64_MAX)
    assert codec.decode_records(data, 2, 0, INT64_MAX, timestamp_override=5)[1][1] == 5
    assert codec.decode_records(data, 2, 0, INT64_MAX - 1)[1][1] == INT64_MAX


# --- malformed sections --------------------------------------------------------------


def test_every_truncation_is_refused_by_both() -> None:
    data = section()
    for end in range(len(data)):
        assert_same_decoding(data[:end], 20, 0, 0)
    assert_same_decoding(data, 20, 0, 0)


def test_every_single_byte_change_is_judged_alike() -> None:
    data = section(count=6, value_size=60)
    for pos in range(len(data)):
        for byte in (0x00, 0x01, 0x7F, 0x80, 0xFF, data[pos] ^ 0x40):
            mutated = data[:pos] + bytes([byte]) + data[pos + 1 :]
            assert_same_decoding(mutated, 6, 0, 0, None, 2)


@given(data=st.data(), cols=columns(max_records=6))
@SETTINGS
def test_random_mutations_are_judged_alike(data: st.DataObject, cols: tuple) -> None:
    valid = bytearray(codec.encode_records(*cols))
    count = len(cols[0]) + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, len(valid)))
        if action == "set" and pos < len(valid):
            valid[pos] = data.draw(st.integers(0, 255))
        elif action == "insert":
            valid[pos:pos] = data.draw(st.binary(min_size=1, max_size=11))
        elif action == "delete":
            del valid[pos : pos + data.draw(st.integers(1, 11))]
        else:
            del valid[pos:]
    assert_same_decoding(bytes(valid), count, 0, 0, None, 0, Row, (1,))


@given(garbage=st.binary(max_size=200), count=st.integers(-3, 8))
@SETTINGS
def test_random_bytes_are_judged_alike(garbage: bytes, count: int) -> None:
    assert_same_decoding(garbage, count, 0, 0)


def varint(n: int) -> bytes:
    """Zigzag LEB128 of n, for hand-made records."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def record(body: bytes) -> bytes:
    """A record with its length prefix."""
    return varint(len(body)) + body


PLAIN = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(1) + b"v" + varint(0)


@pytest.mark.parametrize(
    "data",
    [
        record(PLAIN) + b"\x00",  # a byte after the last record
        b"\x80\x80\x80\x80\x80\x01" + PLAIN,  # a 6-byte length varint
        b"\xff\xff\xff\xff\x1f" + PLAIN,  # a length overflowing 32 bits
        record(b"\x00" + b"\x80" * 10 + b"\x01" + PLAIN[2:]),  # an 11-byte varlong
        record(b"\x00" + b"\xff" * 9 + b"\x03" + PLAIN[2:]),  # a varlong over 64 bits
        record(b"\x00\x00\x00" + varint(-2) + varint(1) + b"v" + varint(0)),  # key length -2
        record(b"\x00\x00\x00" + varint(-1) + varint(-5) + varint(0)),  # value length -5
        record(b"\x00\x00\x00" + varint(-1) + varint(9) + b"v" + varint(0)),  # value past end
        record(PLAIN[:-1] + varint(-1)),  # header count -1
        record(PLAIN[:-1] + varint(40)),  # header count past the record
        record(PLAIN[:-1] + varint(1) + varint(2) + b"\xc3\x28" + varint(-1)),  # bad UTF-8
        record(PLAIN[:-1] + varint(1) + varint(-1) + varint(-1)),  # header key length -1
        record(PLAIN[:-1] + varint(1) + varint(1) + b"k" + varint(-3)),  # header value -3
        record(PLAIN[:-1] + varint(1) + varint(1) + b"k" + varint(9) + b"v"),  # past end
        record(PLAIN + b"\x00"),  # fields shorter than the length
        varint(5) + PLAIN,  # length below the minimum record
        varint(-1) + PLAIN,
        varint(INT32_MAX) + PLAIN,  # length past the section
    ],
)
def test_malformed_records_are_refused_by_both(data: bytes) -> None:
    with pytest.raises((ValueError, CorruptRecordError)):
        _py_decode_records(data, 1, 0, 0)
    with pytest.raises(ValueError):
        codec.decode_records(data, 1, 0, 0)


def test_a_varlong_of_ten_bytes_holding_int64_min_is_accepted() -> None:
    data = record(b"\x00" + b"\xff" * 9 + b"\x01" + PLAIN[2:])
    assert_same_decoding(data, 1, 0, 0)
    assert codec.decode_records(data, 1, 0, 0)[0][1] == INT64_MIN


@pytest.mark.parametrize("count", [2**31, 2**63, 2**100, -1, -(2**100)])
@pytest.mark.parametrize("data", [b"", section(3)])
def test_huge_and_negative_counts_are_judged_alike(count: int, data: bytes) -> None:
    assert_same_decoding(data, count, 0, 0)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("not bytes", 3, 0, 0), {}),
        ((None, 3, 0, 0), {}),
        ((section(3), "3", 0, 0), {}),
        ((section(3), 3.0, 0, 0), {}),
        ((section(3), 3, 0, 0), {"skip_below": "0"}),
        ((section(3), 3, 0, 0), {"row_type": int}),
        ((section(3), 3, 0, 0), {"row_type": list}),
        ((section(3), 3, 0, 0), {"context": 5}),
        ((section(3),), {}),
        ((section(3), 3, 0, 0), {"colour": 1}),
    ],
)
def test_wrong_argument_types_are_type_errors_in_both(args: tuple, kwargs: dict) -> None:
    with pytest.raises(TypeError):
        _py_decode_records(*args, **kwargs)
    with pytest.raises(TypeError):
        codec.decode_records(*args, **kwargs)


def test_c_refuses_a_non_integer_base_offset_and_a_non_buffer() -> None:
    with pytest.raises(TypeError):
        codec.decode_records(section(3), 3, "0", 0)
    with pytest.raises(TypeError):
        codec.decode_records([1, 2, 3], 3, 0, 0)  # bytes() would take it; C wants a buffer
    with pytest.raises(TypeError):
        codec.decode_records(section(3), 3, 0, 0, row_type="Row")


# --- references ------------------------------------------------------------------------


def test_failed_calls_release_every_reference() -> None:
    value, key, name, context = b"v" * 100, bytearray(b"k"), "header-name", ("ctx",)
    before = [sys.getrefcount(o) for o in (value, key, name, context)]
    for _ in range(100):
        with pytest.raises(ValueError):
            codec.encode_records([value, value], [key, key], [0, 2**64],
                                 [[(name, value)], [(name, value)]])
        with pytest.raises(TypeError):
            codec.encode_records([value, key, 3], None, None, [[(name, key)]] * 3)
        with pytest.raises(ValueError):  # fails on the last record, after rows were made
            codec.decode_records(section(4)[:-1], 4, 0, 0, None, 0, Row, context)
    assert [sys.getrefcount(o) for o in (value, key, name, context)] == before


def test_repeated_calls_do_not_grow_memory() -> None:
    good, bad = section(), section()[:-3]

    def work() -> None:
        for _ in range(300):
            codec.encode_records([b"x" * 100] * 10, [b"k"] * 10, list(range(10)),
                                 [[("h", b"v")]] * 10)
            codec.decode_records(good, 20, 0, 0, None, 5, Row, (1,))
            with pytest.raises(ValueError):
                codec.decode_records(bad, 20, 0, 0, None, 0, Row, (1,))

    work()  # warm caches and free lists
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        work()
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One leaked 100-byte value per call would be 90 KB; allow pytest's own noise.
    assert end - start < 20_000


def test_shared_timestamps_are_equal_ints_in_every_row() -> None:
    data = codec.encode_records([b"a"] * 5, None, [0, 0, 1, 1, 0])
    assert [r[1] for r in codec.decode_records(data, 5, 0, 10)] == [10, 10, 11, 11, 10]
