"""One connection to the appliance: a DEALER socket owned by an I/O thread.

Any thread may submit a request and gets a Future; the I/O thread sends it,
matches replies to requests by their id (many in flight on one connection)
and fails requests that outlive their timeout. ZeroMQ reconnects by itself;
a request lost in a reconnect times out and the caller retries.
"""

from __future__ import annotations

import contextlib
import itertools
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
from shm.errors import NetworkError, RequestTimedOutError, RinglogError

DEFAULT_BOOTSTRAP = "127.0.0.1:7092"
DEFAULT_TIMEOUT_MS = 30_000


def parse_bootstrap(bootstrap_servers: str | list[str]) -> str:
    """The first HOST:PORT of a Kafka-style bootstrap list, as a ZeroMQ endpoint."""
    servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) \
        else list(bootstrap_servers)
    first = servers[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"bootstrap server {first!r} is not HOST:PORT, e.g. 127.0.0.1:7092")
    return f"tcp://{host}:{int(port)}"


def io_zmq() -> ModuleType:
    """The zmq module for the I/O thread: zmq.green when gevent has patched
    threading (under Locust), because the "thread" is then a greenlet and plain
    zmq's blocking poll would stall every other greenlet; plain zmq otherwise."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        from zmq import green

        return green
    return zmq


class Connection:
    """Thread-safe request/reply over one DEALER socket."""

    def __init__(self, bootstrap_servers: str | list[str] = DEFAULT_BOOTSTRAP):
        self.endpoint = parse_bootstrap(bootstrap_servers)
        self._ids = itertools.count(1)
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
        request_id = next(self._ids)
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
        context = zmq_module.Context.instance()
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RECONNECT_IVL, 100)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        socket.connect(self.endpoint)
        poller = zmq_module.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        waiting: dict[int, tuple[Future, float]] = {}
        try:
            while not self._closed.is_set():
                events = dict(poller.poll(self._poll_ms(waiting)))
                if self._wake_r in events:
                    self._send_queued(socket, waiting)
                if socket in events:
                    self._receive(socket, waiting)
                self._expire(waiting)
        finally:
            for future, _ in waiting.values():
                if not future.done():
                    future.set_exception(NetworkError("the connection was closed"))
            socket.close()

    @staticmethod
    def _poll_ms(waiting: dict) -> int:
        if not waiting:
            return 1000
        soonest = min(deadline for _, deadline in waiting.values())
        return max(1, min(1000, int((soonest - time.monotonic()) * 1000) + 1))

    def _send_queued(self, socket: zmq.Socket, waiting: dict) -> None:
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
                waiting[request_id] = (future, deadline)
            else:
                future.set_result(None)

    def _receive(self, socket: zmq.Socket, waiting: dict) -> None:
        while True:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                response = protocol.parse_response(frames)
            except (ValueError, KeyError, IndexError):
                continue  # not ours to understand: drop it
            entry = waiting.pop(response.id, None)
            if entry is None:
                continue  # a reply that arrived after its timeout
            future = entry[0]
            if response.error:
                from shm.errors import error_for

                future.set_exception(error_for(response.error, response.message))
            else:
                future.set_result(response)

    @staticmethod
    def _expire(waiting: dict) -> None:
        now = time.monotonic()
        for request_id, (future, deadline) in list(waiting.items()):
            if deadline <= now:
                del waiting[request_id]
                future.set_exception(RequestTimedOutError(
                    "no reply from the appliance in time; is it running?"))


def raise_for(entry: dict) -> None:
    """Raise the Kafka error of one per-partition reply entry, if it has one."""
    if entry.get("error"):
        from shm.errors import error_for

        raise error_for(entry["error"], entry.get("message", ""))


__all__ = ["Connection", "RinglogError", "parse_bootstrap", "raise_for"]
