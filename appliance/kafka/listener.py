"""The Kafka listener's sockets, inside the supervisor's loop.

Plain non-blocking TCP sockets registered by file descriptor in the same
zmq.Poller as the ZeroMQ sockets (ZMQ_STREAM was measured a poor fit: a
1 MiB request in 131 chunks, no per-connection back-pressure). All the
protocol is elsewhere, sans I/O: framing.Connection splits frames and
orders responses, codec.KafkaDoor turns frames into core requests and
replies into bytes. This module only accepts, reads, writes and closes,
and keeps the poller's interest in each descriptor in step: readable
while a connection is not muted, writable only while output waits.

Connections are named by a counter, not their descriptor: a reply that
comes back after its connection closed must not reach a new connection
that reuses the descriptor.
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from appliance.broker import requests as q
from appliance.broker.replies import Reply
from appliance.kafka.codec import KafkaClient, KafkaDoor, MalformedRequest
from appliance.kafka.framing import Connection, FrameError, frame

log = logging.getLogger("ringlog.kafka")

READ_BYTES = 1 << 20  # one recv
READS_PER_TURN = 8  # bounded, so that one busy connection cannot starve the loop
BACKLOG = 512
Handler = Callable[[KafkaClient, q.Request], None]


@dataclass(slots=True)
class _Peer:
    id: int
    socket: socket.socket
    connection: Connection
    address: str
    host: str
    polled: int = 0  # the poller flags registered now


class KafkaListener:
    def __init__(self, host: str, port: int, door: KafkaDoor, max_request_bytes: int):
        self.door = door
        self.max_request_bytes = max_request_bytes
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as exc:
            self.socket.close()
            raise OSError(f"listeners=PLAINTEXT://{host}:{port}: {exc.strerror}; choose a free "
                          "HOST:PORT for the PLAINTEXT listener") from None
        self.socket.listen(BACKLOG)
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]
        self._ids = itertools.count(1)
        self._peers: dict[int, _Peer] = {}  # by connection id
        self._by_fd: dict[int, _Peer] = {}
        self._registered = False
        self.accepted = 0
        self.closed_malformed = 0

    # --- the poller ----------------------------------------------------------------------

    def sync(self, poller: zmq.Poller) -> None:
        """Register what each descriptor waits for now."""
        if not self._registered:
            poller.register(self.socket.fileno(), zmq.POLLIN)
            self._registered = True
        for peer in self._peers.values():
            wanted = (zmq.POLLIN if peer.connection.wants_read else 0) | (
                zmq.POLLOUT if peer.connection.wants_write else 0)
            if wanted != peer.polled:
                if wanted:
                    poller.register(peer.socket.fileno(), wanted)
                else:
                    poller.unregister(peer.socket.fileno())
                peer.polled = wanted

    def on_events(self, events: dict[Any, int], handle: Handler, poller: zmq.Poller) -> None:
        """Serve what the poll found on this listener's descriptors."""
        if events.get(self.socket.fileno(), 0) & zmq.POLLIN:
            self._accept()
        for fd, peer in list(self._by_fd.items()):
            mask = events.get(fd, 0)
            if not mask:
                continue
            if mask & zmq.POLLIN and not self._read(peer, handle):
                self._close(peer, poller)
                continue
            if mask & (zmq.POLLOUT | zmq.POLLERR) and not self._write(peer):
                self._close(peer, poller)

    # --- replies -------------------------------------------------------------------------

    def reply(self, client: KafkaClient, reply: Reply) -> None:
        """A core reply: into its connection's slot, then out as far as it goes."""
        peer = self._peers.get(client.connection)
        if peer is None:
            return  # the connection closed while the request was served
        buffers = self.door.encode(client, reply)
        if buffers is None or client.slot is None:
            return
        peer.connection.respond(client.slot, frame(buffers))
        self._write(peer)

    # --- I/O -----------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, address = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and the like: try again next turn
                log.warning("kafka listener: accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = _Peer(next(self._ids), sock, Connection(self.max_request_bytes),
                         f"{address[0]}:{address[1]}", address[0])
            self._peers[peer.id] = peer
            self._by_fd[sock.fileno()] = peer
            self.accepted += 1

    def _read(self, peer: _Peer, handle: Handler) -> bool:
        """Read and serve what arrived; False when the connection must close."""
        for _ in range(READS_PER_TURN):
            if not peer.connection.wants_read:
                break
            try:
                data = peer.socket.recv(READ_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return False
            if not data:
                return False  # the peer closed
            try:
                for request in peer.connection.receive(data):
                    self._serve(peer, request, handle)
            except (FrameError, MalformedRequest) as exc:
                self.closed_malformed += 1
                log.info("kafka listener: closing %s: %s", peer.address, exc)
                return False
            except Exception:  # a bug must cost this connection, never the broker
                log.exception("kafka listener: closing %s", peer.address)
                return False
            if len(data) < READ_BYTES:
                break
        return self._write(peer)

    def _serve(self, peer: _Peer, request: bytes, handle: Handler) -> None:
        decoded = self.door.decode(peer.id, request, peer.connection.take_slot, peer.host)
        if decoded.response is not None and decoded.slot is not None:
            peer.connection.respond(decoded.slot, frame(decoded.response))
        for client, core_request in decoded.calls:
            handle(client, core_request)

    def _write(self, peer: _Peer) -> bool:
        while peer.connection.wants_write:
            try:
                sent = peer.socket.sendmsg(peer.connection.pending()[:512])
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:  # reset, broken pipe: the peer is gone
                return False
            peer.connection.sent(sent)
        return True

    def _close(self, peer: _Peer, poller: zmq.Poller) -> None:
        if peer.polled:
            poller.unregister(peer.socket.fileno())
        self._by_fd.pop(peer.socket.fileno(), None)
        self._peers.pop(peer.id, None)
        peer.socket.close()

    @property
    def connections(self) -> int:
        return len(self._peers)

    def close(self) -> None:
        for peer in list(self._peers.values()):
            peer.socket.close()
        self._peers.clear()
        self._by_fd.clear()
        self.socket.close()
