"""python -m loadtest.peers: install what the chosen peers need, then for each
peer in turn start it, run the workloads, stop it and remove its data, and
print one table comparing them with Ringlog; with --runs N all of that N times
back to back, each run's table as it ends, then the runs side by side."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.harness import MiB, NotEnoughSpace, progress, work_directory
from loadtest.peers import install
from loadtest.peers.nats_jetstream import NatsJetStream
from loadtest.peers.peer import Peer, PeerUnavailable
from loadtest.peers.rabbitmq_streams import RabbitMQStreams
from loadtest.peers.redis_streams import RedisStreams
from loadtest.peers.report import closing, heading, run_report, write_json
from loadtest.peers.ringlog import Ringlog
from loadtest.peers.workload import (
    VALUE_BYTES,
    W4_VALUE_BYTES,
    WORKLOADS,
    Deadline,
    Measurement,
    Plan,
    Run,
    deadline_for,
)

PEERS: dict[str, Callable[[], Peer]] = {
    "ringlog": Ringlog,
    "redis-always": lambda: RedisStreams("always"),
    "redis-everysec": lambda: RedisStreams("everysec"),
    "nats": NatsJetStream,
    "rabbitmq": RabbitMQStreams,
}
STREAMS = {"W1": "peers-w1", "W3": "peers-w3", "W4": "peers-w4"}  # W2 reads W1's
MAX_RUNS = 100  # a full run takes 6-14 minutes here: 100 is most of a day
# Redis with appendfsync always took 244 s for W4 on this host under load (one fsync per
# 16 KiB it reads from the connection): 300 s, the appliance bench's bound, is too tight.
TIMEOUT_S = 600.0


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Plan, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.peers",
        description="Compare Ringlog with Redis Streams, NATS JetStream and RabbitMQ streams "
        "on the same workloads: W1 produce 100 B records, W2 read them back, W3 end-to-end "
        "latency at a fixed rate, W4 produce 1 KiB records. Installs missing Debian packages "
        "(apt-get) and Python clients (the `peers` extra); every server runs on 127.0.0.1 "
        "with a random port and a temporary data directory, removed at the end.")
    parser.add_argument("--records", type=int, default=None,
                        help="records in W1, W2 and W4 (default 1,000,000; --quick 2,000)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated subset of {','.join(PEERS)} (default all)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated subset of W1,W2,W3,W4 (default all)")
    parser.add_argument("--rate", type=int, default=None,
                        help="W3 records per second (default 5,000; --quick 1,000)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="W3 duration in seconds (default 10; --quick 1)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help=f"seconds one workload may take on one peer (default {TIMEOUT_S:.0f})")
    parser.add_argument("--runs", type=int, default=1,
                        help="run the whole comparison N times back to back and show the "
                        "runs side by side with their spread (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 records, W3 at 1,000/s for 1 s")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write every figure to PATH as JSON")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the temporary data directories (default ./.bench; a "
                        "disk filesystem, not tmpfs, where fsync costs nothing)")
    args = parser.parse_args(argv)
    records = args.records if args.records is not None else (2_000 if args.quick else 1_000_000)
    rate = args.rate if args.rate is not None else (1_000 if args.quick else 5_000)
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 10.0)
    workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    if not workloads or any(w not in WORKLOADS for w in workloads):
        parser.error(f"--workloads takes a subset of {','.join(WORKLOADS)}, not "
                     f"{args.workloads!r}")
    names = [p.strip().lower() for p in args.peers.split(",") if p.strip()]
    if not names or any(p not in PEERS for p in names) or len(set(names)) != len(names):
        parser.error(f"--peers takes a subset of {','.join(PEERS)}, not {args.peers!r}")
    if not 1 <= records <= 100_000_000:
        parser.error("--records must be between 1 and 100,000,000")
    if not 1 <= rate <= 1_000_000 or not 0.1 <= seconds <= 3600:
        parser.error("--rate must be 1..1,000,000 and --seconds 0.1..3600")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs must be between 1 and {MAX_RUNS}")
    plan = Plan(records=records, rate=rate, seconds=seconds, timeout=args.timeout,
                workloads=tuple(w for w in WORKLOADS if w in workloads), runs=args.runs)
    return args, plan, names


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def prepare(peer: Peer, say: Callable[[str], None]) -> None:
    """Install the peer's Debian packages and Python client if missing."""
    install.install_debian_packages(list(peer.debian_packages), say)
    install.install_python_clients(list(peer.python_modules), say)


def steps(peer: Peer, plan: Plan) -> list[tuple[str, str]]:
    """(workload, producer call) in run order: a W1 step per call the peer reports."""
    return [(workload, call) for workload in plan.workloads
            for call in (peer.producer_calls if workload == "W1" else ("",))]


def w1_stream(call: str) -> str:
    """Each W1 call writes a stream of its own."""
    return f"{STREAMS['W1']}-{call.replace('_', '-')}" if call else STREAMS["W1"]


def run_workload(peer: Peer, workload: str, call: str, plan: Plan,
                 deadline: Deadline) -> Measurement:
    if workload == "W1":
        return peer.produce("W1", w1_stream(call), plan.records, VALUE_BYTES, deadline, call)
    if workload == "W2":  # the last W1 call's stream (Ringlog: send_many's)
        return peer.consume(w1_stream(peer.producer_calls[-1]), plan.records, VALUE_BYTES,
                            deadline)
    if workload == "W3":
        return peer.latency(STREAMS["W3"], plan.rate, plan.seconds, VALUE_BYTES, deadline)
    return peer.produce("W4", STREAMS["W4"], plan.records, W4_VALUE_BYTES, deadline)


