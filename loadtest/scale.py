"""Scale of one appliance in partitions (issue #4, item 5): 1, 1,000 and 10,000.

    python -m loadtest.scale                         # 1, 1000 and 10000 partitions
    python -m loadtest.scale --partitions 1,1000 --records 200000
    python -m loadtest.scale --quick                 # 1 and 200 partitions, 20,000 records

Each case starts its own appliance (loadtest.harness.Appliance: supervisor and
--workers workers, flush policy `batch`, data and control blocks under a
temporary directory in --dir), so the memory, descriptors and maps reported
are those of one topic of P partitions (plus __consumer_offsets), and runs:

create    create_topics of one topic with P partitions, timed until every
          partition is open and serving (describe_topics shows no error).
produce   --records records of --value-bytes, spread evenly over all P
          partitions, with one Producer (acks=1, linger 5 ms, batches of
          1 MiB: the bench's best setting) and send_many(topic, values,
          partition=p) per partition; timed from the first call to flush()
          returning. This is the figure judged. Then (--send, default on)
          the same number of records again through send() with no key and no
          partition: the sticky partitioner, which fills one batch at a time
          and so touches only a few of the partitions (reported).
consume   one Consumer assigned every partition, from offset 0, polls until
          every record is read; each partition's offsets must run 0, 1, ...
          up to its high watermark with no gap, and the total must match.
resources after consume (every partition open, every reader mapped, the data
          read): per appliance process RSS, PSS and USS (psutil), open
          descriptors and memory maps (/proc/PID/maps lines); the peak of the
          summed RSS sampled every 0.5 s through all phases; the files in
          the data directory and the control blocks.
stop      SIGTERM to exit: every worker closes (trims, fsyncs) every log.

Every phase has --timeout seconds; past it the run stops naming the phase.
Targets: at 1,000 partitions the produce rate is at least half the
1-partition rate of the same run; at 10,000 the appliance's summed RSS is
under 1 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import operator
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from appliance.client import Admin, Connection, Consumer, Producer
from loadtest.harness import (
    RUN_FAILURES,
    VALUE_POOL,
    Appliance,
    Deadline,
    MiB,
    NotEnoughSpace,
    fs_of,
    machine,
    make_values,
    progress,
    stopped,
    table,
    work_directory,
)

MB = 1e6
GiB = 1 << 30
TOPIC = "scale"
LINGER_MS = 5
BATCH_SIZE = MiB
BULK_CHUNK = 10_000  # values per send_many() call, as in the bench
SAMPLE_EVERY_S = 0.5
DESCRIBE_EVERY_S = 0.2
RSS_TARGET_PARTITIONS = 10_000
RSS_TARGET_BYTES = GiB
RATE_TARGET_PARTITIONS = 1_000
MAX_PARTITIONS = 100_000  # the appliance's own limit (appliance.metadata)


@dataclass(frozen=True)
class Settings:
    partitions: tuple[int, ...]
    records: int
    value_bytes: int
    workers: int
    send: bool
    timeout: float
    quick: bool


# --- measuring the appliance ---------------------------------------------------------------


@dataclass
class ProcessFigures:
    """One appliance process: memory, descriptors, maps."""

    name: str
    pid: int
    rss: int
    pss: int | None
    uss: int | None
    fds: int
    maps: int


def _name_of(process: psutil.Process, root_pid: int) -> str:
    if process.pid == root_pid:
        return "supervisor"
    cmdline = " ".join(process.cmdline())  # "ringlog: worker 0" once setproctitle ran
    found = re.search(r"(?:--index|worker) (\d+)", cmdline)
    return f"worker-{found.group(1)}" if found else process.name()


def count_maps(pid: int) -> int:
    """Lines of /proc/PID/maps: what vm.max_map_count limits (cheaper than
    psutil's memory_maps, which parses smaps)."""
    with open(f"/proc/{pid}/maps", "rb") as maps:
        return sum(1 for _ in maps)


def process_figures(appliance: Appliance) -> list[ProcessFigures]:
    """Every live process of the appliance, the supervisor first."""
    out = []
    for p in appliance.processes():
        with contextlib.suppress(psutil.Error, FileNotFoundError):
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            try:
                full = p.memory_full_info()  # reads smaps: PSS and USS
                rss, pss, uss = full.rss, getattr(full, "pss", None), getattr(full, "uss", None)
            except psutil.AccessDenied:
                rss, pss, uss = p.memory_info().rss, None, None
            out.append(ProcessFigures(_name_of(p, appliance.process.pid), p.pid, rss, pss, uss,
                                      p.num_fds(), count_maps(p.pid)))
    return out


class RssSampler:
    """The peak of the appliance's summed RSS, sampled in a thread."""

    def __init__(self, appliance: Appliance):
        self.appliance = appliance
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def sample(self) -> int:
        total = 0
        for p in self.appliance.processes():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        self.peak = max(self.peak, total)
        return total

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def disk_figures(appliance: Appliance) -> dict[str, int]:
    """Files in the data directory: count, apparent bytes, allocated bytes; control blocks."""
    files = apparent = allocated = 0
    for root, _, names in os.walk(appliance.log_dir):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(os.path.join(root, name))
                files += 1
                apparent += st.st_size
                allocated += st.st_blocks * 512
    control_blocks = sum(len([n for n in names if n.endswith(".ctl")])
                         for _, _, names in os.walk(appliance.shm_dir))
    return {"files": files, "apparent_bytes": apparent, "allocated_bytes": allocated,
            "control_blocks": control_blocks}


# --- the phases ----------------------------------------------------------------------------


def create_topic(appliance: Appliance, partitions: int, deadline: Deadline) -> tuple[float, int]:
    """Create the topic; seconds until every partition serves, and describe calls made."""
    began = time.perf_counter()
    polls = appliance.create_topic(TOPIC, deadline, partitions, poll_s=DESCRIBE_EVERY_S)
    return time.perf_counter() - began, polls


def high_watermarks(appliance: Appliance) -> list[int]:
    with Admin(appliance.bootstrap) as admin:
        entry = admin.describe_topic(TOPIC)
    return [p["high_watermark"] for p in sorted(entry["partitions"],
                                                key=operator.itemgetter("partition"))]


def request_costs(appliance: Appliance, expected: list[int]) -> dict[str, float]:
    """Milliseconds of one request naming every partition (median of 3): metadata,
    describe_topics, and a fetch from each partition's end (nothing to return,
    max_wait_ms=0: the front end's per-partition cost alone); and the size of
    the metadata file."""
    fetch = {"partitions": [[TOPIC, p, end, MiB] for p, end in enumerate(expected)],
             "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 50 * MiB}
    asks = {"metadata": ("metadata", {"topics": [TOPIC], "allow_auto_create": False}),
            "describe": ("describe_topics", {"topics": [TOPIC]}),
            "fetch": ("fetch", fetch)}
    costs: dict[str, float] = {}
    connection = Connection(appliance.bootstrap)
    try:
        for name, (api, fields) in asks.items():
            times = []
            for _ in range(3):
                began = time.perf_counter()
                connection.request(api, fields)
                times.append((time.perf_counter() - began) * 1000)
            costs[name] = sorted(times)[1]
    finally:
        connection.close()
    costs["metadata_file_bytes"] = float(
        (appliance.log_dir / "ringlog-metadata.json").stat().st_size)
    return costs


def spread(records: int, partitions: int) -> list[int]:
    """Records per partition, as even as can be: the first ones get one more."""
    each, extra = divmod(records, partitions)
    return [each + (p < extra) for p in range(partitions)]


def new_producer(appliance: Appliance) -> Producer:
    producer = Producer(appliance.bootstrap, acks=1, linger_ms=LINGER_MS, batch_size=BATCH_SIZE)
    producer.partitions_for_topic(TOPIC)  # untimed: metadata and the producer id
    sender = getattr(producer, "_sender", None)
    if hasattr(sender, "_identity"):
        sender._identity()
    return producer


def produce_many(appliance: Appliance, counts: list[int], values: list[bytes],
                 deadline: Deadline) -> float:
    """send_many() per partition, `counts[p]` records each; seconds to the last ack."""
    producer = new_producer(appliance)
    chunk = [values[i % VALUE_POOL] for i in range(min(BULK_CHUNK, max(counts)))]
    try:
        began = time.perf_counter()
        for partition, count in enumerate(counts):
            for start in range(0, count, BULK_CHUNK):
                producer.send_many(TOPIC, chunk[:min(BULK_CHUNK, count - start)],
                                   partition=partition)
            if not partition & 0xFF:
                deadline.check()
        producer.flush(timeout=max(1.0, deadline.remaining()))
        return time.perf_counter() - began
    finally:
        producer.close(timeout=10)


def produce_sticky(appliance: Appliance, records: int, values: list[bytes],
                   deadline: Deadline) -> float:
    """send() with neither key nor partition: the sticky partitioner picks."""
    producer = new_producer(appliance)
    mask = VALUE_POOL - 1
    send = producer.send
    try:
        began = time.perf_counter()
        for i in range(records):
            send(TOPIC, values[i & mask])
            if not i & 0x3FFF:
                deadline.check()
        producer.flush(timeout=max(1.0, deadline.remaining()))
        return time.perf_counter() - began
    finally:
        producer.close(timeout=10)


def consume_all(appliance: Appliance, expected: list[int], deadline: Deadline) -> tuple[float, int]:
    """Read every partition from 0 up to `expected[p]`; seconds and polls.

    Checks each run of one partition's messages continues that partition's
    offsets without a gap (itertools.groupby: C speed, inside the timing)."""
    partitions = len(expected)
    total = sum(expected)
    consumer = Consumer(bootstrap_servers=appliance.bootstrap, auto_offset_reset="earliest",
                        enable_auto_commit=False)
    following = [0] * partitions  # next offset expected per partition
    got = polls = 0
    try:
        consumer.assign([(TOPIC, p) for p in range(partitions)])
        for p in range(partitions):
            consumer.seek(TOPIC, p, 0)
        key = operator.attrgetter("partition")
        began = time.perf_counter()
        while got < total:
            batch = consumer.poll(timeout_ms=1000, max_records=1_000_000)
            polls += 1
            for partition, run in itertools.groupby(batch, key):
                run = list(run)
                if run[0].offset != following[partition] or (
                        run[-1].offset - run[0].offset != len(run) - 1):
                    raise RuntimeError(
                        f"consume: partition {partition} gave offsets {run[0].offset}.."
                        f"{run[-1].offset} ({len(run)} records) where {following[partition]} "
                        "was next")
                following[partition] = run[-1].offset + 1
                got += len(run)
            deadline.check()
        seconds = time.perf_counter() - began
    finally:
        consumer.close()
    short = [p for p in range(partitions) if following[p] != expected[p]]
    if got != total or short:
        p = short[0] if short else 0
        raise RuntimeError(f"consume: read {got:,} of {total:,} records; partition {p} ended "
                           f"at {following[p]}, its high watermark is {expected[p]}")
    return seconds, polls


# --- one case ------------------------------------------------------------------------------


@dataclass
class Case:
    partitions: int
    records: int
    value_bytes: int
    workers: int
    start_s: float = 0.0
    create_s: float = 0.0
    describe_polls: int = 0
    produce_s: float = 0.0
    sticky_s: float | None = None
    sticky_partitions: int | None = None
    consume_s: float = 0.0
    consumed: int = 0
    polls: int = 0
    stop_s: float = 0.0
    peak_rss: int = 0
    request_ms: dict[str, float] = field(default_factory=dict)
    processes: list[ProcessFigures] = field(default_factory=list)
    idle_processes: list[ProcessFigures] = field(default_factory=list)
    disk: dict[str, int] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)

    @property
    def produce_rate(self) -> float:
        return self.records / self.produce_s if self.produce_s else 0.0

    @property
    def sticky_rate(self) -> float | None:
        return self.records / self.sticky_s if self.sticky_s else None

    @property
    def consume_rate(self) -> float:
        return self.consumed / self.consume_s if self.consume_s else 0.0

    def total(self, what: str, processes: list[ProcessFigures] | None = None) -> int | None:
        values = [getattr(p, what) for p in (self.processes if processes is None else processes)]
        return None if any(v is None for v in values) else sum(values)


def run_case(s: Settings, partitions: int, workdir: Path,
             say: Callable[[str], None]) -> Case:
    case = Case(partitions, s.records, s.value_bytes, s.workers)
    load0 = os.getloadavg()[0]
    values = make_values(s.value_bytes, seed=partitions)
    began = time.perf_counter()
    appliance = Appliance(workdir, "log.flush.policy=batch", workers=s.workers)
    try:
        appliance.wait_until_serving(timeout_s=min(s.timeout, 120))
        case.start_s = time.perf_counter() - began
        with RssSampler(appliance) as sampler:
            say(f"{partitions:,} partitions: creating the topic")
            case.create_s, case.describe_polls = create_topic(
                appliance, partitions, Deadline(f"create ({partitions:,} partitions)", s.timeout))
            case.idle_processes = process_figures(appliance)
            counts = spread(s.records, partitions)
            say(f"{partitions:,} partitions: producing {s.records:,} records with send_many()")
            case.produce_s = produce_many(appliance, counts, values, Deadline(
                f"produce send_many ({partitions:,} partitions)", s.timeout))
            after_many = high_watermarks(appliance)
            if after_many != counts:
                wrong = next(p for p in range(partitions) if after_many[p] != counts[p])
                raise RuntimeError(f"produce: partition {wrong} holds {after_many[wrong]} "
                                   f"records, {counts[wrong]} were sent")
            expected = after_many
            if s.send:
                say(f"{partitions:,} partitions: producing {s.records:,} records with send()")
                case.sticky_s = produce_sticky(appliance, s.records, values, Deadline(
                    f"produce send ({partitions:,} partitions)", s.timeout))
                expected = high_watermarks(appliance)
                case.sticky_partitions = sum(e > c for e, c in zip(expected, counts, strict=True))
            say(f"{partitions:,} partitions: consuming {sum(expected):,} records")
            case.consume_s, case.polls = consume_all(appliance, expected, Deadline(
                f"consume ({partitions:,} partitions)", s.timeout))
            case.consumed = sum(expected)
            say(f"{partitions:,} partitions: timing requests that name every partition")
            case.request_ms = request_costs(appliance, expected)
            say(f"{partitions:,} partitions: measuring memory, descriptors and maps")
            sampler.sample()
            case.processes = process_figures(appliance)
            case.disk = disk_figures(appliance)
            case.peak_rss = sampler.peak
    finally:
        say(f"{partitions:,} partitions: stopping the appliance")
        stopping = time.perf_counter()
        code = appliance.stop()
        case.stop_s = time.perf_counter() - stopping
    if code != 0:
        raise RuntimeError(f"the appliance with {partitions:,} partitions exited with {code} "
                           "after SIGTERM (expected 0):\n" + appliance.stderr_tail())
    case.load = (load0, os.getloadavg()[0])
    return case


# --- report --------------------------------------------------------------------------------


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MiB:,.1f}"


