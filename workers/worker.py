"""A partition worker: the one writer of the partitions the supervisor gives it.

It talks to the supervisor over one DEALER socket (ipc) in the messages of
workers/protocol.py, and to clients at its door (workers/door.py: a ROUTER
of its own for produce and fetch). The loop drains every waiting message of
both, appends each record set, then makes the tick's appends durable with
one fdatasync per partition (group commit) before it acknowledges any of
them: an acknowledgement is a promise. The same commit wakes the long polls
parked at the door.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import resource
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from shm import LogConfig, PartitionLog
from shm.errors import (
    InvalidRecordError,
    KafkaStorageError,
    NotLeaderOrFollowerError,
    RinglogError,
)
from shm.record_batch import HEADER_SIZE, parse_header
from workers import protocol
from workers.door import ClientDoor, DoorProduce
from workers.producer_state import ProducerStateTable
from workers.replicas import AwaitingReplicas, Replicas, ReplicaSettings
from workers.sockets import bind_router, poll_timeout_ms, repoll

POLL_MS = 100
TRAFFIC_EVERY_S = 0.2  # how fresh the door's share of /metrics is
FLUSH_THREADS = 16  # fdatasyncs in flight at once; more gained little on this host's disk


@dataclass
class _PendingAck:
    """A produce request appended this tick, answered once the tick is durable."""

    token: bytes  # the supervisor's; empty for a request that came in at the door
    results: list[protocol.ProduceResult] = field(default_factory=list)
    door: DoorProduce | None = None
    acks: int = 1
    timeout_ms: int = 30_000
    # result index -> (partition, last offset appended): what acks=all waits to see committed
    last_offsets: dict[int, tuple[tuple[str, int], int]] = field(default_factory=dict)


class Worker:
    def __init__(self, index: int, endpoint: str, retention_check_ms: int = 300_000,
                 door_host: str = "127.0.0.1", door_port: int = 0,
                 replication: ReplicaSettings | None = None,
                 replication_host: str = "127.0.0.1", replication_port: int = 0):
        self.index = index
        self.retention_check_ms = retention_check_ms
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self.producers: dict[tuple[str, int], ProducerStateTable] = {}
        self._context = zmq.Context.instance()
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, protocol.worker_identity(index))
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(endpoint)
        self.door_socket, self.door_endpoint = bind_router(self._context, door_host, door_port)
        # Cluster mode: this worker's partitions lead or follow, and only leaders serve.
        self.replicas = None if replication is None else Replicas(
            self._context, self.logs, replication, replication_host, replication_port)
        self.door = ClientDoor(self.logs, index,
                               None if self.replicas is None else self.replicas.leading)
        self._traffic_at = time.monotonic() + TRAFFIC_EVERY_S
        self._watched: set[tuple[str, int]] = set()  # front-end long polls wait on these
        self._running = True
        self._flusher: ThreadPoolExecutor | None = None  # started at the first multi-log flush
        self._next_retention = time.monotonic() + retention_check_ms / 1000

    # --- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
        self._send(protocol.Ready(self.index, os.getpid(), self.door_endpoint,
                                  "" if self.replicas is None else self.replicas.endpoint))
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.door_socket, zmq.POLLIN)
        polled: list[zmq.Socket] = []  # the replicas' sockets: a DEALER per leader comes and goes
        while self._running:
            if self.replicas is not None:
                polled = repoll(poller, polled, self.replicas.sockets)
            events = poller.poll(self._poll_ms())
            if events:
                self._tick(events)
            now = time.monotonic()
            self.door.expire(now)
            self._send_door_replies()
            if self.replicas is not None:
                self._replication_tick()
            if now >= self._traffic_at:
                self._report_traffic(now)
            if now >= self._next_retention:
                self._apply_retention()
        self._report_traffic(time.monotonic())
        self._close_all()

    def _poll_ms(self) -> int:
        """Until the next parked fetch (or acks=all produce) is due, at most POLL_MS."""
        deadlines = [self.door.next_deadline()]
        if self.replicas is not None:
            deadlines.append(self.replicas.next_ack_deadline())
            follower_ms = self.replicas.next_deadline_ms()
            if follower_ms is not None:
                deadlines.append(follower_ms / 1000)  # both on the monotonic clock
        return poll_timeout_ms(deadlines, POLL_MS)

    def _stop(self) -> None:
        self._running = False

    def _tick(self, events: list) -> None:
        """Drain the sockets, append, flush once, then acknowledge."""
        pending: list[_PendingAck] = []
        if self.replicas is not None:
            moved: set[tuple[str, int]] = set()
            for socket, _ in events:
                if socket is not self.socket and socket is not self.door_socket:
                    moved |= self.replicas.on_readable(socket)
            self._high_watermarks_moved(moved)
        for _ in range(10_000):  # bounded: let the flush happen under load too
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._handle(frames, pending)
        for _ in range(10_000):
            try:
                identity, *frames = self.door_socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            job = self.door.request(identity.bytes, frames)
            if job is not None:
                pending.append(self._produce_at_door(job))
        self._flush_and_ack(pending)
        self._send_door_replies()

    def _handle(self, frames: list, pending: list[_PendingAck]) -> None:
        message = protocol.parse(frames)
        if isinstance(message, protocol.Produce):
            pending.append(self._produce(message))
        elif isinstance(message, protocol.ListOffsetsForTimes):
            self._offsets_for_times(message)
        elif isinstance(message, protocol.DeleteRecords):
            self._delete_records(message)
        elif isinstance(message, protocol.Open):
            self._open(message.partitions)
        elif isinstance(message, protocol.Close):
            self._close(message.partitions, message.delete)
        elif isinstance(message, protocol.Watch):
            self._watch(message.partitions)
        elif isinstance(message, protocol.Lead):
            self._lead(message.partitions)
        elif isinstance(message, protocol.Follow):
            self._follow(message.partitions)
        elif isinstance(message, protocol.Stop):
            self._running = False

    def _send(self, message: protocol.Message) -> None:
        self.socket.send_multipart(message.encode(), copy=False)

    # --- commands ---------------------------------------------------------------------

    def _open(self, partitions: list[protocol.PartitionToOpen]) -> None:
        """Open (or reconfigure) partitions; new ones from the thread pool when
        there are several, so that their files' fsyncs overlap."""
        opened = []
        new = []
        for entry in partitions:
            key = (entry.topic, entry.partition)
            if key in self.logs:
                try:
                    self.logs[key].config = LogConfig(**entry.log_config)
                    opened.append(protocol.OpenResult(*key))
                except ValueError as exc:
                    opened.append(protocol.OpenResult(*key, KafkaStorageError(
                        f"cannot reconfigure {entry.directory}: {exc}")))
            else:
                new.append((key, entry.directory, entry.log_config))
        for key, log, producers, error in self._in_pool(_open_one, new):
            if log is not None:
                self.logs[key], self.producers[key] = log, producers
            opened.append(protocol.OpenResult(*key, error))
        self._send(protocol.Opened(opened))
        self._announce(self.logs.keys())

    def _offsets_for_times(self, request: protocol.ListOffsetsForTimes) -> None:
        """The first offset at or after each timestamp (-1 when there is none)."""
        results = []
        for topic, partition, timestamp in request.partitions:
            log = self.logs.get((topic, partition))
            if log is None:
                results.append(protocol.OffsetForTime(topic, partition, error=_not_here(
                    topic, partition)))
                continue
            found = log.record_at_or_after(timestamp)
            results.append(protocol.OffsetForTime(topic, partition, *(found or (-1, -1))))
        self._send(protocol.OffsetsForTimes(request.token, results))

    def _delete_records(self, request: protocol.DeleteRecords) -> None:
        """Advance each log start offset (-1: to the high watermark), answered
        once checkpointed. In a cluster only the leader does it; followers
        follow the leader's log start through their fetches."""
        results = []
        for topic, partition, offset in request.partitions:
            key = (topic, partition)
            log = self.logs.get(key)
            try:
                if log is None:
                    raise _not_here(topic, partition)
                if self.replicas is not None and key not in self.replicas.leading:
                    raise NotLeaderOrFollowerError(
                        f"this broker does not lead {topic}-{partition}")
                start = log.advance_log_start_offset(
                    log.high_watermark if offset == protocol.DELETE_TO_HIGH_WATERMARK else offset)
            except OSError as exc:
                results.append(protocol.DeleteRecordsResult(
                    topic, partition, error=KafkaStorageError.from_os_error(
                        "cannot checkpoint the log start offset", exc)))
                continue
            except RinglogError as exc:
                results.append(protocol.DeleteRecordsResult(topic, partition, error=exc))
                continue
            results.append(protocol.DeleteRecordsResult(topic, partition, start))
        self._send(protocol.RecordsDeleted(request.token, results))

    def _close(self, partitions: list[tuple[str, int, str]], delete: bool) -> None:
        """Close partitions; for a deleted topic also remove their directories,
        then say so: the topic's name may be reused only after that."""
        closed = []
        for topic, partition, directory in partitions:
            if self.replicas is not None:
                self.replicas.forget((topic, partition))
            log = self.logs.pop((topic, partition), None)
            self.producers.pop((topic, partition), None)
            path = log.directory if log is not None else Path(directory)
            if log is not None:
                log.close()
            if delete:
                shutil.rmtree(path, ignore_errors=True)
            closed.append((topic, partition))
        self._send(protocol.Closed(closed))

    def _produce(self, request: protocol.Produce) -> _PendingAck:
        ack = _PendingAck(request.token, acks=request.acks, timeout_ms=request.timeout_ms)
        for (topic, partition), record_set in zip(request.partitions, request.record_sets,
                                                  strict=False):
            self._append_part(ack, topic, partition, record_set)
        return ack

    def _produce_at_door(self, job: DoorProduce) -> _PendingAck:
        """A client's produce from the door: appended as the supervisor's are."""
        ack = _PendingAck(b"", door=job, acks=job.acks, timeout_ms=job.timeout_ms)
        for i, (topic, partition, record_set) in enumerate(job.parts):
            refused = job.refused.get(i)
            if refused is not None:
                ack.results.append(protocol.ProduceResult(topic, partition, error=refused))
                continue
            self._append_part(ack, topic, partition, record_set)
        return ack

    def _append_part(self, ack: _PendingAck, topic: str, partition: int, record_set) -> None:
        """Append one partition's record set; its result goes to `ack`."""
        key = (topic, partition)
        log = self.logs.get(key)
        if log is None:  # moved or deleted since the client (or supervisor) routed it
            ack.results.append(protocol.ProduceResult(topic, partition,
                                                      error=_not_here(topic, partition)))
            return
        data = record_set.buffer if hasattr(record_set, "buffer") else record_set
        try:
            if self.replicas is not None:
                self.replicas.check_produce(key, ack.acks)
            base_offset, last_offset = self._append(topic, partition, log, data)
        except RinglogError as exc:
            ack.results.append(protocol.ProduceResult(topic, partition, error=exc))
            return
        ack.last_offsets[len(ack.results)] = (key, last_offset)
        ack.results.append(protocol.ProduceResult(topic, partition, base_offset))

    def _append(self, topic: str, partition: int, log: PartitionLog, data) -> tuple[int, int]:
        """Append, unless the batch is an idempotent producer's retry of one
        already appended: then answer with that batch's offsets. (base, last)."""
        header = parse_header(data) if len(data) >= HEADER_SIZE else None
        single = header is not None and header.size == len(data)
        if header is not None and not single and header.producer_id >= 0:
            raise InvalidRecordError(
                "an idempotent producer must send one batch per partition per request")
        producers = self.producers[(topic, partition)]
        if single:
            original = producers.check(header)
            if original is not None:
                return original, original + header.last_offset_delta
        base = log.append(data)
        if single:
            producers.record(header, base)
        return base, log.log_end_offset - 1

    def _flush_and_ack(self, pending: list[_PendingAck]) -> None:
        advanced: set[tuple[str, int]] = set()
        flushed = set()
        failed: dict[tuple[str, int], KafkaStorageError] = {}
        for key, before, exc in self._flush_due_logs():
            if exc is not None:
                failed[key] = KafkaStorageError.from_os_error("fdatasync failed", exc)
            else:
                flushed.add(key)
            if self.logs[key].high_watermark != before:
                advanced.add(key)
        if self.replicas is not None and flushed:
            advanced |= self.replicas.appended(flushed)  # followers may fetch it now
        for ack in pending:  # acks=0 too: the front end must retire the request
            results = ack.results
            if failed:
                results = [dataclasses.replace(r, base_offset=-1,
                                               error=failed[(r.topic, r.partition)])
                           if (r.topic, r.partition) in failed else r for r in results]
            if self.replicas is not None and ack.acks == -1 and ack.last_offsets:
                waits = {i: wait for i, wait in ack.last_offsets.items()
                         if results[i].error is None}
                if waits:  # answered once the in-sync replicas have it (acks=all)
                    self.replicas.park(AwaitingReplicas(
                        functools.partial(self._answer, ack), list(results), waits,
                        time.monotonic() + ack.timeout_ms / 1000))
                    continue
            self._answer(ack, results)
        self._high_watermarks_moved(advanced)

    def _answer(self, ack: _PendingAck, results: list[protocol.ProduceResult]) -> None:
        if ack.door is not None:
            self.door.produced(ack.door, results)
        else:
            self._send(protocol.Produced(ack.token, results))

    def _high_watermarks_moved(self, keys: set[tuple[str, int]]) -> None:
        """Wake what waits on these partitions' high watermarks: long polls at
        the door and the front end's, and (cluster mode) acks=all produces."""
        if keys:
            self.door.advanced(keys)
            self._announce_watched(list(keys))
        if self.replicas is not None:
            for waiting in self.replicas.answerable():
                waiting.answer(waiting.results)

    # --- replication (cluster mode) ------------------------------------------------------

    def _lead(self, partitions: list[protocol.PartitionLeader]) -> None:
        """Lead these partitions; a new leadership rebuilds its producers'
        state from the log, whose newest batches came in as a follower's."""
        assert self.replicas is not None
        for entry in partitions:
            key = (entry.topic, entry.partition)
            if self.replicas.lead(entry) and key in self.logs:
                self.producers[key] = ProducerStateTable.from_log(self.logs[key])
        self._high_watermarks_moved(set())

    def _follow(self, partitions: list[protocol.PartitionFollower]) -> None:
        assert self.replicas is not None
        for entry in partitions:
            self.replicas.follow(entry)
        self._high_watermarks_moved(set())  # acks=all of a lost leadership answer now

    def _replication_tick(self) -> None:
        """Fetches, their timeouts and the ISR changes due; acks=all past their time."""
        assert self.replicas is not None
        changes = self.replicas.tick()
        if changes:
            self._send(protocol.IsrChange(changes))
        self._high_watermarks_moved(set())

    def _send_door_replies(self) -> None:
        for identity, frames in self.door.drain():
            # Never block: a client that does not read costs only its own replies.
            with contextlib.suppress(zmq.ZMQError):  # gone, or not reading
                self.door_socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)

    def _report_traffic(self, now: float) -> None:
        """The door's requests, bytes and latencies, for the supervisor's /metrics."""
        self._traffic_at = now + TRAFFIC_EVERY_S
        traffic = self.door.traffic.take()
        if traffic is not None:
            self._send(traffic)
        if self.replicas is not None and self.replicas.fetcher.lag:
            self._send(protocol.FollowerLag([(*key, lag) for key, lag in
                                             self.replicas.fetcher.lag.items()]))

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

    def _watch(self, partitions: list[tuple[str, int, int]]) -> None:
        """The front end parked a fetch: announce these partitions once they pass
        its offsets; those already past are announced now (the data may have
        come between the front end's read and this message)."""
        past = []
        for topic, partition, offset in partitions:
            log = self.logs.get((topic, partition))
            if log is None:
                continue
            if log.high_watermark > offset:
                past.append((topic, partition))
            else:
                self._watched.add((topic, partition))
        self._announce(past)

    def _announce_watched(self, advanced: list[tuple[str, int]]) -> None:
        """Positions only for what a front-end long poll watches, once each."""
        if not self._watched:
            return
        due = [key for key in advanced if key in self._watched]
        self._watched.difference_update(due)
        self._announce(due)

    def _announce(self, keys) -> None:
        """Tell the supervisor where high watermarks stand: it wakes long polls."""
        positions = [(t, p, self.logs[(t, p)].high_watermark) for t, p in keys]
        if positions:
            self._send(protocol.Positions(positions))

    def _apply_retention(self) -> None:
        for log in self.logs.values():
            log.apply_retention()
        self._next_retention = time.monotonic() + self.retention_check_ms / 1000

    def _close_all(self) -> None:
        """SIGTERM: everything appended is flushed by close() before we exit
        (from the pool: 10,000 partitions' closes one by one outlast the
        supervisor's 30 s stop timeout)."""
        if self.replicas is not None:
            self.replicas.close()  # high watermarks checkpointed while the logs are open
        for _ in self._in_pool(PartitionLog.close, [(log,) for log in self.logs.values()]):
            pass
        if self._flusher is not None:
            self._flusher.shutdown()
        self.logs.clear()
        self.door_socket.close()
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
        return key, None, None, KafkaStorageError(f"cannot open {directory}: {exc}{fix}")
    try:
        producers = ProducerStateTable.from_log(log)
        log.release_handles()  # maps and descriptors only reads need
    except (OSError, ValueError, RuntimeError) as exc:
        log.close()
        return key, None, None, KafkaStorageError(f"cannot open {directory}: {exc}")
    return key, log, producers, None


def _not_here(topic: str, partition: int) -> NotLeaderOrFollowerError:
    return NotLeaderOrFollowerError(f"partition {topic}-{partition} is not open in this worker")


def _flush_one(key: tuple[str, int], log: PartitionLog) -> tuple[tuple[str, int], int,
                                                                   OSError | None]:
    """One log's flush, in a thread of the pool or the loop's own."""
    before = log.high_watermark
    try:
        log.flush()
    except OSError as exc:
        return key, before, exc
    return key, before, None


