"""What the core has to say, queued for the loop that owns the sockets.

The core performs no I/O: each call into it may leave replies for clients
and messages for workers here, in order; the loop drains them after the
call and sends them (h11's way: events out, the caller does the I/O). A
message the loop cannot deliver is handed back through
`Broker.undeliverable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.broker.replies import Reply
from workers.protocol import ToWorker


@dataclass(frozen=True, slots=True)
class ClientReply:
    """A reply for the client the adapter called `client` when it handed the
    request in (opaque to the core: a ZeroMQ identity and request id, say)."""

    client: Any
    reply: Reply


@dataclass(frozen=True, slots=True)
class WorkerMessage:
    worker: int
    message: ToWorker


Event = ClientReply | WorkerMessage


class Outbox:
    def __init__(self) -> None:
        self._events: list[Event] = []

    def reply(self, client: Any, reply: Reply) -> None:
        self._events.append(ClientReply(client, reply))

    def to_worker(self, worker: int, message: ToWorker) -> None:
        self._events.append(WorkerMessage(worker, message))

    def drain(self) -> list[Event]:
        events, self._events = self._events, []
        return events
