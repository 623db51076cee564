"""Requests the core sent to workers and awaits answers for, by token.

A produce split across owners, a lookup of offsets by time and an offset
commit each send messages that a worker answers with the same token. Each
call names what happens with the answer and what happens if the worker
dies, restarts or cannot be reached first, so that no caller is left
waiting.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.broker.outbox import Outbox
from shm.errors import LeaderNotAvailableError
from workers.protocol import ToWorker

OnAnswer = Callable[[Any], None]  # the worker's answer message
OnLost = Callable[[LeaderNotAvailableError], None]
MessageFor = Callable[[bytes, list[int]], ToWorker]  # (token, indices) -> message
OnPart = Callable[[list[int], Any], None]
OnPartLost = Callable[[list[int], LeaderNotAvailableError], None]


@dataclass(slots=True)
class _Call:
    worker: int
    on_answer: OnAnswer
    on_lost: OnLost


class WorkerCalls:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.ready: set[int] = set()  # workers connected (and not lost since)
        self._tokens = itertools.count(1)
        self._pending: dict[bytes, _Call] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def token(self) -> bytes:
        return b"%d" % next(self._tokens)

    def expect(self, token: bytes, worker: int, on_answer: OnAnswer, on_lost: OnLost) -> None:
        self._pending[token] = _Call(worker, on_answer, on_lost)

    def scatter(self, by_worker: dict[int, list[int]], message_for: MessageFor,
                on_part: OnPart, on_part_lost: OnPartLost, on_done: Callable[[], None]) -> None:
        """Send each worker its part of a request (`message_for(token, indices)`);
        `on_part(indices, answer)` takes each answer and `on_part_lost(indices,
        error)` each part that failed (its worker not ready, lost, unreachable);
        `on_done()` runs once when the last part is settled, now if none went out."""
        left = [len(by_worker)]

        def settle() -> None:
            left[0] -= 1
            if left[0] == 0:
                on_done()

        for worker, indices in by_worker.items():
            def answered(answer: Any, indices: list[int] = indices) -> None:
                on_part(indices, answer)
                settle()

            def lost(error: LeaderNotAvailableError, indices: list[int] = indices) -> None:
                on_part_lost(indices, error)
                settle()

            if worker not in self.ready:
                lost(LeaderNotAvailableError(f"worker {worker} is restarting; retry"))
                continue
            token = self.token()
            self.expect(token, worker, answered, lost)
            self.outbox.to_worker(worker, message_for(token, indices))
        if not by_worker:
            on_done()

    def answered(self, token: bytes, answer: Any) -> None:
        call = self._pending.pop(token, None)
        if call is not None:  # else: its worker was declared lost first
            call.on_answer(answer)

    def undeliverable(self, token: bytes) -> None:
        """The message never reached its worker."""
        call = self._pending.pop(token, None)
        if call is not None:
            call.on_lost(LeaderNotAvailableError(f"worker {call.worker} is restarting; retry"))

    def worker_lost(self, worker: int) -> None:
        """The worker died: every call it had not answered fails retriably."""
        self.ready.discard(worker)
        for token, call in list(self._pending.items()):
            if call.worker == worker:
                del self._pending[token]
                call.on_lost(LeaderNotAvailableError(f"worker {worker} died; retry"))
