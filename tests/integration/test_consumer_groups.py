"""Consumer groups through a real appliance: queues, publish-subscribe, commits, fencing."""

from __future__ import annotations

import time

import pytest

from appliance.client import Admin, Consumer, Producer
from appliance.client.connection import Connection
from shm.errors import (
    CoordinatorLoadInProgressError,
    IllegalGenerationError,
    UnknownMemberIdError,
)

TOPIC = "work"


def produce(bootstrap: str, count: int, start: int = 0) -> None:
    with Producer(bootstrap, acks="all") as producer:
        for i in range(start, start + count):
            producer.send(TOPIC, b"job-%05d" % i, key=b"%d" % i)
        producer.flush(30)


def drain(consumers: list[Consumer], want: int, timeout_s: float = 30) -> dict[int, list[bytes]]:
    """Poll every consumer in turn until `want` messages in all; values per consumer."""
    got: dict[int, list[bytes]] = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout_s
    while sum(map(len, got.values())) < want and time.monotonic() < deadline:
        for i, consumer in enumerate(consumers):
            got[i] += [m.value for m in consumer.poll(timeout_ms=100)]
    return got


@pytest.fixture
def topic(appliance):
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic(TOPIC, partitions=6)
    return appliance


def group_consumer(bootstrap: str, group: str, **kw) -> Consumer:
    consumer = Consumer(bootstrap_servers=bootstrap, group_id=group,
                        auto_offset_reset="earliest", heartbeat_interval_ms=200, **kw)
    consumer.subscribe([TOPIC])
    return consumer