def not_run(peer: Peer, pending: list[tuple[str, str]], first: str,
            rest: str) -> list[Measurement]:
    """Failed rows for steps that did not run: `first` on the first, `rest` on the others."""
    return [Measurement(w, peer.name, error=first if i == 0 else rest, call=call)
            for i, (w, call) in enumerate(pending)]


def run_peer(peer: Peer, plan: Plan, workdir: Path) -> list[Measurement]:
    """Start the peer, run the plan's workloads, stop it and remove its data,
    whatever happens. A failed workload ends this peer's run (its state is
    unknown) and is reported in the table; the next peer still runs."""
    results: list[Measurement] = []
    peer_dir = workdir / peer.name
    peer_dir.mkdir()
    pending = steps(peer, plan)
    try:
        progress(f"{peer.name}: starting")
        peer.start(peer_dir)
        if "W2" in plan.workloads and "W1" not in plan.workloads:  # W2 reads W1's records
            progress(f"{peer.name}: writing {plan.records:,} records for W2")
            run_workload(peer, "W1", peer.producer_calls[-1], plan,
                         deadline_for("W2 (writing its records)", peer.name, plan))
        while pending:
            workload, call = pending[0]
            name = f"{workload} ({call})" if call else workload
            progress(f"{peer.name}: {name}")
            results.append(run_workload(peer, workload, call, plan,
                                        deadline_for(name, peer.name, plan)))
            pending.pop(0)
    except Exception as exc:  # any client's error: reported as one line, next peer runs
        if "\n" in str(exc):  # a server's log tail: shown now, its directory goes next
            progress("")
            print(f"{peer.name}: {exc}", file=sys.stderr)
        results += not_run(peer, pending, one_line(exc), "not run: an earlier workload failed")
    finally:
        progress(f"{peer.name}: stopping")
        try:
            peer.stop()
        finally:
            shutil.rmtree(peer_dir, ignore_errors=True)
    return results


def space_needed(plan: Plan, peers: list[Peer]) -> int:
    """Bytes one peer at a time may write (each peer's data is removed before the
    next); a peer with several W1 calls writes a W1 stream per call."""
    if not peers:
        return 0
    per_record = 0
    if "W1" in plan.workloads or "W2" in plan.workloads:
        per_record += (VALUE_BYTES + 100) * max(len(p.producer_calls) for p in peers)
    if "W4" in plan.workloads:
        per_record += W4_VALUE_BYTES + 100
    return 2 * plan.records * per_record + 512 * MiB


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM. A KeyboardInterrupt, so that asyncio re-raises it out of a
    client's task instead of keeping it there."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupted(signum: int, frame: object) -> None:
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # no "exception never retrieved"
    raise Interrupted(signum)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise Interrupted wherever the main thread is, also inside
    asyncio.run (whose own Ctrl-C handling cancels a task, and nats-py turns that
    cancellation into an ordinary error); every `finally` then stops its peer.
    SIGUSR1 prints every thread's stack to stderr and goes on: where a run that
    seems stuck is (the smoke test asks before it gives up on one)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupted)
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def main(argv: list[str] | None = None) -> int:
    args, plan, names = parse_args(argv)
    stop_on_signals()
    try:
        return compare(args, plan, names)
    except KeyboardInterrupt as exc:
        progress("")
        name = exc.args[0] if isinstance(exc, Interrupted) else "SIGINT"
        print(f"interrupted ({name}): every peer started was stopped and its data removed",
              file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)


def run_once(peers: list[Peer], blocked: list[Measurement], plan: Plan, workdir: Path,
             names: list[str]) -> Run:
    """One pass of the comparison: every ready peer in turn."""
    load0 = os.getloadavg()[0]
    began = time.perf_counter()
    measurements = list(blocked)
    for peer in peers:
        measurements += run_peer(peer, plan, workdir)
    progress("")
    measurements.sort(key=lambda m: names.index(m.peer))  # stable: W1 calls keep their order
    return Run(measurements, (load0, os.getloadavg()[0]), time.perf_counter() - began)


def compare(args: argparse.Namespace, plan: Plan, names: list[str]) -> int:
    """Install, run every peer --runs times, print the tables; the exit status."""
    peers = [PEERS[name]() for name in names]
    blocked: list[Measurement] = []
    ready = []
    for peer in peers:
        try:
            prepare(peer, progress)
            ready.append(peer)
        except PeerUnavailable as exc:
            blocked += not_run(peer, steps(peer, plan), f"blocked: {one_line(exc)}",
                               "not run: the peer is blocked")
    runs: list[Run] = []
    try:
        with work_directory(args.dir, "peers-", space_needed(plan, ready)) as workdir:
            stop_on_signals()  # work_directory installed its own SIGTERM handler
            began = time.perf_counter()
            print(heading(plan, workdir), flush=True)
            for number in range(1, plan.runs + 1):
                runs.append(run_once(ready, blocked, plan, workdir, names))
                print("\n" + run_report(plan, runs[-1], number), flush=True)
            print("\n" + closing(plan, peers, runs, time.perf_counter() - began))
            if args.json:
                write_json(args.json, plan, peers, runs, workdir)
    except NotEnoughSpace as exc:
        print(f"error: {exc}; pass --dir on a larger filesystem or lower --records",
              file=sys.stderr)
        return 2
    return 1 if any(m.error for r in runs for m in r.measurements) else 0
