"""A follower worker's fetches from its partitions' leaders, inside the
worker's loop (Kafka's ReplicaFetcherThread, without the thread).

One DEALER and at most one fetch in flight per leader endpoint, carrying
every partition this worker follows there. A reply is applied partition by
partition (workers.follower_fetch), the logs that took records are flushed
once each, and only then is each high watermark raised and the next fetch
sent, so the log end a fetch reports is always durable (the leader counts
on it for its high watermark). A fetch unanswered for `request_timeout_ms`
is given up with its socket: ZeroMQ would deliver a request queued while
the leader was unreachable late, so a fresh DEALER starts again.
A partition whose leader answers with a leader-epoch or not-leader error
backs off for LEADER_CHANGED_BACKOFF_MS and asks again, as Kafka's fetcher
does: the follower may have heard of the new epoch before its leader has
(UNKNOWN_LEADER_EPOCH), and then nothing else would tell it to ask again;
a leader that really moved is followed anew when the supervisor says where.
Every answer also carries the leader's log start offset, which the
follower's log takes up to its own high watermark (the leader's DeleteRecords).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import zmq

from shm import PartitionLog
from shm.errors import (
    FencedLeaderEpochError,
    NotLeaderOrFollowerError,
    UnknownLeaderEpochError,
)
from workers.follower_fetch import follow_log_start, follower_apply, position
from workers.replication_protocol import (
    ReplicaFetch,
    ReplicationProtocolError,
    encode_fetch,
    parse_fetched,
)

TopicPartition = tuple[str, int]
# A partition's errors that mean its leader changed: wait to be told the new one.
LEADER_CHANGED = frozenset({FencedLeaderEpochError.name, UnknownLeaderEpochError.name,
                            NotLeaderOrFollowerError.name})
LEADER_CHANGED_BACKOFF_MS = 500  # Kafka's replica.fetch.backoff.ms is 1000


@dataclass
class _Leader:
    endpoint: str
    socket: zmq.Socket
    partitions: dict[TopicPartition, int] = field(default_factory=dict)  # -> leader epoch
    in_flight: int | None = None  # request id
    sent_ms: int = 0


class ReplicaFetcher:
    """Fetches for every partition this worker follows."""

    def __init__(self, context: zmq.Context, logs: dict[TopicPartition, PartitionLog], *,
                 replica_id: int, broker_epoch: int, max_wait_ms: int, min_bytes: int = 1,
                 max_bytes: int = 1 << 20, request_timeout_ms: int = 30_000,
                 source_host: str | None = None):
        self.context = context
        self.logs = logs
        self.replica_id = replica_id
        self.broker_epoch = broker_epoch
        self.max_wait_ms = max_wait_ms
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.request_timeout_ms = request_timeout_ms
        # Fetches leave from this broker's own address, so that a network
        # partition between two brokers' addresses cuts them (fault tests).
        self.source_host = source_host
        self._leaders: dict[str, _Leader] = {}
        # partitions whose leader answered a leader change: fetched again at this time (ms)
        self._waiting: dict[TopicPartition, int] = {}
        self.lag: dict[TopicPartition, int] = {}  # behind the leader's log end, last we heard
        self._ids = itertools.count(1)

    # --- what to follow ---------------------------------------------------------------

    def follow(self, key: TopicPartition, endpoint: str, leader_epoch: int) -> None:
        """Fetch `key` from the leader at `endpoint`, as of `leader_epoch`."""
        self.unfollow(key)
        self._waiting.pop(key, None)
        if self.logs[key].hw_at_flush:  # first replicated role since it was opened
            self.logs[key].restore_high_watermark()  # the leader's answers move it now
        leader = self._leaders.get(endpoint)
        if leader is None:
            leader = self._leaders[endpoint] = _Leader(endpoint, self._dealer(endpoint))
        leader.partitions[key] = leader_epoch

    def unfollow(self, key: TopicPartition) -> None:
        self.lag.pop(key, None)
        for endpoint, leader in list(self._leaders.items()):
            if leader.partitions.pop(key, None) is not None and not leader.partitions:
                leader.socket.close(0)
                del self._leaders[endpoint]

    def _dealer(self, endpoint: str) -> zmq.Socket:
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.IMMEDIATE, 1)  # no queueing for a leader not connected yet
        if self.source_host:
            socket.connect(f"tcp://{self.source_host}:0;{endpoint.removeprefix('tcp://')}")
        else:
            socket.connect(endpoint)
        return socket

    @property
    def following(self) -> list[TopicPartition]:
        return [key for leader in self._leaders.values() for key in leader.partitions]

    @property
    def sockets(self) -> list[zmq.Socket]:
        """What the worker's poller waits on, besides its own sockets."""
        return [leader.socket for leader in self._leaders.values()]

    # --- the loop's calls -------------------------------------------------------------

    def send_due(self, now_ms: int) -> None:
        """Send a fetch to every leader with none in flight; give up on (and
        replace the socket of) a fetch past the request timeout."""
        for leader in self._leaders.values():
            if leader.in_flight is not None:
                if now_ms - leader.sent_ms < self.request_timeout_ms:
                    continue
                leader.socket.close(0)
                leader.socket = self._dealer(leader.endpoint)
                leader.in_flight = None
            self._send(leader, now_ms)

    def _send(self, leader: _Leader, now_ms: int) -> None:
        partitions = tuple((t, p, position(self.logs[(t, p)], epoch))
                           for (t, p), epoch in leader.partitions.items()
                           if self._waiting.get((t, p), 0) <= now_ms)
        if not partitions:
            return
        request_id = next(self._ids)
        try:
            leader.socket.send_multipart(encode_fetch(ReplicaFetch(
                request_id, self.replica_id, self.broker_epoch, self.max_wait_ms,
                self.min_bytes, self.max_bytes, partitions)), zmq.NOBLOCK)
        except zmq.Again:  # not connected yet (IMMEDIATE): the next call tries again
            return
        leader.in_flight, leader.sent_ms = request_id, now_ms

    def on_readable(self, socket: zmq.Socket, now_ms: int) -> set[TopicPartition]:
        """Take the replies waiting on `socket`; the partitions whose high
        watermark moved (their consumers may be woken)."""
        leader = next((x for x in self._leaders.values() if x.socket is socket), None)
        moved: set[TopicPartition] = set()
        while leader is not None:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                reply = parse_fetched(frames)
            except ReplicationProtocolError:
                continue  # not ours to understand
            if reply.request_id != leader.in_flight:
                continue  # an answer to a fetch given up on
            leader.in_flight = None
            moved |= self._apply(leader, reply, now_ms)
            self._send(leader, now_ms)
        return moved

    def _apply(self, leader: _Leader, reply, now_ms: int) -> set[TopicPartition]:
        appended, answers = set(), []
        for topic, partition, answer in reply.partitions:
            key = (topic, partition)
            if key not in leader.partitions or key not in self.logs:
                continue
            if answer.error in LEADER_CHANGED:
                self._waiting[key] = now_ms + LEADER_CHANGED_BACKOFF_MS
                continue
            self._waiting.pop(key, None)
            end = self.logs[key].log_end_offset
            follower_apply(self.logs[key], answer)
            if self.logs[key].log_end_offset > end:
                appended.add(key)
            answers.append((key, answer))
        for key in appended:  # durable before the next fetch reports it (rule 8)
            self.logs[key].flush()
        for key, answer in answers:
            self.lag[key] = max(0, answer.log_end_offset - self.logs[key].log_end_offset)
        moved = set()
        for key, answer in answers:
            if self.logs[key].set_high_watermark(answer.high_watermark):
                moved.add(key)
            follow_log_start(self.logs[key], answer)  # the leader's DeleteRecords
        return moved

    def close(self) -> None:
        for leader in self._leaders.values():
            leader.socket.close(0)
        self._leaders.clear()
