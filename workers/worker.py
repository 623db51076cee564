"""A partition worker: the one writer of the partitions the supervisor gives it.

It talks to the supervisor over one DEALER socket (ipc), with messages whose
first frame names the command:

    supervisor -> worker
      [b"open", json {"partitions": [[topic, p, directory, log_config], ...]}]
      [b"close", json {"partitions": [[topic, p, directory], ...], "delete": bool}]
      [b"produce", token, json {"acks": a, "partitions": [[topic, p], ...]}, set_0, set_1, ...]
      [b"offsets", token, json {"partitions": [[topic, p, timestamp_ms], ...]}]
      [b"stop"]
    worker -> supervisor
      [b"ready", json {"index": n, "pid": pid}]
      [b"produced", token, json {"results": [{topic, partition, error, message,
                                             base_offset, log_append_time}, ...]}]
                                             (for acks=0 too: the front end retires it)
      [b"answered", token, json {"results": [{topic, partition, error, offset, timestamp}]}]
      [b"positions", json {"partitions": [[topic, p, high_watermark], ...]}]
      [b"opened", json {"partitions": [[topic, p, error], ...]}]
      [b"closed", json {"partitions": [[topic, p], ...]}]

The loop drains every waiting message, appends each record set, then makes
the tick's appends durable with one fdatasync per partition (group commit)
before it acknowledges any of them: an acknowledgement is a promise.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import zmq

from shm import LogConfig, PartitionLog
from shm.errors import InvalidRecordError, RinglogError
from shm.record_batch import HEADER_SIZE, parse_header
from workers.producer_state import ProducerStateTable

POLL_MS = 100
FLUSH_THREADS = 16  # fdatasyncs in flight at once; more gained little on this host's disk


@dataclass
class _PendingAck:
    """A produce request appended this tick, answered once the tick is durable."""

    token: bytes
    acks: int
    results: list[dict] = field(default_factory=list)


class Worker:
    def __init__(self, index: int, endpoint: str, retention_check_ms: int = 300_000):
        self.index = index
        self.retention_check_ms = retention_check_ms
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self.producers: dict[tuple[str, int], ProducerStateTable] = {}
        self._context = zmq.Context.instance()
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, f"worker-{index}".encode())
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(endpoint)
        self._running = True
        self._flusher: ThreadPoolExecutor | None = None  # started at the first multi-log flush
        self._next_retention = time.monotonic() + retention_check_ms / 1000

    # --- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
        self.socket.send_multipart([b"ready", orjson.dumps({"index": self.index,
                                                             "pid": os.getpid()})])
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while self._running:
            if poller.poll(POLL_MS):
                self._tick()
            if time.monotonic() >= self._next_retention:
                self._apply_retention()
        self._close_all()

    def _stop(self) -> None:
        self._running = False

    def _tick(self) -> None:
        """Drain the socket, append, flush once, then acknowledge."""
        pending: list[_PendingAck] = []
        for _ in range(10_000):  # bounded: let the flush happen under load too
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._handle(frames, pending)
        self._flush_and_ack(pending)

    def _handle(self, frames: list, pending: list[_PendingAck]) -> None:
        command = frames[0].bytes
        if command == b"produce":
            pending.append(self._produce(frames))
        elif command == b"offsets":
            self._offsets_for_times(frames[1].bytes, orjson.loads(frames[2].bytes)["partitions"])
        elif command == b"open":
            self._open(orjson.loads(frames[1].bytes)["partitions"])
        elif command == b"close":
            body = orjson.loads(frames[1].bytes)
            self._close(body["partitions"], body.get("delete", False))
        elif command == b"stop":
            self._running = False

    # --- commands ---------------------------------------------------------------------

    def _open(self, partitions: list) -> None:
        """Open (or reconfigure) partitions; new ones from the thread pool when
        there are several, so that their files' fsyncs overlap."""
        opened = []
        new = []
        for topic, partition, directory, config in partitions:
            key = (topic, partition)
            if key in self.logs:
                try:
                    self.logs[key].config = LogConfig(**config)
                    opened.append([topic, partition, None])
                except ValueError as exc:
                    opened.append([topic, partition, f"cannot open {directory}: {exc}"])
            else:
                new.append((key, directory, config))
        for key, log, producers, error in self._in_pool(_open_one, new):
            if log is not None:
                self.logs[key], self.producers[key] = log, producers
            opened.append([*key, error])
        self.socket.send_multipart([b"opened", orjson.dumps({"partitions": opened})])
        self._announce(self.logs.keys())

    def _offsets_for_times(self, token: bytes, partitions: list) -> None:
        """The first offset at or after each timestamp (-1 when there is none)."""
        results = []
        for topic, partition, timestamp in partitions:
            result = {"topic": topic, "partition": partition, "error": None,
                      "offset": -1, "timestamp": -1}
            log = self.logs.get((topic, partition))
            if log is None:
                result["error"] = "NOT_LEADER_OR_FOLLOWER"
            else:
                found = log.record_at_or_after(timestamp)
                if found is not None:
                    result["offset"], result["timestamp"] = found
            results.append(result)
        self.socket.send_multipart([b"answered", token, orjson.dumps({"results": results})])

    def _close(self, partitions: list, delete: bool) -> None:
        """Close partitions; for a deleted topic also remove their directories,
        then say so: the topic's name may be reused only after that."""
        closed = []
        for topic, partition, *directory in partitions:
            log = self.logs.pop((topic, partition), None)
            self.producers.pop((topic, partition), None)
            path = log.directory if log is not None else (
                Path(directory[0]) if directory else None)
            if log is not None:
                log.close()
            if delete and path is not None:
                shutil.rmtree(path, ignore_errors=True)
            closed.append([topic, partition])
        self.socket.send_multipart([b"closed", orjson.dumps({"partitions": closed})])

    def _produce(self, frames: list) -> _PendingAck:
        token = frames[1].bytes
        body = orjson.loads(frames[2].bytes)
        ack = _PendingAck(token, body["acks"])
        for (topic, partition), record_set in zip(body["partitions"], frames[3:], strict=False):
            result = {"topic": topic, "partition": partition, "error": None,
                      "base_offset": -1, "log_append_time": -1}
            log = self.logs.get((topic, partition))
            if log is None:  # moved or deleted since the supervisor routed it
                result["error"] = "NOT_LEADER_OR_FOLLOWER"
                result["message"] = f"partition {topic}-{partition} is not open in this worker"
                ack.results.append(result)
                continue
            try:
                result["base_offset"] = self._append(topic, partition, log, record_set.buffer)
            except RinglogError as exc:
                result["error"], result["message"] = exc.name, str(exc)
            ack.results.append(result)
        return ack

    def _append(self, topic: str, partition: int, log: PartitionLog, data) -> int:
        """Append, unless the batch is an idempotent producer's retry of one
        already appended: then answer with that batch's offset."""
        header = parse_header(data) if len(data) >= HEADER_SIZE else None
        single = header is not None and header.size == len(data)
        if header is not None and not single and header.producer_id >= 0:
            raise InvalidRecordError(
                "an idempotent producer must send one batch per partition per request")
        producers = self.producers[(topic, partition)]
        if single:
            original = producers.check(header)
            if original is not None:
                return original
        base = log.append(data)
        if single:
            producers.record(header, base)
        return base

    def _flush_and_ack(self, pending: list[_PendingAck]) -> None:
        advanced = []
        for key, before, exc in self._flush_due_logs():
            if exc is not None:
                for ack in pending:
                    for result in ack.results:
                        if (result["topic"], result["partition"]) == key:
                            result["error"] = "KAFKA_STORAGE_ERROR"
                            result["message"] = f"fdatasync failed: {exc.strerror}"
            if self.logs[key].high_watermark != before:
                advanced.append(key)
        for ack in pending:  # acks=0 too: the front end must retire the request
            self.socket.send_multipart(
                [b"produced", ack.token, orjson.dumps({"results": ack.results})])
        if advanced:
            self._announce(advanced)

    def _flush_due_logs(self) -> list[tuple[tuple[str, int], int, OSError | None]]:
        """Flush every log whose policy says so: (key, high watermark before, error).

        Several are flushed from a thread pool so that their fdatasyncs wait
        together: the filesystem's journal commits concurrent ones at once,
        where one after another each pays its own commit (200 partitions:
        ~1 s in a row, ~0.1 s together on this project's test host).
        """
        now_ms = time.time_ns() // 1_000_000
        due = [(key, log) for key, log in self.logs.items() if log.flush_due(now_ms)]
        return self._in_pool(_flush_one, due)

    def _in_pool(self, function, items: list[tuple]) -> list:
        """function(*item) for each item: in the loop's thread for one, else in
        the pool, whose threads' system calls (fsyncs above all) overlap."""
        if len(items) <= 1:
            return [function(*item) for item in items]
        if self._flusher is None:
            self._flusher = ThreadPoolExecutor(FLUSH_THREADS, thread_name_prefix="flush")
        return list(self._flusher.map(function, *zip(*items, strict=True)))

    def _announce(self, keys) -> None:
        """Tell the supervisor where high watermarks stand: it wakes long polls."""
        positions = [[t, p, self.logs[(t, p)].high_watermark] for t, p in keys]
        if positions:
            self.socket.send_multipart([b"positions", orjson.dumps({"partitions": positions})])

    def _apply_retention(self) -> None:
        for log in self.logs.values():
            log.apply_retention()
        self._next_retention = time.monotonic() + self.retention_check_ms / 1000

    def _close_all(self) -> None:
        """SIGTERM: everything appended is flushed by close() before we exit
        (from the pool: 10,000 partitions' closes one by one outlast the
        supervisor's 30 s stop timeout)."""
        for _ in self._in_pool(PartitionLog.close, [(log,) for log in self.logs.values()]):
            pass
        if self._flusher is not None:
            self._flusher.shutdown()
        self.logs.clear()
        self.socket.close()


def _open_one(key: tuple[str, int], directory: str, config: dict) -> tuple:
    """(key, log, producer table, error) of one partition newly opened."""
    try:
        log = PartitionLog.open(Path(directory), LogConfig(**config))
    except (OSError, ValueError, RuntimeError) as exc:
        fix = ""
        if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            fix = (f"; the open-file limit is {soft}: raise it (LimitNOFILE= in the unit, "
                   "ulimit -n) or spread the partitions over more num.workers")
        return key, None, None, f"cannot open {directory}: {exc}{fix}"
    try:
        producers = ProducerStateTable.from_log(log)
        log.release_handles()  # maps and descriptors only reads need
    except (OSError, ValueError, RuntimeError) as exc:
        log.close()
        return key, None, None, f"cannot open {directory}: {exc}"
    return key, log, producers, None


def _flush_one(key: tuple[str, int], log: PartitionLog) -> tuple[tuple[str, int], int,
                                                                   OSError | None]:
    """One log's flush, in a thread of the pool or the loop's own."""
    before = log.high_watermark
    try:
        log.flush()
    except OSError as exc:
        return key, before, exc
    return key, before, None


