"""One connection to the appliance: a DEALER socket owned by an I/O thread.

Any thread may submit a request and gets a Future; the I/O thread sends it,
and its RequestTracker matches replies to requests by their id (many in
flight on one connection) and fails requests that outlive their timeout.
ZeroMQ reconnects by itself; a request lost in a reconnect times out and the
caller retries.

Every client socket is made by connect_dealer() and read by
receive_replies(), here, so the connections differ only in which thread
owns the socket.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from types import ModuleType
from typing import Any

import zmq

from appliance import protocol
from appliance.client.request_tracker import RequestTracker
from shm.errors import NetworkError, RequestTimedOutError, RinglogError, error_for

DEFAULT_BOOTSTRAP = "127.0.0.1:7092"
DEFAULT_TIMEOUT_MS = 30_000
RECONNECT_IVL_MS = 100  # first retry after a lost connection; doubles up to the max
RECONNECT_IVL_MAX_MS = 1000  # a restarted appliance is found again within a second


def bootstrap_endpoints(bootstrap_servers: str | list[str]) -> list[str]:
    """Every HOST:PORT of a Kafka-style bootstrap list (a comma string or a
    list), as ZeroMQ endpoints, in the order given and each once: the brokers
    a client may ask first, the next one tried when one does not answer."""
    servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) \
        else list(bootstrap_servers)
    endpoints: list[str] = []
    for server in servers:
        server = server.strip()
        host, sep, port = server.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(
                f"bootstrap server {server!r} is not HOST:PORT, e.g. 127.0.0.1:7092")
        endpoint = f"tcp://{host}:{int(port)}"
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    if not endpoints:
        raise ValueError("no bootstrap server given; name one as HOST:PORT, e.g. 127.0.0.1:7092")
    return endpoints


def parse_bootstrap(bootstrap_servers: str | list[str]) -> str:
    """The first HOST:PORT of a Kafka-style bootstrap list, as a ZeroMQ endpoint
    (every entry is checked)."""
    return bootstrap_endpoints(bootstrap_servers)[0]


class NoReplyError(RequestTimedOutError):
    """No reply came in time: the broker may be down, so a client that knows
    others asks the next one. Raised by the client itself, never read off
    the wire (the broker's own REQUEST_TIMED_OUT answer means it is alive);
    it is a REQUEST_TIMED_OUT to everyone else."""


def io_zmq() -> ModuleType:
    """The zmq module for the I/O thread: zmq.green when gevent has patched
    threading (under Locust), because the "thread" is then a greenlet and plain
    zmq's blocking poll would stall every other greenlet; plain zmq otherwise."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        from zmq import green

        return green
    return zmq


def connect_dealer(context: zmq.Context, endpoint: str) -> zmq.Socket:
    """A client DEALER connected to `endpoint`, with the options every client
    socket shares: no linger, so close() never waits on an appliance that is
    gone (a request not sent is one the caller times out and retries), and a
    quick reconnect, so a restarted appliance is found again at once."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    socket.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    socket.connect(endpoint)
    return socket


def receive_replies(socket: zmq.Socket, tracker: RequestTracker) -> None:
    """Hand every reply `socket` holds to `tracker`, without waiting; a message
    that is not a reply is not ours to understand and is dropped."""
    while True:
        try:
            frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        try:
            response = protocol.parse_response(frames)
        except (ValueError, KeyError, IndexError):
            continue
        tracker.received(response)


class Connection:
    """Thread-safe request/reply over one DEALER socket."""

    def __init__(self, bootstrap_servers: str | list[str] = DEFAULT_BOOTSTRAP):
        self.endpoint = parse_bootstrap(bootstrap_servers)
        self._tracker: RequestTracker[Future] = RequestTracker()  # the I/O thread's
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ringlog-io", daemon=True)
        self._thread.start()

    def submit(self, api: str, fields: dict[str, Any] | None = None, payloads: list | tuple = (),
               timeout_ms: int = DEFAULT_TIMEOUT_MS, expect_reply: bool = True) -> Future:
        """Queue a request; the Future gives its Response (or raises its error)."""
        future: Future = Future()
        if self._closed.is_set():
            future.set_exception(NetworkError("the connection is closed"))
            return future
        request_id = self._tracker.next_id()
        frames = protocol.encode_request(api, request_id, fields, payloads)
        deadline = time.monotonic() + timeout_ms / 1000
        self._outbox.put((request_id, frames, future, deadline, expect_reply))
        os.write(self._wake_w, b"x")
        return future

    def request(self, api: str, fields: dict[str, Any] | None = None, payloads: list | tuple = (),
                timeout_ms: int = DEFAULT_TIMEOUT_MS) -> protocol.Response:
        """Send and wait; a whole-request error is raised as its Kafka error."""
        response = self.submit(api, fields, payloads, timeout_ms).result()
        return response

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- the I/O thread ----------------------------------------------------------------

    def _run(self) -> None:
        zmq_module = io_zmq()
        socket = connect_dealer(zmq_module.Context.instance(), self.endpoint)
        poller = zmq_module.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        tracker = self._tracker
        try:
            while not self._closed.is_set():
                events = dict(poller.poll(self._poll_ms(tracker.next_deadline())))
                if self._wake_r in events:
                    self._send_queued(socket)
                if socket in events:
                    receive_replies(socket, tracker)
                    for future, response in tracker.take_all():
                        if response.error:
                            future.set_exception(error_for(response.error, response.message))
                        else:
                            future.set_result(response)
                for _, future in tracker.expire(time.monotonic()):
                    future.set_exception(NoReplyError(
                        "no reply from the appliance in time; is it running?"))
        finally:
            for future in tracker.abandon():
                if not future.done():
                    future.set_exception(NetworkError("the connection was closed"))
            socket.close()

    @staticmethod
    def _poll_ms(deadline: float | None) -> int:
        if deadline is None:
            return 1000
        return max(1, min(1000, int((deadline - time.monotonic()) * 1000) + 1))

    def _send_queued(self, socket: zmq.Socket) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 65536)
        while True:
            try:
                request_id, frames, future, deadline, expect_reply = self._outbox.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            socket.send_multipart(frames, copy=False)
            if expect_reply:
                self._tracker.track(request_id, future, deadline)
            else:
                future.set_result(None)


def raise_for(entry: dict) -> None:
    """Raise the Kafka error of one per-partition reply entry, if it has one."""
    if entry.get("error"):
        raise error_for(entry["error"], entry.get("message", ""))


__all__ = ["Connection", "NoReplyError", "RinglogError", "bootstrap_endpoints", "connect_dealer",
           "parse_bootstrap", "raise_for", "receive_replies"]
