"""Jepsen's nemesis for a cluster on loopback: real network partitions, packet
loss and process faults, no mocks.

    with NetworkNemesis() as network, ProcessNemesis() as processes:
        network.cut("127.0.0.11", "127.0.0.12")        # both directions
        network.isolate("127.0.0.11", ["127.0.0.12", "127.0.0.13", "127.0.0.1"])
        network.loss("127.0.0.13", 0.2)                # 20% of its packets, each way
        network.heal()                                 # every rule gone
        processes.pause(leader_pid)                    # SIGSTOP, until resume()
        processes.kill9(follower)                      # a psutil.Process or a pid
    # leaving: the chain is deleted, every paused process resumed

Network faults live in one iptables chain of the test's own, `RINGLOG-<pid>`,
jumped to from the top of OUTPUT and INPUT. Entering creates it (deleting a
stale chain of the same name first, and the chains of `RINGLOG-<pid>` runs
whose process no longer exists, which a killed test run leaves behind);
leaving, or the interpreter's exit (atexit), flushes, unlinks and deletes it,
so a failed test never leaves a host partitioned. Apart from the two jumps,
the host's own rules are never touched. SIGKILL of the test process does
skip the cleanup; the next run's sweep removes the chain.

Addresses matter. Every broker binds its own address (127.0.0.11, .12, .13;
ZooKeeper 127.0.0.1), and a rule matches a packet by its source and
destination. A socket that does not bind its source gets the loopback
route's source, 127.0.0.1, whatever address it connects to (`ip route get
127.0.0.11`: `src 127.0.0.1`): a broker's outgoing ZeroMQ or kazoo
connection that does not bind would look like ZooKeeper's traffic and escape
a cut. So every socket of a broker under test must bind its broker's address
(ZeroMQ: `tcp://127.0.0.12:0;127.0.0.11:7093`).

Measured here: after heal(), TCP and ZeroMQ resume in about 2.5 s
(../shared/notes/replication.md), as the retransmission backoff allows, so
it grows with the cut: a segment sent into a cut arrived 0.4 s after the
heal of a 1 s cut, 1.5 s after a 5 s cut, 3.0-3.2 s after a 10 s cut, TCP
and ZeroMQ alike. ZeroMQ then delivers messages queued during the
partition, late: requests need ids. A DROP in OUTPUT fails a UDP send with
EPERM; TCP just retransmits. `tc netem` does not exist in this
environment, so loss() is `-m statistic --mode random`. Loopback packets
pass both OUTPUT and INPUT, so each hook drops with probability
1 - sqrt(1 - p) and a packet is lost with probability p overall (measured:
0.69-0.72 of datagrams delivered at p = 0.3).

iptables: Debian's `iptables` (1.8, the nf_tables backend by its
alternatives) works in this container as root, and so does iptables-legacy;
this module calls whatever `iptables` is on PATH (override with the
`iptables` argument) and does not mix the two, since each lists only its own
rules. Either backend's DROP takes effect: the kernel evaluates both.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable
from types import TracebackType

import psutil

INSTALL_HINT = "install iptables: apt-get install iptables (.ci/system-packages)"
HOOKS = ("OUTPUT", "INPUT")
_CHAIN = re.compile(r"^-N (RINGLOG-(\d+))$")


class NemesisError(RuntimeError):
    """A fault could not be injected or removed (iptables missing or refusing)."""


class NetworkNemesis:
    """Partitions and packet loss between loopback addresses, in a chain of our own."""

    def __init__(self, chain: str | None = None, iptables: str = "iptables"):
        self.chain = chain if chain is not None else f"RINGLOG-{os.getpid()}"
        if len(self.chain) > 28:
            raise ValueError(f"iptables chain names are at most 28 characters: {self.chain!r}")
        self._iptables = iptables
        self._active = False

    def __enter__(self) -> NetworkNemesis:
        if shutil.which(self._iptables) is None:
            raise NemesisError(INSTALL_HINT)
        self._sweep_stale()
        self._remove(self.chain)
        self._run("-N", self.chain)
        self._active = True
        atexit.register(self.close)
        for hook in HOOKS:
            self._run("-I", hook, "1", "-j", self.chain)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Flush, unlink and delete the chain; safe to call more than once."""
        if not self._active:
            return
        self._active = False
        atexit.unregister(self.close)
        self._remove(self.chain)

    # --- faults ------------------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        """Drop every packet between addresses `a` and `b`, both directions."""
        self._require_active()
        self._run("-A", self.chain, "-s", a, "-d", b, "-j", "DROP")
        self._run("-A", self.chain, "-s", b, "-d", a, "-j", "DROP")

    def isolate(self, host: str, others: Iterable[str]) -> None:
        """Cut `host` from each of `others` (pass ZooKeeper's 127.0.0.1 to cut it too)."""
        for other in others:
            self.cut(host, other)

    def loss(self, host: str, probability: float) -> None:
        """Drop each packet to or from `host` with `probability`, independently."""
        if not 0 < probability <= 1:
            raise ValueError(f"a loss probability is in (0, 1], not {probability}")
        self._require_active()
        per_hook = 1 - math.sqrt(1 - probability)  # a loopback packet meets both hooks
        for direction in ("-s", "-d"):
            self._run("-A", self.chain, direction, host, "-m", "statistic", "--mode",
                      "random", "--probability", f"{per_hook:.6f}", "-j", "DROP")

    def heal(self) -> None:
        """Remove every fault: the chain stays, empty."""
        self._require_active()
        self._run("-F", self.chain)

    def rules(self) -> list[str]:
        """The chain's rules as `iptables -S` prints them (after its `-N` line)."""
        self._require_active()
        lines = self._run("-S", self.chain).splitlines()
        return [line for line in lines if line.startswith("-A ")]

    # --- iptables ----------------------------------------------------------------------

    def _require_active(self) -> None:
        if not self._active:
            raise NemesisError(f"the chain {self.chain} is not set up: use `with NetworkNemesis()`")

    def _run(self, *args: str, check: bool = True) -> str:
        command = [self._iptables, "-w", *args]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise NemesisError(INSTALL_HINT) from None
        if check and result.returncode != 0:
            detail = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
            raise NemesisError(f"{' '.join(command)}: {detail}")
        return result.stdout if result.returncode == 0 else ""

    def _exists(self, chain: str) -> bool:
        return bool(self._run("-S", chain, check=False))

    def _remove(self, chain: str) -> None:
        """Unlink `chain` from every hook (however often it is linked), flush, delete."""
        if not self._exists(chain):
            return
        for hook in HOOKS:
            while f"-A {hook} -j {chain}" in self._run("-S", hook).splitlines():
                self._run("-D", hook, "-j", chain)
        self._run("-F", chain)
        self._run("-X", chain)

    def _sweep_stale(self) -> None:
        """Delete the chains of earlier runs whose process is gone."""
        for line in self._run("-S").splitlines():
            match = _CHAIN.match(line)
            if match and match.group(1) != self.chain and not psutil.pid_exists(
                    int(match.group(2))):
                self._remove(match.group(1))


