"""RabbitMQ streams over the stream protocol (plugin rabbitmq_stream): rstream's
send_batch with publish confirms counted by a callback, a credit-based
subscription from the first offset to read back and for latency."""

from __future__ import annotations

import asyncio
import os
import secrets
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

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the Debian wrapper in /usr/sbin su's to rabbitmq
EPMD = "epmd"
USER = PASSWORD = "guest"  # the default user, which RabbitMQ admits from loopback only
BATCH_RECORDS = 1_000  # messages per send_batch (one publish frame)
BATCH_BYTES = 512 << 10  # and at most this much, well inside the 1 MiB frame_max
WINDOW = 50_000  # unconfirmed messages before the producer waits for confirms
CREDIT = 10  # chunks the server may send a subscription ahead (rstream's default)

CONFIG = """\
listeners.tcp = none
stream.listeners.tcp.default = {host}:{stream_port}
stream.advertised_host = {host}
stream.advertised_port = {stream_port}
log.console = true
log.console.level = warning
log.file = false
"""


class RabbitMQStreams(Peer):
    name = "rabbitmq"
    ack = ("publish confirm once the stream's writer has appended the chunk to its segment "
           "file (a write() to the page cache, no fsync: RabbitMQ streams rely on "
           "replication, and this is one node)")
    debian_packages = ("rabbitmq-server",)
    python_modules = ("rstream",)

    def __init__(self) -> None:
        super().__init__()
        self.server: ServerProcess | None = None
        self.epmd: ServerProcess | None = None

    def start(self, workdir: Path) -> None:
        from importlib.metadata import version

        self.version = _package_version("rabbitmq-server")
        self.client = f"rstream {version('rstream')}, send_batch {BATCH_RECORDS:,}"
        self.port = free_port()
        self.epmd_port = free_port()
        config = workdir / "rabbitmq.conf"
        config.write_text(CONFIG.format(host=LOOPBACK, stream_port=self.port))
        (workdir / "enabled_plugins").write_text("[rabbitmq_stream].\n")
        (workdir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
        env = {
            **os.environ,
            "HOME": str(workdir),  # the Erlang cookie is written there
            "RABBITMQ_NODENAME": f"ringlog-peers-{os.getpid()}-{secrets.token_hex(3)}@localhost",
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(free_port()),
            # Schedulers that do not spin when idle: on 2 shared cores the spinning took CPU
            # from the clients (W3 p99 103-146 ms with it, 36 ms without, W1/W2 no slower).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} "
            "+sbwt none +sbwtdcpu none +sbwtdio none",
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "ERL_EPMD_PORT": str(self.epmd_port),
        }
        if not Path(SERVER).exists():
            raise PeerUnavailable(f"{SERVER} is missing; reinstall the Debian package "
                                  "rabbitmq-server")
        # Our own epmd in the foreground, on loopback: the node registers with it instead
        # of daemonising a shared one that would outlive the run.
        self.epmd = ServerProcess("epmd", [EPMD, "-address", LOOPBACK, "-port",
                                           str(self.epmd_port)], workdir / "epmd.log")
        self.epmd.wait_until(lambda: port_open(self.epmd_port),
                             f"epmd listener on port {self.epmd_port}")
        self.server = ServerProcess(self.name, [SERVER], workdir / "rabbitmq.log", env=env,
                                    cwd=workdir)
        self.server.wait_until(lambda: port_open(self.port),
                               f"stream listener on port {self.port}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.epmd is not None:
            self.epmd.stop()
            self.epmd = None

    def _producer(self):
        from rstream import Producer

        return Producer(LOOPBACK, self.port, username=USER, password=PASSWORD)

    def _consumer(self):
        from rstream import Consumer

        return Consumer(LOOPBACK, self.port, username=USER, password=PASSWORD)

    def produce(self, workload: str, stream: str, records: int, value_bytes: int,
                deadline: Deadline, call: str = "") -> Measurement:
        values = make_values(value_bytes, seed=len(stream))
        batch = max(1, min(BATCH_RECORDS, BATCH_BYTES // value_bytes))
        seconds = asyncio.run(within(deadline, self._produce(stream, records, values, batch,
                                                             deadline)))
        return Measurement(workload, self.name, f"send_batch {batch:,}, confirms by callback, "
                           f"window {WINDOW:,}", records, value_bytes, seconds)

    async def _produce(self, stream: str, records: int, values: list[bytes], batch: int,
                       deadline: Deadline) -> float:
        state = {"confirmed": 0, "failed": 0}
        progress = asyncio.Event()

        def on_confirm(status) -> None:
            state["confirmed" if status.is_confirmed else "failed"] += 1
            progress.set()

        mask = VALUE_POOL - 1
        async with self._producer() as producer:
            await producer.create_stream(stream, exists_ok=True)
            await producer.send_wait(stream, values[0])  # untimed: the publisher and its
            began = time.perf_counter()  # connection to the stream's leader
            sent = 0
            while sent < records:
                n = min(batch, records - sent)
                await producer.send_batch(stream, [values[(sent + j) & mask] for j in range(n)],
                                          on_publish_confirm=on_confirm)
                sent += n
                while sent - state["confirmed"] - state["failed"] > WINDOW:
                    progress.clear()
                    await progress.wait()
                deadline.check()
            while state["confirmed"] + state["failed"] < records:
                progress.clear()
                await progress.wait()
            seconds = time.perf_counter() - began
        if state["failed"]:
            raise RuntimeError(f"{stream}: {state['failed']:,} of {records:,} publishes "
                               "were refused")
        return seconds

    def consume(self, stream: str, records: int, value_bytes: int,
                deadline: Deadline) -> Measurement:
        # produce() stored one untimed record first: read it too, count the rest.
        seconds = asyncio.run(within(deadline, self._consume(stream, records + 1,
                                                             value_bytes)))
        return Measurement("W2", self.name, f"subscribe from first, credit {CREDIT}", records,
                           value_bytes, seconds)

    async def _consume(self, stream: str, records: int, value_bytes: int) -> float:
        from rstream import ConsumerOffsetSpecification, OffsetType

        done = asyncio.Event()
        state = {"got": 0, "last": b""}

        def on_message(message: bytes, context) -> None:
            state["got"] += 1
            if state["got"] >= records:
                state["last"] = message
                done.set()

        consumer = self._consumer()
        try:
            began = time.perf_counter()
            await consumer.start()
            await consumer.subscribe(stream, on_message, initial_credit=CREDIT,
                                     offset_specification=ConsumerOffsetSpecification(
                                         OffsetType.FIRST, None))
            await done.wait()  # bounded by within(deadline)
            seconds = time.perf_counter() - began
        finally:
            await consumer.close()
        check_read_back(state["got"], state["last"], records, value_bytes, stream)
        return seconds

    def latency(self, stream: str, rate: int, seconds: float, value_bytes: int,
                deadline: Deadline) -> Measurement:
        total = int(rate * seconds)
        asyncio.run(within(deadline, self._create(stream, value_bytes)))
        probe = LatencyProbe(latency_consumer, self.port, stream)
        try:
            probe.start(deadline)
            send_seconds = asyncio.run(within(deadline, self._paced_send(
                stream, rate, total, value_bytes, deadline)))
            summary = probe.finish(total, deadline)
        finally:
            probe.close()
        return Measurement("W3", self.name, f"{rate:,}/s for {seconds:g} s, send_batch of the "
                           "due records", total, value_bytes, send_seconds, latency_ms=summary)

    async def _create(self, stream: str, value_bytes: int) -> None:
        async with self._producer() as producer:
            await producer.create_stream(stream, exists_ok=True)
            for _ in range(WARM_UP_RECORDS):
                await producer.send_wait(stream, warm_up_value(value_bytes))

    async def _paced_send(self, stream: str, rate: int, total: int, value_bytes: int,
                          deadline: Deadline) -> float:
        confirmed = {"n": 0}
        all_confirmed = asyncio.Event()

        def on_confirm(status) -> None:
            confirmed["n"] += 1
            if confirmed["n"] >= total:
                all_confirmed.set()

        padding = bytes(value_bytes - 8)
        async with self._producer() as producer:
            await producer.send_wait(stream, warm_up_value(value_bytes))
            sent = 0
            began = time.perf_counter()
            for count, pause in paced(rate, total):
                await producer.send_batch(stream, [stamped(8, padding) for _ in range(count)],
                                          on_publish_confirm=on_confirm)
                sent += count
                await asyncio.sleep(pause)
                if not sent & 0xFF:
                    deadline.check()
            send_seconds = time.perf_counter() - began
            await all_confirmed.wait()
        return send_seconds


def latency_consumer(port: int, stream: str, receiver: LatencyReceiver) -> None:
    """W3's consumer process: a subscription from the stream's first offset."""
    asyncio.run(_latency_consumer(port, stream, receiver))


async def _latency_consumer(port: int, stream: str, receiver: LatencyReceiver) -> None:
    from rstream import Consumer, ConsumerOffsetSpecification, OffsetType

    def on_message(message: bytes, context) -> None:
        receiver.receive((message,), time.time_ns())

    consumer = Consumer(LOOPBACK, port, username=USER, password=PASSWORD)
    try:
        await consumer.start()
        await consumer.subscribe(stream, on_message, initial_credit=CREDIT,
                                 offset_specification=ConsumerOffsetSpecification(
                                     OffsetType.FIRST, None))
        receiver.positioned()
        while not receiver.done():
            await asyncio.sleep(0.02)
        receiver.report()
    finally:
        await consumer.close()


def _package_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip() or "?"
