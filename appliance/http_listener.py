"""The HTTP endpoint on `http.listener`: /metrics, /healthz and /readyz.

It runs in threads of the supervisor's process and never touches the front
end's state: what it needs it asks the supervisor's loop for, as a `status`
request over an inproc ZeroMQ socket bound by the clients' ROUTER, the same
request `ringlog status` sends. The loop answers it between client requests,
so a scrape costs the loop one status computation and nothing per record.

    GET /metrics   Prometheus' text format (appliance/metrics.py)
    GET /healthz   200 while the supervisor's loop turns, 503 when it has stalled
    GET /readyz    200 while serving (every worker up, its partitions opened), else 503

Anything else is 404 (unknown path), 405 (another method on a known path)
or 400 (a malformed request, answered by http.server itself).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import zmq
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from appliance import protocol
from appliance.client.connection import connect_dealer, receive_replies
from appliance.client.request_tracker import RequestTracker
from appliance.metrics import RequestMetrics, exposition

log = logging.getLogger("ringlog.http")

STATUS_TIMEOUT_S = 2.0  # a loop that cannot answer a status this fast is not serving
LIVENESS_STALE_S = 10.0  # /healthz fails when the loop has not turned for this long
CLIENT_TIMEOUT_S = 10.0  # a client that sends its request slower than this is dropped
TEXT = "text/plain; charset=utf-8"


class StatusChannel:
    """Asks the supervisor's loop for a `status` reply over an inproc DEALER.

    One socket shared by the HTTP threads under a lock (a ZeroMQ socket must
    not be used by two threads at once); it is a client's socket, made and
    read as the client's are, and its RequestTracker drops the replies to
    requests that timed out.
    """

    def __init__(self, context: zmq.Context, endpoint: str):
        self._context = context
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self._socket: zmq.Socket | None = None
        self._tracker: RequestTracker[None] = RequestTracker()
        self._closed = False

    def status(self, details: bool) -> dict[str, Any] | None:
        """The loop's status reply, or None if it did not answer in time."""
        with self._lock:
            if self._closed:
                return None
            if self._socket is None:
                self._socket = connect_dealer(self._context, self._endpoint)
            tracker = self._tracker
            request_id = tracker.next_id()
            try:
                self._socket.send_multipart(
                    protocol.encode_request("status", request_id, {"details": details}),
                    zmq.NOBLOCK)
            except zmq.ZMQError:
                return None
            tracker.track(request_id, None)
            deadline = time.monotonic() + STATUS_TIMEOUT_S
            while (remaining := deadline - time.monotonic()) > 0:
                if not self._socket.poll(int(remaining * 1000) + 1):
                    break
                receive_replies(self._socket, tracker)
                answered = tracker.take(request_id)
                if answered is not None:
                    response = answered[1]
                    return None if response.error else response.fields
            tracker.forget(request_id)  # too late: its reply, if it comes, is dropped
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._socket is not None:
                self._socket.close()
                self._socket = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], endpoint: HttpListener):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.endpoint = endpoint
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "ringlog"
    timeout = CLIENT_TIMEOUT_S

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _refuse_method(self) -> None:
        known = urlsplit(self.path).path in self.server.endpoint.routes
        code = 405 if known else 404
        self._send(code, TEXT, b"use GET\n" if known else b"not found\n", True,
                   {"Allow": "GET, HEAD"} if known else {})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _answer(self, send_body: bool) -> None:
        route = self.server.endpoint.routes.get(urlsplit(self.path).path)
        if route is None:
            self._send(404, TEXT, b"not found: try /metrics, /healthz or /readyz\n", send_body)
            return
        try:
            code, content_type, body = route()
        except Exception:  # a bug must cost one answer, never the endpoint
            log.exception("HTTP %s failed", self.path)
            code, content_type, body = 500, TEXT, b"internal error; see the appliance log\n"
        self._send(code, content_type, body, send_body)

    def _send(self, code: int, content_type: str, body: bytes, send_body: bool,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class HttpListener:
    """The HTTP server thread; start() binds at once, so a taken port fails start-up."""

    def __init__(self, address: tuple[str, int], channel: StatusChannel,
                 request_metrics: RequestMetrics, loop_turned: Callable[[], float]):
        self.channel = channel
        self.request_metrics = request_metrics
        self.loop_turned = loop_turned
        self.routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz}
        self._server = _Server(address, self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="ringlog-http",
                                        daemon=True)

    @classmethod
    def start(cls, config: Any, context: zmq.Context, status_endpoint: str,
              request_metrics: RequestMetrics,
              loop_turned: Callable[[], float]) -> HttpListener | None:
        """Bind http.listener and serve; None when the setting is empty (off)."""
        value = config["http.listener"]
        if not value:
            log.info("http.listener is empty: no /metrics, /healthz or /readyz")
            return None
        address = config.listener_host_port("http.listener")
        channel = StatusChannel(context, status_endpoint)
        try:
            listener = cls(address, channel, request_metrics, loop_turned)
        except OSError as exc:
            raise OSError(
                f"http.listener={value}: {exc.strerror or exc}; choose a free HOST:PORT "
                "for http.listener, or set it empty to turn HTTP off") from None
        listener._thread.start()
        host, port = listener.address
        log.info("HTTP /metrics, /healthz and /readyz on http://%s:%d",
                 f"[{host}]" if ":" in host else host, port)
        return listener

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop serving and close the inproc socket (the context cannot end before it)."""
        self._server.shutdown()
        self._server.server_close()
        self.channel.close()

    # --- the routes -------------------------------------------------------------------

    def _metrics(self) -> tuple[int, str, bytes]:
        status = self.channel.status(details=True)
        if status is None:
            return 503, TEXT, (f"the supervisor did not answer within {STATUS_TIMEOUT_S:g} s; "
                               "no figures\n").encode()
        return 200, CONTENT_TYPE_LATEST, exposition(self.request_metrics, status)

    def _healthz(self) -> tuple[int, str, bytes]:
        idle = time.monotonic() - self.loop_turned()
        if idle > LIVENESS_STALE_S:
            return 503, TEXT, f"the supervisor's loop has not turned for {idle:.0f} s\n".encode()
        return 200, TEXT, b"ok\n"

    def _readyz(self) -> tuple[int, str, bytes]:
        status = self.channel.status(details=False)
        if status is None:
            return 503, TEXT, (f"not ready: the supervisor did not answer within "
                               f"{STATUS_TIMEOUT_S:g} s\n").encode()
        if not status.get("serving"):
            workers = [p for p in status.get("processes") or [] if p.get("worker") is not None]
            ready = sum(1 for w in workers if w.get("ready"))
            return 503, TEXT, (f"not ready: {ready} of {len(workers)} workers ready, "
                               "or partitions still opening\n").encode()
        return 200, TEXT, b"ready\n"