def judge(cases: list[Case]) -> list[tuple[str, str, bool | None]]:
    """(target, figure, met) for the issue's two targets; met None when not run."""
    by_p = {c.partitions: c for c in cases}
    out = []
    one, many = by_p.get(1), by_p.get(RATE_TARGET_PARTITIONS)
    text = (f"produce at {RATE_TARGET_PARTITIONS:,} partitions >= 1/2 of the 1-partition rate")
    if one and many:
        ratio = many.produce_rate / one.produce_rate
        out.append((text, f"{many.produce_rate:,.0f} / {one.produce_rate:,.0f} rec/s = "
                    f"{ratio:.0%}", ratio >= 0.5))
    else:
        out.append((text, "not run (needs 1 and 1000 in --partitions)", None))
    big = by_p.get(RSS_TARGET_PARTITIONS)
    text = f"summed RSS at {RSS_TARGET_PARTITIONS:,} partitions < 1 GiB"
    if big:
        rss = big.total("rss")
        out.append((text, f"{rss / MiB:,.0f} MiB after consume (peak sampled "
                    f"{big.peak_rss / MiB:,.0f} MiB)", rss < RSS_TARGET_BYTES
                    and big.peak_rss < RSS_TARGET_BYTES))
    else:
        out.append((text, "not run (needs 10000 in --partitions)", None))
    return out


