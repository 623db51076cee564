"""The leader's in-sync bookkeeping, rule by rule (replication.md 5-9)."""

from __future__ import annotations

import pytest

from shm.errors import NotEnoughReplicasAfterAppendError, NotEnoughReplicasError
from workers.in_sync_replicas import InSyncReplicas

LAG_MS = 30_000


def partition(isr=(1, 2, 3), min_isr=2, now_ms=0, epoch_start=0) -> InSyncReplicas:
    return InSyncReplicas(1, (1, 2, 3), isr, min_insync_replicas=min_isr,
                          lag_time_max_ms=LAG_MS, epoch_start_offset=epoch_start, now_ms=now_ms)


def test_the_high_watermark_waits_for_every_in_sync_followers_first_fetch():
    p = partition()
    assert p.high_watermark(leader_durable_end=10, current=0) == 0
    p.on_follower_fetch(2, 10, leader_log_end=10, now_ms=1)
    assert p.high_watermark(10, 0) == 0, "follower 3 has not fetched yet"
    p.on_follower_fetch(3, 7, leader_log_end=10, now_ms=1)
    assert p.high_watermark(10, 0) == 7
    assert p.high_watermark(6, 7) == 7, "it never goes down"


def test_the_high_watermark_does_not_rise_while_the_isr_is_below_min_insync():
    p = partition(isr=(1,), min_isr=2)
    assert p.high_watermark(10, 3) == 3
    single = partition(isr=(1,), min_isr=1)
    assert single.high_watermark(10, 3) == 10


def test_a_follower_level_at_its_previous_fetch_is_still_caught_up():
    p = partition()
    p.on_follower_fetch(2, 10, leader_log_end=10, now_ms=1_000)
    p.on_follower_fetch(2, 10, leader_log_end=20, now_ms=40_000)  # leader moved on since
    assert p.followers[2].last_caught_up_ms == 1_000, "level as of its previous fetch"
    p.on_follower_fetch(2, 20, leader_log_end=30, now_ms=60_000)  # reached the previous end
    assert p.followers[2].last_caught_up_ms == 40_000


def test_a_follower_behind_for_longer_than_the_lag_time_is_due_to_leave_the_isr():
    p = partition(now_ms=0)
    p.on_follower_fetch(2, 100, leader_log_end=100, now_ms=10_000)
    p.on_follower_fetch(3, 5, leader_log_end=100, now_ms=10_000)
    assert p.lagging(now_ms=LAG_MS) == ()
    assert p.lagging(now_ms=LAG_MS + 1) == (3,)
    assert p.lagging(now_ms=10_000 + LAG_MS + 1) == (2, 3)


def test_a_follower_that_reached_the_hw_and_the_epoch_start_may_join():
    p = partition(isr=(1, 2), epoch_start=50)
    p.on_follower_fetch(3, 40, leader_log_end=60, now_ms=1)
    assert p.caught_up(high_watermark=30, now_ms=1) == (), "short of the leader epoch's start"
    p.on_follower_fetch(3, 55, leader_log_end=60, now_ms=2)
    assert p.caught_up(high_watermark=55, now_ms=2) == (3,)
    assert p.caught_up(high_watermark=56, now_ms=2) == ()


def test_a_follower_that_stopped_fetching_does_not_come_back_on_its_old_log_end():
    """Cut from its followers, a leader drops them; its high watermark is then
    their last log end, which must not read as caught up (the ISR flapped)."""
    p = partition(isr=(1,), epoch_start=0)
    p.on_follower_fetch(2, 40, leader_log_end=40, now_ms=1_000)  # level, then silent
    assert p.caught_up(high_watermark=40, now_ms=1_000 + LAG_MS) == (2,)
    assert p.caught_up(high_watermark=40, now_ms=1_001 + LAG_MS) == ()


def test_an_unconfirmed_shrink_still_holds_the_high_watermark_back():
    p = partition()
    p.on_follower_fetch(2, 10, leader_log_end=10, now_ms=1)
    p.on_follower_fetch(3, 4, leader_log_end=10, now_ms=1)
    p.propose((1, 2))
    assert p.high_watermark(10, 0) == 4, "3 is out only once ZooKeeper says so"
    p.confirm()
    assert p.isr == (1, 2) and p.high_watermark(10, 4) == 10


def test_an_unconfirmed_expansion_already_counts():
    p = partition(isr=(1, 2))
    p.on_follower_fetch(2, 10, leader_log_end=10, now_ms=1)
    p.on_follower_fetch(3, 6, leader_log_end=10, now_ms=1)
    p.propose((1, 2, 3))
    assert p.high_watermark(10, 6) == 6, "3 joins: the HW may not pass it meanwhile"
    p.abandon()
    assert p.high_watermark(10, 6) == 10


def test_acks_all_is_refused_before_the_append_below_min_insync():
    with pytest.raises(NotEnoughReplicasError, match="nothing was written"):
        partition(isr=(1,), min_isr=2).check_before_append()
    partition(isr=(1, 2), min_isr=2).check_before_append()


def test_acks_all_is_answered_once_the_hw_passes_the_batch():
    p = partition(isr=(1, 2))
    assert not p.acknowledged(last_offset=9, high_watermark=9)
    assert p.acknowledged(last_offset=9, high_watermark=10)
    p.propose((1,))
    p.confirm()
    with pytest.raises(NotEnoughReplicasAfterAppendError, match="written, but"):
        p.acknowledged(last_offset=12, high_watermark=10)
