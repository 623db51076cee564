"""Redis Streams with an append-only file: XADD pipelined by redis-py (hiredis
parser), XRANGE to read back, XREAD BLOCK for the latency consumer."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from loadtest.peers.peer import LOOPBACK, Peer, PeerUnavailable, ServerProcess, free_port
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
)

PIPELINE = 5_000  # XADDs sent before reading their replies; one AOF write + fsync per batch read
READ_COUNT = 10_000  # entries per XRANGE / XREAD
FIELD = b"v"
SOCKET_TIMEOUT_S = 60.0

ACKS = {
    "always": ("XADD's reply follows the AOF write() and fsync() of the event-loop "
               "iteration that read it (appendfsync always): durable, group-committed"),
    "everysec": ("XADD's reply follows the AOF write() to the page cache; a background "
                 "fsync runs once a second (appendfsync everysec): up to ~1 s lost on a "
                 "power failure"),
}


def connect(port: int):
    """redis-py, bytes in and out; the hiredis parser is used when installed."""
    import redis

    return redis.Redis(host=LOOPBACK, port=port, socket_timeout=SOCKET_TIMEOUT_S,
                       decode_responses=False)


class RedisStreams(Peer):
    debian_packages = ("redis-server",)
    python_modules = ("redis", "hiredis")

    def __init__(self, appendfsync: str):
        super().__init__()
        self.appendfsync = appendfsync
        self.name = f"redis-{appendfsync}"
        self.ack = ACKS[appendfsync]
        self.server: ServerProcess | None = None

    def start(self, workdir: Path) -> None:
        import redis
        import redis.utils

        self.version = _server_version()
        self.client = (f"redis-py {redis.__version__}"
                       + (" + hiredis" if redis.utils.HIREDIS_AVAILABLE else " (no hiredis)")
                       + f", pipeline {PIPELINE:,}")
        self.port = free_port()
        data = workdir / "data"
        data.mkdir()
        args = ["redis-server", "--bind", LOOPBACK, "--port", str(self.port),
                "--dir", str(data), "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--save", "", "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", "", "--unixsocket", ""]
        self.server = ServerProcess(self.name, args, workdir / "redis.log")
        client = connect(self.port)
        try:
            self.server.wait_until(client.ping, "reply to PING")
        finally:
            client.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def produce(self, workload: str, stream: str, records: int, value_bytes: int,
                deadline: Deadline, call: str = "") -> Measurement:
        values = make_values(value_bytes, seed=len(stream))
        mask = VALUE_POOL - 1
        client = connect(self.port)
        try:
            client.ping()  # untimed: the connection
            pipe = client.pipeline(transaction=False)
            command = pipe.execute_command
            began = time.perf_counter()
            for i in range(records):
                command("XADD", stream, "*", FIELD, values[i & mask])
                if len(pipe) >= PIPELINE:
                    pipe.execute()
                    deadline.check()
            if len(pipe):
                pipe.execute()
            seconds = time.perf_counter() - began
            stored = client.xlen(stream)
        finally:
            client.close()
        if stored != records:
            raise RuntimeError(f"{workload}: {stream} holds {stored:,} entries after "
                               f"{records:,} acknowledged XADDs")
        return Measurement(workload, self.name, f"appendfsync {self.appendfsync}, pipeline "
                           f"{PIPELINE:,}", records, value_bytes, seconds)

    def consume(self, stream: str, records: int, value_bytes: int,
                deadline: Deadline) -> Measurement:
        client = connect(self.port)
        try:
            client.ping()
            got = 0
            start = b"-"
            last_value = b""
            began = time.perf_counter()
            while got < records:
                entries = client.execute_command("XRANGE", stream, start, "+",
                                                 "COUNT", READ_COUNT)
                if not entries:
                    break
                got += len(entries)
                entry_id, fields = entries[-1]
                start = b"(" + entry_id
                last_value = fields[FIELD]
                deadline.check()
            seconds = time.perf_counter() - began
        finally:
            client.close()
        check_read_back(got, last_value, records, value_bytes, stream)
        return Measurement("W2", self.name, f"XRANGE COUNT {READ_COUNT:,}", got, value_bytes,
                           seconds)

    def latency(self, stream: str, rate: int, seconds: float, value_bytes: int,
                deadline: Deadline) -> Measurement:
        total = int(rate * seconds)
        padding = bytes(value_bytes - 8)
        probe = LatencyProbe(latency_consumer, self.port, stream)
        client = connect(self.port)
        try:
            for _ in range(WARM_UP_RECORDS):
                client.execute_command("XADD", stream, "*", FIELD, warm_up_value(value_bytes))
            probe.start(deadline)
            sent = 0
            began = time.perf_counter()
            for count, pause in paced(rate, total):
                if count == 1:
                    client.execute_command("XADD", stream, "*", FIELD, stamped(8, padding))
                else:  # fell behind: what is overdue goes in one pipeline
                    pipe = client.pipeline(transaction=False)
                    for _ in range(count):
                        pipe.execute_command("XADD", stream, "*", FIELD, stamped(8, padding))
                    pipe.execute()
                sent += count
                if pause:
                    time.sleep(pause)
                if not sent & 0xFF:
                    deadline.check()
            send_seconds = time.perf_counter() - began
            summary = probe.finish(total, deadline)
        finally:
            probe.close()
            client.close()
        return Measurement("W3", self.name, f"{rate:,}/s for {seconds:g} s, one XADD per due "
                           "record", sent, value_bytes, send_seconds, latency_ms=summary)


def latency_consumer(port: int, stream: str, receiver: LatencyReceiver) -> None:
    """W3's consumer process: XREAD BLOCK from the start of the stream."""
    client = connect(port)
    last = b"0-0"
    try:
        receiver.positioned()
        while not receiver.done():
            reply = client.xread({stream: last}, count=READ_COUNT, block=100)
            now = time.time_ns()
            for _name, entries in reply or ():  # RESP2: [[stream, [(id, fields), ...]]]
                if entries:
                    receiver.receive((fields[FIELD] for _, fields in entries), now)
                    last = entries[-1][0]
        receiver.report()
    finally:
        client.close()


def _server_version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"redis-server does not run ({exc}); reinstall the "
                              "Debian package redis-server") from None
    return next((w[2:] for w in out.split() if w.startswith("v=")), "?")
