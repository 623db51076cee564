"""A leader worker's replication door, frames in and out: a follower catches
up through it, a fetch with nothing to take waits for the log to grow, and
the high watermark moves only as far as the in-sync followers hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from shm import PartitionLog
from shm.partition_log import LogConfig
from tests.unit.shm.conftest import make_batch
from workers.follower_fetch import follower_apply, position
from workers.in_sync_replicas import InSyncReplicas
from workers.replication_door import Leadership, ReplicationDoor
from workers.replication_protocol import ReplicaFetch, encode_fetch, parse_fetched

KEY = ("orders", 0)
EPOCH = 3


@pytest.fixture
def logs(tmp_path: Path):
    opened = {}
    for name in ("leader", "follower"):
        log = PartitionLog.open(tmp_path / name, LogConfig(), control_path=tmp_path / f"{name}.c")
        log.hw_at_flush = False
        opened[name] = log
    yield opened["leader"], opened["follower"]
    for log in opened.values():
        log.close()


def leading(leader: PartitionLog, isr=(1, 2)) -> ReplicationDoor:
    door = ReplicationDoor({KEY: leader})
    door.become_leader(KEY, Leadership(EPOCH, InSyncReplicas(
        1, (1, 2), isr, min_insync_replicas=2, lag_time_max_ms=30_000,
        epoch_start_offset=leader.log_end_offset, now_ms=0)))
    leader.set_leader_epoch(EPOCH)
    return door


def fetch_frames(follower: PartitionLog, request_id: int, max_wait_ms: int = 500) -> list:
    return encode_fetch(ReplicaFetch(request_id, 2, 1, max_wait_ms, 1, 1 << 20,
                                     (("orders", 0, position(follower, EPOCH)),)))


def answers(door: ReplicationDoor) -> list:
    return [parse_fetched(frames) for _, frames in door.drain()]


def test_a_follower_catches_up_and_the_high_watermark_follows_what_it_holds(logs):
    leader, follower = logs
    door = leading(leader)
    leader.append(make_batch(3))
    leader.append(make_batch(2))
    leader.flush()
    assert door.high_watermark_for(KEY) == 0, "follower 2 has not fetched yet"
    door.request(b"f", fetch_frames(follower, 1), now_ms=10)
    (reply,) = answers(door)
    _, _, first = reply.partitions[0]
    follower_apply(follower, first)
    follower.flush()
    assert follower.log_end_offset == 5
    assert door.high_watermark_for(KEY) == 0, "what it fetched is not yet what it holds"
    door.request(b"f", fetch_frames(follower, 2), now_ms=20)  # says: durable up to 5
    assert door.high_watermark_for(KEY) == 5
    leader.set_high_watermark(door.high_watermark_for(KEY))
    assert not answers(door), "nothing new: the fetch waits"
    door.expire(now_ms=520)
    (empty,) = answers(door)
    assert empty.partitions[0][2].records is None and empty.partitions[0][2].high_watermark == 5


def test_a_parked_fetch_is_answered_when_the_log_grows(logs):
    leader, follower = logs
    door = leading(leader)
    door.request(b"f", fetch_frames(follower, 1), now_ms=0)
    assert not answers(door) and door.next_deadline_ms() == 500
    leader.append(make_batch(4))
    door.advanced({KEY})
    (reply,) = answers(door)
    assert reply.request_id == 1 and reply.partitions[0][2].records is not None
    assert door.next_deadline_ms() is None


def test_a_partition_this_worker_does_not_lead_is_answered_not_leader(logs):
    leader, follower = logs
    door = ReplicationDoor({KEY: leader})
    door.request(b"f", fetch_frames(follower, 1), now_ms=0)
    (reply,) = answers(door)
    assert reply.partitions[0][2].error == "NOT_LEADER_OR_FOLLOWER"


def test_garbage_is_answered_invalid_request_and_changes_nothing(logs):
    leader, _ = logs
    door = leading(leader)
    door.request(b"f", [b"replica_fetch", b"{not json"], now_ms=0)
    (reply,) = answers(door)
    assert reply.error == "INVALID_REQUEST" and leader.log_end_offset == 0


def test_resigning_answers_the_parked_fetches_not_leader(logs):
    leader, follower = logs
    door = leading(leader)
    door.request(b"f", fetch_frames(follower, 1), now_ms=0)
    door.resign(KEY)
    (reply,) = answers(door)
    assert reply.partitions[0][2].error == "NOT_LEADER_OR_FOLLOWER"
