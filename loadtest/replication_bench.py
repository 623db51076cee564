"""The cost of a replica on this host (issue #10): W1 through a three-broker
cluster against W1 on one broker, side by side in one run.

    python -m loadtest.replication_bench [--records N] [--runs K] [--json F]

Why one run and not two benchmarks: the host is a shared two-core box
whose speed drifts by tens of percent from minute to minute, so a ratio
between runs made at different times says more about the other sessions
than about replication. Both setups are started once and stay up; each run
measures, in this order, single acks=1, cluster acks=1, single acks=all,
cluster acks=all, so that the noise of any minute hits both setups; the
ratio reported is the median of the per-run ratios.

- single: one broker (`python -m appliance serve`, no ZooKeeper, one
  worker, log.flush.policy=batch), as `loadtest.bench` runs W1.
- cluster: a ZooKeeper and three brokers on this host, each on a loopback
  address of its own, one worker each, the same flush policy; every topic
  has replication factor 3 and min.insync.replicas=2. acks=all is answered
  once the high watermark passes the batch, i.e. once every in-sync replica
  (all three while the ISR is full) has it durably (../shared/notes/replication.md,
  rule 8).

W1 is `loadtest.bench`'s judged setting: one idempotent Producer,
send_many() of 10,000 values of --value-bytes (100) a call, linger 5 ms,
batches of 1 MiB, to partition 0 of a one-partition topic made for the
measurement (a cluster topic is timed only once its ISR is full). Timed
from the first send_many() to flush() returning; a figure counts only if
no send failed and the leader's high watermark then covers every record.

Measured besides the rate: the produce acknowledgement latency of each
request (on the socket to its reply handled, the sender's own calls wrapped:
a bench-only peek at private methods, as loadtest.bench counts batches), the
CPU seconds of every process group over the timed interval (the client and
its threads, each broker's supervisor and worker and the worker's main
thread, ZooKeeper; the idle setup too, since it shares the cores), the time
their threads were runnable but waiting for a core (/proc schedstat), the
host's CPU and the disk's busy time, so that the bottleneck can be named
from figures. One record goes through each new topic untimed first (see
produce()); its ack time is reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from appliance.client import Admin, Producer
from appliance.client.producer import ManyFuture
from loadtest import harness
from loadtest import zookeeper as zookeeper_module
from loadtest.harness import (
    RUN_FAILURES,
    VALUE_POOL,
    Appliance,
    Deadline,
    MiB,
    NotEnoughSpace,
    fs_of,
    latency_summary,
    make_values,
    progress,
    stopped,
    table,
    work_directory,
)
from loadtest.zookeeper import ZooKeeperFailed, ZooKeeperServer
from shm.errors import RinglogError

MB = 1e6
BULK_CHUNK = 10_000  # values per send_many() call, as loadtest.bench's W1
LINGER_MS = 5
BATCH_SIZE = MiB
FLUSH_POLICY = "log.flush.policy=batch"  # an fdatasync before every acknowledgement
BROKER_IDS = (1, 2, 3)
# Addresses of this bench's own: the fault suites cut 127.0.0.11-13 and .41-43
# (and their ZooKeepers on .1, .2, .4) from one another with iptables, which
# would stall a cluster of ours on the same addresses while they run.
ZOOKEEPER_HOST = "127.0.0.70"
BROKER_HOST = "127.0.0.{}"  # broker N on 127.0.0.(70 + N)
# config/cluster's session: a broker of a busy two-core host starved for 2 s
# loses its session while alive, and the bench must not measure a failover.
SESSION_MS = 6000
MIN_INSYNC = "2"
SETUPS = ("single", "cluster")
ACKS = ("1", "all")
ORDER = tuple((setup, acks) for acks in ACKS for setup in SETUPS)  # single, cluster, ...


# --- the two setups ---------------------------------------------------------------


def broker_host(broker_id: int) -> str:
    return BROKER_HOST.format(70 + broker_id)


class Cluster:
    """ZooKeeper and three brokers, one worker each, data under `directory`."""

    def __init__(self, directory: Path, overrides: tuple[str, ...] = ()):
        self.directory = directory
        self.overrides = overrides
        self.zookeeper = ZooKeeperServer(directory / "zookeeper", host=ZOOKEEPER_HOST)
        self.brokers: dict[int, Appliance] = {}

    def start(self, timeout_s: float) -> None:
        self.zookeeper.wait_until_serving(timeout_s)
        connect = f"{self.zookeeper.connect}/replication-bench"
        for broker_id in BROKER_IDS:
            host = broker_host(broker_id)
            self.brokers[broker_id] = Appliance(
                self.directory / f"broker-{broker_id}", FLUSH_POLICY,
                f"zookeeper.connect={connect}", f"broker.id={broker_id}",
                f"zookeeper.session.timeout.ms={SESSION_MS}",
                f"replication.listener=tcp://{host}:{harness.free_port()}", *self.overrides,
                host=host)
        for broker in self.brokers.values():
            broker.wait_until_serving(timeout_s)
        deadline = Deadline("the cluster's start (three brokers and a controller)", timeout_s)
        with Admin(self.bootstrap, request_timeout_ms=2000) as admin:
            while True:
                with contextlib.suppress(RinglogError):
                    cluster = admin.describe_cluster()
                    if len(cluster["brokers"]) == len(BROKER_IDS) and \
                            cluster["controller_id"] in self.brokers:
                        return
                deadline.check("describe_cluster did not list three brokers and a controller")
                time.sleep(0.1)

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def create_topic(self, name: str, deadline: Deadline) -> int:
        """A one-partition topic, replication factor 3, min ISR 2, timed only
        once it has a leader and a full ISR; the leader's broker id."""
        with Admin(self.bootstrap, request_timeout_ms=5000) as admin:
            admin.create_topic(name, 1, replication_factor=len(BROKER_IDS),
                               configs={"min.insync.replicas": MIN_INSYNC})
            while True:
                with contextlib.suppress(RinglogError):
                    state = admin.describe_topic(name)["partitions"][0]
                    if state.get("leader", -1) in self.brokers and \
                            len(state.get("isr", ())) == len(BROKER_IDS):
                        return state["leader"]
                deadline.check(f"{name} had no leader with a full ISR")
                time.sleep(0.05)

    def isr(self, name: str) -> list[int]:
        with Admin(self.bootstrap, request_timeout_ms=5000) as admin:
            return list(admin.describe_topic(name)["partitions"][0].get("isr", ()))

    def stop(self) -> dict[str, int]:
        """SIGTERM each broker (controlled shutdown), then ZooKeeper; exit codes."""
        codes = {f"broker {i}": b.stop(60) for i, b in self.brokers.items()}
        self.zookeeper.stop()
        return codes


