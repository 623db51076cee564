"""Consumer groups as Kafka's clients run them (the classic protocol, the
assignment computed by the leader member): several members share a
topic's partitions with each assignor, a member leaving hands its
partitions on, commits land in the same store as the native door's."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from kafka import KafkaConsumer
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

from appliance.client import Admin
from appliance.client import Consumer as NativeConsumer

PARTITIONS = 6
RECORDS = 600


def fill(appliance, topic: str) -> None:
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic(topic, partitions=PARTITIONS)
    producer = Producer({"bootstrap.servers": appliance.kafka_bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(topic, value=b"%d" % i, partition=i % PARTITIONS)
    assert producer.flush(20) == 0


def until(predicate, seconds: float, what) -> None:
    """Poll `predicate` until true; `what` (or what it returns) names it if not."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, \
            f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.05)


class Member(threading.Thread):
    """One confluent-kafka consumer of the group, polling and committing until told."""

    def __init__(self, bootstrap: str, group: str, topic: str, **config):
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                                  **config})
        self.consumer.subscribe([topic])
        self.values: list[bytes] = []
        self.assigned: set[int] = set()
        self.error: BaseException | None = None
        self.commit_errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                message = self.consumer.poll(0.2)
                self.assigned = {tp.partition for tp in self.consumer.assignment()}
                if message is None or message.error():
                    continue
                self.values.append(message.value())
                try:
                    self.consumer.commit(message, asynchronous=False)
                except KafkaException as exc:  # REBALANCE_IN_PROGRESS: Kafka's too
                    self.commit_errors.append(exc.args[0].name())
            self.consumer.close()  # LeaveGroup
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        assert self.error is None, repr(self.error)


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_librdkafka_members_share_the_partitions_and_one_leaving_hands_them_on(
        kafka_appliance, name, assignor):
    fill(kafka_appliance, name)
    members = [Member(kafka_appliance.kafka_bootstrap, name, name,
                      **{"partition.assignment.strategy": assignor}) for _ in range(3)]
    for member in members:
        member.start()
    until(lambda: sum(len(m.values) for m in members) >= RECORDS, 60, "every record")
    # Polled, not asserted at the first full split: a member that joins after a
    # rebalance has split the six between the first two triggers another, and
    # cooperative-sticky moves partitions over two of them.
    until(lambda: sorted(p for m in members for p in m.assigned) == list(range(PARTITIONS))
          and all(m.assigned for m in members),
          30, lambda: f"a split of all six partitions with a share for each member: "
                      f"{[sorted(m.assigned) for m in members]}")
    members[0].stop()
    until(lambda: sorted(p for m in members[1:] for p in m.assigned) == list(range(PARTITIONS)),
          30, "the leaver's partitions handed on")
    for member in members[1:]:
        member.stop()
    # Every record read; a commit refused while the group rebalances (as Kafka refuses
    # it) lets the next owner read that record again: at least once.
    assert {int(v) for m in members for v in m.values} == set(range(RECORDS))
    assert {e for m in members for e in m.commit_errors} <= {"REBALANCE_IN_PROGRESS"}
    with Admin(kafka_appliance.bootstrap) as admin:
        described = admin.describe_group(name)
    assert described["state"] == "Empty"
    assert {(o["partition"], o["committed"], o["lag"]) for o in described["offsets"]} == {
        (p, RECORDS // PARTITIONS, 0) for p in range(PARTITIONS)}


# kafka-python 3.0.12 drops a join still in flight when a poll() times out in the
# middle of it, stranding the member without partitions or heartbeats (a client bug:
# docs/protocol.md §11.5). A poll longer than a rebalance takes here keeps the
# members out of it, so the split itself can be judged.
KAFKA_PYTHON_POLL_MS = 1500


class KafkaPythonMember(threading.Thread):
    """One kafka-python consumer in a thread of its own: a member's poll blocks
    while its group rebalances, so two members polled by one thread would wait
    on each other (with Kafka too)."""

    def __init__(self, bootstrap: str, group: str, topic: str, assignor):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                      auto_offset_reset="earliest",
                                      partition_assignment_strategy=[assignor],
                                      session_timeout_ms=6000, heartbeat_interval_ms=500)
        self.values: list[int] = []
        self.assigned: set[int] = set()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for batch in self.consumer.poll(timeout_ms=KAFKA_PYTHON_POLL_MS).values():
                    self.values += [int(r.value) for r in batch]
                self.assigned = {tp.partition for tp in self.consumer.assignment()}
            self.consumer.commit()
            self.consumer.close()  # LeaveGroup
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        assert self.error is None, repr(self.error)


@pytest.mark.parametrize("assignor", [RangePartitionAssignor, RoundRobinPartitionAssignor,
                                      StickyPartitionAssignor])
def test_kafka_python_members_share_the_partitions_and_one_leaving_hands_them_on(
        kafka_appliance, name, assignor):
    fill(kafka_appliance, name)
    members = [KafkaPythonMember(kafka_appliance.kafka_bootstrap, name, name, assignor)
               for _ in range(2)]
    for member in members:
        member.start()
    first, second = members
    until(lambda: len(set(first.values + second.values)) == RECORDS, 60, "every record")
    until(lambda: first.assigned and second.assigned and not first.assigned & second.assigned
          and first.assigned | second.assigned == set(range(PARTITIONS)), 30,
          lambda: f"a split, not {first.assigned} and {second.assigned}")
    first.stop()
    until(lambda: second.assigned == set(range(PARTITIONS)), 30,
          lambda: f"the leaver's partitions handed on, not {second.assigned}")
    second.stop()
    with Admin(kafka_appliance.bootstrap) as admin:
        described = admin.describe_group(name)
    assert {(o["partition"], o["committed"]) for o in described["offsets"]} == {
        (p, RECORDS // PARTITIONS) for p in range(PARTITIONS)}


def test_a_group_is_served_by_one_protocol_at_a_time(kafka_appliance, name):
    fill(kafka_appliance, name)
    native = NativeConsumer(name, bootstrap_servers=kafka_appliance.bootstrap, group_id=name)
    try:
        until(lambda: native.poll(timeout_ms=100) is not None and native.assignment(), 20,
              "the native member's partitions")
        consumer = Consumer({"bootstrap.servers": kafka_appliance.kafka_bootstrap,
                             "group.id": name})
        consumer.subscribe([name])
        with pytest.raises(KafkaException, match=r"INCONSISTENT_GROUP_PROTOCOL|[Ii]nconsistent"):
            for _ in range(100):  # the join's error surfaces at a poll
                message = consumer.poll(0.2)
                if message is not None and message.error():
                    raise KafkaException(message.error())
        consumer.close()
    finally:
        native.close()


def test_kcat_consumes_in_a_group_and_ringlog_shows_its_lag(kafka_appliance, name):
    fill(kafka_appliance, name)
    out = subprocess.run(["kcat", "-b", kafka_appliance.kafka_bootstrap, "-G", name, name,
                          "-X", "auto.offset.reset=earliest", "-e", "-f", "%s\n"],
                         capture_output=True, timeout=60, check=True).stdout.split()
    assert sorted(int(v) for v in out) == list(range(RECORDS))
    described = subprocess.run([".venv/bin/ringlog", "groups", "describe", name,
                                "--bootstrap-server", kafka_appliance.bootstrap],
                               capture_output=True, text=True, timeout=30, check=True).stdout
    assert f"Group: {name}  State: Empty" in described
    rows = [line.split() for line in described.splitlines() if line.startswith(name)]
    assert [(int(r[1]), int(r[2]), int(r[4])) for r in rows] == [
        (p, RECORDS // PARTITIONS, 0) for p in range(PARTITIONS)]


def test_aiokafka_members_share_a_group(kafka_appliance, name):
    import asyncio

    from aiokafka import AIOKafkaConsumer

    fill(kafka_appliance, name)

    async def run() -> tuple[list[int], list[set[int]]]:
        consumers = [AIOKafkaConsumer(name, bootstrap_servers=kafka_appliance.kafka_bootstrap,
                                      group_id=name, auto_offset_reset="earliest",
                                      session_timeout_ms=6000, heartbeat_interval_ms=500)
                     for _ in range(2)]
        for consumer in consumers:
            await consumer.start()
        values: list[int] = []
        try:
            async with asyncio.timeout(60):
                while len(set(values)) < RECORDS or not all(c.assignment() for c in consumers):
                    for consumer in consumers:
                        for batch in (await consumer.getmany(timeout_ms=100)).values():
                            values += [int(r.value) for r in batch]
            return values, [{tp.partition for tp in c.assignment()} for c in consumers]
        finally:
            for consumer in consumers:
                await consumer.stop()

    values, assignments = asyncio.run(run())
    assert set(values) == set(range(RECORDS))
    assert not assignments[0] & assignments[1]
    assert assignments[0] | assignments[1] == set(range(PARTITIONS))


def describe(admin, group: str):
    [future] = admin.describe_consumer_groups([group]).values()
    return future.result(10)


def test_a_static_member_that_restarts_within_its_session_keeps_its_partitions(
        kafka_appliance, name):
    """group.instance.id (KIP-345): no rebalance, the same partitions."""
    from confluent_kafka.admin import AdminClient

    fill(kafka_appliance, name)
    static = {"group.instance.id": f"{name}-host-1", "session.timeout.ms": 10_000}
    first = Member(kafka_appliance.kafka_bootstrap, name, name, **static)
    other = Member(kafka_appliance.kafka_bootstrap, name, name)
    first.start()
    other.start()
    until(lambda: first.assigned and other.assigned and not first.assigned & other.assigned
          and sorted(first.assigned | other.assigned) == list(range(PARTITIONS)), 30, "a split")
    admin = AdminClient({"bootstrap.servers": kafka_appliance.kafka_bootstrap})
    kept, others = set(first.assigned), set(other.assigned)
    first.stop()  # a static member's close sends no LeaveGroup: its session holds its place
    again = Member(kafka_appliance.kafka_bootstrap, name, name, **static)
    again.start()
    until(lambda: again.assigned, 30, "the restarted member's partitions")
    described = describe(admin, name)
    assert again.assigned == kept and other.assigned == others  # nothing moved
    assert sorted(str(m.group_instance_id) for m in described.members) == [
        "None", f"{name}-host-1"]
    assert described.state.name == "STABLE"
    again.stop()
    other.stop()


def test_admin_lists_describes_and_deletes_groups(kafka_appliance, name):
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    fill(kafka_appliance, name)
    member = Member(kafka_appliance.kafka_bootstrap, name, name)
    member.start()
    until(lambda: len(member.values) >= RECORDS, 30, "every record")
    admin = AdminClient({"bootstrap.servers": kafka_appliance.kafka_bootstrap})
    listed = admin.list_consumer_groups().result(10).valid
    assert name in [g.group_id for g in listed]
    described = describe(admin, name)
    assert described.state.name == "STABLE" and described.partition_assignor == "range"
    [m] = described.members
    assert m.host.startswith("/127.0.0.1")
    assert sorted(tp.partition for tp in m.assignment.topic_partitions) == list(range(PARTITIONS))
    with pytest.raises(KafkaException, match="NON_EMPTY_GROUP"):
        admin.delete_consumer_groups([name])[name].result(10)
    member.stop()

    def committed() -> list[int]:
        [future] = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(name)]).values()
        return [tp.offset for tp in future.result(10).topic_partitions]
    assert committed() == [RECORDS // PARTITIONS] * PARTITIONS
    admin.delete_consumer_groups([name])[name].result(10)
    assert committed() == []
    with pytest.raises(KafkaException, match="GROUP_ID_NOT_FOUND"):
        admin.delete_consumer_groups([name])[name].result(10)
