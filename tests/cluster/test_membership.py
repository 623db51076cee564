"""Brokers register in ZooKeeper while they live, and again after a new session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from kazoo.client import KazooClient

from appliance.cluster import BrokerRegistration, ClusterError, Membership, connect
from tests.polling import wait_for

SESSION_MS = 2000  # the shortest that holds on two busy cores (replication.md)


def registration(broker_id: int) -> BrokerRegistration:
    host = f"127.0.0.{10 + broker_id}"
    return BrokerRegistration(broker_id, f"tcp://{host}:7092", f"tcp://{host}:7093")


def test_registered_brokers_are_listed_and_a_clean_close_leaves_at_once(zookeeper_connect):
    members = [Membership(connect(zookeeper_connect, SESSION_MS), registration(b), SESSION_MS)
               for b in (1, 2, 3)]
    epochs = [m.register() for m in members]
    assert len(set(epochs)) == 3, "each registration has a broker epoch of its own"
    assert {b: r.client_endpoint for b, r in members[0].live_brokers().items()} == {
        1: "tcp://127.0.0.11:7092", 2: "tcp://127.0.0.12:7092", 3: "tcp://127.0.0.13:7092"}
    members[1].close()
    assert sorted(members[0].live_brokers()) == [1, 3]
    for m in (members[0], members[2]):
        m.close()


def test_a_second_live_broker_with_the_same_id_is_refused(zookeeper_connect):
    first = Membership(connect(zookeeper_connect, SESSION_MS), registration(1), SESSION_MS)
    first.register()
    second = Membership(connect(zookeeper_connect, SESSION_MS),
                        BrokerRegistration(1, "tcp://127.0.0.99:7092", "tcp://127.0.0.99:7093"),
                        SESSION_MS)
    try:
        with pytest.raises(ClusterError, match=r"broker.id 1 is registered .*tcp://127.0.0.11:7092"):
            second.register()
    finally:
        second.close()
        first.close()


CRASHING_BROKER = """
import sys, time
from appliance.cluster import BrokerRegistration, Membership, connect
member = Membership(connect(sys.argv[1], 2000),
                    BrokerRegistration(4, "tcp://127.0.0.14:7092", "tcp://127.0.0.14:7093"), 2000)
member.register()
print("registered", flush=True)
time.sleep(60)
"""


def test_a_killed_broker_leaves_after_its_session_and_a_restart_waits_for_that(
        zookeeper_connect):
    """kill -9 leaves the registration to the old session: the restarted
    broker waits for it to expire instead of failing, as a supervisor
    restarting it at once needs."""
    child = subprocess.Popen([sys.executable, "-c", CRASHING_BROKER, zookeeper_connect],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "registered"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        restarted = Membership(connect(zookeeper_connect, SESSION_MS), registration(4),
                               SESSION_MS)
        began = time.monotonic()
        restarted.register()
        waited = time.monotonic() - began
        assert waited < SESSION_MS / 1000 + 5
        assert restarted.live_brokers()[4].client_endpoint == "tcp://127.0.0.14:7092"
        restarted.close()
    finally:
        if child.poll() is None:
            child.kill()


def test_a_broker_whose_session_expired_registers_again_with_a_new_epoch(zookeeper_connect):
    registered = []
    member = Membership(connect(zookeeper_connect, SESSION_MS), registration(5), SESSION_MS,
                        on_registered=registered.append)
    first_epoch = member.register()
    # Expire the session the way ZooKeeper's own tests do: a second client
    # takes over the session id and password, then closes it.
    session_id, password = member.client.client_id
    thief = KazooClient(hosts=zookeeper_connect, client_id=(session_id, password))
    thief.start(10)
    thief.stop()
    thief.close()
    wait_for(lambda: registered, 20, "the registration after a new session")
    assert registered[0] != first_epoch
    assert member.broker_epoch == registered[0]
    assert member.live_brokers()[5].client_endpoint == "tcp://127.0.0.15:7092"
    member.close()