class ProcessNemesis:
    """kill -9, SIGSTOP and SIGCONT of real processes; what it paused, it resumes.

    Processes are psutil.Process objects or pids; psutil refuses to signal a
    pid that was reused by another process. Each fault returns the processes
    it signalled: one already gone is skipped, since the fault is moot. With
    `tree=True` a fault reaches the process's descendants as well (a broker
    is a supervisor and its workers). kill9 does not reap: a killed child of
    the caller stays a zombie until the caller waits for it.
    """

    def __init__(self) -> None:
        self._paused: dict[int, psutil.Process] = {}
        atexit.register(self.resume_all)

    def __enter__(self) -> ProcessNemesis:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.resume_all()
        atexit.unregister(self.resume_all)

    def kill9(self, process: psutil.Process | int, *,
              tree: bool = False) -> list[psutil.Process]:
        """SIGKILL (children first with `tree`, so the parent cannot respawn them)."""
        killed = self._signal_all(process, tree, signal.SIGKILL, children_first=True)
        for target in killed:
            self._paused.pop(target.pid, None)
        return killed

    def pause(self, process: psutil.Process | int, *,
              tree: bool = False) -> list[psutil.Process]:
        """SIGSTOP, parent first with `tree` so it cannot react to its children stopping."""
        paused = self._signal_all(process, tree, signal.SIGSTOP, children_first=False)
        self._paused.update((target.pid, target) for target in paused)
        return paused

    def resume(self, process: psutil.Process | int, *,
               tree: bool = False) -> list[psutil.Process]:
        """SIGCONT, children first with `tree` so the parent wakes to running children."""
        resumed = self._signal_all(process, tree, signal.SIGCONT, children_first=True)
        for target in resumed:
            self._paused.pop(target.pid, None)
        return resumed

    def resume_all(self) -> None:
        """SIGCONT to every process this nemesis paused and did not resume or kill."""
        while self._paused:
            _, target = self._paused.popitem()
            with contextlib.suppress(psutil.NoSuchProcess):
                target.send_signal(signal.SIGCONT)

    @property
    def paused(self) -> list[psutil.Process]:
        return list(self._paused.values())

    @staticmethod
    def _signal_all(process: psutil.Process | int, tree: bool, signum: signal.Signals,
                    children_first: bool) -> list[psutil.Process]:
        """Signal the process (and its descendants with `tree`); the ones that
        were there to signal. A process already gone is skipped: the fault is moot."""
        try:
            root = process if isinstance(process, psutil.Process) else psutil.Process(process)
            children = root.children(recursive=True) if tree else []
        except psutil.NoSuchProcess:
            return []
        order = [*reversed(children), root] if children_first else [root, *children]
        signalled = []
        for target in order:
            with contextlib.suppress(psutil.NoSuchProcess):
                target.send_signal(signum)
                signalled.append(target)
        return signalled
