"""A connection for one thread: the caller sends and waits on the socket itself.

The consumer is used from one thread and waits for each fetch anyway, so it
needs no I/O thread: handing every reply from an I/O thread to the caller
costs two thread wake-ups and, under load, a wait of up to the interpreter's
switch interval (5 ms) for the GIL. Here the caller's own thread owns the
DEALER socket. One request may be sent ahead and collected later (a fetch
sent before the previous one's records are decoded); its RequestTracker
keeps a reply that comes while another is awaited and drops replies to
requests that were given up on. The requests have no deadline of their
own here: each wait has one, and the caller that gives up forgets.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import zmq

from appliance import protocol
from appliance.client.connection import (
    DEFAULT_TIMEOUT_MS,
    NoReplyError,
    connect_dealer,
    io_zmq,
    parse_bootstrap,
    receive_replies,
)
from appliance.client.request_tracker import RequestTracker
from shm.errors import NetworkError, error_for


class BlockingConnection:
    """Request/reply over one DEALER socket, for a single thread."""

    def __init__(self, bootstrap_servers: str | list[str], wake_fd: int | None = None):
        self.endpoint = parse_bootstrap(bootstrap_servers)
        zmq_module = io_zmq()  # zmq.green under gevent (Locust), so waits yield
        self._socket = connect_dealer(zmq_module.Context.instance(), self.endpoint)
        self._poller = zmq_module.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._wake_fd = wake_fd  # a pipe another thread writes to, to end wait() early
        if wake_fd is not None:
            self._poller.register(wake_fd, zmq.POLLIN)
        self._tracker: RequestTracker[None] = RequestTracker()
        self._closed = False

    @property
    def socket(self) -> zmq.Socket:
        """The DEALER, for a caller that polls many connections at once (NetworkClient)."""
        return self._socket

    def send(self, api: str, fields: dict[str, Any] | None = None,
             payloads: list | tuple = ()) -> int:
        """Send a request now; its id is what receive() waits for."""
        if self._closed:
            raise NetworkError("the connection is closed")
        request_id = self._tracker.next_id()
        self._socket.send_multipart(protocol.encode_request(api, request_id, fields, payloads),
                                    copy=False)
        self._tracker.track(request_id, None)
        return request_id

    def receive(self, request_id: int, timeout_ms: int = DEFAULT_TIMEOUT_MS
                ) -> protocol.Response:
        """Wait for the reply to `request_id`; raise its whole-request error."""
        if not self.arrived(request_id, timeout_ms):
            self._tracker.forget(request_id)  # given up: a late reply is dropped
            raise NoReplyError("no reply from the appliance in time; is it running?")
        _, response = self._tracker.take(request_id)
        if response.error:
            raise error_for(response.error, response.message)
        return response

    def arrived(self, request_id: int, timeout_ms: int) -> bool:
        """Wait up to `timeout_ms` for the reply to `request_id`, without taking it."""
        tracker = self._tracker
        if tracker.has_reply(request_id):
            return True
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not self._poller.poll(remaining_ms):
                return False
            receive_replies(self._socket, tracker)  # a reply to another id is kept
            if tracker.has_reply(request_id):
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
        receive_replies(self._socket, self._tracker)
        return [response for _, response in self._tracker.take_all()]

    def forget(self, request_id: int) -> None:
        """Give up on a request: its reply, now or later, is dropped."""
        self._tracker.forget(request_id)

    def request(self, api: str, fields: dict[str, Any] | None = None,
                payloads: list | tuple = (), timeout_ms: int = DEFAULT_TIMEOUT_MS
                ) -> protocol.Response:
        """Send and wait; a whole-request error is raised as its Kafka error."""
        return self.receive(self.send(api, fields, payloads), timeout_ms)

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket; `linger_ms` bounds the wait for requests still
        queued in it (acks=0 sends, which no reply confirms) to go out."""
        if not self._closed:
            self._closed = True
            self._socket.close(linger=linger_ms)