def high_watermark(bootstrap: str, topic: str) -> int:
    with Admin(bootstrap, request_timeout_ms=5000) as admin:
        return admin.describe_topic(topic)["partitions"][0]["high_watermark"]


# --- what is measured around a timed interval ----------------------------------------


@dataclass
class Measurement:
    setup: str  # single or cluster
    acks: str  # 1 or all
    run: int
    records: int
    value_bytes: int
    seconds: float
    leader: int | None  # the cluster topic's leader broker
    cpu_s: dict[str, float]  # process group -> CPU seconds over the timed interval
    threads_s: dict[str, float]  # client threads and worker main threads
    ack_ms: list[float]  # per produce request: on the socket -> reply handled
    disk: dict[str, float] = field(default_factory=dict)
    isr_after: list[int] | None = None
    load: float = 0.0
    first_ack_s: float = 0.0  # the untimed priming record, sent right after topic creation
    wait_s: dict[str, float] = field(default_factory=dict)  # group -> run-queue wait seconds

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def mbps(self) -> float:
        return self.rate * self.value_bytes / MB


def groups(single: Appliance, cluster: Cluster) -> dict[str, psutil.Process]:
    """Every process whose CPU is counted, by a stable label: the client (this
    process), each broker's supervisor and worker, ZooKeeper."""
    out = {"client": psutil.Process()}
    for name, appliance in named_brokers(single, cluster):
        with contextlib.suppress(psutil.Error):
            out[f"{name} supervisor"] = psutil.Process(appliance.process.pid)
        for n, pid in enumerate(appliance.worker_pids()):
            with contextlib.suppress(psutil.Error):
                out[f"{name} worker" + (f" {n}" if n else "")] = psutil.Process(pid)
    if cluster.zookeeper.process is not None:
        with contextlib.suppress(psutil.Error):
            out["zookeeper"] = psutil.Process(cluster.zookeeper.process.pid)
    return out


