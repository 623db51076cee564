"""A leader's record of its followers for one partition: who is caught up,
who is in sync, how far the high watermark may go, and what an acks=all
produce is told (replication.md rules 5-9, as Kafka's Partition keeps them).
Pure bookkeeping: the worker feeds it follower fetches and the clock, and
writes ISR changes to ZooKeeper itself.

- A follower is caught up when a fetch reaches the leader's log end as it
  is now, or as it was at that follower's previous fetch (it was level then
  and the leader has only moved on since).
- An in-sync follower not caught up for `replica.lag.time.max.ms` is due to
  leave the ISR (`lagging`); one out of it whose log end reaches the high
  watermark and the start of the leader's epoch is due to join
  (`caught_up`), if it is caught up now by the rule above: a follower that
  stopped fetching keeps its last log end, which the high watermark comes
  down to once it has left, and must not come straight back.
- An ISR change counts for the high watermark the safe way while ZooKeeper
  has not confirmed it: a member leaving still holds it back, a member
  joining already does (Kafka's "maximal ISR").
- The high watermark is the least of the leader's durable log end and every
  in-sync follower's log end; it waits for each follower's first fetch
  under this leader, and does not rise while the ISR is smaller than
  min(min.insync.replicas, the replicas).
"""

from __future__ import annotations

from dataclasses import dataclass

from shm.errors import NotEnoughReplicasAfterAppendError, NotEnoughReplicasError

UNKNOWN = -1  # a follower's log end before its first fetch under this leader


@dataclass
class FollowerState:
    log_end_offset: int = UNKNOWN
    last_caught_up_ms: int = 0
    last_fetch_ms: int = 0
    leader_end_at_last_fetch: int = UNKNOWN


class InSyncReplicas:
    """The leader's view of one partition's replicas."""

    def __init__(self, leader: int, replicas: tuple[int, ...], isr: tuple[int, ...], *,
                 min_insync_replicas: int, lag_time_max_ms: int, epoch_start_offset: int,
                 now_ms: int):
        self.leader = leader
        self.replicas = replicas
        self.isr = tuple(isr)  # as ZooKeeper has it
        self.pending: tuple[int, ...] | None = None  # written, not yet confirmed
        self.min_insync_replicas = min_insync_replicas
        self.lag_time_max_ms = lag_time_max_ms
        self.epoch_start_offset = epoch_start_offset
        # Every follower starts as caught up now, so that a new leader does not
        # drop its ISR before anyone had the time to fetch from it.
        self.followers = {r: FollowerState(last_caught_up_ms=now_ms)
                          for r in replicas if r != leader}

    def on_follower_fetch(self, follower: int, fetch_offset: int, leader_log_end: int,
                          now_ms: int) -> None:
        """A follower fetched from `fetch_offset`, its (durable) log end."""
        state = self.followers.get(follower)
        if state is None:
            return  # not a replica of this partition: the caller refuses it
        if fetch_offset >= leader_log_end:
            state.last_caught_up_ms = now_ms
        elif fetch_offset >= state.leader_end_at_last_fetch >= 0:
            state.last_caught_up_ms = max(state.last_caught_up_ms, state.last_fetch_ms)
        state.log_end_offset = fetch_offset
        state.last_fetch_ms = now_ms
        state.leader_end_at_last_fetch = leader_log_end

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The ISR the high watermark must respect: the confirmed one and a
        pending one together."""
        if self.pending is None:
            return self.isr
        return tuple(dict.fromkeys((*self.isr, *self.pending)))

    def high_watermark(self, leader_durable_end: int, current: int) -> int:
        """Where the high watermark may be now (never below `current`)."""
        if len(self.isr) < min(self.min_insync_replicas, len(self.replicas)):
            return current
        ends = [leader_durable_end]
        for member in self.maximal_isr:
            if member == self.leader:
                continue
            end = self.followers[member].log_end_offset if member in self.followers else UNKNOWN
            if end == UNKNOWN:
                return current  # wait for its first fetch under this leader
            ends.append(end)
        return max(current, min(ends))

    def lagging(self, now_ms: int) -> tuple[int, ...]:
        """In-sync followers to drop: not caught up for lag_time_max_ms."""
        return tuple(m for m in self.isr if m != self.leader and m in self.followers
                     and now_ms - self.followers[m].last_caught_up_ms > self.lag_time_max_ms)

    def caught_up(self, high_watermark: int, now_ms: int) -> tuple[int, ...]:
        """Followers out of the ISR that may join it: fetching, caught up
        within the lag time, and holding everything committed."""
        return tuple(r for r, state in self.followers.items() if r not in self.isr
                     and state.log_end_offset != UNKNOWN
                     and now_ms - state.last_caught_up_ms <= self.lag_time_max_ms
                     and state.log_end_offset >= max(high_watermark, self.epoch_start_offset))

    def propose(self, isr: tuple[int, ...]) -> None:
        """An ISR written to ZooKeeper, not yet confirmed."""
        self.pending = tuple(isr)

    def confirm(self) -> None:
        """ZooKeeper took the pending ISR."""
        if self.pending is not None:
            self.isr, self.pending = self.pending, None

    def abandon(self) -> None:
        """ZooKeeper refused the pending ISR (another writer moved the state)."""
        self.pending = None

    def check_before_append(self) -> None:
        """acks=all: refuse before anything is written when too few are in sync."""
        if len(self.isr) < self.min_insync_replicas:
            raise NotEnoughReplicasError(
                f"{len(self.isr)} in-sync replicas {list(self.isr)}, min.insync.replicas is "
                f"{self.min_insync_replicas}: nothing was written")

    def acknowledged(self, last_offset: int, high_watermark: int) -> bool:
        """acks=all: whether a batch ending at `last_offset` is committed, or
        NotEnoughReplicasAfterAppendError if it cannot be promised."""
        if high_watermark > last_offset:
            return True
        if len(self.isr) < self.min_insync_replicas:
            raise NotEnoughReplicasAfterAppendError(
                f"written, but the in-sync replicas fell to {list(self.isr)}, below "
                f"min.insync.replicas={self.min_insync_replicas}")
        return False
