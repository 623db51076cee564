"""The nemesis against the real kernel: iptables partitions and packet loss
between loopback addresses, and kill -9, SIGSTOP, SIGCONT of real processes.

These need root and iptables (.ci/system-packages installs it). A cut is
observed the way a broker would see it: a TCP connect from a socket bound to
one broker's address to a server bound on another's times out.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from loadtest.nemesis import INSTALL_HINT, NemesisError, NetworkNemesis, ProcessNemesis
from tests.polling import wait_for

BROKER_1, BROKER_2, BROKER_3 = "127.0.0.11", "127.0.0.12", "127.0.0.13"
CONNECT_TIMEOUT_S = 0.5
DATAGRAMS = 2000
SO_RCVBUFFORCE = 33  # Linux's; Python's socket module does not name it


def iptables_rules() -> list[str]:
    """Every rule of the filter table, as `iptables -S` prints it."""
    return subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def mentions(chain: str) -> list[str]:
    return [line for line in iptables_rules() if chain in line.split()]


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A TCP listener on broker 2's address (the kernel completes handshakes)."""
    with socket.create_server((BROKER_2, 0), backlog=64) as listener:
        yield listener


def connects(source: str | None, listener: socket.socket) -> bool:
    """Whether a connect from `source` (unbound when None) completes in time."""
    with socket.socket() as client:
        if source is not None:
            client.bind((source, 0))
        client.settimeout(CONNECT_TIMEOUT_S)
        try:
            client.connect(listener.getsockname())
        except TimeoutError:
            return False
        return True


def test_a_cut_drops_traffic_between_two_brokers_until_healed(server):
    assert connects(BROKER_1, server)
    with NetworkNemesis() as network:
        assert mentions(network.chain)  # the chain and its jumps from OUTPUT and INPUT
        network.cut(BROKER_1, BROKER_2)
        assert not connects(BROKER_1, server)
        assert connects(BROKER_3, server)  # only the pair is cut
        network.heal()
        assert network.rules() == []
        assert connects(BROKER_1, server)
        chain = network.chain
    assert mentions(chain) == []  # no chain, no jump left behind


def test_a_cut_drops_both_directions():
    with socket.create_server((BROKER_1, 0)) as on_broker_1, NetworkNemesis() as network:
        network.cut(BROKER_1, BROKER_2)
        assert not connects(BROKER_2, on_broker_1)
        assert network.rules() == [
            f"-A {network.chain} -s {BROKER_1}/32 -d {BROKER_2}/32 -j DROP",
            f"-A {network.chain} -s {BROKER_2}/32 -d {BROKER_1}/32 -j DROP",
        ]


def test_an_unbound_socket_speaks_from_127_0_0_1_and_escapes_a_cut_between_brokers(server):
    with socket.create_connection(server.getsockname(), timeout=CONNECT_TIMEOUT_S) as client:
        assert client.getsockname()[0] == "127.0.0.1"
    with NetworkNemesis() as network:
        network.cut(BROKER_1, BROKER_2)
        assert connects(None, server)  # why every broker socket must bind its address
        network.cut("127.0.0.1", BROKER_2)
        assert not connects(None, server)


def test_isolate_cuts_a_host_from_each_of_the_others(server):
    with NetworkNemesis() as network:
        network.isolate(BROKER_2, [BROKER_1, BROKER_3])
        assert not connects(BROKER_1, server)
        assert not connects(BROKER_3, server)
        assert connects("127.0.0.1", server)  # ZooKeeper's address was not named
        assert len(network.rules()) == 4