def report(s: Settings, workdir: Path, cases: list[Case], elapsed: float) -> str:
    fstype, device, mount = fs_of(workdir)
    out = [
        "Ringlog scale in partitions (issue #4)",
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, Linux "
        f"{platform.release()}; data in {workdir} on {fstype} ({device} at {mount})",
        f"  each case: a new appliance (supervisor + {s.workers} workers, flush policy batch), "
        f"one topic; {s.records:,} records of {s.value_bytes} B per produce; acks=1, "
        f"linger {LINGER_MS} ms, batch {BATCH_SIZE // MiB} MiB",
        "  MB/s = record values, 10^6 B; memory in MiB; RSS/PSS/USS/fds/maps after consume",
        "",
    ]
    rows = []
    for c in cases:
        rows.append([
            f"{c.partitions:,}", f"{c.create_s:.2f}", f"{c.produce_rate:,.0f}",
            f"{c.produce_rate * c.value_bytes / MB:,.1f}",
            f"{c.sticky_rate:,.0f} ({c.sticky_partitions:,} p)" if c.sticky_rate else "-",
            f"{c.consume_rate:,.0f}", _mib(c.total("rss")), _mib(c.peak_rss),
            _mib(c.total("pss")), _mib(c.total("uss")), f"{c.total('fds'):,}",
            f"{c.total('maps'):,}", f"{c.stop_s:.1f}", f"{c.load[0]:.1f}/{c.load[1]:.1f}",
        ])
    out.append(table(rows, ["partitions", "create s", "send_many rec/s", "MB/s",
                            "send() rec/s (partitions)", "consume rec/s", "RSS sum",
                            "peak RSS", "PSS sum", "USS sum", "fds", "maps", "stop s",
                            "load"], text_columns=0))
    out += ["", "Per process, after consume"]
    rows = []
    for c in cases:
        for p in c.processes:
            idle = next((i for i in c.idle_processes if i.pid == p.pid), None)
            rows.append([f"{c.partitions:,}", p.name, _mib(p.rss), _mib(p.pss), _mib(p.uss),
                         _mib(idle.rss) if idle else "-", f"{p.fds:,}", f"{p.maps:,}"])
    out.append(table(rows, ["partitions", "process", "RSS", "PSS", "USS", "RSS idle",
                            "fds", "maps"], text_columns=2))
    out += ["", "On disk, after consume; one request naming every partition (ms, median of 3)"]
    rows = [[f"{c.partitions:,}", f"{c.disk['files']:,}", _mib(c.disk["apparent_bytes"]),
             _mib(c.disk["allocated_bytes"]), f"{c.disk['control_blocks']:,}",
             f"{c.request_ms.get('metadata_file_bytes', 0) / 1024:,.1f}",
             f"{c.request_ms.get('metadata', 0):,.1f}", f"{c.request_ms.get('describe', 0):,.1f}",
             f"{c.request_ms.get('fetch', 0):,.1f}"] for c in cases]
    out.append(table(rows, ["partitions", "files", "apparent MiB", "allocated MiB",
                            "control blocks", "metadata KiB", "metadata ms", "describe ms",
                            "empty fetch ms"], text_columns=0))
    out += ["", "RSS idle: after the topic was created, before any record. send() rows: the "
            "sticky partitioner, the partitions it touched in brackets; the send_many figure "
            "is the one judged.", "", "Targets (issue #4)"]
    for text, figure, met in judge(cases):
        verdict = "-" if met is None else ("OK" if met else "MISSED")
        out.append(f"  {text}: {figure}  {verdict}")
    out.append(f"  total time {elapsed:.1f} s")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.scale",
        description="One appliance with 1, 1,000 and 10,000 partitions: create, produce to "
        "all, consume all; throughput, memory, descriptors and maps per process.")
    parser.add_argument("--partitions", default=None,
                        help="comma-separated partition counts (default 1,1000,10000; "
                        "--quick 1,200)")
    parser.add_argument("--records", type=int, default=None,
                        help="records per produce (default 1,000,000; --quick 20,000)")
    parser.add_argument("--value-bytes", type=int, default=100, help="value size (100)")
    parser.add_argument("--workers", type=int, default=2,
                        help="appliance worker processes (default 2, num.workers on a 2-CPU host)")
    parser.add_argument("--no-send", action="store_true",
                        help="skip the second produce through send() (sticky partitioner)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds one phase may take before the run aborts (600)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 and 200 partitions, 20,000 records")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write every figure to PATH as JSON")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the temporary data directory (default ./.bench)")
    parser.add_argument("--verbose", action="store_true",
                        help="print each phase as it starts, with the time, on stderr")
    args = parser.parse_args(argv)
    text = args.partitions or ("1,200" if args.quick else "1,1000,10000")
    try:
        partitions = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        parser.error(f"--partitions takes comma-separated integers, not {text!r}")
    if not partitions or not all(1 <= p <= MAX_PARTITIONS for p in partitions):
        parser.error(f"--partitions must be between 1 and {MAX_PARTITIONS:,} each")
    records = args.records if args.records is not None else (20_000 if args.quick else 1_000_000)
    if not 1 <= records <= 100_000_000:
        parser.error("--records must be between 1 and 100,000,000")
    if records < max(partitions):
        parser.error(f"--records ({records:,}) must be at least the largest partition count "
                     f"({max(partitions):,}) so that every partition gets a record")
    if not 8 <= args.value_bytes <= 1_000_000:
        parser.error("--value-bytes must be between 8 and 1,000,000")
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be between 1 and 64")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args, Settings(partitions, records, args.value_bytes, args.workers, not args.no_send,
                          args.timeout, args.quick)


