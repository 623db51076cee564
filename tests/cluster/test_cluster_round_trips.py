"""The round trips of a single node, through three brokers: the command line
(create, produce, consume, describe with Leader/Replicas/Isr, status), a
consumer group sharing a replicated topic and resuming from its commits,
and seeks to the beginning and end answered by each partition's leader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from appliance.client import Admin, Consumer, Producer
from loadtest.harness import REPO
from tests.cluster.brokers import start_broker
from tests.polling import wait_for

TOPIC = "greetings"


def ringlog(bootstrap: str, *args: str, stdin: bytes | None = None) -> str:
    env = {**os.environ, "RINGLOG_BOOTSTRAP_SERVER": bootstrap}
    done = subprocess.run([sys.executable, "-m", "appliance", *args], input=stdin,
                          capture_output=True, timeout=60, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def poll_values(consumers: list[Consumer], want: int, timeout_s: float) -> list[bytes]:
    """Poll the consumers in turn until they returned `want` values or time is up."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for consumer in consumers:
            got += [m.value for m in consumer.poll(200)]
    return got


def fully_replicated(admin: Admin, topic: str) -> bool:
    return all(p["leader"] >= 0 and len(p["isr"]) == 3
               for p in admin.describe_topic(topic)["partitions"])


def test_the_command_line_and_a_consumer_group_through_three_brokers(tmp_path,
                                                                      zookeeper_connect):
    brokers = {b: start_broker(tmp_path, zookeeper_connect, b) for b in (1, 2, 3)}
    servers = ",".join(a.bootstrap for a in brokers.values())
    try:
        ringlog(servers, "topics", "create", TOPIC, "--partitions", "3",
                "--replication-factor", "3")
        with Admin(servers) as admin:
            wait_for(lambda: fully_replicated(admin, TOPIC), 15, "leaders and full ISRs")
        ringlog(servers, "produce", TOPIC, "--key-separator", ":",
                stdin=b"alice:hello\nbob:hi\ncarol:hey\n")
        out = ringlog(servers, "consume", TOPIC, "--from-beginning", "--max-messages", "3",
                      "--print-key")
        assert sorted(out.splitlines()) == ["alice\thello", "bob\thi", "carol\they"]
        described = ringlog(servers, "topics", "describe", TOPIC)
        assert "LEADER" in described and "REPLICAS" in described and "ISR" in described
        assert described.count("1,2,3") + described.count("2,3,1") + \
            described.count("3,1,2") + described.count("1,3,2") + \
            described.count("2,1,3") + described.count("3,2,1") >= 3  # replicas and ISRs
        assert "Cluster: broker 2" in ringlog(brokers[2].bootstrap, "status")
        # configs live in ZooKeeper: set through one broker, deleted through another,
        # seen by a third
        ringlog(brokers[1].bootstrap, "topics", "alter", TOPIC, "--config", "retention.ms=5000",
                "--config", "segment.ms=60000")
        ringlog(brokers[2].bootstrap, "topics", "alter", TOPIC, "--delete-config", "segment.ms")
        with Admin(brokers[3].bootstrap) as admin:
            wait_for(lambda: admin.describe_topic(TOPIC)["configs"] == {"retention.ms": "5000"},
                     15, "retention.ms set and segment.ms deleted, seen by broker 3")

        with Admin(servers) as admin:
            admin.create_topic("orders", partitions=3, replication_factor=3)
            wait_for(lambda: fully_replicated(admin, "orders"), 15, "orders replicated")
        with Producer(servers, acks="all") as producer:
            for i in range(300):
                producer.send("orders", b"v-%d" % i, key=b"k-%d" % (i % 11))
            producer.flush()
        members = [Consumer(bootstrap_servers=servers, group_id="billing",
                            auto_offset_reset="earliest", heartbeat_interval_ms=200,
                            enable_auto_commit=False) for _ in range(2)]
        for member in members:
            member.subscribe(["orders"])
        got = poll_values(members, 300, 30)
        assert sorted(got) == sorted(b"v-%d" % i for i in range(300))  # a queue: once each
        assert all(member.assignment() for member in members)
        for member in members:
            member.commit()
            member.close()
        with Producer(servers, acks="all") as producer:
            producer.send("orders", b"after", partition=0).result(10)
        resumed = Consumer(bootstrap_servers=servers, group_id="billing",
                           auto_offset_reset="earliest")
        resumed.subscribe(["orders"])
        assert poll_values([resumed], 1, 20) == [b"after"]  # from the commits, not the start
        # each partition's leader answers: the ends add up to every record written
        assert sum(resumed.end_offsets([("orders", p) for p in range(3)]).values()) == 301
        assert set(resumed.beginning_offsets([("orders", p) for p in range(3)]).values()) == {0}
        resumed.close()
    finally:
        for appliance in brokers.values():
            assert appliance.stop() == 0, appliance.stderr_tail()



def test_a_groups_commits_survive_the_loss_of_its_coordinator(tmp_path, zookeeper_connect):
    """__consumer_offsets is replicated: with the coordinator's broker killed,
    the group finds the new leader of its offsets partition, which read the
    commits back, and resumes where it committed."""
    brokers = {b: start_broker(tmp_path, zookeeper_connect, b) for b in (1, 2, 3)}
    servers = ",".join(a.bootstrap for a in brokers.values())
    try:
        with Admin(servers) as admin:
            admin.create_topic("orders", partitions=2, replication_factor=3)
            wait_for(lambda: fully_replicated(admin, "orders"), 15, "orders replicated")
        with Producer(servers, acks="all") as producer:
            for i in range(100):
                producer.send("orders", b"v-%d" % i)
            producer.flush()
        first = Consumer(bootstrap_servers=servers, group_id="audit",
                         auto_offset_reset="earliest", enable_auto_commit=False)
        first.subscribe(["orders"])
        assert len(poll_values([first], 100, 30)) == 100
        first.commit()
        first.close()
        with Admin(servers) as admin:
            wait_for(lambda: fully_replicated(admin, "__consumer_offsets"), 15,
                     "the offsets topic replicated")
            coordinator = admin._request("find_coordinator", {"group_id": "audit"}).fields
        victim = coordinator["broker_id"]
        os.killpg(brokers[victim].process.pid, signal.SIGKILL)
        brokers.pop(victim).process.wait(10)
        survivors = ",".join(a.bootstrap for a in brokers.values())
        with Producer(survivors, acks="all") as producer:
            producer.send("orders", b"after", partition=1).result(30)
        resumed = Consumer(bootstrap_servers=survivors, group_id="audit",
                           auto_offset_reset="earliest")
        resumed.subscribe(["orders"])
        assert poll_values([resumed], 1, 40) == [b"after"]  # from the replicated commits
        resumed.close()
    finally:
        for appliance in brokers.values():
            appliance.stop()
