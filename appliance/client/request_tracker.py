"""Which reply answers which request: the client's request tracking, without I/O.

A client pipelines requests on one DEALER socket and matches the replies by
the id each request carries (docs/protocol.md §2.4): replies come in any
order, some never come (acks=0, a request lost in a reconnect), and some come
after the client gave up on them. That bookkeeping lives here, apart from any
socket and any clock, the way h11 keeps HTTP's state apart from I/O: the
connection that owns the socket tells the tracker what it sent and what it
read, and what time it is; the tracker says which request each reply settles,
which requests are past their deadline and when the next deadline falls (the
poll timeout). Every connection of the client (the I/O thread's, the caller's
thread's, the HTTP listener's status channel) runs on these rules, tested
once, instead of a matcher of its own.

The rules:

- ids count up from 1, so the protocol's NO_ID (-1) never matches;
- a reply to an awaited request is kept until it is taken: at once by a
  connection that settles futures, later by one that was waiting for
  another id when it came (a fetch sent ahead);
- a reply to an id that is not awaited (given up on: expired or forgotten;
  answered already; never sent) is dropped and counted in `dropped`;
- a request whose reply has arrived does not expire: it is answered, only
  not yet taken.

Per reply this costs two dict operations to file it and one to take it;
deadlines are a heap, so neither expiry nor the next deadline scans the
requests in flight.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

from appliance.protocol import Response

V = TypeVar("V")
_COMPACT_SLACK = 64  # stale heap entries tolerated beyond twice the awaited requests


class RequestTracker(Generic[V]):
    """Pending requests by id, each with an optional deadline and an opaque
    value (a Future to settle, or None), and the replies not yet taken.

    One thread owns a tracker; only next_id() may be called from others.
    """

    __slots__ = ("_arrived", "_awaiting", "_deadlines", "_ids", "dropped")

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._awaiting: dict[int, tuple[V, float | None]] = {}  # id -> value, deadline
        self._arrived: dict[int, tuple[V, Response]] = {}  # answered, not yet taken
        self._deadlines: list[tuple[float, int]] = []  # heap; entries go stale, not away
        self.dropped = 0  # replies to no awaited request

    def next_id(self) -> int:
        """A request id not handed out before.

        Safe from any thread (one step of an itertools.count under the GIL),
        so a caller can encode its request in its own thread and hand it to
        the thread that owns the socket and this tracker.
        """
        return next(self._ids)

    def track(self, request_id: int, value: V, deadline: float | None = None) -> None:
        """Await the reply to `request_id`, just sent; `value` comes back with it.

        Without a deadline the request waits until it is taken or forgotten:
        for a caller that keeps its own time.
        """
        if request_id in self._awaiting or request_id in self._arrived:
            raise ValueError(f"request id {request_id} is already in flight; "
                             "take each id from next_id()")
        self._awaiting[request_id] = (value, deadline)
        if deadline is not None:
            heap = self._deadlines
            heapq.heappush(heap, (deadline, request_id))
            if len(heap) > 2 * len(self._awaiting) + _COMPACT_SLACK:
                self._compact()

    def received(self, response: Response) -> bool:
        """File a reply: True if it answers an awaited request (it is kept
        until taken), False if it was dropped."""
        entry = self._awaiting.pop(response.id, None)
        if entry is None:
            self.dropped += 1
            return False
        self._arrived[response.id] = (entry[0], response)
        return True

    def has_reply(self, request_id: int) -> bool:
        """Whether the reply to `request_id` has arrived and waits to be taken."""
        return request_id in self._arrived

    def take(self, request_id: int) -> tuple[V, Response] | None:
        """The request's value and reply, if the reply has arrived; the request is done."""
        return self._arrived.pop(request_id, None)

    def take_all(self) -> list[tuple[V, Response]]:
        """Every arrived reply not yet taken, with its value, in request order."""
        arrived = self._arrived
        if not arrived:
            return []
        if len(arrived) == 1:  # the usual case: nothing to order
            return [arrived.popitem()[1]]
        return [arrived.pop(request_id) for request_id in sorted(arrived)]

    def forget(self, request_id: int) -> None:
        """Give up on a request: its reply, held already or still to come, is dropped."""
        self._awaiting.pop(request_id, None)
        if self._arrived.pop(request_id, None) is not None:
            self.dropped += 1

    def expire(self, now: float) -> list[tuple[int, V]]:
        """Give up on every awaited request whose deadline is at or before `now`:
        their ids and values, soonest deadline first. Their replies, should
        they come, are dropped."""
        heap, awaiting = self._deadlines, self._awaiting
        expired = []
        while heap and heap[0][0] <= now:
            deadline, request_id = heapq.heappop(heap)
            entry = awaiting.get(request_id)
            if entry is not None and entry[1] == deadline:
                del awaiting[request_id]
                expired.append((request_id, entry[0]))
        return expired

    def next_deadline(self) -> float | None:
        """The soonest deadline of an awaited request; None if none has one."""
        heap, awaiting = self._deadlines, self._awaiting
        while heap:
            deadline, request_id = heap[0]
            entry = awaiting.get(request_id)
            if entry is not None and entry[1] == deadline:
                return deadline
            heapq.heappop(heap)  # answered, forgotten or expired already
        return None

    def abandon(self) -> list[V]:
        """Give up on every request (the connection is closing): the values of
        those awaited and of those answered but not taken, in request order."""
        values = {request_id: value for request_id, (value, _) in self._awaiting.items()}
        values.update((request_id, value) for request_id, (value, _) in self._arrived.items())
        self._awaiting, self._arrived, self._deadlines = {}, {}, []
        return [values[request_id] for request_id in sorted(values)]

    def __len__(self) -> int:
        """Requests not done: awaited, or answered and not yet taken."""
        return len(self._awaiting) + len(self._arrived)

    def _compact(self) -> None:
        """Drop the heap's stale entries: answered requests leave theirs behind
        (a reply costs no heap work), so a long run of them must not grow it."""
        awaiting = self._awaiting
        self._deadlines = [(deadline, request_id) for deadline, request_id in self._deadlines
                           if (entry := awaiting.get(request_id)) is not None
                           and entry[1] == deadline]
        heapq.heapify(self._deadlines)