def delivered_fraction(source: str, destination: str) -> float:
    """Send DATAGRAMS UDP datagrams and return the fraction that arrived.

    A marker from broker 3 follows them, resent until one arrives (the loss
    rules may name its destination): once it has, every datagram sent before
    it that survived has arrived, since loopback delivers in order.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as marker:
        # room for every datagram at once (past rmem_max, which root may exceed)
        receiver.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        receiver.bind((destination, 0))
        sender.bind((source, 0))
        marker.bind((BROKER_3, 0))
        for n in range(DATAGRAMS):
            # a drop in OUTPUT fails the send itself (EPERM); one in INPUT is silent
            with contextlib.suppress(PermissionError):
                sender.sendto(b"%d" % n, receiver.getsockname())
        received, marked = 0, False
        receiver.settimeout(0.1)
        for _ in range(100):
            with contextlib.suppress(PermissionError):
                marker.sendto(b"end", receiver.getsockname())
            try:
                while True:
                    _, peer = receiver.recvfrom(64)
                    if peer[0] == BROKER_3:
                        marked = True
                        break
                    received += 1
            except TimeoutError:
                continue  # this marker was dropped: send another
            break
        assert marked, "no marker got through in 100 tries"
        return received / DATAGRAMS


def test_loss_drops_the_asked_share_of_packets_each_way():
    assert delivered_fraction(BROKER_1, BROKER_2) == 1.0  # loopback loses nothing itself
    with NetworkNemesis() as network:
        network.loss(BROKER_1, 0.3)
        # 2000 datagrams: one standard deviation of the delivered share is ~1%
        assert 0.64 <= delivered_fraction(BROKER_1, BROKER_2) <= 0.76
        assert 0.64 <= delivered_fraction(BROKER_2, BROKER_1) <= 0.76
        assert delivered_fraction(BROKER_2, BROKER_3) == 1.0
        network.heal()
        assert delivered_fraction(BROKER_1, BROKER_2) == 1.0


def test_the_chain_is_deleted_when_the_test_body_fails(server):
    with pytest.raises(RuntimeError, match="a failing test"), NetworkNemesis() as network:
        network.cut(BROKER_1, BROKER_2)
        chain = network.chain
        raise RuntimeError("a failing test")
    assert mentions(chain) == []
    assert connects(BROKER_1, server)


ABANDONED = f"""
from loadtest.nemesis import NetworkNemesis
network = NetworkNemesis().__enter__()   # never left: only atexit cleans up
network.cut("{BROKER_1}", "{BROKER_2}")
print(network.chain, flush=True)
"""


def test_a_process_that_exits_without_leaving_still_deletes_its_chain(server):
    child = subprocess.run([sys.executable, "-c", ABANDONED], capture_output=True, text=True,
                           timeout=60, check=True, cwd=Path(__file__).parents[2])
    chain = child.stdout.strip()
    assert re.fullmatch(r"RINGLOG-\d+", chain), child.stdout
    assert mentions(chain) == []
    assert connects(BROKER_1, server)


def test_a_stale_chain_of_the_same_name_is_replaced_on_enter(server):
    chain = f"RINGLOG-{os.getpid()}"
    for args in (["-N", chain], ["-A", chain, "-d", BROKER_2, "-j", "DROP"],
                 ["-I", "OUTPUT", "1", "-j", chain], ["-I", "OUTPUT", "1", "-j", chain]):
        subprocess.run(["iptables", "-w", *args], check=True)
    try:
        assert not connects(BROKER_1, server)  # the leftover still partitions
        with NetworkNemesis() as network:
            assert network.rules() == []
            assert connects(BROKER_1, server)
            assert len([line for line in mentions(chain) if line.startswith("-A OUTPUT")]) == 1
        assert mentions(chain) == []
    finally:  # should the nemesis not clean up, do not leave the host partitioned
        NetworkNemesis(chain)._remove(chain)


def test_the_chain_of_a_run_whose_process_is_gone_is_swept_on_enter():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    stale = f"RINGLOG-{dead.pid}"
    subprocess.run(["iptables", "-w", "-N", stale], check=True)
    subprocess.run(["iptables", "-w", "-I", "INPUT", "1", "-j", stale], check=True)
    try:
        with NetworkNemesis():
            assert mentions(stale) == []
    finally:
        NetworkNemesis(stale)._remove(stale)


def test_a_missing_iptables_is_one_clear_line():
    with pytest.raises(NemesisError) as failure, NetworkNemesis(iptables="/nonexistent/iptables"):
        pass
    assert str(failure.value) == INSTALL_HINT


def test_faults_need_the_chain_set_up():
    with pytest.raises(NemesisError, match="not set up"):
        NetworkNemesis().cut(BROKER_1, BROKER_2)


# --- process faults --------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    child = subprocess.Popen(["sleep", "300"])
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
        child.wait(timeout=30)


def status_of(pid: int) -> str:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return "gone"


def test_pause_stops_a_process_and_resume_lets_it_run(sleeper):
    with ProcessNemesis() as processes:
        assert [p.pid for p in processes.pause(sleeper.pid)] == [sleeper.pid]
        wait_for(lambda: status_of(sleeper.pid) == psutil.STATUS_STOPPED, 10, "SIGSTOP")
        assert [p.pid for p in processes.paused] == [sleeper.pid]
        processes.resume(psutil.Process(sleeper.pid))
        wait_for(lambda: status_of(sleeper.pid) == psutil.STATUS_SLEEPING, 10, "SIGCONT")
        assert processes.paused == []


def test_leaving_the_nemesis_resumes_what_it_paused(sleeper):
    with ProcessNemesis() as processes:
        processes.pause(sleeper.pid)
        wait_for(lambda: status_of(sleeper.pid) == psutil.STATUS_STOPPED, 10, "SIGSTOP")
    wait_for(lambda: status_of(sleeper.pid) == psutil.STATUS_SLEEPING, 10,
             "the resume on leaving")


def test_kill9_kills_even_a_paused_process(sleeper):
    with ProcessNemesis() as processes:
        processes.pause(sleeper.pid)
        wait_for(lambda: status_of(sleeper.pid) == psutil.STATUS_STOPPED, 10, "SIGSTOP")
        processes.kill9(sleeper.pid)
        wait_for(lambda: sleeper.poll() is not None, 10, "the SIGKILL")
        assert sleeper.returncode == -signal.SIGKILL
        assert processes.paused == []
        assert processes.resume(sleeper.pid) == []  # a fault on a process gone is moot


TREE = "import subprocess, sys; subprocess.Popen(['sleep', '300']); sys.stdout.write('up\\n'); " \
       "sys.stdout.flush(); sys.stdin.read()"


def test_a_tree_fault_reaches_the_process_and_its_descendants():
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert parent.stdout.readline() == b"up\n"
        root = psutil.Process(parent.pid)
        (grandchild,) = root.children()
        with ProcessNemesis() as processes:
            processes.pause(root, tree=True)
            wait_for(lambda: {status_of(p.pid) for p in (root, grandchild)}
                     == {psutil.STATUS_STOPPED}, 10, "SIGSTOP of the tree")
            processes.resume(root, tree=True)
            wait_for(lambda: psutil.STATUS_STOPPED not in
                     {status_of(p.pid) for p in (root, grandchild)}, 10, "SIGCONT of the tree")
            processes.kill9(root, tree=True)
            wait_for(lambda: parent.poll() is not None, 10, "the SIGKILL of the parent")
            wait_for(lambda: status_of(grandchild.pid) in ("gone", psutil.STATUS_ZOMBIE), 10,
                     "the SIGKILL of the grandchild")
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait(timeout=30)
        parent.stdin.close()
        parent.stdout.close()