def wait_until_split(consumers: list[Consumer], partitions: int, timeout_s: float = 20,
                     got: list[bytes] | None = None) -> None:
    """Poll until the members' assignments cover the topic without overlap,
    keeping what the polls return in `got`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for consumer in consumers:
            values = [m.value for m in consumer.poll(timeout_ms=50)]
            if got is not None:
                got += values
        owned = [tp for c in consumers for tp in c.assignment()]
        if len(owned) == partitions == len(set(owned)) and all(c.assignment() for c in consumers):
            return
    raise AssertionError("the group did not settle")


def test_one_group_is_a_queue_each_record_goes_to_one_member(topic):
    a = group_consumer(topic.bootstrap, "queue")
    b = group_consumer(topic.bootstrap, "queue")
    wait_until_split([a, b], 6)
    produce(topic.bootstrap, 600)
    got = drain([a, b], 600)
    everything = got[0] + got[1]
    assert sorted(everything) == [b"job-%05d" % i for i in range(600)]  # each exactly once
    assert got[0] and got[1]  # both members took part
    assert set(a.assignment()).isdisjoint(b.assignment())
    assert len(a.assignment()) + len(b.assignment()) == 6
    a.close()
    b.close()


def test_several_groups_each_get_every_record(topic):
    produce(topic.bootstrap, 200)
    readers = [group_consumer(topic.bootstrap, f"subscriber-{i}") for i in range(2)]
    for reader in readers:
        values = drain([reader], 200)[0]
        assert sorted(values) == [b"job-%05d" % i for i in range(200)]
        reader.close()


def test_a_clean_rebalance_delivers_no_record_twice(topic):
    produce(topic.bootstrap, 300)
    first = group_consumer(topic.bootstrap, "handover")
    seen = drain([first], 150)[0]
    second = group_consumer(topic.bootstrap, "handover")  # takes partitions from `first`
    wait_until_split([first, second], 6, got=seen)
    produce(topic.bootstrap, 300, start=300)
    more = drain([first, second], 600 - len(seen))
    everything = seen + more[0] + more[1]
    assert sorted(everything) == [b"job-%05d" % i for i in range(600)]
    assert len(everything) == len(set(everything))
    assert second.assignment()
    first.close()
    second.close()


def test_committed_offsets_survive_a_restart_and_show_as_lag(tmp_path):
    from tests.integration.conftest import start_appliance

    appliance = start_appliance(tmp_path)
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic(TOPIC, partitions=2)
    produce(appliance.bootstrap, 100)
    consumer = group_consumer(appliance.bootstrap, "durable", enable_auto_commit=False)
    drain([consumer], 100)
    consumer.commit()
    assert sum(consumer.committed(TOPIC, p) for p in range(2)) == 100
    consumer.close()
    produce(appliance.bootstrap, 10, start=100)
    assert appliance.stop() == 0
    appliance = start_appliance(tmp_path)
    connection = Connection(appliance.bootstrap)
    deadline = time.monotonic() + 20
    group = None
    while True:  # offsets load, and lag shows, once the workers have reopened their partitions
        try:
            group = connection.request("describe_groups",
                                       {"groups": ["durable"]}).fields["groups"][0]
            if all(o["lag"] is not None for o in group["offsets"]):
                break
        except CoordinatorLoadInProgressError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no lag 20 s after the restart: {group}")
        time.sleep(0.1)
    assert group["state"] == "Empty"
    assert sum(o["committed"] for o in group["offsets"]) == 100
    assert sum(o["lag"] for o in group["offsets"]) == 10
    again = group_consumer(appliance.bootstrap, "durable")
    values = drain([again], 10)[0]
    assert sorted(values) == [b"job-%05d" % i for i in range(100, 110)]
    again.close()
    connection.close()
    assert appliance.stop() == 0


def test_a_zombie_member_is_fenced(topic):
    connection = Connection(topic.bootstrap)
    joined = connection.request("join_group", {"group_id": "fenced", "topics": [TOPIC],
                                               "session_timeout_ms": 6000}).fields
    member, generation = joined["member_id"], joined["generation_id"]
    other = connection.request("join_group", {"group_id": "fenced", "topics": [TOPIC],
                                              "session_timeout_ms": 6000}).fields
    assert other["generation_id"] > generation
    with pytest.raises(IllegalGenerationError):
        connection.request("offset_commit", {"group_id": "fenced", "member_id": member,
                                             "generation_id": generation,
                                             "offsets": [[TOPIC, 0, 5, ""]]})
    connection.request("leave_group", {"group_id": "fenced", "member_id": member})
    with pytest.raises(UnknownMemberIdError):
        connection.request("offset_commit", {"group_id": "fenced", "member_id": member,
                                             "generation_id": other["generation_id"],
                                             "offsets": [[TOPIC, 0, 5, ""]]})
    connection.close()


INITIAL_DELAY_MS = 1000  # group.initial.rebalance.delay.ms, real but shorter than Kafka's 3000
HEARTBEAT_INTERVAL_MS = 6000  # long, so that waiting a whole one for the assignment shows


def test_consumers_started_together_share_the_partitions_from_the_first_generation(tmp_path):
    """The first member of a new group does not drain every partition before the
    second joins: the group waits for both, then splits the partitions once."""
    from tests.integration.conftest import start_appliance

    appliance = start_appliance(tmp_path, f"group.initial.rebalance.delay.ms={INITIAL_DELAY_MS}")
    try:
        with Admin(appliance.bootstrap) as admin:
            admin.create_topic(TOPIC, partitions=6)
        with Producer(appliance.bootstrap, acks="all") as producer:
            for partition in range(6):
                for i in range(5):
                    producer.send(TOPIC, b"p%d-%d" % (partition, i), partition=partition)
            producer.flush(30)
        started = time.monotonic()
        consumers = [Consumer(TOPIC, bootstrap_servers=appliance.bootstrap, group_id="together",
                              auto_offset_reset="earliest",
                              heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS) for _ in range(2)]
        got: dict[int, list] = {0: [], 1: []}
        first_record_s: dict[int, float] = {}
        deadline = time.monotonic() + 30
        while sum(map(len, got.values())) < 30 and time.monotonic() < deadline:
            for i, consumer in enumerate(consumers):
                messages = consumer.poll(timeout_ms=100)
                if messages and i not in first_record_s:
                    first_record_s[i] = time.monotonic() - started
                got[i] += [(m.partition, m.value) for m in messages]
        partitions = [{p for p, _ in got[i]} for i in (0, 1)]
        assert partitions[0] and partitions[1], f"one member read everything: {partitions}"
        assert partitions[0].isdisjoint(partitions[1])
        assert len(partitions[0]) == len(partitions[1]) == 3  # an even split, each whole
        everything = sorted(got[0] + got[1])
        assert everything == sorted((p, b"p%d-%d" % (p, i)) for p in range(6) for i in range(5))
        with Admin(appliance.bootstrap) as admin:
            group = admin.describe_group("together")
        assert group["generation_id"] == 1, group  # no rebalance after the first generation
        # The assignment came with a heartbeat soon after the delay (members heartbeat
        # more often while a rebalance is pending), not a whole interval later.
        soon_s = (INITIAL_DELAY_MS + HEARTBEAT_INTERVAL_MS / 2) / 1000
        assert max(first_record_s.values()) < soon_s, first_record_s
        for consumer in consumers:
            consumer.close()
    finally:
        assert appliance.stop() == 0, appliance.stderr()