def main(argv: list[str] | None = None) -> int:
    args, s = parse_args(argv)
    copies = 2 if s.send else 1
    need = copies * s.records * (s.value_bytes + 64) + (1 << 30)
    try:
        with work_directory(args.dir, "scale-", need) as parent:
            began = time.perf_counter()
            say = progress
            if args.verbose:
                def say(message: str) -> None:
                    print(f"[{time.perf_counter() - began:7.1f} s] {message}", file=sys.stderr,
                          flush=True)
            cases = []
            try:
                for partitions in s.partitions:
                    workdir = parent / f"p{partitions}"
                    workdir.mkdir()
                    cases.append(run_case(s, partitions, workdir, say))
            except RUN_FAILURES as exc:
                return stopped(exc)
            progress("")
            print(report(s, parent, cases, time.perf_counter() - began))
            if args.json:
                args.json.write_text(json.dumps({
                    "settings": asdict(s),
                    "machine": machine(parent),
                    "cases": [{**asdict(c), "produce_records_per_s": c.produce_rate,
                               "produce_mb_per_s": c.produce_rate * c.value_bytes / MB,
                               "send_records_per_s": c.sticky_rate,
                               "consume_records_per_s": c.consume_rate,
                               "rss_sum": c.total("rss"), "pss_sum": c.total("pss"),
                               "uss_sum": c.total("uss"), "fds_sum": c.total("fds"),
                               "maps_sum": c.total("maps")} for c in cases],
                    "targets": [{"target": t, "figure": f, "met": m} for t, f, m in judge(cases)],
                }, indent=2) + "\n")
    except NotEnoughSpace as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
