"""A worker's part in replication (cluster mode): the partitions it leads,
those it follows, and the acks=all produces waiting for their in-sync
replicas. Kafka's ReplicaManager for one worker, inside the worker's loop.

- Leading: followers fetch at this worker's replication ROUTER
  (workers.replication_door); each fetch says how far a follower has
  durably got, which may raise the high watermark; a follower not caught
  up for `replica.lag.time.max.ms` is proposed out of the ISR and one that
  caught up proposed back in (IsrChange, written by the supervisor).
- Following: one DEALER per leader endpoint (workers.replica_fetcher).
- acks=all: a produce's parts on replicated partitions are answered once
  the high watermark passes their last offset (`park` / `answerable`), or
  with NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER (the
  leadership moved) or REQUEST_TIMED_OUT.

A partition with no role yet refuses produce and consumer fetches
(NOT_LEADER_OR_FOLLOWER): only its leader serves clients.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from shm import PartitionLog
from shm.errors import (
    NotEnoughReplicasAfterAppendError,
    NotLeaderOrFollowerError,
    RequestTimedOutError,
    RinglogError,
)
from workers import protocol
from workers.in_sync_replicas import InSyncReplicas
from workers.replica_fetcher import ReplicaFetcher
from workers.replication_door import Leadership, ReplicationDoor
from workers.sockets import bind_router

TopicPartition = tuple[str, int]
ISR_CHECK_MS = 250  # how often a leader looks for followers to drop from or add to the ISR
CHECKPOINT_EVERY_MS = 5000  # Kafka's replica.high.watermark.checkpoint.interval.ms
FETCH_TIMEOUT_MARGIN_MS = 2000  # past the long poll's wait, a fetch is given up
WILDCARD_HOSTS = ("0.0.0.0", "::", "*")  # bound everywhere: no one source address to leave from


@dataclass
class ReplicaSettings:
    """The broker's replication settings a worker needs."""

    replica_id: int  # this broker's id
    lag_time_max_ms: int = 30_000
    fetch_wait_max_ms: int = 500
    fetch_max_bytes: int = 1 << 20


@dataclass
class AwaitingReplicas:
    """A produce whose acks=all parts wait for the high watermark."""

    answer: Callable[[list[protocol.ProduceResult]], None]
    results: list[protocol.ProduceResult]
    waits: dict[int, tuple[TopicPartition, int]] = field(default_factory=dict)  # index -> key, last
    deadline: float = 0.0


