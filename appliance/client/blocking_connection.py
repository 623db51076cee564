"""A connection for one thread: the caller sends and waits on the socket itself.

The consumer is used from one thread and waits for each fetch anyway, so it
needs no I/O thread: handing every reply from an I/O thread to the caller
costs two thread wake-ups and, under load, a wait of up to the interpreter's
switch interval (5 ms) for the GIL. Here the caller's own thread owns the
DEALER socket. One request may be sent ahead and collected later (a fetch
sent before the previous one's records are decoded); replies to requests
that were given up on are dropped by their ids.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from typing import Any

import zmq

from appliance import protocol
from appliance.client.connection import DEFAULT_TIMEOUT_MS, io_zmq, parse_bootstrap
from shm.errors import NetworkError, RequestTimedOutError, error_for


class BlockingConnection:
    """Request/reply over one DEALER socket, for a single thread."""

    def __init__(self, bootstrap_servers: str | list[str], wake_fd: int | None = None):
        self.endpoint = parse_bootstrap(bootstrap_servers)
        self._ids = itertools.count(1)
        zmq_module = io_zmq()  # zmq.green under gevent (Locust), so waits yield
        self._socket = zmq_module.Context.instance().socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._socket.connect(self.endpoint)
        self._poller = zmq_module.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._wake_fd = wake_fd  # a pipe another thread writes to, to end wait() early
        if wake_fd is not None:
            self._poller.register(wake_fd, zmq.POLLIN)
        self._pending: set[int] = set()  # sent, reply not yet taken by receive()
        self._early: dict[int, protocol.Response] = {}  # replies that came before asked for
        self._closed = False

    def send(self, api: str, fields: dict[str, Any] | None = None,
             payloads: list | tuple = ()) -> int:
        """Send a request now; its id is what receive() waits for."""
        if self._closed:
            raise NetworkError("the connection is closed")
        request_id = next(self._ids)
        self._socket.send_multipart(protocol.encode_request(api, request_id, fields, payloads),
                                    copy=False)
        self._pending.add(request_id)
        return request_id

    def receive(self, request_id: int, timeout_ms: int = DEFAULT_TIMEOUT_MS
                ) -> protocol.Response:
        """Wait for the reply to `request_id`; raise its whole-request error."""
        arrived = self.arrived(request_id, timeout_ms)
        self._pending.discard(request_id)  # taken now, or given up: a late reply is dropped
        if not arrived:
            raise RequestTimedOutError("no reply from the appliance in time; is it running?")
        response = self._early.pop(request_id)
        if response.error:
            raise error_for(response.error, response.message)
        return response

    def arrived(self, request_id: int, timeout_ms: int) -> bool:
        """Wait up to `timeout_ms` for the reply to `request_id`, without taking it."""
        if request_id in self._early:
            return True
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not self._poller.poll(remaining_ms):
                return False
            response = self._take(request_id)
            if response is not None:
                self._early[request_id] = response
                return True
            if remaining_ms == 0:
                return False

    def wait(self, timeout_ms: int) -> None:
        """Block until a reply arrives, the wake pipe is written, or `timeout_ms` pass.

        For a thread that both sends and collects (the producer's sender): it
        sleeps here and is woken by replies and by its callers alike. What
        woke it is drained from the wake pipe; replies are left for replies().
        """
        events = dict(self._poller.poll(max(0, timeout_ms)))
        if self._wake_fd is not None and self._wake_fd in events:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_fd, 65536)

    def replies(self) -> list[protocol.Response]:
        """Every reply to a pending request that has arrived, without waiting;
        whole-request errors are left in the responses, not raised."""
        self._take(-1)  # no id is -1: every pending reply that arrived goes to _early
        arrived = [self._early.pop(request_id) for request_id in sorted(self._early)]
        self._pending.difference_update(r.id for r in arrived)
        return arrived

    def forget(self, request_id: int) -> None:
        """Give up on a request: its reply, now or later, is dropped."""
        self._early.pop(request_id, None)
        self._pending.discard(request_id)

    def request(self, api: str, fields: dict[str, Any] | None = None,
                payloads: list | tuple = (), timeout_ms: int = DEFAULT_TIMEOUT_MS
                ) -> protocol.Response:
        """Send and wait; a whole-request error is raised as its Kafka error."""
        return self.receive(self.send(api, fields, payloads), timeout_ms)

    def _take(self, request_id: int) -> protocol.Response | None:
        """Read what has arrived; the reply to `request_id` if it is among it."""
        wanted = None
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return wanted
            try:
                response = protocol.parse_response(frames)
            except (ValueError, KeyError, IndexError):
                continue  # not ours to understand: drop it
            if response.id == request_id:
                wanted = response
            elif response.id in self._pending:
                self._early[response.id] = response  # e.g. a fetch sent ahead: keep it
            # else: a reply to a request given up on (timed out, forgotten): dropped

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._socket.close()
