"""A leader worker's answers to its followers' fetches, sans-IO: frames in
(`request`), frames out (`drain`); the worker owns the ROUTER socket.

For each partition this worker leads it keeps the leader epoch and the
followers' bookkeeping (workers.in_sync_replicas). A fetch is answered at
once when any of its partitions has records, an error or a divergence to
report; otherwise it waits, up to its max_wait_ms, for the log end to grow
(`advanced`, called by the worker after an append). Each fetch also tells
the leader how far that follower has durably got, so the high watermark can
move (`high_watermark_for`), and who is due to leave or join the ISR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shm import PartitionLog
from shm.errors import NotLeaderOrFollowerError
from workers.follower_fetch import LeaderReply, leader_reply
from workers.in_sync_replicas import InSyncReplicas
from workers.replication_protocol import (
    Frame,
    ReplicaFetch,
    ReplicaFetched,
    ReplicationProtocolError,
    encode_fetched,
    parse_fetch,
)

TopicPartition = tuple[str, int]


@dataclass
class Leadership:
    """What this worker knows of a partition it leads."""

    leader_epoch: int
    replicas: InSyncReplicas


@dataclass
class _Parked:
    identity: bytes
    fetch: ReplicaFetch
    deadline_ms: int


class ReplicationDoor:
    """Follower fetches for the partitions one worker leads."""

    def __init__(self, logs: dict[TopicPartition, PartitionLog]):
        self.logs = logs
        self.leading: dict[TopicPartition, Leadership] = {}
        self._parked: list[_Parked] = []
        self._out: list[tuple[bytes, list[Frame]]] = []

    def become_leader(self, key: TopicPartition, leadership: Leadership) -> None:
        """Lead `key` at the leadership's epoch, which starts at the log end
        (checkpointed before any follower is served); from now on its high
        watermark follows the in-sync replicas (high_watermark_for), not the
        leader's flushes alone."""
        log = self.logs[key]
        if log.hw_at_flush:  # first replicated role since it was opened
            log.restore_high_watermark()
        if leadership.leader_epoch > log.epochs.latest_epoch:
            log.become_leader(leadership.leader_epoch)
        self.leading[key] = leadership

    def resign(self, key: TopicPartition) -> None:
        """No longer the leader: parked fetches for it are answered NOT_LEADER."""
        self.leading.pop(key, None)
        self._retry({key}, now_ms=None)

    # --- requests -------------------------------------------------------------------

    def request(self, identity: bytes, frames: Sequence[Frame], now_ms: int
                ) -> set[TopicPartition]:
        """A follower's fetch: answered now, or parked until data or its
        deadline; the partitions it named (their high watermark may move)."""
        try:
            fetch = parse_fetch(frames)
        except ReplicationProtocolError as exc:
            self._out.append((identity, encode_fetched(ReplicaFetched(-1, exc.name, ()))))
            return set()
        self._record_positions(fetch, now_ms)
        replies = self._answer(fetch)
        if self._worth_sending(replies, fetch) or fetch.max_wait_ms <= 0:
            self._send(identity, fetch, replies)
        else:
            self._parked.append(_Parked(identity, fetch, now_ms + fetch.max_wait_ms))
        return {(t, p) for t, p, _ in fetch.partitions}

    def _record_positions(self, fetch: ReplicaFetch, now_ms: int) -> None:
        """A fetch says how far the follower has durably got (it flushes
        before it asks): the caught-up bookkeeping of rule 5."""
        for topic, partition, position in fetch.partitions:
            leadership = self.leading.get((topic, partition))
            log = self.logs.get((topic, partition))
            if leadership is None or log is None:
                continue
            if position.current_leader_epoch == leadership.leader_epoch:
                leadership.replicas.on_follower_fetch(
                    fetch.replica_id, position.fetch_offset, log.log_end_offset, now_ms)

    def _answer(self, fetch: ReplicaFetch) -> list[tuple[str, int, LeaderReply]]:
        budget = fetch.max_bytes
        replies = []
        for topic, partition, position in fetch.partitions:
            leadership = self.leading.get((topic, partition))
            log = self.logs.get((topic, partition))
            if leadership is None or log is None:
                replies.append((topic, partition, LeaderReply(
                    NotLeaderOrFollowerError.name, -1, -1, -1)))
                continue
            reply = leader_reply(log, leadership.leader_epoch, position, max(budget, 1))
            if reply.records:
                budget -= len(reply.records)
            replies.append((topic, partition, reply))
        return replies

    @staticmethod
    def _worth_sending(replies: list[tuple[str, int, LeaderReply]], fetch: ReplicaFetch
                       ) -> bool:
        size = 0
        for _, _, reply in replies:
            if reply.error or reply.diverging_epoch is not None:
                return True
            size += len(reply.records) if reply.records else 0
        return size >= max(1, fetch.min_bytes)

    def _send(self, identity: bytes, fetch: ReplicaFetch,
              replies: list[tuple[str, int, LeaderReply]]) -> None:
        self._out.append((identity, encode_fetched(
            ReplicaFetched(fetch.request_id, None, tuple(replies)))))

    # --- waking and expiring ------------------------------------------------------------

    def advanced(self, partitions: set[TopicPartition]) -> None:
        """Log ends (or high watermarks) moved: parked fetches on them answer."""
        self._retry(partitions, now_ms=None)

    def expire(self, now_ms: int) -> None:
        """Answer every parked fetch whose wait is over, with what there is."""
        self._retry(None, now_ms)

    def _retry(self, partitions: set[TopicPartition] | None, now_ms: int | None) -> None:
        still = []
        for parked in self._parked:
            keys = {(t, p) for t, p, _ in parked.fetch.partitions}
            due = now_ms is not None and parked.deadline_ms <= now_ms
            if not due and (partitions is None or not keys & partitions):
                still.append(parked)
                continue
            replies = self._answer(parked.fetch)
            if due or self._worth_sending(replies, parked.fetch):
                self._send(parked.identity, parked.fetch, replies)
            else:
                still.append(parked)
        self._parked = still

    def next_deadline_ms(self) -> int | None:
        return min((p.deadline_ms for p in self._parked), default=None)

    def drain(self) -> list[tuple[bytes, list[Frame]]]:
        """(ROUTER identity, frames) of every answer due, in order."""
        out, self._out = self._out, []
        return out

    # --- what the fetches tell the leader ---------------------------------------------

    def high_watermark_for(self, key: TopicPartition) -> int | None:
        """Where the partition's high watermark may be now (rule 8), or None
        if this worker does not lead it; the worker applies it
        (PartitionLog.set_high_watermark) and answers acks=all produces."""
        leadership = self.leading.get(key)
        log = self.logs.get(key)
        if leadership is None or log is None:
            return None
        return leadership.replicas.high_watermark(log.durable_end_offset, log.high_watermark)

