"""Three things every loop that owns ZeroMQ sockets here does alike: bind a
ROUTER on a port kept across respawns, keep a poller on a set of sockets
that comes and goes (a DEALER per leader, per remote broker), and sleep in
it until the next deadline."""

from __future__ import annotations

import time
from collections.abc import Iterable

import zmq


def bind_router(context: zmq.Context, host: str, port: int) -> tuple[zmq.Socket, str]:
    """A worker's ROUTER (its client door, its replication door) on HOST:PORT
    (PORT 0: one the kernel picks, which the supervisor then hands back on a
    respawn, so clients and followers reconnect to the same endpoint); its
    endpoint as they should dial it."""
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unroutable reply raises, and is dropped
    try:
        socket.bind(f"tcp://{host}:{port}" if port else f"tcp://{host}:*")
    except zmq.ZMQError:
        if not port:
            raise
        socket.bind(f"tcp://{host}:*")  # the old port is taken: they ask again
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    return socket, endpoint


def repoll(poller: zmq.Poller, polled: list[zmq.Socket], sockets: list[zmq.Socket]
            ) -> list[zmq.Socket]:
    """Keep the poller on exactly `sockets` besides its own (closed ones off)."""
    if polled == sockets:
        return polled
    for socket in polled:
        if socket not in sockets:
            poller.unregister(socket)
    for socket in sockets:
        if socket not in polled:
            poller.register(socket, zmq.POLLIN)
    return list(sockets)


def poll_timeout_ms(deadlines: Iterable[float | None], cap_ms: int) -> int:
    """How long a poll may wait: until the soonest deadline (time.monotonic(),
    None for none), rounded up so the loop wakes after it, at most cap_ms."""
    soonest = min((d for d in deadlines if d is not None), default=None)
    if soonest is None:
        return cap_ms
    return max(0, min(cap_ms, int((soonest - time.monotonic()) * 1000) + 1))
