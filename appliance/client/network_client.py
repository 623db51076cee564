"""Connections to every endpoint one client thread talks to, waited on together,
as Kafka's NetworkClient.

A client talks to the front end (the bootstrap server: metadata, groups,
offsets), to the door of each leader worker of a partition it produces to
or fetches from (routes.py), and, while a leader's door is not known yet, to
that leader broker's front end. Each
endpoint gets one BlockingConnection, made on first use; `wait()` sleeps on
all of them at once (and on a wake pipe), so one thread keeps requests in
flight to many endpoints.

A worker that dies takes its door's requests with it: no reply will come.
Each connection but the bootstrap front end's (a door, another broker) is
watched by a ZeroMQ socket monitor, and a lost connection, or one that
could not be made, fails its requests at once (`lost()`), so the caller
retries through fresh metadata within a poll instead of after the request
timeout.
"""

from __future__ import annotations

import contextlib
import os

import zmq
from zmq.utils.monitor import recv_monitor_message

from appliance import protocol
from appliance.client.blocking_connection import BlockingConnection
from appliance.client.connection import io_zmq, parse_bootstrap

WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "*")
# A connection that went down, or one whose attempt failed (nothing listens
# there: a broker that died before this client first dialled it, which
# metadata may still name as a leader). Either way its requests will not be
# answered: they fail at once and are retried through fresh metadata.
LOST_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED


def door_endpoint(endpoint: str | None, bootstrap: str) -> str | None:
    """A partition's door as this client dials it: a door bound to every
    interface is reached on the host the client bootstrapped from."""
    if not endpoint:
        return None
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    if host in WILDCARD_HOSTS:
        boot_host = bootstrap.removeprefix("tcp://").rpartition(":")[0]
        return f"tcp://{boot_host}:{port}"
    return endpoint


class NetworkClient:
    """BlockingConnection per endpoint, for a single thread."""

    def __init__(self, bootstrap_servers: str | list[str], wake_fd: int | None = None):
        self.front_end = parse_bootstrap(bootstrap_servers)
        self._zmq = io_zmq()
        self._wake_fd = wake_fd
        self._connections: dict[str, BlockingConnection] = {}
        self._monitors: dict[zmq.Socket, str] = {}  # monitor socket -> endpoint
        self._waiting: dict[str, set[int]] = {}  # endpoint -> request ids sent, unanswered
        self._lost: list[tuple[str, int]] = []
        self._poller = self._zmq.Poller()
        if wake_fd is not None:
            self._poller.register(wake_fd, zmq.POLLIN)

    def connection(self, endpoint: str | None = None) -> BlockingConnection:
        """The connection to `endpoint` (the front end when None), made on first use."""
        endpoint = endpoint or self.front_end
        connection = self._connections.get(endpoint)
        if connection is None:
            connection = BlockingConnection(endpoint.removeprefix("tcp://"))
            self._connections[endpoint] = connection
            self._poller.register(connection.socket, zmq.POLLIN)
            if endpoint != self.front_end:  # the front end's loss is the appliance's
                monitor = connection.socket.get_monitor_socket(LOST_EVENTS)
                self._monitors[monitor] = endpoint
                self._poller.register(monitor, zmq.POLLIN)
        return connection

    def send(self, endpoint: str | None, api: str, fields: dict | None = None,
             payloads: list | tuple = (), expect_reply: bool = True) -> int:
        """Send a request to `endpoint` now; its id is what replies() answers."""
        endpoint = endpoint or self.front_end
        request_id = self.connection(endpoint).send(api, fields, payloads)
        if expect_reply:
            self._waiting.setdefault(endpoint, set()).add(request_id)
        else:
            self._connections[endpoint].forget(request_id)
        return request_id

    def wait(self, timeout_ms: int) -> None:
        """Block until a reply arrives on any connection, a connection is lost,
        the wake pipe is written, or `timeout_ms` pass."""
        events = dict(self._poller.poll(max(0, timeout_ms)))
        if self._wake_fd is not None and self._wake_fd in events:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_fd, 65536)
        for monitor, endpoint in self._monitors.items():
            if monitor in events:
                self._drain_monitor(monitor, endpoint)

    def _drain_monitor(self, monitor: zmq.Socket, endpoint: str) -> None:
        disconnected = False
        while True:
            try:
                recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            disconnected = True
        if disconnected:
            connection = self._connections[endpoint]
            for request_id in sorted(self._waiting.pop(endpoint, ())):
                connection.forget(request_id)
                self._lost.append((endpoint, request_id))

    def replies(self) -> list[tuple[str, protocol.Response]]:
        """(endpoint, reply) of every reply that has arrived, without waiting."""
        out = []
        for endpoint, connection in self._connections.items():
            waiting = self._waiting.get(endpoint)
            if not waiting:
                continue
            for response in connection.replies():
                waiting.discard(response.id)
                out.append((endpoint, response))
        return out

    def lost(self) -> list[tuple[str, int]]:
        """(endpoint, request id) of requests whose connection went down unanswered."""
        lost, self._lost = self._lost, []
        return lost

    def forget(self, endpoint: str | None, request_id: int) -> None:
        """Give up on a request: its reply, now or later, is dropped."""
        endpoint = endpoint or self.front_end
        waiting = self._waiting.get(endpoint)
        if waiting is not None:
            waiting.discard(request_id)
        connection = self._connections.get(endpoint)
        if connection is not None:
            connection.forget(request_id)

    def close(self, linger_ms: int = 0) -> None:
        """Close every connection, waiting at most `linger_ms` for what is queued."""
        for monitor, endpoint in self._monitors.items():
            with contextlib.suppress(zmq.ZMQError):
                self._connections[endpoint].socket.disable_monitor()
            monitor.close(0)
        self._monitors.clear()
        for connection in self._connections.values():
            connection.close(linger_ms)
        self._connections.clear()
