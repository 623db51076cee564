"""A follower worker's fetcher against a leader's replication door over
real ZeroMQ sockets on loopback, both driven from one loop here: it catches
up, keeps up as the leader appends, and the leader's high watermark follows
what the follower has made durable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from shm import PartitionLog
from shm.partition_log import LogConfig
from tests.unit.shm.conftest import make_batch
from workers.in_sync_replicas import InSyncReplicas
from workers.replica_fetcher import ReplicaFetcher
from workers.replication_door import Leadership, ReplicationDoor

KEY = ("orders", 0)
EPOCH = 2


class Pair:
    """Leader door behind a ROUTER, follower fetcher behind DEALERs, one poller."""

    def __init__(self, tmp_path: Path):
        self.context = zmq.Context()
        self.leader = self._log(tmp_path, "leader")
        self.follower = self._log(tmp_path, "follower")
        self.leader.set_leader_epoch(EPOCH)
        self.door = ReplicationDoor({KEY: self.leader})
        self.door.become_leader(KEY, Leadership(EPOCH, InSyncReplicas(
            1, (1, 2), (1, 2), min_insync_replicas=2, lag_time_max_ms=30_000,
            epoch_start_offset=0, now_ms=self.now())))
        self.router = self.context.socket(zmq.ROUTER)
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.fetcher = ReplicaFetcher(self.context, {KEY: self.follower}, replica_id=2,
                                      broker_epoch=1, max_wait_ms=200)
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.fetcher.follow(KEY, self.endpoint, EPOCH)

    @staticmethod
    def _log(tmp_path: Path, name: str) -> PartitionLog:
        return PartitionLog.open(tmp_path / name, LogConfig(),
                                 control_path=tmp_path / f"{name}.ctl")

    @staticmethod
    def now() -> int:
        return time.monotonic_ns() // 1_000_000

    def produce(self, *counts: int) -> None:
        """Leader appends, flushes, and wakes parked fetches (as its tick would)."""
        for count in counts:
            self.leader.append(make_batch(count))
        self.leader.flush()
        self.door.advanced({KEY})
        self.pump_leader()

    def pump_leader(self) -> None:
        hw = self.door.high_watermark_for(KEY)
        if hw is not None:
            self.leader.set_high_watermark(hw)
        for identity, frames in self.door.drain():
            self.router.send_multipart([identity, *frames])

    def run_until(self, predicate, timeout_s: float = 10) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, "the follower never got there"
            for socket in self.fetcher.sockets:
                poller.register(socket, zmq.POLLIN)
            self.fetcher.send_due(self.now())
            for socket, _ in poller.poll(20):
                if socket is self.router:
                    while self.router.poll(0):
                        identity, *frames = self.router.recv_multipart()
                        self.door.request(identity, frames, self.now())
                else:
                    self.fetcher.on_readable(socket, self.now())
            self.door.expire(self.now())
            self.pump_leader()

    def close(self) -> None:
        self.fetcher.close()
        self.router.close(0)
        self.leader.close()
        self.follower.close()
        self.context.term()


@pytest.fixture
def pair(tmp_path: Path):
    pair = Pair(tmp_path)
    yield pair
    pair.close()


def test_the_follower_catches_up_and_keeps_up_byte_for_byte(pair):
    pair.produce(3, 2)
    pair.run_until(lambda: pair.follower.log_end_offset == 5)
    for _ in range(5):
        pair.produce(4)
        target = pair.leader.log_end_offset
        pair.run_until(lambda t=target: pair.follower.log_end_offset == t)
    end = pair.leader.log_end_offset
    assert pair.follower.read(0, 1 << 30, upto=end) == pair.leader.read(0, 1 << 30, upto=end)
    assert pair.follower.epochs.entries == [(EPOCH, 0)]


def test_the_high_watermarks_follow_what_the_follower_made_durable(pair):
    pair.produce(3)
    assert pair.leader.high_watermark == 0, "with min ISR 2, nothing is committed alone"
    pair.run_until(lambda: pair.leader.high_watermark == 3)
    pair.run_until(lambda: pair.follower.high_watermark == 3)
    assert pair.follower.durable_end_offset == 3


def test_a_follower_told_of_an_epoch_before_its_leader_asks_again_until_it_leads_it(pair):
    """The supervisor may locate the new leader (ZooKeeper says epoch 3)
    before that worker has taken epoch 3: its answer is UNKNOWN_LEADER_EPOCH,
    and nothing else would tell the follower to ask again."""
    pair.produce(2)
    pair.run_until(lambda: pair.follower.log_end_offset == 2)
    pair.fetcher.follow(KEY, pair.endpoint, EPOCH + 1)
    pair.produce(3)
    until = time.monotonic() + 1.0
    pair.run_until(lambda: time.monotonic() > until)  # fetching, refused: the door is at EPOCH
    assert pair.follower.log_end_offset == 2
    pair.door.become_leader(KEY, Leadership(EPOCH + 1, InSyncReplicas(
        1, (1, 2), (1, 2), min_insync_replicas=2, lag_time_max_ms=30_000,
        epoch_start_offset=pair.leader.log_end_offset, now_ms=pair.now())))
    pair.run_until(lambda: pair.follower.log_end_offset == 5)
