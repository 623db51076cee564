"""A Jepsen-style fault run against a real three-broker cluster: write,
break things one at a time, heal, read every replica, judge.

    python -m loadtest.fault_run --faults 300 --seconds 1800 [--seed 7]
    python -m loadtest.fault_run --faults 0 --stale-leader --unclean   # must lose

ZooKeeper runs on 127.0.0.2 and broker N on 127.0.0.1N, every broker socket
bound to its own address, so iptables rules between those addresses cut
brokers from each other and from ZooKeeper while the run's own clients
(from 127.0.0.1) still reach every broker, zombies included. One topic,
replication factor 3, `min.insync.replicas=2`, a few partitions.

Two producer threads write unique values with acks=all and record every
operation in a History (loadtest/fault_history.py):

- `retrying`: the client as shipped (idempotent, retries until its delivery
  timeout). Its errors are all recorded as `info`: a definite error on a
  retry says nothing about an earlier attempt that timed out and may have
  been appended. It is the one that tests idempotence across failovers (a
  retry appended twice is a duplicate).
- `single-shot`: not idempotent, and its retry backoff is longer than its
  delivery timeout, so every write is exactly one attempt; a definite error
  (fault_history.DEFINITE_ERRORS) is then recorded as `fail`, and seeing
  such a value in a log is a phantom. Without it the phantom check would
  never be exercised.

Each thread keeps a bounded number of writes outstanding, so an unavailable
cluster does not pile up unbounded work, and stops at a count or a time.

The nemesis is the main thread (so Ctrl-C lands in it): one fault at a time,
chosen by a seeded random generator from FAULT_KINDS, each recorded as a
nemesis start and stop around the fault and its heal; after each, the run
waits (bounded by `--recover`) until every partition takes acks=all writes
again (a leader and an ISR of min.insync.replicas, agreed by every broker;
not a full ISR, so that one follower slow to rejoin does not stall the run)
and then until a write invoked after the heal is acknowledged (bounded the
same), then lets the producers run calmly for `--interval` seconds.
`--stale-leader` appends the scenario that loses acknowledged writes when an
out-of-sync replica may lead (see stale_leader); `--unclean` turns unclean
leader election on and implies it, and the run then succeeds only if the
checker reports the loss.

At the end: heal everything, wait (bounded) until every partition has a
leader, a full ISR and equal log ends on every broker, stop producing, let
the producers finish, stop the brokers with SIGTERM, read every replica from
its files and check (loadtest/fault_checker.py). A replica still outside
its ISR then is not held to the acknowledged writes (only to duplicates and
divergence), and the run fails: the cluster did not heal. Whatever happens, Ctrl-C
and SIGTERM included, the iptables chain is deleted, paused processes are
resumed and every broker and ZooKeeper is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.client import Admin, Producer
from loadtest import harness
from loadtest import zookeeper as zookeeper_module
from loadtest.fault_checker import PartitionRead, Report, check
from loadtest.fault_history import Entry, History, NemesisEvent, Operation
from loadtest.harness import Appliance
from loadtest.nemesis import NetworkNemesis, ProcessNemesis
from loadtest.zookeeper import ZooKeeperServer
from shm.errors import RinglogError
from tests.cluster.brokers import SESSION_MS, broker_host, replica_records, start_broker

TOPIC = "jepsen"
# Broker N listens on 127.0.0.1N (tests/cluster/brokers.broker_host). Another
# set of ids (31, 32, 33: 127.0.0.41-43) and ZooKeeper address lets a long run
# go on beside the test suite without either's iptables rules cutting the other.
BROKERS = (1, 2, 3)
ZOOKEEPER_HOST = "127.0.0.2"  # not 127.0.0.1: cutting a broker from ZooKeeper spares the clients
MIN_ISR = 2  # the topic's min.insync.replicas
LAG_MS = 3000  # replica.lag.time.max.ms: an ISR shrinks within seconds, not Kafka's 30
SESSION_S = SESSION_MS / 1000
FAULT_KINDS = ("kill-leader", "pause-broker", "cut-leader", "zombie-leader", "cut-follower",
               "packet-loss", "kill-worker", "restart-zookeeper")
STALE_LEADER = "stale-leader"


class RunFailed(RuntimeError):
    """The cluster did not do what a fault needs (no leader, never whole again)."""


# --- pure parts ------------------------------------------------------------------------------


def plan_faults(count: int, seed: int, kinds: Sequence[str] = FAULT_KINDS) -> list[str]:
    """`count` fault kinds drawn with `seed`: the same seed, the same run.

    Each kind is drawn once per round of len(kinds), in a shuffled order,
    so a short run still covers every kind and a long one covers them evenly."""
    rng = random.Random(seed)
    planned: list[str] = []
    while len(planned) < count:
        round_ = list(kinds)
        rng.shuffle(round_)
        planned.extend(round_)
    return planned[:count]


def error_name(error: BaseException) -> str:
    """The Kafka error name the client raised (RequestTimedOutError ->
    REQUEST_TIMED_OUT), which is what DEFINITE_ERRORS lists; else the class."""
    return error.name if isinstance(error, RinglogError) else type(error).__name__


def acknowledged_after(entries: Iterable[Entry], index: int, partition: int | None = None) -> int:
    """Writes invoked after history entry `index` and acknowledged (on `partition`)."""
    invoked_after: set[int] = set()
    count = 0
    for entry in entries:
        if not isinstance(entry, Operation):
            continue
        if entry.type == "invoke" and entry.index > index:
            invoked_after.add(entry.id)
        elif (entry.type == "ok" and entry.id in invoked_after
              and (partition is None or entry.partition == partition)):
            count += 1
    return count


def wait_until(condition: Callable[[], bool], deadline_s: float) -> bool:
    """Poll `condition` until it holds (True) or `deadline_s` passes (False)."""
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        if condition():
            return True
        time.sleep(0.1)
    return False


def faults_followed_by_acks(entries: Sequence[Entry]) -> tuple[int, int]:
    """(faults healed, how many of them were followed by a write invoked after
    the heal and acknowledged before the next fault began): the proof that
    the cluster came back after each one, not just at the end."""
    entries = list(entries)
    stops = [e for e in entries if isinstance(e, NemesisEvent) and e.type == "stop"]
    followed = 0
    for stop in stops:
        window = []
        for entry in entries[stop.index + 1:]:
            if isinstance(entry, NemesisEvent) and entry.type == "start":
                break
            window.append(entry)
        if acknowledged_after(window, stop.index):
            followed += 1
    return len(stops), followed


def whole(views: dict[int, list[dict] | None], replicas: int, caught_up: bool = False,
          min_isr: int | None = None) -> bool:
    """Whether every broker's view of the topic agrees that each partition has
    a leader and a full ISR (and, with `caught_up`, that each replica's log
    ends where its leader's high watermark is: nothing left to replicate).

    With `min_isr`, an ISR of at least that many will do: the partition takes
    acks=all writes again, which is what the run waits for between faults."""
    if not views or any(view is None for view in views.values()):
        return False
    first = next(iter(views.values()))
    for view in views.values():
        if len(view) != len(first):
            return False
        for mine, theirs in zip(view, first, strict=True):
            short = (len(mine["isr"]) < min_isr if min_isr is not None
                     else len(mine["isr"]) != replicas)
            if (mine["leader"] < 0 or short
                    or (mine["leader"], mine["leader_epoch"], sorted(mine["isr"]))
                    != (theirs["leader"], theirs["leader_epoch"], sorted(theirs["isr"]))):
                return False
    if caught_up:
        for partition in range(len(first)):
            ends = {view[partition]["log_end_offset"] for view in views.values()}
            marks = {view[partition]["high_watermark"] for view in views.values()}
            if len(ends) != 1 or ends != marks:
                return False
    return True


def newest_leaders(views: dict[int, list[dict] | None]) -> dict[int, tuple[int, list[int]]]:
    """Per partition, (leader, isr) from the view with the highest leader epoch:
    a zombie's stale view loses to its successor's."""
    best: dict[int, dict] = {}
    for view in views.values():
        for partition in view or ():
            number = partition["partition"]
            if number not in best or partition["leader_epoch"] > best[number]["leader_epoch"]:
                best[number] = partition
    return {number: (p["leader"], list(p["isr"])) for number, p in best.items()}


def outside_isr(leaders: dict[int, tuple[int, list[int]]], brokers: Iterable[int]
                ) -> dict[int, list[int]]:
    """Per partition, the replicas its ISR left out (all of them without a leader)."""
    out = {}
    for partition, (leader, isr) in leaders.items():
        if missing := [b for b in brokers if leader < 0 or b not in isr]:
            out[partition] = missing
    return out


def held_to_acks(reads: dict[str, dict[int, PartitionRead]], outside: dict[int, list[int]],
                 name: Callable[[int], str]) -> dict[str, dict[int, PartitionRead]]:
    """The reads without the replicas the ISR left out: the checker holds every
    reader to every acknowledged write, and a replica outside the ISR is
    allowed to lack some (it is still judged for divergence, apart)."""
    left_out = {(name(b), partition) for partition, brokers in outside.items() for b in brokers}
    return {reader: {p: read for p, read in partitions.items() if (reader, p) not in left_out}
            for reader, partitions in reads.items()}


@dataclass
class RunResult:
    """What a run did and what the checker made of it."""

    report: Report
    faults: Counter = field(default_factory=Counter)  # kind -> how many were injected
    faults_healed: int = 0
    faults_followed_by_acks: int = 0
    recovery_s: list[float] = field(default_factory=list)
    not_recovered: int = 0  # faults after which the cluster was not whole by the deadline
    broker_exit_codes: dict[int, int] = field(default_factory=dict)
    unclean: bool = False
    seconds: float = 0.0
    history: History | None = None  # the whole record, for whoever wants more than counts
    # Every replica, the ones outside the ISR included, checked for
    # duplicates and divergence below its high watermark only.
    replicas: Report | None = None
    outside_isr: dict[int, list[int]] = field(default_factory=dict)  # at the end, after the heal

    @property
    def ok(self) -> bool:
        """Safe run: the checker found nothing and the cluster was whole again
        at the end. Unclean run: the checker found the loss."""
        if self.unclean:
            return self.report.lost.count > 0
        return self.report.ok and self.replicas_ok and not self.outside_isr

    @property
    def replicas_ok(self) -> bool:
        return self.replicas is None or not (self.replicas.duplicated.count
                                             or self.replicas.divergent.count)

    def summary(self) -> str:
        report = self.report
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items())) or "none"
        worst = f", slowest {max(self.recovery_s):.1f} s" if self.recovery_s else ""
        replicas = self.replicas or report
        lines = [
            f"faults injected: {sum(self.faults.values())} ({kinds})",
            f"faults followed by new acknowledged writes: {self.faults_followed_by_acks} "
            f"of {self.faults_healed}; taking writes again (leader, ISR >= 2) by the deadline "
            f"after {self.faults_healed - self.not_recovered}{worst}",
            f"operations: {report.acknowledged} acknowledged, {report.failed} failed, "
            f"{report.indeterminate} unknown ({report.recovered} of them visible)",
            f"lost {report.lost.count}, duplicated {replicas.duplicated.count}, "
            f"divergent {replicas.divergent.count}, phantom {report.phantom.count}, "
            f"order violations {report.order_violations.count}",
            "every partition's ISR full at the end" if not self.outside_isr else
            f"NOT WHOLE at the end: replicas outside the ISR {self.outside_isr} "
            "(judged for divergence only)",
            f"brokers' exit codes at the clean stop: {self.broker_exit_codes}",
            f"run took {self.seconds:.0f} s; checker: {report.summary()}",
        ]
        if self.replicas is not None and not self.replicas_ok:
            lines.append(f"all replicas: {self.replicas.summary()}")
        if self.unclean:
            lines.append("unclean leader election on: loss expected, "
                         + ("found" if report.lost.count else "NOT FOUND (the checker is blind)"))
        return "\n".join(lines)


# --- the cluster ------------------------------------------------------------------------------


class Cluster:
    """ZooKeeper and three brokers under one directory, each on its own address."""

    def __init__(self, directory: Path, overrides: Sequence[str], partitions: int,
                 broker_ids: Sequence[int] = BROKERS, zookeeper_host: str = ZOOKEEPER_HOST):
        self.broker_ids = tuple(broker_ids)
        self.zookeeper_host = zookeeper_host
        self.directory = directory
        self.overrides = tuple(overrides)
        self.partitions = partitions
        self.zookeeper: ZooKeeperServer | None = None
        self.brokers: dict[int, Appliance] = {}

    def start(self) -> None:
        self.zookeeper = ZooKeeperServer(self.directory / "zookeeper", host=self.zookeeper_host)
        self.zookeeper.wait_until_serving()
        for broker in self.broker_ids:
            self.brokers[broker] = start_broker(self.directory, self.zookeeper.connect, broker,
                                                *self.overrides, wait=False)
        for appliance in self.brokers.values():
            appliance.wait_until_serving(60)
        with Admin(self.bootstrap()) as admin:
            admin.create_topic(TOPIC, partitions=self.partitions,
                               replication_factor=len(self.broker_ids),
                               configs={"min.insync.replicas": str(MIN_ISR)})

    def bootstrap(self) -> str:
        return ",".join(a.bootstrap for a in self.brokers.values())

    def alive(self, broker: int) -> bool:
        return self.brokers[broker].process.poll() is None

    def restart(self, *brokers: int) -> None:
        """Start stopped brokers again on their addresses and data."""
        for broker in brokers:
            self.brokers[broker] = start_broker(self.directory, self.zookeeper.connect, broker,
                                                *self.overrides, wait=False)
        for broker in brokers:
            self.brokers[broker].wait_until_serving(60)

    def kill(self, broker: int) -> None:
        """kill -9 of the broker's whole process group, reaped."""
        self.brokers[broker].kill()

    def view(self, broker: int) -> list[dict] | None:
        """The topic's partitions as `broker` describes them (None: no answer)."""
        if not self.alive(broker):
            return None
        try:
            with Admin(self.brokers[broker].bootstrap, request_timeout_ms=1000) as admin:
                return admin.describe_topic(TOPIC)["partitions"]
        except (RinglogError, OSError, KeyError):
            return None

    def views(self, brokers: Iterable[int] | None = None) -> dict[int, list[dict] | None]:
        return {broker: self.view(broker)
                for broker in (self.broker_ids if brokers is None else brokers)}

    def leaders(self) -> dict[int, tuple[int, list[int]]]:
        return newest_leaders(self.views(b for b in self.broker_ids if self.alive(b)))

    def leader_of(self, partition: int, deadline_s: float = 20) -> int:
        """The partition's current leader, waiting (bounded) for there to be one."""
        until = time.monotonic() + deadline_s
        while time.monotonic() < until:
            leader = self.leaders().get(partition, (-1, []))[0]
            if leader >= 0:
                return leader
            time.sleep(0.1)
        raise RunFailed(f"partition {partition} had no leader for {deadline_s:.0f} s")

    def is_whole(self, caught_up: bool = False, min_isr: int | None = None) -> bool:
        return (all(self.alive(b) for b in self.broker_ids)
                and whole(self.views(), len(self.broker_ids), caught_up, min_isr))

    def wait_whole(self, deadline_s: float, caught_up: bool = False,
                   min_isr: int | None = None) -> float | None:
        """Seconds until every partition has a leader and a full ISR (or one of
        `min_isr`); None past the deadline."""
        began = time.monotonic()
        while time.monotonic() - began < deadline_s:
            if self.is_whole(caught_up, min_isr):
                return time.monotonic() - began
            time.sleep(0.2)
        return None

    def stop(self) -> dict[int, int]:
        """SIGTERM each broker (controlled shutdown), then ZooKeeper; the brokers' exit codes."""
        codes = {broker: appliance.stop(45) for broker, appliance in self.brokers.items()}
        if self.zookeeper is not None:
            self.zookeeper.stop()
        return codes

    def reads(self) -> dict[str, dict[int, PartitionRead]]:
        """Every replica of every partition from the stopped brokers' files."""
        reads: dict[str, dict[int, PartitionRead]] = {}
        for broker in self.broker_ids:
            partitions = {}
            for partition in range(self.partitions):
                records, high_watermark = replica_records(
                    self.directory / f"broker-{broker}", TOPIC, partition)
                partitions[partition] = PartitionRead(
                    [(offset, (value or b"").decode()) for offset, value in records],
                    high_watermark)
            reads[f"broker-{broker}"] = partitions
        return reads

    def close(self) -> None:
        """Kill whatever is still running (the clean stop comes first when all is well)."""
        for appliance in self.brokers.values():
            if appliance.process.poll() is None:
                appliance.kill()
        if self.zookeeper is not None:
            self.zookeeper.kill()


# --- the workload -----------------------------------------------------------------------------


class Workload:
    """Producer threads writing unique values to every partition in turn."""

    def __init__(self, cluster: Cluster, history: History, *, max_ops: int,
                 max_outstanding: int = 100, pause_s: float = 0.005):
        self.cluster, self.history = cluster, history
        self.max_ops, self.max_outstanding, self.pause_s = max_ops, max_outstanding, pause_s
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._produce, name="retrying", args=(True,), daemon=True),
            threading.Thread(target=self._produce, name="single-shot", args=(False,),
                             daemon=True)]
        self.errors: list[str] = []

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout_s: float = 90) -> None:
        """Stop invoking, wait for the outstanding writes (bounded by the delivery timeouts)."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout_s)

    def _producer(self, retrying: bool) -> Producer:
        if retrying:
            return Producer(self.cluster.bootstrap(), acks="all", linger_ms=2,
                            request_timeout_ms=5000, delivery_timeout_ms=30_000)
        return Producer(self.cluster.bootstrap(), acks="all", linger_ms=2,
                        enable_idempotence=False, request_timeout_ms=5000,
                        delivery_timeout_ms=10_000, retry_backoff_ms=60_000)

    def _produce(self, retrying: bool) -> None:
        name = threading.current_thread().name
        slots = threading.Semaphore(self.max_outstanding)
        partitions = self.cluster.partitions
        try:
            with self._producer(retrying) as producer:
                for n in range(self.max_ops):
                    if not self._take(slots):
                        break
                    self._send(producer, name, n, n % partitions, retrying, slots)
                    time.sleep(self.pause_s)  # pacing, so the brokers keep a core
                with contextlib.suppress(RinglogError):
                    producer.flush(60)
        except Exception as exc:  # a producer that dies must not pass silently
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")

    def _take(self, slots: threading.Semaphore) -> bool:
        """A slot for one more outstanding write; False once stopping."""
        while not self.stopping.is_set():
            if slots.acquire(timeout=0.2):
                if not self.stopping.is_set():
                    return True
                slots.release()
        return False

    def _send(self, producer: Producer, name: str, n: int, partition: int, retrying: bool,
              slots: threading.Semaphore) -> None:
        history = self.history
        operation = history.invoke(f"{name}-{n}", process=name, partition=partition)

        def done(future, operation: Operation = operation) -> None:
            try:
                error = future.exception(0)
                if error is None:
                    history.ok(operation, partition=partition, offset=future.result(0).offset)
                elif retrying:
                    history.info(operation, error_name(error))
                else:
                    history.complete_with_error(operation, error_name(error))
            finally:
                slots.release()

        try:
            future = producer.send(TOPIC, operation.value.encode(), partition=partition)
        except RinglogError as exc:  # refused before it was queued: never sent
            history.fail(operation, f"not queued: {error_name(exc)}")
            slots.release()
            return
        future.add_done_callback(done)


# --- the nemesis ------------------------------------------------------------------------------


@dataclass
class Nemesis:
    """The faults, each injected, held, healed and recorded as start and stop."""

    cluster: Cluster
    history: History
    network: NetworkNemesis
    processes: ProcessNemesis
    rng: random.Random
    unclean: bool = False
    hold_s: float = 4.0  # a cut or loss: longer than replica.lag.time.max.ms

    def inject(self, kind: str) -> None:
        getattr(self, kind.replace("-", "_"))()

    def _record(self, kind: str, detail: str, fault: Callable[[], object],
                heal: Callable[[], object]) -> None:
        """Start, fault, heal, stop; what the fault observed (a string it
        returns) goes into the stop event's detail."""
        self.history.nemesis_start(kind, detail)
        observed = None
        try:
            observed = fault()
        finally:
            heal()
            self.history.nemesis_stop(
                kind, f"{detail}; {observed}" if isinstance(observed, str) else detail)

    def _partition(self) -> int:
        return self.rng.randrange(self.cluster.partitions)

    def _others(self, broker: int) -> list[int]:
        return [b for b in self.cluster.broker_ids if b != broker]

    def _replaced(self, broker: int, partition: int) -> bool:
        """The survivors agree the partition has a leader other than `broker`."""
        views = self.cluster.views(self._others(broker))
        leaders = {view[partition]["leader"] for view in views.values() if view is not None}
        return len(leaders) == 1 and leaders.pop() not in (broker, -1)

    def kill_leader(self) -> None:
        """kill -9 of a partition leader's broker; restarted once it was replaced."""
        partition = self._partition()
        leader = self.cluster.leader_of(partition)

        def fault() -> None:
            self.cluster.kill(leader)
            wait_until(lambda: self._replaced(leader, partition), SESSION_S + 10)

        self._record("kill-leader", f"broker {leader}, leader of {partition}", fault,
                     lambda: self.cluster.restart(leader))

    def pause_broker(self) -> None:
        """SIGSTOP of a leader's broker (supervisor and workers) past its session."""
        partition = self._partition()
        leader = self.cluster.leader_of(partition)
        root = self.cluster.brokers[leader].process.pid

        def fault() -> None:
            self.processes.pause(root, tree=True)
            wait_until(lambda: self._replaced(leader, partition), SESSION_S + 10)

        self._record("pause-broker", f"broker {leader}, leader of {partition}", fault,
                     lambda: self.processes.resume(root, tree=True))

    def cut_leader(self) -> None:
        """A leader cut from its followers (not from ZooKeeper): its ISR shrinks
        below min.insync.replicas and it must refuse acks=all writes."""
        partition = self._partition()
        leader = self.cluster.leader_of(partition)
        others = [broker_host(b) for b in self._others(leader)]
        self._record("cut-leader", f"broker {leader}, leader of {partition}, from {others}",
                     lambda: (self.network.isolate(broker_host(leader), others),
                              time.sleep(self.hold_s)),
                     self.network.heal)

    def zombie_leader(self) -> None:
        """A leader cut from ZooKeeper and its followers, still reachable by
        clients: it is replaced, and must acknowledge nothing afterwards."""
        partition = self._partition()
        leader = self.cluster.leader_of(partition)
        others = [broker_host(b) for b in self._others(leader)] + [self.cluster.zookeeper_host]

        def fault() -> None:
            self.network.isolate(broker_host(leader), others)
            if wait_until(lambda: self._replaced(leader, partition), SESSION_S + 10):
                time.sleep(2)  # the zombie keeps taking client writes meanwhile

        self._record("zombie-leader", f"broker {leader}, leader of {partition}", fault,
                     self.network.heal)

    def cut_follower(self) -> None:
        """One follower cut from the other brokers until it leaves the ISR."""
        partition = self._partition()
        leader = self.cluster.leader_of(partition)
        follower = self.rng.choice(self._others(leader))
        others = [broker_host(b) for b in self._others(follower)]
        self._record("cut-follower", f"broker {follower}, follower of {partition}",
                     lambda: (self.network.isolate(broker_host(follower), others),
                              time.sleep(self.hold_s)),
                     self.network.heal)

    def packet_loss(self) -> None:
        """30% of one broker's packets dropped, each way, clients' too."""
        broker = self.rng.choice(self.cluster.broker_ids)
        self._record("packet-loss", f"broker {broker}, 30%",
                     lambda: (self.network.loss(broker_host(broker), 0.3),
                              time.sleep(self.hold_s)),
                     self.network.heal)

    def kill_worker(self) -> None:
        """kill -9 of one worker process; its supervisor is expected to replace it."""
        broker = self.rng.choice(self.cluster.broker_ids)
        appliance = self.cluster.brokers[broker]
        pids = appliance.worker_pids()
        if not pids:
            raise RunFailed(f"broker {broker} has no live worker to kill")
        victim = self.rng.choice(pids)

        def fault() -> None:
            self.processes.kill9(victim)
            if not wait_until(lambda: any(p != victim for p in appliance.worker_pids()), 30):
                raise RunFailed(f"broker {broker} did not replace its killed worker {victim}")

        self._record("kill-worker", f"broker {broker}, worker pid {victim}", fault, lambda: None)

    def restart_zookeeper(self) -> None:
        """ZooKeeper stopped and started again on its port and data."""
        zookeeper = self.cluster.zookeeper

        def heal() -> None:
            zookeeper.start()
            zookeeper.wait_until_serving()

        self._record("restart-zookeeper", zookeeper.connect, zookeeper.stop, heal)

    def stale_leader(self, partition: int = 0) -> None:
        """The sequence that loses acknowledged writes if an out-of-sync replica
        may lead, and loses nothing if it may not.

        A follower F is cut from the other two brokers (not from ZooKeeper)
        until the leader drops it from the ISR, and acks=all writes go on
        being acknowledged by the leader L and the other follower G. Then
        L and G are killed with kill -9 and the network healed: F, alive and
        registered, is the only replica left, and it lacks those writes.
        With unclean election F becomes leader at a new epoch; L and G,
        restarted, truncate to it, and the writes are gone. Without, the
        partition has no leader until L or G is back, and F catches up."""
        leader = self.cluster.leader_of(partition)
        follower = self.rng.choice(self._others(leader))
        third = next(b for b in self.cluster.broker_ids if b not in (leader, follower))
        detail = (f"partition {partition}: broker {follower} cut from {leader} and {third} "
                  f"until out of the ISR, then kill -9 of {leader} and {third}")

        def out_of_isr() -> bool:
            view = self.cluster.view(leader)
            return view is not None and follower not in view[partition]["isr"]

        def fault() -> None:
            self.network.isolate(broker_host(follower), [broker_host(leader),
                                                          broker_host(third)])
            if not wait_until(out_of_isr, LAG_MS / 1000 + 20):
                raise RunFailed(f"broker {follower} never left partition {partition}'s ISR")
            shrunk = len(self.history)
            if not wait_until(lambda: acknowledged_after(
                    self.history.entries(), shrunk, partition) >= 20, 30):
                raise RunFailed("no writes acknowledged by the shrunk ISR")
            self.cluster.kill(leader)
            self.cluster.kill(third)
            self.network.heal()
            alone = wait_until(lambda: self._alone(follower), SESSION_S + 15)
            if not alone:
                raise RunFailed(f"broker {follower} never saw {leader} and {third} gone")
            if self.unclean:
                if not wait_until(lambda: self._leads(follower, partition), 30):
                    raise RunFailed(f"unclean election never made {follower} the leader")
                return f"{follower} elected uncleanly"
            # Long enough for a wrong election to show; the checker judges it.
            if wait_until(lambda: self._leads(follower, partition), 2):
                return f"{follower} LED without being in the ISR"
            return f"no leader while {follower} was alone"

        self._record(STALE_LEADER, detail, fault,
                     lambda: (self.network.heal(), self.cluster.restart(
                         *(b for b in (leader, third) if not self.cluster.alive(b)))))

    def _alone(self, broker: int) -> bool:
        try:
            with Admin(self.cluster.brokers[broker].bootstrap, request_timeout_ms=1000) as admin:
                return [b["id"] for b in admin.describe_cluster()["brokers"]] == [broker]
        except (RinglogError, OSError):
            return False

    def _leads(self, broker: int, partition: int) -> bool:
        view = self.cluster.view(broker)
        return view is not None and view[partition]["leader"] == broker

    def heal_all(self) -> None:
        """Every fault undone: network, paused processes, dead brokers, ZooKeeper."""
        self.network.heal()
        self.processes.resume_all()
        zookeeper = self.cluster.zookeeper
        if zookeeper.process is None or zookeeper.process.poll() is not None:
            zookeeper.start()
            zookeeper.wait_until_serving()
        dead = [b for b in self.cluster.broker_ids if not self.cluster.alive(b)]
        if dead:
            self.cluster.restart(*dead)


