"""NATS JetStream with file storage: nats-py's publish_async (many publishes in
flight, their PubAcks awaited together) and an ordered push consumer, the
client's fastest way to replay a stream, for reading back and for latency."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from loadtest.peers.peer import LOOPBACK, Peer, PeerUnavailable, ServerProcess, free_port, port_open
from loadtest.peers.workload import (
    VALUE_POOL,
    WARM_UP_RECORDS,
    Deadline,
    LatencyProbe,
    LatencyReceiver,
    Measurement,
    check_read_back,
    make_values,
    paced,
    stamped,
    warm_up_value,
    within,
)

MAX_PENDING = 4_000  # publish_async's default window of unacknowledged publishes
# W2 reads with an ordered push consumer: measured 64,000 msg/s against 11,000-15,000 for
# a pull consumer fetching 500-20,000 per request with one AckAll per batch.
PENDING_MESSAGES = 1_000_000  # the subscription's buffer before it reports a slow consumer
PENDING_BYTES = 256 << 20  # the client's buffers (outgoing, and per subscription)


def _url(port: int) -> str:
    return f"nats://{LOOPBACK}:{port}"


async def _connect(port: int):
    import nats

    return await nats.connect(_url(port), pending_size=PENDING_BYTES, allow_reconnect=False,
                              connect_timeout=10)


async def _create_stream(js, stream: str) -> None:
    from nats.js.api import StorageType

    await js.add_stream(name=stream, subjects=[stream], storage=StorageType.FILE)


class NatsJetStream(Peer):
    name = "nats"
    ack = ("PubAck once the message is appended to the stream's file store, before any "
           "fsync: nats-server 2.9 writes block files through its own buffer and syncs them "
           "every 2 minutes (the `sync_interval: always` option only exists from 2.10)")
    debian_packages = ("nats-server",)
    python_modules = ("nats",)

    def __init__(self) -> None:
        super().__init__()
        self.server: ServerProcess | None = None

    def start(self, workdir: Path) -> None:
        from importlib.metadata import version

        self.version = _server_version()
        self.client = f"nats-py {version('nats-py')}, publish_async window {MAX_PENDING:,}"
        self.port = free_port()
        args = ["nats-server", "--addr", LOOPBACK, "--port", str(self.port), "--jetstream",
                "--store_dir", str(workdir / "jetstream"), "--server_name", "ringlog-peers"]
        self.server = ServerProcess(self.name, args, workdir / "nats.log")
        self.server.wait_until(lambda: port_open(self.port), f"listener on port {self.port}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def produce(self, workload: str, stream: str, records: int, value_bytes: int,
                deadline: Deadline, call: str = "") -> Measurement:
        values = make_values(value_bytes, seed=len(stream))
        seconds = asyncio.run(within(deadline, self._produce(stream, records, values,
                                                             deadline)))
        return Measurement(workload, self.name, f"file storage, publish_async window "
                           f"{MAX_PENDING:,}", records, value_bytes, seconds)

    async def _produce(self, stream: str, records: int, values: list[bytes],
                       deadline: Deadline) -> float:
        nc = await _connect(self.port)
        try:
            js = nc.jetstream(publish_async_max_pending=MAX_PENDING)
            await _create_stream(js, stream)
            mask = VALUE_POOL - 1
            publish = js.publish_async
            futures = []
            began = time.perf_counter()
            for i in range(records):
                future = await publish(stream, values[i & mask])
                if not i & 0x3FFF:
                    futures.append(future)  # a sample, to surface a refused publish
                    deadline.check()
            await js.publish_async_completed()
            seconds = time.perf_counter() - began
            for future in futures:
                future.result()  # raises the server's error, if any
            stored = (await js.stream_info(stream)).state.messages
        finally:
            await nc.close()
        if stored != records:
            raise RuntimeError(f"{stream} holds {stored:,} messages after {records:,} PubAcks")
        return seconds

    def consume(self, stream: str, records: int, value_bytes: int,
                deadline: Deadline) -> Measurement:
        seconds = asyncio.run(within(deadline, self._consume(stream, records, value_bytes,
                                                             deadline)))
        return Measurement("W2", self.name, "ordered push consumer (no acks)",
                           records, value_bytes, seconds)

    async def _consume(self, stream: str, records: int, value_bytes: int,
                       deadline: Deadline) -> float:
        nc = await _connect(self.port)
        try:
            js = nc.jetstream()
            done = asyncio.Event()
            state = {"got": 0, "last": b""}

            async def on_message(msg) -> None:
                state["got"] += 1
                if state["got"] >= records:
                    state["last"] = msg.data
                    done.set()

            began = time.perf_counter()
            await js.subscribe(stream, cb=on_message, ordered_consumer=True,
                               pending_msgs_limit=PENDING_MESSAGES,
                               pending_bytes_limit=PENDING_BYTES)
            await done.wait()  # bounded by within(deadline)
            seconds = time.perf_counter() - began
        finally:
            await nc.close()
        check_read_back(state["got"], state["last"], records, value_bytes, stream)
        return seconds

    def latency(self, stream: str, rate: int, seconds: float, value_bytes: int,
                deadline: Deadline) -> Measurement:
        total = int(rate * seconds)
        asyncio.run(within(deadline, self._create(stream)))
        probe = LatencyProbe(latency_consumer, self.port, stream)
        try:
            probe.start(deadline)
            send_seconds = asyncio.run(within(deadline, self._paced_send(
                stream, rate, total, value_bytes, deadline)))
            summary = probe.finish(total, deadline)
        finally:
            probe.close()
        return Measurement("W3", self.name, f"{rate:,}/s for {seconds:g} s, publish_async",
                           total, value_bytes, send_seconds, latency_ms=summary)

    async def _create(self, stream: str) -> None:
        nc = await _connect(self.port)
        try:
            await _create_stream(nc.jetstream(), stream)
        finally:
            await nc.close()

    async def _paced_send(self, stream: str, rate: int, total: int, value_bytes: int,
                          deadline: Deadline) -> float:
        nc = await _connect(self.port)
        try:
            js = nc.jetstream(publish_async_max_pending=MAX_PENDING)
            for _ in range(WARM_UP_RECORDS):
                await js.publish(stream, warm_up_value(value_bytes))
            padding = bytes(value_bytes - 8)
            sent = 0
            began = time.perf_counter()
            for count, pause in paced(rate, total):
                for _ in range(count):
                    await js.publish_async(stream, stamped(8, padding))
                sent += count
                await asyncio.sleep(pause)  # also lets the client's flusher write
                if not sent & 0xFF:
                    deadline.check()
            send_seconds = time.perf_counter() - began
            await js.publish_async_completed()
        finally:
            await nc.close()
        return send_seconds


def latency_consumer(port: int, stream: str, receiver: LatencyReceiver) -> None:
    """W3's consumer process: an ordered push consumer from the stream's start."""
    asyncio.run(_latency_consumer(port, stream, receiver))


async def _latency_consumer(port: int, stream: str, receiver: LatencyReceiver) -> None:
    from nats.js.api import DeliverPolicy

    nc = await _connect(port)
    try:
        js = nc.jetstream()

        async def on_message(msg) -> None:
            receiver.receive((msg.data,), time.time_ns())

        await js.subscribe(stream, cb=on_message, ordered_consumer=True,
                           deliver_policy=DeliverPolicy.ALL)
        receiver.positioned()
        while not receiver.done():
            await asyncio.sleep(0.02)
        receiver.report()
    finally:
        await nc.close()


def _server_version() -> str:
    try:
        out = subprocess.run(["nats-server", "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"nats-server does not run ({exc}); reinstall the Debian "
                              "package nats-server") from None
    return out.strip().rpartition("v")[2] or "?"