class Meter:
    """CPU of every group and of the threads that matter, and the disk's busy
    time, between start() and stop(). A worker restarted meanwhile (a new pid)
    is an error: its CPU would be lost and the figure would not be W1's."""

    def __init__(self, single: Appliance, cluster: Cluster, device: str):
        self.single, self.cluster, self.device = single, cluster, device
        self.thread_names: dict[int, str] = {}

    def _disk(self) -> dict[str, float]:
        """The device's counters and the whole host's CPU: other sessions share
        both, and a figure limited by them is not replication's."""
        host = psutil.cpu_times()
        out = {"host_busy_s": host.user + host.system + host.nice + host.irq + host.softirq
               + getattr(host, "steal", 0.0), "host_iowait_s": getattr(host, "iowait", 0.0)}
        counters = psutil.disk_io_counters(perdisk=True).get(self.device)
        if counters is not None:
            out.update({"busy_ms": float(getattr(counters, "busy_time", 0)),
                        "writes": float(counters.write_count),
                        "write_bytes": float(counters.write_bytes)})
        return out

    def _snapshot(self) -> tuple[dict[str, float], dict[str, float], dict[str, float],
                                 dict[str, float]]:
        cpu, threads, waits = {}, {}, {}
        for label, process in self.processes.items():
            waits[label] = run_queue_wait_s(process.pid)
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                cpu[label] = times.user + times.system
                if label == "client":
                    for t in process.threads():
                        name = self.thread_names.get(t.id, "client ZeroMQ I/O and other threads")
                        threads[name] = threads.get(name, 0.0) + t.user_time + t.system_time
                elif "worker" in label:
                    for t in process.threads():
                        if t.id == process.pid:
                            threads[f"{label} main thread"] = t.user_time + t.system_time
        return cpu, threads, self._disk(), waits

    def start(self, sender_thread: threading.Thread) -> None:
        self.processes = groups(self.single, self.cluster)
        self.thread_names = {threading.main_thread().native_id: "client caller thread",
                             sender_thread.native_id: "client sender thread"}
        self._before = self._snapshot()

    def stop(self) -> tuple[dict[str, float], dict[str, float], dict[str, float],
                            dict[str, float]]:
        """Deltas of (CPU s by group, thread CPU s, disk and host, run-queue wait s)."""
        after = self._snapshot()
        now = groups(self.single, self.cluster)
        changed = [label for label, p in self.processes.items()
                   if label not in now or now[label].pid != p.pid]
        if changed:
            raise RuntimeError(f"processes exited during the timed interval: {changed}")
        return tuple({k: v - before.get(k, 0.0) for k, v in now_.items()}
                     for before, now_ in zip(self._before, after, strict=True))


