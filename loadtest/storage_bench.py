"""Storage engine benchmark: appends, fsync policies and mmap reads, side by side.

    python -m loadtest.storage_bench            # full run, about 1-2 minutes
    python -m loadtest.storage_bench --quick    # smoke run, a few seconds

What it measures, in one run and on one filesystem (see docs/performance.md):

1. The ceiling: the same batch bytes written with os.write to a new file,
   os.fdatasync after every 1 MiB. Nothing durable can go faster from Python.
2. PartitionLog.append of pre-built batches (1,000 records of 100-byte values,
   1,000 records of 1 KiB values) under each flush policy: `batch` with
   log.flush() after every 1 MiB appended (group commit, 1 MiB per fsync),
   `interval` with log.maybe_flush() after every append, and `os` (no flush).
3. The Python cost of one append() call (flush policy `os`, so no fsync) and
   of validate_record_set alone, for batches of 10 records and of 1,000
   records of the same total size: the engine does per-batch work only, so
   both should cost about the same.
4. mmap reads of a whole log with max_bytes = 1 MiB: PartitionLog.read in
   the writer's process, and shm.reader.PartitionReader in a separate
   process, while the writer is idle (page cache warm).

Timings use time.perf_counter after an untimed warm-up; each case runs --repeat
times, interleaved, and the median is reported with its spread ((max - min) /
median over the runs). The ceiling and the `batch` policy run back to back in
alternating order, and "vs ceiling" is the median of the per-run ratios: the
disk's speed drifts by tens of percent from one second to the next.
MB and GB are 10^6 and 10^9 bytes. Every file, including the control blocks,
lives in a temporary directory under --dir that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.harness import MiB, NotEnoughSpace, fs_of, progress, table, work_directory
from shm.partition_log import LogConfig, PartitionLog
from shm.reader import PartitionReader
from shm.record_batch import HEADER_SIZE, parse_header, validate_record_set
from shm.records import Record, encode_batch
from shm.segment import batch_bounds

MB = 1e6
GB = 1e9
GROUP_COMMIT_BYTES = 1 * MiB  # bytes appended per fdatasync under `batch` and the ceiling
READ_MAX_BYTES = 1 * MiB
NOW_MS = 1_700_000_000_000  # fixed record timestamps: runs are byte-for-byte repeatable

# (label, records per batch, value bytes)
APPEND_SHAPES = (("1000 x 100 B", 1000, 100), ("1000 x 1 KiB", 1000, 1024))
POLICIES = ("ceiling", "batch", "interval", "os")
SMALL_RECORDS, LARGE_RECORDS, TINY_VALUE = 10, 1000, 10  # shapes of the per-append test


# --- settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    mib: int
    repeat: int
    interval_ms: int
    append_calls: int  # per-append test: append() calls per measurement
    validate_calls: int
    read_min_passes: int
    read_min_seconds: float
    warmup_mib: int
    quick: bool


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.storage_bench",
        description="Benchmark the storage engine: append throughput under each flush "
        "policy against a raw write+fdatasync ceiling, per-append cost, mmap reads.",
    )
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the temporary bench directory (default: ./.bench; "
                        "use a disk filesystem, not tmpfs, or fsync costs nothing)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run (a few seconds): 4 MiB per case, one repeat")
    parser.add_argument("--mib", type=int, default=None,
                        help="MiB written per append case and per read log (default 256, "
                        "--quick 4)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs of each case; the median is reported (default 5, --quick 1)")
    parser.add_argument("--interval-ms", type=int, default=100,
                        help="flush_interval_ms of the `interval` policy (default 100)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write every figure (all repeats) to PATH as JSON")
    args = parser.parse_args(argv)
    mib = args.mib if args.mib is not None else (4 if args.quick else 256)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    if not 1 <= mib <= 8192:
        parser.error("--mib must be between 1 and 8192")
    if not 1 <= repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    if not 1 <= args.interval_ms <= 60_000:
        parser.error("--interval-ms must be between 1 and 60000")
    settings = Settings(
        mib=mib,
        repeat=repeat,
        interval_ms=args.interval_ms,
        append_calls=300 if args.quick else 3000,
        validate_calls=300 if args.quick else 3000,
        read_min_passes=2 if args.quick else 5,
        read_min_seconds=0.05 if args.quick else 0.5,
        warmup_mib=1 if args.quick else 16,
        quick=args.quick,
    )
    return args, settings


# --- batches ----------------------------------------------------------------------


def make_batch(records: int, value_bytes: int, seed: int = 0) -> bytes:
    """One uncompressed v2 batch of `records` records with random values, no keys."""
    rng = random.Random(seed)
    return encode_batch(
        [Record(value=rng.randbytes(value_bytes), timestamp=NOW_MS + i) for i in range(records)],
        now_ms=NOW_MS,
    )


def equal_size_pair() -> tuple[bytes, bytes]:
    """(10 records, 1,000 records) batches of the same size to within a few bytes:
    1,000 values of 10 bytes, and 10 values of the size that matches best."""
    large = make_batch(LARGE_RECORDS, TINY_VALUE)
    value = (len(large) - HEADER_SIZE) // SMALL_RECORDS - 10  # a first guess, then the closest
    best = None
    for v in range(max(1, value - 10), value + 10):
        small = make_batch(SMALL_RECORDS, v)
        if best is None or abs(len(small) - len(large)) < abs(len(best) - len(large)):
            best = small
    assert best is not None
    return best, large


# --- results ----------------------------------------------------------------------


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """(max - min) / median: 0 for a single run."""
        if len(self.values) < 2 or self.median == 0:
            return 0.0
        return (max(self.values) - min(self.values)) / self.median


# --- 1 and 2: appends under each policy --------------------------------------------


def run_ceiling(path: Path, batch: bytes, count: int) -> tuple[float, float]:
    """(wall, CPU) seconds to os.write `count` copies of `batch` to a new file,
    fdatasync per 1 MiB."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = len(batch)
        since = 0
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(count):
            if os.write(fd, batch) != size:
                raise OSError(f"short write to {path}")
            since += size
            if since >= GROUP_COMMIT_BYTES:
                os.fdatasync(fd)
                since = 0
        os.fdatasync(fd)
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def run_policy(directory: Path, policy: str, interval_ms: int, batch: bytes,
               count: int) -> tuple[float, float]:
    """(wall, CPU) seconds to append `count` copies of `batch` to a new log under `policy`.

    `batch` ends with a flush (everything durable when the clock stops);
    `interval` and `os` end with whatever the policy left in the page cache.
    """
    config = LogConfig(flush_policy=policy, flush_interval_ms=interval_ms)
    log = PartitionLog.open(directory, config, control_path=directory.with_suffix(".ctl"))
    try:
        append, size = log.append, len(batch)
        cpu = time.process_time()
        if policy == "batch":
            flush = log.flush
            since = 0
            start = time.perf_counter()
            for _ in range(count):
                append(batch)
                since += size
                if since >= GROUP_COMMIT_BYTES:
                    flush()
                    since = 0
            flush()
        elif policy == "interval":
            maybe_flush = log.maybe_flush
            start = time.perf_counter()
            for _ in range(count):
                append(batch)
                maybe_flush()
        else:
            start = time.perf_counter()
            for _ in range(count):
                append(batch)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if log.log_end_offset != count * record_count(batch):
            raise RuntimeError(f"log end {log.log_end_offset} after {count} appends")
    finally:
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
    return elapsed, cpu


