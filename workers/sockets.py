"""Two things every loop that owns ZeroMQ sockets here does alike: bind a
ROUTER on a port kept across respawns, and keep a poller on a set of
sockets that comes and goes (a DEALER per leader, per remote broker)."""

from __future__ import annotations

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
