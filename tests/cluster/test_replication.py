"""Replicated topics through three real brokers and a real ZooKeeper: what
a producer with acks=all was told is on every replica, at the offset it was
told, once; a leader killed with kill -9 is replaced within the session
timeout and a margin, production carries on, and the old leader, restarted,
catches up and rejoins the in-sync replicas."""

from __future__ import annotations

import os
import signal
import threading
import time

from appliance.client import Admin, Consumer, Producer
from appliance.metrics import status_families
from loadtest.fault_checker import PartitionRead, check
from loadtest.fault_history import History
from tests.cluster.brokers import SESSION_MS, replica_records, start_broker
from tests.polling import wait_for

TOPIC = "orders"


def bootstrap(brokers) -> str:
    return ",".join(a.bootstrap for a in brokers.values())


def partitions(admin: Admin, topic: str = TOPIC) -> list[dict]:
    return admin.describe_topic(topic)["partitions"]


def fully_replicated(admin: Admin, replicas: int = 3, topic: str = TOPIC) -> bool:
    return all(p["leader"] >= 0 and len(p["isr"]) == replicas for p in partitions(admin, topic))


def test_acks_all_records_are_on_every_replica_at_their_offsets(tmp_path, zookeeper_connect):
    brokers = {b: start_broker(tmp_path, zookeeper_connect, b) for b in (1, 2, 3)}
    try:
        with Admin(bootstrap(brokers)) as admin:
            admin.create_topic(TOPIC, partitions=3, replication_factor=3,
                               configs={"min.insync.replicas": "2"})
            wait_for(lambda: fully_replicated(admin), 15, "leaders and full ISRs")
            described = partitions(admin)
            cluster = admin.describe_cluster()
        assert sorted(b["id"] for b in cluster["brokers"]) == [1, 2, 3]
        assert cluster["controller_id"] in brokers
        assert sorted(p["leader"] for p in described) == [1, 2, 3]  # leaders balanced
        with Producer(bootstrap(brokers), acks="all") as producer:
            futures = [(i, producer.send(TOPIC, b"v-%d" % i, key=b"k-%d" % (i % 7)))
                       for i in range(300)]
            producer.flush()
            acked = {(f.result(10).partition, f.result(10).offset): b"v-%d" % i
                     for i, f in futures}
        consumer = Consumer(bootstrap_servers=bootstrap(brokers), auto_offset_reset="earliest")
        consumer.assign([(TOPIC, p) for p in range(3)])
        read: dict = {}
        deadline = time.monotonic() + 20
        while len(read) < len(acked) and time.monotonic() < deadline:
            for message in consumer.poll(500):
                read[(message.partition, message.offset)] = message.value
        consumer.close()
        assert read == acked
    finally:
        for appliance in brokers.values():
            assert appliance.stop() == 0, appliance.stderr_tail()
    for p in range(3):
        copies = [replica_records(tmp_path / f"broker-{b}", TOPIC, p) for b in brokers]
        assert all(records == copies[0][0] for records, _ in copies)  # replicas identical
        assert sorted(copies[0][0]) == sorted(
            (offset, value) for (partition, offset), value in acked.items() if partition == p)


class Writer:
    """A producer thread with acks=all writing unique values to partition 0,
    every operation recorded in `history` (bounded in count and time)."""

    def __init__(self, brokers: dict) -> None:
        self.history = History()
        self._stop = threading.Event()
        self._bootstrap = bootstrap(brokers)
        self._thread = threading.Thread(target=self._produce)
        self._thread.start()

    def _produce(self) -> None:
        with Producer(self._bootstrap, acks="all", linger_ms=2, request_timeout_ms=5000,
                      delivery_timeout_ms=60_000) as producer:
            for n in range(100_000):
                if self._stop.is_set():
                    break
                operation = self.history.invoke(f"w-{n}", partition=0)
                future = producer.send(TOPIC, operation.value.encode(), partition=0)
                future.add_done_callback(lambda f, operation=operation: self._done(f, operation))
                time.sleep(0.002)
            producer.flush()

    def _done(self, future, operation) -> None:
        error = future.exception(0)
        if error is None:
            self.history.ok(operation, partition=0, offset=future.result(0).offset)
        else:
            self.history.complete_with_error(operation, type(error).__name__)

    @property
    def acknowledged(self) -> int:
        return sum(1 for op in self.history.operations() if op.type == "ok")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def replication_metrics(appliance) -> dict[str, float]:
    """The replication figures /metrics shows for a broker (its detailed status)."""
    with Admin(appliance.bootstrap) as admin:
        status = admin.status(details=True)
    return {sample.name: sample.value for family in status_families(status)
            for sample in family.samples if "isr" in sample.name or "replica" in sample.name
            or "follower" in sample.name}