def run_case(workdir: Path, policy: str, interval_ms: int, batch: bytes,
             count: int) -> tuple[float, float]:
    os.sync()  # start every timed case with nothing dirty in the page cache
    if policy == "ceiling":
        return run_ceiling(workdir / "ceiling.bin", batch, count)
    return run_policy(workdir / f"log-{policy}", policy, interval_ms, batch, count)


def bench_appends(workdir: Path, s: Settings, batches: dict[str, bytes],
                  progress: Callable[[str], None]
                  ) -> tuple[dict[tuple[str, str], Samples], dict[tuple[str, str], Samples]]:
    """Wall seconds and CPU seconds of each (shape, policy), one value per repeat."""
    results = {(shape, policy): Samples() for shape in batches for policy in POLICIES}
    cpu = {(shape, policy): Samples() for shape in batches for policy in POLICIES}
    # Warm-up: code paths, the allocator and the filesystem, untimed.
    for batch in batches.values():
        count = max(1, s.warmup_mib * MiB // len(batch))
        run_case(workdir, "ceiling", s.interval_ms, batch, count)
        run_case(workdir, "batch", s.interval_ms, batch, count)
    for rep in range(s.repeat):
        # The ceiling and `batch` always run back to back (the disk's speed drifts by
        # tens of percent over seconds), in alternating order, as do the other two.
        order = POLICIES if rep % 2 == 0 else ("batch", "ceiling", "os", "interval")
        for shape, batch in batches.items():
            count = max(1, s.mib * MiB // len(batch))
            for policy in order:
                progress(f"appends: repeat {rep + 1}/{s.repeat}, {shape}, {policy}")
                wall, used = run_case(workdir, policy, s.interval_ms, batch, count)
                results[shape, policy].add(wall)
                cpu[shape, policy].add(used)
    return results, cpu


# --- 3: per-append cost -------------------------------------------------------------


PER_APPEND = {
    "append": "PartitionLog.append()",
    "validate": "validate_record_set() only",
    "pwrite": "os.pwrite() of the bytes only",
}
CHUNK_CALLS = 100  # calls timed together; the median chunk stands for the run


def time_calls(call: Callable[[bytes], object], batch: bytes, calls: int) -> float:
    """Seconds per call(batch): the median over chunks of CHUNK_CALLS calls, after
    one chunk of warm-up, so that a stray pause (scheduler, page-cache writeback)
    in one chunk does not count."""
    chunk = min(CHUNK_CALLS, calls)
    for _ in range(chunk):
        call(batch)
    per_call = []
    for _ in range(max(1, calls // chunk)):
        start = time.perf_counter()
        for _ in range(chunk):
            call(batch)
        per_call.append((time.perf_counter() - start) / chunk)
    return statistics.median(per_call)


def time_appends(directory: Path, batch: bytes, calls: int) -> float:
    """Seconds per append() call under flush policy `os` (no fsync in the loop)."""
    log = PartitionLog.open(directory, LogConfig(flush_policy="os"),
                            control_path=directory.with_suffix(".ctl"))
    try:
        return time_calls(log.append, batch, calls)
    finally:
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def time_pwrite(path: Path, batch: bytes, calls: int) -> float:
    """Seconds per os.pwrite of the same bytes at the end of a sparse file sized like
    a segment: the system call alone, what append() costs without the engine."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, LogConfig().segment_bytes)
        position = 0

        def write(data: bytes) -> None:
            nonlocal position
            position += os.pwrite(fd, data, position)

        return time_calls(write, batch, calls)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def time_validation(batch: bytes, calls: int) -> float:
    """Seconds per validate_record_set call: header checks and CRC-32C only."""
    return time_calls(validate_record_set, batch, calls)


def bench_per_append(workdir: Path, s: Settings, small: bytes, large: bytes,
                     progress: Callable[[str], None]) -> dict[tuple[str, int], Samples]:
    results = {(what, n): Samples() for what in PER_APPEND
               for n in (SMALL_RECORDS, LARGE_RECORDS)}
    shapes = ((SMALL_RECORDS, small), (LARGE_RECORDS, large))
    for rep in range(s.repeat):
        progress(f"per-append cost: repeat {rep + 1}/{s.repeat}")
        for n, batch in shapes if rep % 2 == 0 else shapes[::-1]:
            os.sync()
            results["append", n].add(time_appends(workdir / "log-per-append", batch,
                                                  s.append_calls))
            results["validate", n].add(time_validation(batch, s.validate_calls))
            results["pwrite", n].add(time_pwrite(workdir / "pwrite.bin", batch, s.append_calls))
    return results


# --- 4: mmap reads ---------------------------------------------------------------------


def _next_offset(data: bytes) -> int:
    """The offset after the last whole batch of a read, from the batch headers."""
    pos, end, last = 0, len(data), -1
    while pos < end:
        _, last, size = batch_bounds(data, pos)
        pos += size
    return last + 1


def read_passes(read: Callable[[int, int], bytes], start: int, end: int,
                min_passes: int, min_seconds: float) -> tuple[float, list[float], int]:
    """(first pass s, later passes s, bytes per pass) of reading [start, end) whole.

    The first pass faults the maps in; the later ones find them populated.
    """
    times, nbytes = [], 0
    began = time.perf_counter()
    while len(times) < min_passes + 1 or time.perf_counter() - began < min_seconds + times[0]:
        offset, total = start, 0
        t0 = time.perf_counter()
        while offset < end:
            data = read(offset, READ_MAX_BYTES)
            if not data:
                raise RuntimeError(f"read at offset {offset} returned nothing below {end}")
            total += len(data)
            offset = _next_offset(data)
        times.append(time.perf_counter() - t0)
        nbytes = total
        if len(times) >= 50:
            break
    return times[0], times[1:], nbytes


def _reader_child(directory: str, control_path: str, start: int, end: int,
                  min_passes: int, min_seconds: float, conn) -> None:
    """In a separate process: follow the log through shm.reader and time the reads."""
    try:
        reader = PartitionReader.open(directory, control_path=control_path)
        try:
            conn.send(("ok", read_passes(reader.read, start, end, min_passes, min_seconds)))
        finally:
            reader.close()
    except BaseException as exc:  # report, do not hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def read_in_child(directory: Path, control_path: Path, start: int, end: int,
                  s: Settings) -> tuple[float, list[float], int]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_reader_child, daemon=True,
                       args=(str(directory), str(control_path), start, end,
                             s.read_min_passes, s.read_min_seconds, child))
    proc.start()
    child.close()
    try:
        if not parent.poll(120):
            raise RuntimeError("the reader process gave no answer within 120 s")
        status, payload = parent.recv()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        parent.close()
    if status != "ok":
        raise RuntimeError(f"the reader process failed: {payload}")
    return payload


@dataclass
class ReadResult:
    log_bytes: int
    first: Samples = field(default_factory=Samples)  # GB/s of the first pass
    steady: Samples = field(default_factory=Samples)  # GB/s of each later pass


def bench_reads(workdir: Path, s: Settings, batches: dict[str, bytes],
                progress: Callable[[str], None]) -> dict[tuple[str, str], ReadResult]:
    results: dict[tuple[str, str], ReadResult] = {}
    for shape, batch in batches.items():
        directory = workdir / "log-read"
        control = directory.with_suffix(".ctl")
        count = max(1, s.mib * MiB // len(batch))
        log = PartitionLog.open(directory, LogConfig(flush_policy="os"), control_path=control)
        try:
            for _ in range(count):
                log.append(batch)
            log.flush()  # publish the high watermark; the writer is idle from here on
            start, end = log.log_start_offset, log.high_watermark
            in_proc = results[shape, "in-process"] = ReadResult(count * len(batch))
            child = results[shape, "child"] = ReadResult(count * len(batch))
            for rep in range(s.repeat):
                progress(f"reads: {shape}, repeat {rep + 1}/{s.repeat}")
                # A new map each repeat, so that the first pass faults pages in again.
                # The segment's map is private to the engine: reopen the log instead.
                if rep:
                    log.close()
                    log = PartitionLog.open(directory, LogConfig(flush_policy="os"),
                                            control_path=control)
                first, later, nbytes = read_passes(log.read, start, end,
                                                   s.read_min_passes, s.read_min_seconds)
                _add_read(in_proc, first, later, nbytes)
                first, later, nbytes = read_in_child(directory, control, start, end, s)
                _add_read(child, first, later, nbytes)
        finally:
            log.close()
            shutil.rmtree(directory, ignore_errors=True)
    return results


def _add_read(result: ReadResult, first: float, later: list[float], nbytes: int) -> None:
    if nbytes != result.log_bytes:
        raise RuntimeError(f"a read pass returned {nbytes} bytes of a {result.log_bytes}-byte log")
    result.first.add(nbytes / first / GB)
    result.steady.add(nbytes / statistics.median(later) / GB)


# --- report -----------------------------------------------------------------------------


def report(s: Settings, workdir: Path, batches: dict[str, bytes],
           appends: dict[tuple[str, str], Samples], cpu: dict[tuple[str, str], Samples],
           small: bytes, large: bytes,
           per_append: dict[tuple[str, int], Samples],
           reads: dict[tuple[str, str], ReadResult], elapsed: float) -> str:
    fstype, device, mount = fs_of(workdir)
    out = [
        "Ringlog storage bench",
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Linux {platform.release()}",
        f"  dir {workdir} on {fstype} ({device} at {mount})",
        f"  {s.mib} MiB per case, median of {s.repeat} run(s); spread = (max-min)/median; "
        f"MB = 10^6 bytes",
        "",
        "Appends: PartitionLog.append of pre-built batches; batch = flush() per 1 MiB "
        f"(group commit), interval = maybe_flush() per append ({s.interval_ms} ms), os = no "
        "flush;",
        "vs ceiling = median over runs of ceiling time / policy time in the same run; "
        "CPU = this process's user+system time per batch",
    ]
    rows = []
    for shape, batch in batches.items():
        records = record_count(batch)
        total = max(1, s.mib * MiB // len(batch)) * len(batch)
        for policy in POLICIES:
            samples = appends[shape, policy]
            seconds = samples.median
            ratio = vs_ceiling(appends, shape, policy)
            batches_done = total // len(batch)
            label = {
                "ceiling": "ceiling: os.write + fdatasync/MiB",
                "batch": "batch (fdatasync/MiB)",
                "interval": f"interval ({s.interval_ms} ms)",
                "os": "os (no flush)",
            }[policy]
            rows.append([
                f"{shape} ({len(batch):,} B)" if policy == "ceiling" else "",
                label,
                f"{total / seconds / MB:,.1f}",
                f"{batches_done * records / seconds:,.0f}",
                f"{batches_done / seconds:,.0f}",
                f"{cpu[shape, policy].median / batches_done * 1e6:,.0f}",
                f"{ratio.median:.0%}",
                f"{samples.spread:.0%}",
            ])
    out.append(table(rows, ["batches", "policy", "MB/s", "records/s", "batches/s",
                            "CPU µs/batch", "vs ceiling", "spread"], text_columns=2))
    out += ["", "Per-append cost, flush policy os (no fsync): "
            "µs per call, same bytes per batch"]
    rows = []
    for what, label in PER_APPEND.items():
        a, b = per_append[what, SMALL_RECORDS], per_append[what, LARGE_RECORDS]
        rows.append([label, f"{a.median * 1e6:.1f}", f"{b.median * 1e6:.1f}",
                     f"{b.median / a.median:.2f}", f"{max(a.spread, b.spread):.0%}"])
    out.append(table(rows, ["", f"{SMALL_RECORDS} rec ({len(small):,} B)",
                            f"{LARGE_RECORDS} rec ({len(large):,} B)", "ratio", "spread"]))
    out += ["", f"mmap reads, max_bytes = 1 MiB, whole {s.mib} MiB log, writer idle, page cache "
            "warm: GB/s (first pass faults the map in)"]
    rows = []
    for shape in batches:
        for where, label in (("in-process", "PartitionLog.read, in-process"),
                             ("child", "PartitionReader, other process")):
            r = reads[shape, where]
            rows.append([shape if where == "in-process" else "", label,
                         f"{r.first.median:.2f}", f"{r.steady.median:.2f}",
                         f"{max(r.first.spread, r.steady.spread):.0%}"])
    out.append(table(rows, ["batches", "reader", "first pass", "steady", "spread"],
                     text_columns=2))

    batch_ratios = [vs_ceiling(appends, shape, "batch") for shape in batches]
    worst_read = min(min(r.first.median, r.steady.median) for r in reads.values())
    steady_read = min(r.steady.median for r in reads.values())
    append_ratio = (per_append["append", LARGE_RECORDS].median
                    / per_append["append", SMALL_RECORDS].median)
    out += [
        "",
        "Goals",
        "  batch policy / ceiling >= 80%:  "
        + ", ".join(f"{r.median:.0%} (runs {min(r.values):.0%}-{max(r.values):.0%})"
                    for r in batch_ratios)
        + ("  OK" if min(r.median for r in batch_ratios) >= 0.8 else "  MISSED"),
        f"  mmap reads >= 1 GB/s:           steady {steady_read:.2f}, worst first pass "
        f"{worst_read:.2f}" + ("  OK" if steady_read >= 1 else "  MISSED"),
        f"  append() 1000 vs 10 records:    {append_ratio:.2f}x"
        + ("  OK" if append_ratio <= 1.5 else "  GROWS WITH RECORDS"),
        f"  total time {elapsed:.1f} s",
    ]
    return "\n".join(out)


def vs_ceiling(appends: dict[tuple[str, str], Samples], shape: str, policy: str) -> Samples:
    """Throughput relative to the ceiling run of the same repeat, one value per repeat."""
    ratios = Samples()
    for ceiling, seconds in zip(appends[shape, "ceiling"].values, appends[shape, policy].values,
                                strict=True):
        ratios.add(ceiling / seconds)
    return ratios


def record_count(batch: bytes) -> int:
    return parse_header(batch).record_count


def to_json(s: Settings, batches, appends, cpu, per_append, reads, small, large) -> dict:
    return {
        "settings": s.__dict__,
        "batch_bytes": {shape: len(b) for shape, b in batches.items()},
        "appends_seconds": {f"{shape} | {policy}": v.values
                            for (shape, policy), v in appends.items()},
        "appends_cpu_seconds": {f"{shape} | {policy}": v.values
                                for (shape, policy), v in cpu.items()},
        "per_append_seconds": {
            f"{what} | {n} records ({len(small if n == SMALL_RECORDS else large)} B)": v.values
            for (what, n), v in per_append.items()
        },
        "reads_gbps": {f"{shape} | {where}": {"first": r.first.values, "steady": r.steady.values,
                                              "log_bytes": r.log_bytes}
                       for (shape, where), r in reads.items()},
    }


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args, s = parse_args(argv)
    need = (2 * s.mib + 64) * MiB + (1 << 30)  # two logs' data at most, and a margin
    try:
        with work_directory(args.dir, "storage-", need) as workdir:
            began = time.perf_counter()
            batches = {label: make_batch(n, v, seed=i)
                       for i, (label, n, v) in enumerate(APPEND_SHAPES)}
            small, large = equal_size_pair()
            appends, cpu = bench_appends(workdir, s, batches, progress)
            per_append = bench_per_append(workdir, s, small, large, progress)
            reads = bench_reads(workdir, s, batches, progress)
            progress("")
            print(report(s, workdir, batches, appends, cpu, small, large, per_append, reads,
                         time.perf_counter() - began))
            if args.json:
                args.json.write_text(json.dumps(
                    to_json(s, batches, appends, cpu, per_append, reads, small, large), indent=2)
                    + "\n")
    except NotEnoughSpace as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
