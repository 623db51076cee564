"""Appliances with zookeeper.connect set register as brokers and elect one
controller among them; one that stops or dies leaves, and another takes the
controller's place. Real appliances, a real ZooKeeper."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from kazoo.exceptions import NoNodeError

from appliance.cluster import ControllerRegistration, connect
from appliance.cluster.znodes import BROKER_IDS, CONTROLLER, BrokerRegistration
from loadtest.harness import REPO, Appliance
from tests.cluster.brokers import SESSION_MS, start_broker
from tests.polling import wait_for


def broker(tmp_path: Path, zookeeper_connect: str, broker_id: int) -> Appliance:
    return start_broker(tmp_path, zookeeper_connect, broker_id)


def registered(client) -> dict[int, BrokerRegistration]:
    found = {}
    for b in client.get_children(BROKER_IDS):
        with contextlib.suppress(NoNodeError):  # left between the listing and the read
            found[int(b)] = BrokerRegistration.decode(int(b), client.get(f"{BROKER_IDS}/{b}")[0])
    return found


def controller_id(client) -> int | None:
    stat = client.exists(CONTROLLER)
    return ControllerRegistration.decode(client.get(CONTROLLER)[0]).broker_id if stat else None


def test_three_appliances_register_and_elect_one_controller_which_hands_over(
        tmp_path, zookeeper_connect):
    brokers = {b: broker(tmp_path, zookeeper_connect, b) for b in (1, 2, 3)}
    client = connect(zookeeper_connect, SESSION_MS)
    try:
        found = registered(client)
        assert {b: r.client_endpoint for b, r in found.items()} == {
            b: f"tcp://{a.bootstrap}" for b, a in brokers.items()}
        first = controller_id(client)
        assert first in brokers
        assert brokers.pop(first).stop() == 0  # a clean stop leaves at once
        assert first not in registered(client)
        wait_for(lambda: controller_id(client) in brokers, 10, "a new controller")
        victim = next(b for b in brokers if b != controller_id(client))
        os.killpg(brokers[victim].process.pid, signal.SIGKILL)
        brokers.pop(victim).process.wait(10)
        took = wait_for(lambda: victim not in registered(client), 15, "the dead broker leaving")
        assert took < SESSION_MS / 1000 + 5
    finally:
        client.stop()
        client.close()
        for appliance in brokers.values():
            appliance.stop()


def test_an_unreachable_zookeeper_stops_start_up_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "serve", "--override", f"log.dirs={tmp_path}",
         "--override", "listeners=tcp://127.0.0.1:0", "--override", "http.listener=",
         "--override", "zookeeper.connect=127.0.0.1:1",
         "--override", f"zookeeper.session.timeout.ms={SESSION_MS}"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("ringlog:")]
    assert errors == ["ringlog: cannot start: ZooKeeper at 127.0.0.1:1 did not answer within "
                      "2 s; is it running, and is zookeeper.connect right?"], done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_replication_listener_stops_start_up_before_registering(
        tmp_path, zookeeper_connect):
    """Listeners are bound before the broker connects anywhere: a taken port
    is one line, and no registration is left in ZooKeeper to hold the
    broker.id for a session timeout."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.16", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "appliance", "serve", "--override", f"log.dirs={tmp_path}",
             "--override", "listeners=tcp://127.0.0.16:0", "--override", "http.listener=",
             "--override", f"zookeeper.connect={zookeeper_connect}", "--override", "broker.id=6",
             "--override", f"replication.listener=tcp://127.0.0.16:{port}"],
            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("ringlog:")]
    assert errors == [f"ringlog: cannot start: replication.listener=tcp://127.0.0.16:{port}: "
                      "Address already in use; choose a free HOST:PORT for "
                      "replication.listener"], done.stderr
    assert "Traceback" not in done.stderr
    client = connect(zookeeper_connect, SESSION_MS)
    try:
        assert 6 not in registered(client)
    finally:
        client.stop()
        client.close()
