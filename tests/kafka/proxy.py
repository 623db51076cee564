"""A TCP proxy in front of a Kafka listener that loses produce responses:
the broker has stored the batch, the client never hears so and retries it
on a new connection, which is the retry an idempotent producer must not
turn into a duplicate. Real sockets, a real fault: the connection closes
where the response should have been."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

PRODUCE = 0


class ResponseDroppingProxy:
    def __init__(self, port: int, target: tuple[str, int]):
        self.target = target
        self.drops_left = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", port))
        self.port = port
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, drops: int) -> None:
        """Lose the next `drops` produce responses (and count from zero)."""
        with self._lock:
            self.drops_left, self.dropped = drops, 0

    def close(self) -> None:
        self._closed = True
        _close(self._server)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            broker = socket.create_connection(self.target)
            produce_ids: set[int] = set()
            threading.Thread(target=self._requests, args=(client, broker, produce_ids),
                             daemon=True).start()
            threading.Thread(target=self._responses, args=(broker, client, produce_ids),
                             daemon=True).start()

    def _requests(self, client: socket.socket, broker: socket.socket, produce_ids: set) -> None:
        for frame in _frames(client):
            api_key, _, correlation_id = struct.unpack_from(">hhi", frame, 4)
            if api_key == PRODUCE:
                produce_ids.add(correlation_id)
            try:
                broker.sendall(frame)
            except OSError:
                break
        _close(client, broker)

    def _responses(self, broker: socket.socket, client: socket.socket, produce_ids: set) -> None:
        for frame in _frames(broker):
            (correlation_id,) = struct.unpack_from(">i", frame, 4)
            with self._lock:
                drop = correlation_id in produce_ids and self.drops_left > 0
                if drop:
                    self.drops_left -= 1
                    self.dropped += 1
            if drop:
                break
            try:
                client.sendall(frame)
            except OSError:
                break
        _close(client, broker)


def _frames(sock: socket.socket):
    """Whole frames (size prefix included) until the socket closes."""
    buffer = b""
    while True:
        try:
            data = sock.recv(1 << 16)
        except OSError:
            return
        if not data:
            return
        buffer += data
        while len(buffer) >= 4:
            (size,) = struct.unpack_from(">i", buffer)
            if len(buffer) < 4 + size:
                break
            yield buffer[:4 + size]
            buffer = buffer[4 + size:]


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
