"""framing.Connection, sans I/O: frames split on Kafka's int32 size whatever
the chunking, sizes out of bounds are FrameErrors, responses leave in slot
order, acks=0 takes no slot, muting, partial sends."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.kafka import framing
from appliance.kafka.framing import Connection, FrameError, frame

MAX = 1 << 16


def framed(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def drain(connection: Connection) -> bytes:
    out = b"".join(bytes(view) for view in connection.pending())
    connection.sent(len(out))
    return out


# --- requests in -----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(bodies=st.lists(st.binary(max_size=300), max_size=12),
       cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_frames_split_on_the_size_across_any_chunking(bodies, cuts):
    stream = b"".join(framed(body) for body in bodies)
    connection = Connection(MAX)
    got: list[bytes] = []
    for piece in chunked(stream, cuts):
        got += list(connection.receive(piece))
    assert got == bodies
    assert list(connection.receive(b"")) == []  # nothing left over


@settings(max_examples=100, deadline=None)
@given(bodies=st.lists(st.binary(max_size=100), min_size=1, max_size=5),
       partial=st.binary(min_size=1, max_size=50))
def test_a_partial_frame_waits_for_the_rest(bodies, partial):
    connection = Connection(MAX)
    whole = b"".join(framed(body) for body in bodies)
    tail = framed(partial + b"!")
    assert list(connection.receive(whole + tail[:-1])) == bodies
    assert list(connection.receive(tail[-1:])) == [partial + b"!"]


def test_one_byte_at_a_time():
    connection = Connection(MAX)
    stream = framed(b"abc") + framed(b"") + framed(b"xyz" * 100)
    got = [f for byte in stream for f in connection.receive(bytes([byte]))]
    assert got == [b"abc", b"", b"xyz" * 100]


def test_receive_accepts_bytearray_and_memoryview():
    connection = Connection(MAX)
    data = framed(b"one") + framed(b"two")
    assert list(connection.receive(bytearray(data[:5]))) == []
    assert list(connection.receive(memoryview(data)[5:])) == [b"one", b"two"]


@pytest.mark.parametrize("size", [-1, -(2**31), MAX + 1, 2**31 - 1])
def test_a_negative_or_oversized_size_is_a_frame_error(size):
    connection = Connection(MAX)
    with pytest.raises(FrameError):
        list(connection.receive(struct.pack(">i", size)))


def test_the_size_limit_itself_is_allowed():
    connection = Connection(MAX)
    assert list(connection.receive(framed(bytes(MAX)))) == [bytes(MAX)]


def test_frames_before_a_bad_size_are_still_yielded():
    connection = Connection(MAX)
    got = []
    with pytest.raises(FrameError):
        for body in connection.receive(framed(b"fine") + struct.pack(">i", -5)):
            got.append(body)
    assert got == [b"fine"]


def test_the_default_limit_is_socket_request_max_bytes():
    from appliance.config import default_config
    limit = int(default_config()["socket.request.max.bytes"])
    with pytest.raises(FrameError):
        list(Connection(limit).receive(struct.pack(">i", limit + 1)))
    assert list(Connection(limit).receive(struct.pack(">i", limit))) == []  # waits for the body


# --- responses out ---------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(data=st.data(), count=st.integers(min_value=1, max_value=15))
def test_responses_leave_in_slot_order_whatever_order_they_are_filled(data, count):
    connection = Connection(MAX)
    slots = [connection.take_slot() for _ in range(count)]
    assert slots == list(range(count))
    order = data.draw(st.permutations(slots))
    expected = b"".join(framed(b"r%d;" % slot) for slot in slots)
    out, filled = b"", set()
    for slot in order:
        connection.respond(slot, frame([b"r%d;" % slot]))
        filled.add(slot)
        head = next(s for s in range(count + 1) if s not in filled)  # the first unfilled
        # exactly the contiguous run of filled slots at the head is out, no more
        assert connection.in_flight == count - head
        if data.draw(st.booleans()):
            out += drain(connection)
            assert out == b"".join(framed(b"r%d;" % s) for s in range(head))
    out += drain(connection)
    assert out == expected
    assert connection.in_flight == 0 and connection.unsent_bytes == 0
    assert not connection.wants_write


def test_a_later_slot_waits_for_an_earlier_one():
    connection = Connection(MAX)
    first, second = connection.take_slot(), connection.take_slot()
    connection.respond(second, [b"second"])
    assert not connection.wants_write and connection.pending() == []
    connection.respond(first, [b"first"])
    assert drain(connection) == b"firstsecond"


def test_acks_zero_takes_no_slot_and_holds_nothing_back():
    """A produce with acks=0 never takes a slot: the responses after it go
    out as soon as they are ready."""
    connection = Connection(MAX)
    before = connection.take_slot()
    # ... an acks=0 produce arrives here and takes no slot ...
    after = connection.take_slot()
    assert after == before + 1
    connection.respond(before, [b"a"])
    connection.respond(after, [b"b"])
    assert drain(connection) == b"ab"
    assert connection.in_flight == 0


def test_empty_buffers_are_skipped_and_memoryviews_pass_through():
    connection = Connection(MAX)
    slot = connection.take_slot()
    backing = bytearray(b"records!")
    connection.respond(slot, [b"", memoryview(backing), b"", bytearray(b"end")])
    pending = connection.pending()
    assert [bytes(v) for v in pending] == [b"records!", b"end"]
    assert pending[0].obj is backing  # no copy of the record set
    assert connection.unsent_bytes == 11


def test_frame_prefixes_the_total_size():
    body = [b"abc", memoryview(b"defg"), bytearray(b"h")]
    assert b"".join(bytes(b) for b in frame(body)) == framed(b"abcdefgh")


# --- partial sends ---------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(buffers=st.lists(st.binary(min_size=0, max_size=50), min_size=1, max_size=8),
       steps=st.lists(st.integers(min_value=1, max_value=60), max_size=40))
def test_partial_sends_resume_where_they_stopped(buffers, steps):
    connection = Connection(MAX)
    connection.respond(connection.take_slot(), list(buffers))
    expected = b"".join(buffers)
    assert connection.unsent_bytes == len(expected)
    out = b""
    for step in steps:
        if not connection.wants_write:
            break
        pending = b"".join(bytes(v) for v in connection.pending())
        count = min(step, len(pending))
        out += pending[:count]
        connection.sent(count)
        assert connection.unsent_bytes == len(expected) - len(out)
    out += drain(connection)
    assert out == expected
    assert not connection.wants_write and connection.unsent_bytes == 0


# --- muting ----------------------------------------------------------------------------------

def test_reading_stops_at_max_in_flight_and_resumes_when_answered():
    connection = Connection(MAX)
    slots = []
    for _ in range(framing.MAX_IN_FLIGHT - 1):
        slots.append(connection.take_slot())
        assert connection.wants_read
    slots.append(connection.take_slot())
    assert connection.in_flight == framing.MAX_IN_FLIGHT
    assert not connection.wants_read
    connection.respond(slots[-1], [b"x"])  # not at the head: still in flight
    assert not connection.wants_read
    connection.respond(slots[0], [b"y"])
    assert connection.wants_read
    assert connection.in_flight == framing.MAX_IN_FLIGHT - 1


def test_reading_stops_with_max_unsent_bytes_and_resumes_after_sent():
    connection = Connection(MAX)
    big = memoryview(bytearray(framing.MAX_UNSENT_BYTES - 10))
    connection.respond(connection.take_slot(), [big])
    assert connection.wants_read  # just under
    connection.respond(connection.take_slot(), [b"0123456789"])
    assert connection.unsent_bytes == framing.MAX_UNSENT_BYTES
    assert not connection.wants_read and connection.in_flight == 0
    connection.sent(1)
    assert connection.wants_read
    connection.sent(len(big) - 1)
    assert connection.wants_read and connection.unsent_bytes == 10
    assert bytes(connection.pending()[0]) == b"0123456789"
