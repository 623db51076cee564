"""One partition's replication step, both ends, over the logs alone: what a
follower asks (`position`), what the leader answers (`leader_reply`), and
what the follower does with the answer (`follower_apply`). No sockets: the
worker owns the ZeroMQ side and calls these (replication.md rules 1-4, as
Kafka's Partition.fetchRecords and AbstractFetcherThread apply them).

The leader first checks the follower's view of the leader epoch (older:
FENCED_LEADER_EPOCH, it must learn of the new leader; newer: the leader has
not heard of its own promotion yet, UNKNOWN_LEADER_EPOCH). Then
divergence: where did the follower's last epoch end in the leader's log?
If the leader never had that epoch, or it ended before the follower's log
end, the follower holds a tail the leader does not; the answer names
`(epoch, end)` and carries no records, and the follower cuts its log there.
Only epochs decide a cut, never the high watermark (KIP-101): a follower
that cut to a stale high watermark and then led lost acknowledged records.
"""

from __future__ import annotations

from dataclasses import dataclass

from shm import PartitionLog
from shm.errors import (
    FencedLeaderEpochError,
    OffsetOutOfRangeError,
    UnknownLeaderEpochError,
)

NO_EPOCH = -1


@dataclass(frozen=True)
class FetchPosition:
    """A follower's fetch for one partition (rule 1)."""

    current_leader_epoch: int  # the leader epoch the follower believes is current
    fetch_offset: int  # the follower's log end
    last_fetched_epoch: int  # the leader epoch of the follower's last batch, NO_EPOCH if none
    log_start_offset: int


@dataclass(frozen=True)
class LeaderReply:
    """The leader's answer for one partition (rule 2)."""

    error: str | None
    high_watermark: int
    log_start_offset: int
    log_end_offset: int
    diverging_epoch: tuple[int, int] | None = None  # (epoch, end offset) to cut at
    records: bytes | None = None


def position(log: PartitionLog, current_leader_epoch: int) -> FetchPosition:
    """What this follower's log asks of its leader now."""
    return FetchPosition(current_leader_epoch, log.log_end_offset, log.epochs.latest_epoch,
                         log.log_start_offset)


def leader_reply(log: PartitionLog, leader_epoch: int, fetch: FetchPosition,
                 max_bytes: int) -> LeaderReply:
    """The leader's answer: records from the follower's log end up to the
    leader's log end (not its high watermark), or why not."""
    def reply(error: str | None = None, **fields) -> LeaderReply:
        return LeaderReply(error, log.high_watermark, log.log_start_offset,
                           log.log_end_offset, **fields)

    if fetch.current_leader_epoch < leader_epoch:
        return reply(FencedLeaderEpochError.name)
    if fetch.current_leader_epoch > leader_epoch:
        return reply(UnknownLeaderEpochError.name)
    if fetch.last_fetched_epoch != NO_EPOCH:
        epoch, end = log.epochs.end_offset_for(fetch.last_fetched_epoch, log.log_end_offset)
        if epoch < fetch.last_fetched_epoch or end < fetch.fetch_offset:
            return reply(diverging_epoch=(epoch, end))
    if not log.log_start_offset <= fetch.fetch_offset <= log.log_end_offset:
        return reply(OffsetOutOfRangeError.name)
    records = None
    if fetch.fetch_offset < log.log_end_offset:
        records = log.read(fetch.fetch_offset, max_bytes, upto=log.log_end_offset) or None
    return reply(records=records)


def follower_apply(log: PartitionLog, reply: LeaderReply) -> bool:
    """Act on the leader's answer; whether to fetch again at once (a cut
    was made, so the next fetch checks the new end). Appended records are
    not yet durable: the caller flushes before the next fetch, so that the
    log end it reports is one the leader may count on (rule 8), and only
    then raises the high watermark (`set_high_watermark`)."""
    if reply.diverging_epoch is not None:
        _cut(log, reply)
        return True
    if reply.error == OffsetOutOfRangeError.name:
        if log.log_end_offset > reply.log_end_offset:
            log.truncate_to(reply.log_end_offset)  # ahead of the leader: cut back to it
        else:  # behind the leader's log start: nothing shared is left
            log.truncate_fully_and_start_at(reply.log_start_offset)
        return True
    if reply.error is not None:
        return False  # a leader change: the caller learns the new leader, then fetches
    if reply.records:
        log.append_as_follower(reply.records)
    return False


def follow_log_start(log: PartitionLog, reply: LeaderReply) -> bool:
    """Take the leader's log start offset (its DeleteRecords), up to this
    replica's own high watermark, as Kafka's follower does after each fetch:
    a follower that becomes leader then does not serve deleted records.
    Called once the high watermark was raised; whether the log start moved."""
    target = min(reply.log_start_offset, log.high_watermark)
    if target <= log.log_start_offset:
        return False
    try:
        log.advance_log_start_offset(target)
    except OSError:  # the checkpoint could not be written: the next answer tries again
        return False
    return True


def _cut(log: PartitionLog, reply: LeaderReply) -> None:
    """Rule 3: cut where the leader says the follower's tail diverges."""
    epoch, end = reply.diverging_epoch
    if epoch == NO_EPOCH:  # the leader has no epoch as old as ours: nothing is shared
        log.truncate_fully_and_start_at(reply.log_start_offset)
        return
    mine, my_end = log.epochs.end_offset_for(epoch, log.log_end_offset)
    if mine == NO_EPOCH:
        log.truncate_fully_and_start_at(reply.log_start_offset)
    elif mine != epoch:
        log.truncate_to(min(my_end, log.log_end_offset))  # and ask again (KIP-279's loop)
    else:
        log.truncate_to(min(my_end, end, log.log_end_offset))
