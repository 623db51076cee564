"""A follower's log: batches appended as the leader stored them (offsets and
leader epochs kept), a high watermark set from outside, and truncation by
leader epoch when the follower's tail diverged (replication.md rules 3, 4)."""

from __future__ import annotations

import pytest

from shm.errors import InvalidRecordError, OffsetOutOfRangeError
from shm.partition_log import LogConfig, PartitionLog
from tests.unit.shm.conftest import make_batch, record_offsets, reopen


def leader_with_two_epochs(open_log) -> PartitionLog:
    leader = open_log(name="leader-0")
    leader.append(make_batch(3))
    leader.set_leader_epoch(2)
    leader.append(make_batch(2))
    leader.append(make_batch(4))
    leader.flush()
    return leader


def replicate(leader: PartitionLog, follower: PartitionLog) -> None:
    """What a follower fetch does: read from the follower's end, append as is."""
    data = leader.read(follower.log_end_offset, 1 << 20, upto=leader.log_end_offset)
    follower.append_as_follower(data)


def test_replicated_batches_are_stored_byte_for_byte_with_the_leaders_epochs(open_log):
    leader = leader_with_two_epochs(open_log)
    follower = open_log(name="follower-0")
    follower.hw_at_flush = False
    replicate(leader, follower)
    assert follower.log_end_offset == leader.log_end_offset == 9
    assert follower.read(0, 1 << 20, upto=9) == leader.read(0, 1 << 20, upto=9)
    assert follower.epochs.entries == leader.epochs.entries == [(0, 0), (2, 3)]
    assert follower.leader_epoch == 2


def test_batches_that_do_not_continue_the_log_are_refused_and_change_nothing(open_log):
    leader = leader_with_two_epochs(open_log)
    follower = open_log(name="follower-0")
    tail = leader.read(3, 1 << 20, upto=9)  # starts at 3, the follower ends at 0
    with pytest.raises(OffsetOutOfRangeError, match="does not continue the log"):
        follower.append_as_follower(tail)
    assert follower.log_end_offset == 0


def test_a_batch_of_an_older_epoch_than_the_log_holds_is_refused(open_log):
    follower = open_log(name="follower-0")
    follower.hw_at_flush = False
    newer = open_log(name="newer-0")
    newer.set_leader_epoch(5)
    newer.append(make_batch(1))
    replicate(newer, follower)
    older = open_log(name="older-0")
    older.append(make_batch(1))  # epoch 0, offset 0
    older.append(make_batch(1))  # epoch 0, offset 1: continues the follower's log
    with pytest.raises(InvalidRecordError, match="leader epoch 0 follows epoch 5"):
        follower.append_as_follower(older.read(1, 1 << 20, upto=2))
    assert follower.log_end_offset == 1


def test_a_followers_high_watermark_is_set_not_flushed_and_never_passes_its_durable_end(
        open_log):
    leader = leader_with_two_epochs(open_log)
    follower = open_log(name="follower-0", config=LogConfig(flush_policy="batch"))
    follower.hw_at_flush = False
    replicate(leader, follower)
    assert not follower.set_high_watermark(5), "nothing is durable before the flush"
    follower.flush()
    assert follower.high_watermark == 0, "a flush alone moves no replicated high watermark"
    assert follower.set_high_watermark(5) and follower.high_watermark == 5
    assert not follower.set_high_watermark(4), "it only rises"
    follower.set_high_watermark(100)
    assert follower.high_watermark == 9


def test_a_diverged_tail_is_cut_where_the_leaders_epoch_ended(open_log):
    """The follower appended epoch 0 up to offset 5 as the old leader did; the
    new leader's epoch 0 ended at 3. Cut there, then replicate the rest."""
    follower = open_log(name="follower-0")
    follower.hw_at_flush = False
    old_leader = open_log(name="old-0")
    old_leader.append(make_batch(3))
    old_leader.append(make_batch(2))  # never made it to the new leader
    replicate(old_leader, follower)
    leader = leader_with_two_epochs(open_log)
    epoch, end = leader.epochs.end_offset_for(follower.epochs.latest_epoch,
                                              leader.log_end_offset)
    assert (epoch, end) == (0, 3)
    follower.truncate_to(min(end, follower.log_end_offset))
    replicate(leader, follower)
    assert record_offsets(follower.read(0, 1 << 20, upto=9)) == list(range(9))
    # From the cut on, the leader's batches (in a real cluster the part below
    # it is the same data on both, the stand-ins here differ)
    assert follower.read(3, 1 << 20, upto=9) == leader.read(3, 1 << 20, upto=9)
    assert follower.epochs.entries == [(0, 0), (2, 3)]


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_replicated_epochs_survive_a_restart(open_log, how):
    leader = leader_with_two_epochs(open_log)
    follower = open_log()  # topic-0, the name reopen() opens again
    replicate(leader, follower)
    follower.flush()
    again = reopen(open_log, follower, how)
    assert again.epochs.entries == [(0, 0), (2, 3)]
    assert again.log_end_offset == 9
    assert again.read(0, 1 << 20, upto=9) == leader.read(0, 1 << 20, upto=9)


def test_a_new_leaders_epoch_is_in_its_checkpoint_before_it_appends(open_log):
    log = open_log()
    log.append(make_batch(3))
    log.become_leader(4)
    assert log.epochs.entries == [(0, 0), (4, 3)]
    assert "4 3" in log.epochs.path.read_text(), "written to the checkpoint at once"
    assert log.epochs.end_offset_for(0, log.log_end_offset) == (0, 3)
    log.append(make_batch(2))
    assert log.epochs.entries == [(0, 0), (4, 3)], "its first batch starts the same epoch"


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_a_replicated_log_restarts_at_its_checkpointed_high_watermark_not_its_end(
        open_log, how):
    """Records past the high watermark may never have been committed: a
    restart must not make them readable (nor cut them: only epochs cut)."""
    log = open_log()
    log.restore_high_watermark()  # replicated from now on; nothing checkpointed yet
    log.append(make_batch(3))
    log.append(make_batch(2))
    log.flush()
    log.set_high_watermark(3)
    log.checkpoint_high_watermark()
    again = reopen(open_log, log, how)
    assert again.high_watermark == 5, "opened as a single node: its end"
    assert again.restore_high_watermark() == 3
    assert again.log_end_offset == 5, "nothing was cut"


def test_no_or_a_damaged_checkpoint_restores_the_log_start(open_log):
    log = open_log()
    log.append(make_batch(2))
    log.flush()
    assert log.restore_high_watermark() == 0
    (log.directory / "high-watermark-checkpoint").write_text("garbage")
    assert log.restore_high_watermark() == 0
