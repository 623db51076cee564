"""The bootstrap brokers: where a client's front-end requests go (metadata,
topics, groups, offsets, producer ids), as Kafka clients use bootstrap.servers.

Any live broker answers metadata for the whole cluster, so a client needs
only one of the brokers it was given. Requests go to the current one; when
it gives no reply in time (NoReplyError: down, cut off, or not started) the
next one in the list is asked, each at most once per request, and the one
that answered stays current. A broker that answered, even with an error,
is alive and is not passed over: the error is the caller's. With one
bootstrap server this is exactly the single connection of before.

A connection to a broker is made on first use and kept; `request_to()`
asks one named broker (a partition leader's front end, whose own metadata
names its workers' doors) without passing over to any other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from appliance import protocol
from appliance.client.connection import DEFAULT_TIMEOUT_MS, NoReplyError, bootstrap_endpoints


class Requester(Protocol):
    """A connection to one broker: Connection, or BlockingConnection for one thread."""

    def request(self, api: str, fields: dict[str, Any] | None = None,
                payloads: list | tuple = (), timeout_ms: int = DEFAULT_TIMEOUT_MS
                ) -> protocol.Response: ...

    def close(self) -> None: ...


class Bootstrap:
    """Front-end requests to the first bootstrap broker that answers.

    `connect(host_port)` makes the connection to one broker (Connection for
    clients used from many threads, BlockingConnection for one thread).
    """

    def __init__(self, bootstrap_servers: str | list[str],
                 connect: Callable[[str], Requester]):
        self.endpoints = bootstrap_endpoints(bootstrap_servers)
        self._connect = connect
        self._connections: dict[str, Requester] = {}
        self._current = 0
        self._lock = threading.Lock()  # a producer's user threads and sender share it

    @property
    def current(self) -> str:
        """The bootstrap broker front-end requests go to now, as a ZeroMQ endpoint."""
        return self.endpoints[self._current]

    def connection(self, endpoint: str) -> Requester:
        """The connection to the broker at `endpoint` (tcp://HOST:PORT), made on first use."""
        with self._lock:
            connection = self._connections.get(endpoint)
            if connection is None:
                connection = self._connections[endpoint] = self._connect(
                    endpoint.removeprefix("tcp://"))
            return connection

    def request(self, api: str, fields: dict[str, Any] | None = None,
                payloads: list | tuple = (), timeout_ms: int = DEFAULT_TIMEOUT_MS
                ) -> protocol.Response:
        """Send to the current bootstrap broker and wait; one that gives no
        reply within `timeout_ms` is passed over for the next, until each was
        asked once (then the last NoReplyError is raised)."""
        for attempt in range(len(self.endpoints)):
            endpoint = self.current
            try:
                return self.connection(endpoint).request(api, fields, payloads,
                                                         timeout_ms=timeout_ms)
            except NoReplyError:
                if attempt == len(self.endpoints) - 1:
                    raise
                self._pass_over(endpoint)
        raise AssertionError("unreachable: there is always a bootstrap endpoint")

    def request_to(self, endpoint: str, api: str, fields: dict[str, Any] | None = None,
                   timeout_ms: int = DEFAULT_TIMEOUT_MS) -> protocol.Response:
        """Send to the broker at `endpoint` (tcp://HOST:PORT) and wait; no other is tried."""
        return self.connection(endpoint).request(api, fields, timeout_ms=timeout_ms)

    def _pass_over(self, endpoint: str) -> None:
        """`endpoint` did not answer: make the next bootstrap broker current,
        unless another thread already moved on from it."""
        with self._lock:
            if self.endpoints[self._current] == endpoint:
                self._current = (self._current + 1) % len(self.endpoints)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()