def checked(tmp_path, brokers, history: History):
    """The fault checker's report on every (stopped) broker's replica of partition 0."""
    reads = {}
    for b in brokers:
        records, high_watermark = replica_records(tmp_path / f"broker-{b}", TOPIC, 0)
        reads[f"broker-{b}"] = {0: PartitionRead([(o, v.decode()) for o, v in records],
                                                 high_watermark)}
    return check(history, reads)


def single_partition_cluster(tmp_path, zookeeper_connect) -> dict:
    brokers = {b: start_broker(tmp_path, zookeeper_connect, b) for b in (1, 2, 3)}
    with Admin(bootstrap(brokers)) as admin:
        admin.create_topic(TOPIC, partitions=1, replication_factor=3,
                           configs={"min.insync.replicas": "2"})
        wait_for(lambda: fully_replicated(admin), 15, "a leader and a full ISR")
    return brokers


def test_a_killed_leader_is_replaced_and_rejoins_with_no_acknowledged_record_lost(
        tmp_path, zookeeper_connect):
    brokers = single_partition_cluster(tmp_path, zookeeper_connect)
    writer = Writer(brokers)
    try:
        with Admin(bootstrap(brokers)) as admin:
            victim = partitions(admin)[0]["leader"]
        wait_for(lambda: writer.acknowledged >= 200, 20, "acks before the fault")
        before = writer.acknowledged
        os.killpg(brokers[victim].process.pid, signal.SIGKILL)
        brokers[victim].process.wait(10)
        killed_at = time.monotonic()
        survivors = ",".join(a.bootstrap for b, a in brokers.items() if b != victim)
        with Admin(survivors) as admin:
            wait_for(lambda: partitions(admin)[0]["leader"] not in (victim, -1), 30,
                     "a new leader")
            failover_s = time.monotonic() - killed_at
            wait_for(lambda: writer.acknowledged >= before + 200, 30, "acks after failover")
            brokers[victim] = start_broker(tmp_path, zookeeper_connect, victim)
            wait_for(lambda: len(partitions(admin)[0]["isr"]) == 3, 60,
                     "the old leader back in the ISR")
        writer.stop()
        assert failover_s < SESSION_MS / 1000 + 5
    finally:
        writer.stop()
        for appliance in brokers.values():
            appliance.stop()
    report = checked(tmp_path, brokers, writer.history)
    assert report.ok, report.summary()
    assert report.acknowledged >= 400


def test_sigterm_moves_a_leaders_partitions_away_before_it_stops(tmp_path, zookeeper_connect):
    brokers = single_partition_cluster(tmp_path, zookeeper_connect)
    writer = Writer(brokers)
    try:
        with Admin(bootstrap(brokers)) as admin:
            victim = partitions(admin)[0]["leader"]
        wait_for(lambda: writer.acknowledged >= 200, 20, "acks before the stop")
        before = writer.acknowledged
        assert brokers[victim].stop() == 0
        survivors = ",".join(a.bootstrap for b, a in brokers.items() if b != victim)
        with Admin(survivors) as admin:
            state = partitions(admin)[0]
            # moved while it was still registered: no session timeout's wait
            assert state["leader"] not in (victim, -1) and victim not in state["isr"], state
            assert "controlled shutdown: moving 1 leaderships away" in brokers[victim].stderr()
            wait_for(lambda: writer.acknowledged >= before + 200, 30, "acks after the stop")
        leader = brokers[state["leader"]]
        assert replication_metrics(leader)["ringlog_under_replicated_partitions"] == 1
        brokers[victim] = start_broker(tmp_path, zookeeper_connect, victim)
        with Admin(survivors) as admin:
            wait_for(lambda: len(partitions(admin)[0]["isr"]) == 3, 60,
                     "the stopped leader back in the ISR")
        metrics = replication_metrics(leader)
        assert metrics["ringlog_under_replicated_partitions"] == 0
        assert metrics["ringlog_isr_expands_total"] >= 1  # the leader let it back in
        wait_for(lambda: replication_metrics(brokers[victim]).get("ringlog_follower_lag", -1) >= 0,
                 10, "the follower's lag on /metrics")  # reported every 0.2 s by its worker
        writer.stop()
    finally:
        writer.stop()
        for appliance in brokers.values():
            appliance.stop()
    report = checked(tmp_path, brokers, writer.history)
    assert report.ok, report.summary()
