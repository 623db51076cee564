"""Replication's fetch step over real logs: a follower catches up byte for
byte, a stale leader epoch is refused, and a diverged tail is cut where the
leader's epochs say, never at the high watermark (KIP-101, KIP-279)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shm import PartitionLog
from shm.errors import FencedLeaderEpochError, UnknownLeaderEpochError
from shm.partition_log import LogConfig
from tests.unit.shm.conftest import make_batch
from workers.follower_fetch import follow_log_start, follower_apply, leader_reply, position


@pytest.fixture
def new_log(tmp_path: Path):
    opened: list[PartitionLog] = []

    def _open(name: str) -> PartitionLog:
        log = PartitionLog.open(tmp_path / name, LogConfig(), control_path=tmp_path / f"{name}.ctl")
        opened.append(log)
        return log
    yield _open
    for log in opened:
        log.close()


def written(log: PartitionLog, epoch: int, *counts: int) -> None:
    """Append batches of `counts` records as leader at `epoch`, durably."""
    if epoch > log.leader_epoch:
        log.set_leader_epoch(epoch)
    for count in counts:
        log.append(make_batch(count))
    log.flush()


def follow(follower: PartitionLog, leader: PartitionLog, leader_epoch: int,
           rounds: int = 20) -> int:
    """Fetch until the follower is level with the leader; the fetches taken."""
    follower.hw_at_flush = False
    for taken in range(1, rounds + 1):
        reply = leader_reply(leader, leader_epoch, position(follower, leader_epoch), 1 << 20)
        assert reply.error is None, reply
        follower_apply(follower, reply)
        follower.flush()
        follower.set_high_watermark(reply.high_watermark)
        if follower.log_end_offset == leader.log_end_offset and reply.diverging_epoch is None:
            return taken
    raise AssertionError("the follower never caught up")


def raw(log: PartitionLog, start: int = 0) -> bytes:
    return log.read(start, 1 << 30, upto=log.log_end_offset)


def test_an_empty_follower_catches_up_byte_for_byte_with_the_leaders_epochs(new_log):
    leader = new_log("leader")
    written(leader, 0, 3, 2)
    written(leader, 4, 5)
    follower = new_log("follower")
    follow(follower, leader, leader_epoch=4)
    assert raw(follower) == raw(leader)
    assert follower.epochs.entries == leader.epochs.entries == [(0, 0), (4, 5)]
    assert follower.high_watermark == leader.high_watermark == 10


def test_a_follower_on_an_older_or_newer_leader_epoch_gets_no_records(new_log):
    leader = new_log("leader")
    written(leader, 3, 2)
    follower = new_log("follower")
    stale = leader_reply(leader, 3, position(follower, 2), 1 << 20)
    ahead = leader_reply(leader, 3, position(follower, 4), 1 << 20)
    assert (stale.error, stale.records) == (FencedLeaderEpochError.name, None)
    assert (ahead.error, ahead.records) == (UnknownLeaderEpochError.name, None)
    assert not follower_apply(follower, stale) and follower.log_end_offset == 0


def test_a_tail_the_new_leader_never_had_is_cut_at_its_epochs_end_not_the_hw(new_log):
    """Old leader A wrote epoch 0 (offsets 0-2, replicated everywhere) and
    epoch 1 (3-4, reached only follower C). B led next, at epoch 2, without
    3-4. C must drop 3-4 and take B's records there, though its high
    watermark (5) would have kept them."""
    a, b, c = new_log("a"), new_log("b"), new_log("c")
    written(a, 0, 3)
    follow(b, a, 0)
    written(a, 1, 2)
    follow(c, a, 1)
    assert c.high_watermark == 5
    written(b, 2, 4)  # B, leader at epoch 2: offsets 3-6
    reply = leader_reply(b, 2, position(c, 2), 1 << 20)
    assert reply.diverging_epoch == (0, 3) and reply.records is None
    follow(c, b, 2)
    assert raw(c) == raw(b)
    assert c.epochs.entries == [(0, 0), (2, 3)]


def test_two_diverged_epochs_are_cut_one_after_the_other(new_log):
    """KIP-279's case: the follower's tail has epochs 1 and 3 the leader never
    had (two failovers in quick succession); one answer cannot say where
    both end, so the follower cuts and asks again until they agree."""
    leader, follower = new_log("leader"), new_log("follower")
    written(leader, 0, 3)
    follow(follower, leader, 0)
    written(follower, 1, 2)  # as a short-lived leader at epoch 1
    written(follower, 3, 2)  # and again at epoch 3
    written(leader, 2, 3)  # the real leader went on at epoch 2
    written(leader, 4, 1)  # and is at epoch 4 now
    fetches = follow(follower, leader, 4)
    assert fetches >= 3, "one cut per diverged epoch, then the records"
    assert raw(follower) == raw(leader)
    assert follower.epochs.entries == leader.epochs.entries


def test_a_follower_behind_the_leaders_log_start_starts_over_there(new_log):
    leader, follower = new_log("leader"), new_log("follower")
    leader.truncate_fully_and_start_at(100)  # as if retention removed 0-99
    written(leader, 0, 2)
    reply = leader_reply(leader, 0, position(follower, 0), 1 << 20)
    assert reply.error == "OFFSET_OUT_OF_RANGE"
    assert follower_apply(follower, reply)
    assert follower.log_start_offset == follower.log_end_offset == 100
    follow(follower, leader, 0)
    assert raw(follower, 100) == raw(leader, 100)


def test_a_follower_takes_the_leaders_log_start_but_never_past_its_own_high_watermark(new_log):
    leader = new_log("leader")
    written(leader, 0, 4, 4, 4)
    follower = new_log("follower")
    follow(follower, leader, leader_epoch=0)
    leader.advance_log_start_offset(6)  # DeleteRecords at the leader
    reply = leader_reply(leader, 0, position(follower, 0), 1 << 20)
    assert reply.log_start_offset == 6
    assert follow_log_start(follower, reply) and follower.log_start_offset == 6
    assert not follow_log_start(follower, reply)  # nothing new: no checkpoint written again
    empty = new_log("empty")  # behind the leader's log start: it starts over there
    empty.hw_at_flush = False
    follower_apply(empty, leader_reply(leader, 0, position(empty, 0), 1 << 20))
    assert empty.log_start_offset == empty.log_end_offset == 6


def test_a_follower_never_moves_its_log_start_past_its_own_high_watermark(new_log):
    leader = new_log("leader")
    written(leader, 0, 4, 4, 4)
    follower = new_log("follower")
    follower.hw_at_flush = False
    follower_apply(follower, leader_reply(leader, 0, position(follower, 0), 1 << 20))
    follower.flush()
    follower.set_high_watermark(4)
    leader.advance_log_start_offset(8)
    follow_log_start(follower, leader_reply(leader, 0, position(follower, 0), 1 << 20))
    assert follower.log_start_offset == 4