class Replicas:
    """The replication side of one worker: its ROUTER, door and fetcher."""

    def __init__(self, context: zmq.Context, logs: dict[TopicPartition, PartitionLog],
                 settings: ReplicaSettings, host: str, port: int = 0):
        self.logs = logs
        self.settings = settings
        self.socket, self.endpoint = bind_router(context, host, port)
        self.door = ReplicationDoor(logs)
        self.fetcher = ReplicaFetcher(
            context, logs, replica_id=settings.replica_id, broker_epoch=-1,
            max_wait_ms=settings.fetch_wait_max_ms, max_bytes=settings.fetch_max_bytes,
            request_timeout_ms=settings.fetch_wait_max_ms + FETCH_TIMEOUT_MARGIN_MS,
            source_host=None if host in WILDCARD_HOSTS else host)
        self._awaiting: list[AwaitingReplicas] = []
        self._isr_check_ms = 0
        self._checkpoint_ms = _now_ms() + CHECKPOINT_EVERY_MS

    # --- roles ------------------------------------------------------------------------

    def lead(self, entry: protocol.PartitionLeader) -> bool:
        """Lead a partition, or take ZooKeeper's ISR for one already led at
        this epoch; True when a leadership starts (its producer state must be
        rebuilt from the log: batches came in as a follower's)."""
        key = (entry.topic, entry.partition)
        log = self.logs.get(key)
        if log is None:
            return False
        current = self.door.leading.get(key)
        if current is not None and current.leader_epoch == entry.leader_epoch:
            isr = current.replicas
            isr.isr, isr.pending = tuple(entry.isr), None
            isr.min_insync_replicas = entry.min_insync_replicas
            return False
        if current is not None and current.leader_epoch > entry.leader_epoch:
            return False  # a late message of an older leadership
        self.fetcher.unfollow(key)
        now_ms = _now_ms()
        replicas = InSyncReplicas(
            self.settings.replica_id, tuple(entry.replicas), tuple(entry.isr),
            min_insync_replicas=entry.min_insync_replicas,
            lag_time_max_ms=self.settings.lag_time_max_ms,
            epoch_start_offset=log.log_end_offset, now_ms=now_ms)
        self.door.become_leader(key, Leadership(entry.leader_epoch, replicas))
        self.update_high_watermarks({key})
        return True

    def follow(self, entry: protocol.PartitionFollower) -> None:
        """Follow a partition's leader (an empty endpoint: no leader to fetch from)."""
        key = (entry.topic, entry.partition)
        if key not in self.logs:
            return
        if key in self.door.leading:
            self.door.resign(key)
        if entry.endpoint:
            self.fetcher.follow(key, entry.endpoint, entry.leader_epoch)
        else:
            self.fetcher.unfollow(key)

    def forget(self, key: TopicPartition) -> None:
        """The partition was closed: no role any more."""
        self.door.resign(key)
        self.fetcher.unfollow(key)

    @property
    def leading(self) -> dict[TopicPartition, Leadership]:
        return self.door.leading

    def check_produce(self, key: TopicPartition, acks: int) -> None:
        """Refuse a produce before anything is written: not the leader, or
        (acks=all) fewer in-sync replicas than min.insync.replicas."""
        leadership = self.door.leading.get(key)
        if leadership is None:
            raise NotLeaderOrFollowerError(
                f"this broker does not lead {key[0]}-{key[1]}; ask metadata for its leader")
        if acks == -1:
            leadership.replicas.check_before_append()

    # --- the loop's calls -------------------------------------------------------------

    @property
    def sockets(self) -> list[zmq.Socket]:
        return [self.socket, *self.fetcher.sockets]

    def on_readable(self, socket: zmq.Socket) -> set[TopicPartition]:
        """Requests on the ROUTER, or replies on a fetcher's DEALER; the
        partitions whose high watermark moved."""
        now_ms = _now_ms()
        if socket is not self.socket:
            return self.fetcher.on_readable(socket, now_ms)
        fetched: set[TopicPartition] = set()
        for _ in range(1000):
            try:
                identity, *frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            fetched |= self.door.request(identity, frames, now_ms)
        self.send_replies()
        return self.update_high_watermarks(fetched)

    def appended(self, keys: set[TopicPartition]) -> set[TopicPartition]:
        """The leader's log ends moved (and are durable): parked follower
        fetches answer; the partitions whose high watermark moved."""
        led = {key for key in keys if key in self.door.leading}
        if not led:
            return set()
        self.door.advanced(led)
        self.send_replies()
        return self.update_high_watermarks(led)

    def update_high_watermarks(self, keys: set[TopicPartition]) -> set[TopicPartition]:
        moved = set()
        for key in keys:
            high_watermark = self.door.high_watermark_for(key)
            if high_watermark is not None and self.logs[key].set_high_watermark(high_watermark):
                moved.add(key)
        return moved

    def tick(self) -> list[tuple[str, int, int, list[int]]]:
        """Expire parked fetches, send due fetches, checkpoint high watermarks;
        the ISR changes to propose (for IsrChange)."""
        now_ms = _now_ms()
        self.door.expire(now_ms)
        self.send_replies()
        self.fetcher.send_due(now_ms)
        if now_ms >= self._checkpoint_ms:
            self._checkpoint_ms = now_ms + CHECKPOINT_EVERY_MS
            self.checkpoint()
        if now_ms < self._isr_check_ms:
            return []
        self._isr_check_ms = now_ms + ISR_CHECK_MS
        return self._isr_changes(now_ms)

    def _isr_changes(self, now_ms: int) -> list[tuple[str, int, int, list[int]]]:
        changes = []
        for key, leadership in self.door.leading.items():
            isr = leadership.replicas
            if isr.pending is not None:
                continue  # one change in flight at a time
            lagging = isr.lagging(now_ms)
            joining = isr.caught_up(self.logs[key].high_watermark, now_ms)
            if not lagging and not joining:
                continue
            proposed = tuple(m for m in isr.isr if m not in lagging) + joining
            isr.propose(proposed)
            changes.append((*key, leadership.leader_epoch, list(proposed)))
        return changes

    def next_deadline_ms(self) -> int | None:
        return self.door.next_deadline_ms()

    def send_replies(self) -> None:
        for identity, frames in self.door.drain():
            with contextlib.suppress(zmq.ZMQError):  # a follower gone: it fetches again
                self.socket.send_multipart([identity, *frames], zmq.NOBLOCK)

    def checkpoint(self) -> None:
        for key in (*self.door.leading, *self.fetcher.following):
            log = self.logs.get(key)
            if log is not None and not log.hw_at_flush:
                with contextlib.suppress(OSError):  # the next one, or close(), writes it
                    log.checkpoint_high_watermark()

    # --- acks=all ---------------------------------------------------------------------

    def park(self, waiting: AwaitingReplicas) -> None:
        self._awaiting.append(waiting)

    def answerable(self) -> list[AwaitingReplicas]:
        """Parked produces now fully answered (committed, failed or timed out)."""
        if not self._awaiting:
            return []
        now = time.monotonic()
        done, still = [], []
        for waiting in self._awaiting:
            for index, (key, last_offset) in list(waiting.waits.items()):
                error = self._committed(key, last_offset, now >= waiting.deadline)
                if error is False:
                    continue
                del waiting.waits[index]
                if isinstance(error, RinglogError):
                    result = waiting.results[index]
                    waiting.results[index] = protocol.ProduceResult(
                        result.topic, result.partition, error=error)
            (still if waiting.waits else done).append(waiting)
        self._awaiting = still
        return done

    def _committed(self, key: TopicPartition, last_offset: int, expired: bool
                   ) -> bool | RinglogError:
        """True once committed; False to keep waiting; or the error to answer."""
        leadership = self.door.leading.get(key)
        log = self.logs.get(key)
        if leadership is None or log is None:
            return NotLeaderOrFollowerError(
                f"{key[0]}-{key[1]} changed leader before its in-sync replicas had the batch; "
                "it may or may not be written")
        try:
            if leadership.replicas.acknowledged(last_offset, log.high_watermark):
                return True
        except NotEnoughReplicasAfterAppendError as exc:
            return exc
        if expired:
            return RequestTimedOutError(
                f"{key[0]}-{key[1]}: the in-sync replicas {list(leadership.replicas.isr)} did "
                "not all have the batch in time; it may or may not be committed")
        return False

    def next_ack_deadline(self) -> float | None:
        return min((w.deadline for w in self._awaiting), default=None)

    def close(self) -> None:
        self.checkpoint()
        self.fetcher.close()
        self.socket.close(0)


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000
