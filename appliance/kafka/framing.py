"""One Kafka connection, sans I/O: bytes in, request frames out; responses
in, bytes out in request order.

Kafka's framing is a 4-byte big-endian size then that many bytes (the
request header and body):

    +----------------+---------------------------------------------+
    | size: int32 BE | size bytes: request header, request body     |
    +----------------+---------------------------------------------+

Responses on one connection must leave in the order their requests came
(clients match them by correlation id and kafka-python refuses any other
order). Each request that expects an answer takes a slot, in arrival
order; a slot is filled whenever its answer is ready (a parked fetch, a
produce waiting for its group commit), and only the contiguous run of
filled slots at the head is sent. A produce with acks=0 takes no slot: it
gets no response.

Back-pressure is Kafka's muting: a connection with too many requests in
flight, or too many response bytes its peer has not read, is not read from
until that drains (`wants_read`), so one client cannot queue unbounded
work or memory in the broker.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator

SIZE = struct.Struct(">i")
MAX_IN_FLIGHT = 100  # requests awaiting answers before reading stops (Kafka: 1; clients pipeline 5)
MAX_UNSENT_BYTES = 64 << 20  # response bytes the peer has not read before reading stops
Buffer = bytes | bytearray | memoryview


class FrameError(Exception):
    """The peer broke the framing (a negative or oversized size): Kafka closes
    the connection, there is no way to answer it."""


class Connection:
    def __init__(self, max_request_bytes: int):
        self.max_request_bytes = max_request_bytes
        self._input = bytearray()
        self._next_slot = 0  # the slot the next request takes
        self._head = 0  # the oldest slot not yet sent
        self._ready: dict[int, list[Buffer]] = {}  # filled slots not yet at the head
        self._output: deque[memoryview] = deque()  # bytes to send, in order
        self.unsent_bytes = 0

    # --- requests in ---------------------------------------------------------------------

    def receive(self, data: Buffer) -> Iterator[bytes]:
        """Take bytes read off the socket; yield each complete request frame
        (without its size). Raises FrameError for a size out of bounds."""
        self._input += data
        start = 0
        try:
            while len(self._input) - start >= SIZE.size:
                (size,) = SIZE.unpack_from(self._input, start)
                if size < 0 or size > self.max_request_bytes:
                    raise FrameError(f"a request of {size} bytes (socket.request.max.bytes is "
                                     f"{self.max_request_bytes})")
                end = start + SIZE.size + size
                if len(self._input) < end:
                    break
                yield bytes(self._input[start + SIZE.size:end])
                start = end
        finally:
            del self._input[:start]

    def take_slot(self) -> int:
        slot = self._next_slot
        self._next_slot += 1
        return slot

    @property
    def in_flight(self) -> int:
        return self._next_slot - self._head

    @property
    def wants_read(self) -> bool:
        """False while muted: too much in flight or unsent."""
        return self.in_flight < MAX_IN_FLIGHT and self.unsent_bytes < MAX_UNSENT_BYTES

    # --- responses out -------------------------------------------------------------------

    def respond(self, slot: int, buffers: list[Buffer]) -> None:
        """The answer of `slot` (its size prefix included by the caller or not:
        see `frame`); sent once every earlier slot's answer is."""
        self._ready[slot] = buffers
        while self._head in self._ready:
            for buffer in self._ready.pop(self._head):
                view = memoryview(buffer).cast("B")
                if len(view):
                    self._output.append(view)
                    self.unsent_bytes += len(view)
            self._head += 1

    def pending(self) -> list[memoryview]:
        """What is ready to send, in order (for sendmsg; call `sent` after)."""
        return list(self._output)

    def sent(self, count: int) -> None:
        """`count` bytes of `pending()` went out."""
        self.unsent_bytes -= count
        while count:
            head = self._output[0]
            if len(head) <= count:
                count -= len(head)
                self._output.popleft()
            else:
                self._output[0] = head[count:]
                count = 0

    @property
    def wants_write(self) -> bool:
        return bool(self._output)


def frame(body: list[Buffer]) -> list[Buffer]:
    """A response's buffers with Kafka's size prefix in front."""
    return [SIZE.pack(sum(len(b) for b in body)), *body]
