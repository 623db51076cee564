"""DeleteRecords and CreatePartitions on a real single-node appliance, through
`ringlog topics delete-records` / `ringlog topics alter --partitions` and the
client: the log start moves and stays moved across a kill -9 of the worker
that owns the partition (an acknowledged deletion is durable), and a grown
topic takes records in its new partitions."""

from __future__ import annotations

import os
import signal
import time

from appliance.client import Admin, Consumer, Producer
from tests.integration.test_cli import ok, one_error_line, ringlog
from tests.polling import wait_for


def values_from_beginning(bootstrap: str, topic: str, partition: int, expected: int,
                          timeout_s: float = 20) -> list[tuple[int, bytes]]:
    """(offset, value) of every record a consumer reads from the earliest offset."""
    consumer = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    consumer.assign([(topic, partition)])
    read: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while len(read) < expected and time.monotonic() < deadline:
        read += [(m.offset, m.value) for m in consumer.poll(timeout_ms=500)]
    consumer.close()
    return read


def log_start(admin: Admin, topic: str, partition: int) -> int:
    return admin.describe_topic(topic)["partitions"][partition]["log_start_offset"]


def test_delete_records_from_the_cli_survives_a_kill_9_of_the_owning_worker(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "events", "--partitions", "2"))
    with Producer(bootstrap, acks=1) as producer:
        for i in range(10):
            producer.send("events", value=b"v%d" % i, partition=0).result(timeout=10)

    out = ok(ringlog(bootstrap, "topics", "delete-records", "events", "--partition", "0",
                     "--offset", "6"))
    assert out == "Deleted records of events-0 below offset 6: its low watermark is 6.\n"
    assert values_from_beginning(bootstrap, "events", 0, 4) == [
        (6, b"v6"), (7, b"v7"), (8, b"v8"), (9, b"v9")]

    with Admin(bootstrap) as admin:
        owner = admin.describe_topic("events")["partitions"][0]["owner_worker"]
        victim = next(row["pid"] for row in admin.status()["processes"]
                      if row["worker"] == owner)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in appliance.worker_pids()
                 and len(appliance.worker_pids()) == 2, 20, "the worker's respawn")
        wait_for(lambda: _offsets_or_none(admin, "events") is not None, 20,
                 "the respawned worker serving events-0")
        assert log_start(admin, "events", 0) == 6
    assert values_from_beginning(bootstrap, "events", 0, 4)[0] == (6, b"v6")


def test_delete_records_to_the_high_watermark_and_its_refusals(appliance):
    bootstrap = appliance.bootstrap
    with Admin(bootstrap) as admin:
        admin.create_topic("logs", partitions=1)
        with Producer(bootstrap, acks=1) as producer:
            for i in range(3):
                producer.send("logs", value=b"x%d" % i).result(timeout=10)
        assert admin.delete_records("logs", 0, -1) == 3
        assert log_start(admin, "logs", 0) == 3
    line = one_error_line(ringlog(bootstrap, "topics", "delete-records", "logs",
                                  "--partition", "0", "--offset", "9"), 1)
    assert "OFFSET_OUT_OF_RANGE" in line
    line = one_error_line(ringlog(bootstrap, "topics", "delete-records", "nope",
                                  "--partition", "0", "--offset", "1"), 1)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in line


def test_alter_partitions_grows_a_topic_that_then_takes_records(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "orders", "--partitions", "2"))
    out = ok(ringlog(bootstrap, "topics", "alter", "orders", "--partitions", "4"))
    assert out == "Topic orders now has 4 partitions.\n"
    header = ok(ringlog(bootstrap, "topics", "describe", "orders")).splitlines()[0]
    assert "Partitions: 4" in header
    with Producer(bootstrap, acks=1) as producer:
        sent = producer.send("orders", value=b"new", partition=3).result(timeout=10)
    assert (sent.partition, sent.offset) == (3, 0)
    assert values_from_beginning(bootstrap, "orders", 3, 1) == [(0, b"new")]

    line = one_error_line(ringlog(bootstrap, "topics", "alter", "orders", "--partitions", "3"),
                          1)
    assert "INVALID_PARTITIONS" in line


def _offsets_or_none(admin: Admin, topic: str) -> dict | None:
    partition = admin.describe_topic(topic)["partitions"][0]
    return None if partition.get("error") else partition