def run_queue_wait_s(pid: int) -> float:
    """Seconds the threads of `pid` have spent runnable but waiting for a core
    (the second field of /proc/PID/task/TID/schedstat): on a shared two-core
    host, what tells waiting for the CPU apart from waiting for a peer."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError), \
                    open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
    return total / 1e9


def time_acks(producer: Producer) -> list[float]:
    """Wrap the sender's _send_one and _on_reply to time each produce request
    from the socket to its reply (ms); the list fills as replies come."""
    sender = producer._sender
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    send_one, on_reply = sender._send_one, sender._on_reply

    def timed_send(network, endpoint, sending, in_flight):
        sent_at[id(sending)] = time.perf_counter()
        return send_one(network, endpoint, sending, in_flight)

    def timed_reply(batches, response, error):
        began = sent_at.pop(id(batches), None)
        if began is not None and error is None:
            latencies.append((time.perf_counter() - began) * 1000)
        return on_reply(batches, response, error)

    sender._send_one, sender._on_reply = timed_send, timed_reply
    return latencies


# --- W1 ---------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, records: int, value_bytes: int, acks: str,
            meter: Meter, deadline: Deadline
            ) -> tuple[float, dict, dict, dict, dict, list[float], float]:
    """One W1: (seconds, cpu, threads, disk, run-queue waits, ack latencies,
    the untimed first record's ack in s); raises if any send failed."""
    values = make_values(value_bytes, seed=len(topic))
    chunk = [values[i & (VALUE_POOL - 1)] for i in range(min(BULK_CHUNK, records))]
    producer = Producer(bootstrap, acks=acks, linger_ms=LINGER_MS, batch_size=BATCH_SIZE,
                        request_timeout_ms=30_000)
    try:
        producer.partitions_for_topic(topic)  # untimed: metadata, routes, the producer id
        producer._sender._identity()
        # Untimed: one record through the whole path first. A full ISR in
        # describe_topic does not mean the followers fetch the new partition
        # yet: the first acks=all batch of a new topic waited up to ~1 s (two
        # replica.fetch.wait.max.ms) for their first fetch of it, which is
        # topic creation's cost, not W1's. Its ack time is kept.
        primed = time.perf_counter()
        producer.send(topic, chunk[0], partition=0).result(timeout=max(1.0, deadline.remaining()))
        first_ack_s = time.perf_counter() - primed
        acked = time_acks(producer)
        futures: list[ManyFuture] = []
        meter.start(producer._sender_thread)
        began = time.perf_counter()
        for start in range(0, records, BULK_CHUNK):
            futures.append(producer.send_many(topic, chunk[:records - start], partition=0))
            deadline.check(f"{start:,} of {records:,} records sent")
        producer.flush(timeout=max(1.0, deadline.remaining()))
        seconds = time.perf_counter() - began
        cpu, threads, disk, waits = meter.stop()
        for future in futures:
            error = future.exception(0)
            if error is not None:
                raise RuntimeError(f"{topic}: a send failed: {type(error).__name__}: {error}")
    finally:
        producer.close(timeout=10)
    return seconds, cpu, threads, disk, waits, acked, first_ack_s


def wait_stored(bootstrap: str, topic: str, records: int, deadline: Deadline) -> None:
    """The leader's high watermark reaches `records` (at once for acks=all;
    after the followers' next fetch for acks=1). Untimed."""
    while (stored := high_watermark(bootstrap, topic)) != records:
        if stored > records:
            raise RuntimeError(f"{topic}: {stored:,} records stored, {records:,} sent")
        deadline.check(f"{topic}: high watermark {stored:,} of {records:,}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Options:
    records: int
    runs: int
    value_bytes: int
    timeout: float
    warmup: int
    broker_overrides: tuple[str, ...] = ()  # KEY=VALUE for the cluster's brokers (experiments)


def measure_all(o: Options, workdir: Path, say: Callable[[str], None]
                ) -> tuple[list[Measurement], dict]:
    """Start both setups, run K interleaved rounds, stop both; the
    measurements and what the brokers logged that looks wrong."""
    for name in ("single", *(f"cluster/broker-{i}" for i in BROKER_IDS)):
        (workdir / name).mkdir(parents=True)
    single = Appliance(workdir / "single", FLUSH_POLICY)
    cluster = Cluster(workdir / "cluster", o.broker_overrides)
    results: list[Measurement] = []
    stopped_cleanly = False
    try:
        say("starting one broker, ZooKeeper and three brokers")
        single.wait_until_serving(60)
        cluster.start(60)
        meter = Meter(single, cluster, fs_of(workdir)[1].rsplit("/", 1)[-1])
        leaders: dict[str, int | None] = {}

        def one(setup: str, acks: str, run: int, records: int) -> Measurement:
            topic = f"w1-{setup}-acks{acks}-{run}"
            deadline = Deadline(f"{setup} acks={acks} run {run}", o.timeout)
            if setup == "single":
                single.create_topic(topic, deadline)
                bootstrap, leader, leader_bootstrap = single.bootstrap, None, single.bootstrap
            else:
                leader = cluster.create_topic(topic, deadline)
                bootstrap, leader_bootstrap = cluster.bootstrap, cluster.brokers[leader].bootstrap
            leaders[topic] = leader
            seconds, cpu, threads, disk, waits, acked, first_ack_s = produce(
                bootstrap, topic, records, o.value_bytes, acks, meter, deadline)
            wait_stored(leader_bootstrap, topic, records + 1, deadline)  # the priming record too
            return Measurement(setup, acks, run, records, o.value_bytes, seconds, leader, cpu,
                               threads, acked, disk,
                               cluster.isr(topic) if setup == "cluster" else None,
                               os.getloadavg()[0], first_ack_s, waits)

        if o.warmup:
            for setup, acks in ORDER:
                say(f"warm-up: {setup} acks={acks}, {o.warmup:,} records")
                one(setup, acks, 0, o.warmup)
        for run in range(1, o.runs + 1):
            for setup, acks in ORDER:
                say(f"run {run}/{o.runs}: {setup} acks={acks}, {o.records:,} records")
                results.append(one(setup, acks, run, o.records))
        say("stopping the brokers and ZooKeeper")
        measured = log_lengths(single, cluster)
        codes = {"single": single.stop(60), **cluster.stop()}
        stopped_cleanly = True
        logs = broker_log_findings(single, cluster, measured)
        bad = {k: c for k, c in codes.items() if c != 0}
        if bad:
            raise RuntimeError(f"brokers exited with {bad} after SIGTERM (expected 0):\n"
                               + "\n".join(logs["tails"].get(k, "") for k in bad))
        return results, {"exit_codes": codes, **logs}
    finally:
        if not stopped_cleanly:
            print_broker_tails(single, cluster)
            harness.kill_leftovers()
            zookeeper_module.kill_leftovers()


SUSPECT = ("Traceback", "ERROR", "Error", "lost its session", "shrink", "expired",
           "NOT_ENOUGH_REPLICAS", "REQUEST_TIMED_OUT")


def named_brokers(single: Appliance, cluster: Cluster) -> list[tuple[str, Appliance]]:
    return [("single", single), *((f"broker {i}", b) for i, b in cluster.brokers.items())]


def log_lengths(single: Appliance, cluster: Cluster) -> dict[str, int]:
    """Lines each broker had logged when the measurements ended."""
    return {name: len(a.stderr().splitlines()) for name, a in named_brokers(single, cluster)}


def broker_log_findings(single: Appliance, cluster: Cluster, measured: dict[str, int]) -> dict:
    """Lines of the brokers' appliance.log that say something went wrong
    (tracebacks, errors, ISR shrinks, lost sessions), apart for those logged
    while measuring and during the shutdown: the evidence for a misbehaving
    cluster, kept in the report and the JSON."""
    suspect, at_stop, tails = {}, {}, {}
    for name, appliance in named_brokers(single, cluster):
        lines = appliance.stderr().splitlines()
        cut = measured.get(name, len(lines))
        suspect[name] = [line for line in lines[:cut] if any(s in line for s in SUSPECT)][:40]
        at_stop[name] = [line for line in lines[cut:] if any(s in line for s in SUSPECT)][:40]
        tails[name] = appliance.stderr_tail(30)
    return {"suspect_log_lines": suspect, "suspect_at_stop": at_stop, "tails": tails}


def print_broker_tails(single: Appliance, cluster: Cluster) -> None:
    """On a failure, before the work directory goes: each broker's last lines."""
    for name, appliance in named_brokers(single, cluster):
        tail = appliance.stderr_tail(30)
        if tail:
            print(f"--- {name}: last lines of {appliance.stderr_path} ---\n{tail}",
                  file=sys.stderr)


# --- report -----------------------------------------------------------------------


def role_cpu(m: Measurement) -> dict[str, float]:
    """A measurement's CPU seconds by role: the leader and the followers of a
    cluster topic, the other setup idle."""
    cpu = m.cpu_s
    out = {"client": cpu.get("client", 0.0)}
    if m.setup == "single":
        out["broker supervisor"] = cpu.get("single supervisor", 0.0)
        out["broker worker"] = cpu.get("single worker", 0.0)
        out["followers"] = 0.0
        out["zookeeper"] = 0.0
        idle = [k for k in cpu if k.startswith("broker ") or k == "zookeeper"]
    else:
        out["broker supervisor"] = cpu.get(f"broker {m.leader} supervisor", 0.0)
        out["broker worker"] = cpu.get(f"broker {m.leader} worker", 0.0)
        out["followers"] = sum(v for k, v in cpu.items() if k.startswith("broker ")
                               and not k.startswith(f"broker {m.leader} "))
        out["zookeeper"] = cpu.get("zookeeper", 0.0)
        idle = [k for k in cpu if k.startswith("single ")]
    out["other setup, idle"] = sum(cpu[k] for k in idle)
    out["total"] = sum(cpu.values())
    return out


def role_waits(m: Measurement) -> dict[str, float]:
    """Run-queue wait seconds by role, as role_cpu groups CPU."""
    return role_cpu(dataclasses.replace(m, cpu_s=m.wait_s))


def follower_split(m: Measurement) -> str:
    """Each follower's worker / supervisor CPU share, e.g. '41% / 4%, 39% / 4%'."""
    parts = []
    for i in BROKER_IDS:
        if i != m.leader:
            parts.append(f"{m.cpu_s.get(f'broker {i} worker', 0) / m.seconds:.0%} / "
                         f"{m.cpu_s.get(f'broker {i} supervisor', 0) / m.seconds:.0%}")
    return ", ".join(parts)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / median(values) if values and median(values) else 0.0


def ratios(results: list[Measurement], a: tuple[str, str], b: tuple[str, str]) -> list[float]:
    """records/s of a over records/s of b, run by run."""
    by = {(m.setup, m.acks, m.run): m.rate for m in results}
    runs = sorted({m.run for m in results})
    return [by[(*a, r)] / by[(*b, r)] for r in runs if (*a, r) in by and (*b, r) in by]


def report(o: Options, workdir: Path, results: list[Measurement], logs: dict,
           load: tuple[float, float], elapsed: float) -> str:
    fstype, device, mount = fs_of(workdir)
    out = [
        "Ringlog replication bench (issue #10): W1 on one broker and through three brokers, "
        "this host",
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Linux {platform.release()}; load average {load[0]:.2f} at start, {load[1]:.2f} at end",
        f"  data in {workdir} on {fstype} ({device} at {mount}); flush policy batch "
        "(fdatasync before every ack) on every broker",
        f"  W1: one idempotent Producer, send_many of {BULK_CHUNK:,} values of "
        f"{o.value_bytes} B a call, linger {LINGER_MS} ms, batch 1 MiB, partition 0 of a "
        f"one-partition topic; {o.records:,} records a measurement, {o.runs} run(s), each: "
        + ", ".join(f"{s} acks={a}" for s, a in ORDER),
        "  single: one broker, no ZooKeeper, 1 worker. cluster: ZooKeeper + 3 brokers on "
        f"{broker_host(1)}-{BROKER_IDS[-1] + 70}, 1 worker each, replication factor 3, "
        f"min.insync.replicas {MIN_INSYNC}, timed once the ISR is full"
        + (f"; cluster brokers also: {', '.join(o.broker_overrides)}"
           if o.broker_overrides else ""),
        "",
    ]
    runs = sorted({m.run for m in results})
    rows = []
    for setup, acks in sorted(ORDER, key=lambda k: (SETUPS.index(k[0]), ACKS.index(k[1]))):
        ms = [m for m in results if (m.setup, m.acks) == (setup, acks)]
        rates = [m.rate for m in ms]
        ack = latency_summary([x for m in ms for x in m.ack_ms], (("p50", 0.5), ("p99", 0.99)))
        n = sum(len(m.ack_ms) for m in ms)
        rows.append([setup, f"acks={acks}", *(f"{r:,.0f}" for r in rates),
                     f"{median(rates):,.0f}", f"{spread(rates):.0%}",
                     f"{median([m.mbps for m in ms]):,.1f}",
                     f"{ack['p50']:.1f} / {ack['p99']:.1f} ({n})"])
    out.append("records/s by run; spread = (max - min) / median; ack = produce request on the "
               "socket -> reply, all runs pooled (requests)")
    out.append(table(rows, ["setup", "acks", *(f"run {r}" for r in runs), "median", "spread",
                            "MB/s", "ack ms p50 / p99 (n)"], text_columns=2))
    out.append("")
    out.append("CPU over the timed interval, share of one core (100% = a core, this host has "
               f"{os.cpu_count()}), median over runs; broker = the single broker or the "
               "cluster topic's leader")
    cpu_rows = []
    for setup, acks in sorted(ORDER, key=lambda k: (SETUPS.index(k[0]), ACKS.index(k[1]))):
        ms = [m for m in results if (m.setup, m.acks) == (setup, acks)]
        shares = [{k: v / m.seconds for k, v in role_cpu(m).items()} for m in ms]
        threads = [{k: v / m.seconds for k, v in m.threads_s.items()} for m in ms]
        leader_main = [t.get(f"broker {m.leader} worker main thread" if m.setup == "cluster"
                             else "single worker main thread", 0.0)
                       for m, t in zip(ms, threads, strict=True)]
        disk = [m.disk["busy_ms"] / 1000 / m.seconds for m in ms if "busy_ms" in m.disk]
        host = [m.disk.get("host_busy_s", 0.0) / m.seconds for m in ms]
        per_record = [role_cpu(m)["total"] / m.records * 1e6 for m in ms]

        def med(key: str, shares: list[dict[str, float]] = shares) -> str:
            return f"{median([s[key] for s in shares]):.0%}"

        def thread(name: str, threads: list[dict[str, float]] = threads) -> str:
            return f"{median([t.get(name, 0.0) for t in threads]):.0%}"

        cpu_rows.append([
            setup, f"acks={acks}", med("client"),
            f"{thread('client caller thread')} / {thread('client sender thread')} / "
            f"{thread('client ZeroMQ I/O and other threads')}",
            med("broker worker"), f"{median(leader_main):.0%}", med("broker supervisor"),
            med("followers") if setup == "cluster" else "-",
            follower_split(ms[len(ms) // 2]) if setup == "cluster" else "-",
            med("zookeeper") if setup == "cluster" else "-",
            med("other setup, idle"), med("total"), f"{median(per_record):.1f}",
            f"{median(host):.0%}", f"{median(disk):.0%}" if disk else "-"])
    out.append(table(cpu_rows, [
        "setup", "acks", "client", "caller/sender/zmq", "broker worker", "its main thread",
        "broker sup.", "followers", "each: worker / sup.", "zookeeper", "idle setup",
        "total", "CPU µs/record", "host CPU", "disk busy"], text_columns=2))
    out.append("  (each follower's split is from the median run's measurement; host CPU and "
               "disk busy count every process on the host, other sessions' too)")
    out.append("")
    out.append("Waiting for a core (run-queue wait of every thread, /proc schedstat) over the "
               "timed interval, share of one core, median over runs")
    wait_rows = []
    for setup, acks in sorted(ORDER, key=lambda k: (SETUPS.index(k[0]), ACKS.index(k[1]))):
        ms = [m for m in results if (m.setup, m.acks) == (setup, acks)]
        shares = [{k: v / m.seconds for k, v in role_waits(m).items()} for m in ms]
        wait_rows.append([setup, f"acks={acks}",
                          *(f"{median([s[k] for s in shares]):.0%}" if setup == "cluster"
                            or k not in ("followers", "zookeeper") else "-"
                            for k in ("client", "broker worker", "broker supervisor",
                                      "followers", "zookeeper"))])
    out.append(table(wait_rows, ["setup", "acks", "client", "broker worker", "broker sup.",
                                 "followers", "zookeeper"], text_columns=2))
    out.append("")
    out.append("Ratios, records/s, median of the per-run ratios (each run's figures)")
    for what, a, b in (("cluster / single, acks=all", ("cluster", "all"), ("single", "all")),
                       ("cluster / single, acks=1", ("cluster", "1"), ("single", "1")),
                       ("cluster acks=all / cluster acks=1", ("cluster", "all"),
                        ("cluster", "1")),
                       ("single acks=all / single acks=1", ("single", "all"), ("single", "1"))):
        rs = ratios(results, a, b)
        out.append(f"  {what:<34} {median(rs):.2f}  ({', '.join(f'{r:.2f}' for r in rs)})")
    out.append("")
    isr = [m.isr_after for m in results if m.setup == "cluster"]
    short = sum(1 for i in isr if i is not None and len(i) < len(BROKER_IDS))
    out.append(f"Cluster ISR after each measurement: {len(isr) - short} of {len(isr)} full"
               + ("" if not short else f" ({short} short: see the JSON and broker logs)"))
    firsts = []
    for setup, acks in ORDER:
        ms = [m.first_ack_s * 1000 for m in results if (m.setup, m.acks) == (setup, acks)]
        firsts.append(f"{setup} acks={acks} {median(ms):.0f} (max {max(ms, default=0):.0f})")
    out.append("Untimed first record of each new topic, ack ms median: " + "; ".join(firsts))
    leaders = sorted({m.leader for m in results if m.leader is not None})
    out.append(f"Leaders of the cluster topics: brokers {', '.join(map(str, leaders))}")
    for key, when in (("suspect_log_lines", "while measuring"), ("suspect_at_stop",
                                                                 "during the shutdown")):
        suspect = {k: v for k, v in logs.get(key, {}).items() if v}
        if suspect:
            out.append(f"Broker log lines that look wrong, {when} (first of each):")
            out += [f"  {name}: {len(lines)} line(s); first: {lines[0][:160]}"
                    for name, lines in suspect.items()]
        else:
            out.append(f"Broker logs {when}: no tracebacks, errors, ISR shrinks or lost "
                       "sessions")
    out.append(f"  total time {elapsed:.1f} s")
    return "\n".join(out)


# --- main -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.replication_bench",
        description="W1 (one producer, 100 B records) on one broker against W1 through a "
        "three-broker cluster on this host (replication factor 3, min ISR 2), acks=1 and "
        "acks=all, interleaved in one run.")
    parser.add_argument("--records", type=int, default=300_000,
                        help="records per measurement (default 300,000)")
    parser.add_argument("--runs", type=int, default=3,
                        help="rounds of the four measurements (default 3)")
    parser.add_argument("--value-bytes", type=int, default=100, help="value size (100)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed records per setup and acks before the first run "
                        "(default min(records, 20,000); 0: none)")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds one measurement may take, topic creation included (300)")
    parser.add_argument("--broker-override", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for the three cluster brokers (repeatable), for "
                        "experiments such as replica.fetch.max.bytes=5242880")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write every measurement to PATH as JSON")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the temporary data directory (default ./.bench; a "
                        "disk filesystem, not tmpfs, or fdatasync costs nothing)")
    args = parser.parse_args(argv)
    if not 1 <= args.records <= 100_000_000:
        parser.error("--records must be between 1 and 100,000,000")
    if not 1 <= args.runs <= 100:
        parser.error("--runs must be between 1 and 100")
    if not 8 <= args.value_bytes <= 100_000:
        parser.error("--value-bytes must be between 8 and 100,000")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    warmup = min(args.records, 20_000) if args.warmup is None else args.warmup
    if warmup < 0:
        parser.error("--warmup must be 0 or more")
    if any("=" not in item for item in args.broker_override):
        parser.error("--broker-override takes KEY=VALUE")
    return args, Options(args.records, args.runs, args.value_bytes, args.timeout, warmup,
                         tuple(args.broker_override))


def main(argv: list[str] | None = None) -> int:
    args, o = parse_args(argv)
    # every record on four logs (single, three replicas) per measurement, twice over
    need = (o.runs * 2 * o.records + 8 * o.warmup) * (o.value_bytes + 64) * 4 + (1 << 30)
    try:
        with work_directory(args.dir, "replication-", need) as workdir:
            load0 = os.getloadavg()[0]
            began = time.perf_counter()
            try:
                results, logs = measure_all(o, workdir, progress)
            except (*RUN_FAILURES, ZooKeeperFailed) as exc:
                return stopped(exc)
            progress("")
            print(report(o, workdir, results, logs, (load0, os.getloadavg()[0]),
                         time.perf_counter() - began))
            if args.json:
                args.json.write_text(json.dumps({
                    "options": asdict(o),
                    "machine": harness.machine(workdir),
                    "measurements": [{**asdict(m), "records_per_s": m.rate, "mb_per_s": m.mbps,
                                      "cpu_by_role_s": role_cpu(m)} for m in results],
                    "brokers": logs,
                }, indent=2) + "\n")
    except NotEnoughSpace as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