# --- the run ----------------------------------------------------------------------------------


def run(directory: Path, *, faults: int, seconds: float, seed: int = 0, unclean: bool = False,
        stale_leader: bool = False, partitions: int = 3, interval_s: float = 2.0,
        recover_s: float = 30.0, final_s: float = 60.0, journal: Path | None = None,
        max_ops: int = 2_000_000,
        broker_ids: Sequence[int] = BROKERS, zookeeper_host: str = ZOOKEEPER_HOST,
        kinds: Sequence[str] = FAULT_KINDS, log: Callable[[str], None] = print) -> RunResult:
    """One whole run in `directory`; see the module's docstring."""
    began = time.monotonic()
    overrides = [f"replica.lag.time.max.ms={LAG_MS}"]
    if unclean:
        overrides.append("unclean.leader.election.enable=true")
    plan = plan_faults(faults, seed, kinds)
    if stale_leader or unclean:
        plan.append(STALE_LEADER)
    history = History(journal=journal)
    cluster = Cluster(directory, overrides, partitions, broker_ids, zookeeper_host)
    result_faults: Counter = Counter()
    recovery: list[float] = []
    not_recovered = skipped = 0
    try:
        with NetworkNemesis() as network, ProcessNemesis() as processes:
            cluster.start()
            if cluster.wait_whole(60) is None:
                raise RunFailed("the new topic never had leaders and full ISRs")
            workload = Workload(cluster, history, max_ops=max_ops)
            workload.start()
            nemesis = Nemesis(cluster, history, network, processes, random.Random(seed),
                              unclean=unclean)
            time.sleep(interval_s)  # writes before the first fault
            for number, kind in enumerate(plan, 1):
                if time.monotonic() - began > seconds and kind != STALE_LEADER:
                    if not skipped:
                        log(f"--seconds {seconds:.0f} reached after {number - 1} faults")
                    skipped += 1
                    continue
                nemesis.inject(kind)
                healed_at = len(history) - 1  # the fault's stop: it heals before returning
                result_faults[kind] += 1
                took = cluster.wait_whole(recover_s, min_isr=MIN_ISR)
                if took is None:
                    not_recovered += 1
                    log(f"fault {number} ({kind}): not taking writes again within "
                        f"{recover_s:.0f} s: {cluster.leaders()}")
                    nemesis.heal_all()
                else:
                    recovery.append(took)
                    # Whole is not yet writing: on a busy machine the producers may
                    # still be finding the new leaders when the next fault (or the
                    # end) comes, and the fault would look as if nothing followed it.
                    if not wait_until(lambda since=healed_at: acknowledged_after(
                            history.entries(), since), recover_s):
                        log(f"fault {number} ({kind}): no write acknowledged within "
                            f"{recover_s:.0f} s of its heal")
                log(f"{time.strftime('%H:%M:%S')} fault {number}/{len(plan)} {kind}: "
                    "taking writes again in "
                    f"{'-' if took is None else f'{took:.1f}'} s, "
                    f"{sum(1 for e in history.operations() if e.type == 'ok')} acknowledged")
                time.sleep(interval_s)  # calm: the producers write to a whole cluster
            nemesis.heal_all()
            healed = cluster.wait_whole(final_s)
            if healed is None:
                log(f"not whole {final_s:.0f} s after the final heal: {cluster.leaders()}")
            workload.stop()
            if workload.errors:
                raise RunFailed("; ".join(workload.errors))
            if cluster.wait_whole(final_s if healed is not None else 5, caught_up=True) is None:
                log(f"the replicas did not catch up after the writes stopped: {cluster.leaders()}")
            outside = outside_isr(cluster.leaders(), cluster.broker_ids)
            codes = cluster.stop()
        reads = cluster.reads()
        report = check(history, held_to_acks(reads, outside, lambda b: f"broker-{b}"))
        replicas = check([], reads)
    finally:
        cluster.close()
        history.close()
    healed_faults, followed = faults_followed_by_acks(history.entries())
    return RunResult(report, result_faults, healed_faults, followed, recovery, not_recovered,
                     codes, unclean, time.monotonic() - began, history, replicas, outside)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # through every finally: no chain, no broker left behind


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.fault_run", description=(
        "Faults against a real three-broker cluster, then a check of every replica."))
    parser.add_argument("--faults", type=int, default=20, help="random faults to inject")
    parser.add_argument("--seconds", type=float, default=600,
                        help="stop injecting random faults after this long")
    parser.add_argument("--unclean", action="store_true",
                        help="unclean leader election on, and the stale-leader scenario: "
                             "succeeds only if the checker reports loss")
    parser.add_argument("--stale-leader", action="store_true",
                        help="end with the stale-leader scenario (lossless without --unclean)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS),
                        help="the fault kinds to draw from, comma-separated")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="calm seconds after the cluster is whole again, between faults")
    parser.add_argument("--broker-ids", default="1,2,3",
                        help="broker N listens on 127.0.0.1N; 31,32,33 keeps clear of the tests")
    parser.add_argument("--zookeeper-host", default=ZOOKEEPER_HOST)
    parser.add_argument("--recover", type=float, default=30,
                        help="seconds a fault's heal may take to make every partition "
                             "take writes again")
    parser.add_argument("--dir", type=Path, help="where the cluster's data goes (kept)")
    parser.add_argument("--journal", type=Path, help="the history as JSON lines, as it happens")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if unknown := sorted(set(kinds) - set(FAULT_KINDS)):
        parser.error(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
    if os.geteuid() != 0:
        print("error: iptables needs root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="fault-run-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        result = run(directory, faults=args.faults, seconds=args.seconds, seed=args.seed,
                     unclean=args.unclean, stale_leader=args.stale_leader,
                     partitions=args.partitions, interval_s=args.interval,
                     journal=args.journal,
                     broker_ids=[int(b) for b in args.broker_ids.split(",")],
                     zookeeper_host=args.zookeeper_host, kinds=kinds,
                     recover_s=args.recover,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
    except RunFailed as exc:
        print(f"error: {exc}; data kept in {directory}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; data kept in {directory}", file=sys.stderr)
        return 130
    finally:
        harness.kill_leftovers()
        zookeeper_module.kill_leftovers()
    print(result.summary())
    if result.ok and args.dir is None:
        shutil.rmtree(directory, ignore_errors=True)
    elif not result.ok:
        print(f"data kept in {directory}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
