"""End-to-end benchmark of the single-node appliance (issue #3): client, front end, worker.

    python -m loadtest.bench              # full run: 1,000,000 records per workload
    python -m loadtest.bench --quick      # smoke run, about 10 s

It starts its own appliance (`python -m appliance serve`, one worker, flush
policy `batch`, data under a temporary directory in --dir), creates one
topic of one partition per measurement, and runs:

W1  one producer, --value-bytes records (100), one partition, acks=1, each
    ack after the fdatasync that made the record durable (the `batch`
    policy's group commit). Timed from the first send() to flush()
    returning. Several producer settings (linger_ms, batch_size) are tried,
    each on its own topic; the best is the headline.
W2  one consumer reads the first W1 topic back from offset 0 (assign, poll
    with a large max_records). Timed from the first poll to the last record.
W3  end-to-end latency at a fixed rate (--rate records/s for --seconds,
    acks=1, linger_ms=0): the bench's main thread, paced by the clock, sends
    records whose value starts with time.time_ns(); a consumer in another process
    (spawned, so the two do not share a GIL) takes receive time minus the
    embedded time per record. Also the producer's ack latency (send() to
    its future resolving).
W4  W1 with 1 KiB values: MB/s (by default with 1 MiB batches only).

Figures per workload: records/s, MB/s of record values (MB = 10^6 bytes),
the CPU time of the client process(es) and of the appliance (supervisor and
workers, from psutil) over the timed interval as a share of one core, and
the produce batches the client sent. Each workload is bounded by --timeout
(default 300 s): past it the bench stops with a message naming the workload.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from appliance.client import Consumer, Producer
from loadtest.harness import (
    RUN_FAILURES,
    TAIL_PERCENTILES,
    VALUE_POOL,
    Appliance,
    BenchTimeout,
    CpuMeter,
    Deadline,
    MiB,
    NotEnoughSpace,
    cpu_seconds,
    fs_of,
    latency_summary,
    machine,
    make_values,
    progress,
    stopped,
    table,
    work_directory,
)

KiB = 1 << 10
MB = 1e6
WORKLOADS = ("W1", "W2", "W3", "W4")
W4_VALUE_BYTES = 1024

# The targets (benchmarks, not tests).
TARGETS = {
    "W1": ("records/s", 1_000_000),
    "W2": ("records/s", 1_500_000),
    "W3": ("ms", (0.5, 1.5, 3.0)),
    "W4": ("MB/s", 600),
}
TARGET_TEXT = {
    "W1": ">= 1,000,000 rec/s",
    "W2": ">= 1,500,000 rec/s",
    "W3": "p50/p99/p99.9 <= 0.5/1.5/3 ms",
    "W4": ">= 600 MB/s",
}


# --- settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProducerSetting:
    linger_ms: float
    batch_size: int
    bulk: bool = False  # send_many() of BULK_CHUNK values per call instead of send() each

    def label(self) -> str:
        size = (f"{self.batch_size // MiB} MiB" if self.batch_size % MiB == 0
                else f"{self.batch_size // KiB} KiB")
        call = "send_many, " if self.bulk else ""
        return f"{call}linger {self.linger_ms:g} ms, batch {size}"


BULK_CHUNK = 10_000  # values per send_many() call


DEFAULT_SETTINGS = (ProducerSetting(5, 64 * KiB), ProducerSetting(5, MiB),
                    ProducerSetting(50, MiB), ProducerSetting(5, MiB, bulk=True))
# W4 leaves out 64 KiB batches: with 1 KiB records the producer queues ~16,000 of
# them and slows down quadratically (see docs/performance.md), past any timeout.
DEFAULT_W4_SETTINGS = (ProducerSetting(5, MiB), ProducerSetting(50, MiB),
                       ProducerSetting(5, MiB, bulk=True))


@dataclass(frozen=True)
class Settings:
    records: int
    value_bytes: int
    workloads: tuple[str, ...]
    rate: int
    seconds: float
    timeout: float
    producer_settings: tuple[ProducerSetting, ...]
    w4_producer_settings: tuple[ProducerSetting, ...]
    w4_records: int
    quick: bool


def parse_settings(text: str) -> tuple[ProducerSetting, ...]:
    out = []
    for item in text.split(","):
        linger, sep, rest = item.strip().partition(":")
        size, _, call = rest.partition(":")
        if not sep or call not in ("", "many"):
            raise ValueError(f"{item!r} is not LINGER_MS:BATCH_BYTES[:many]")
        out.append(ProducerSetting(float(linger), int(size), bulk=call == "many"))
    return tuple(out)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description="Benchmark the single-node appliance end to end: produce throughput (W1, "
        "W4), consume throughput (W2), end-to-end latency at a fixed rate (W3).")
    parser.add_argument("--records", type=int, default=None,
                        help="records per throughput run (default 1,000,000; --quick 20,000)")
    parser.add_argument("--value-bytes", type=int, default=100,
                        help="value size of W1/W2/W3 records (default 100)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated subset of W1,W2,W3,W4 (default all)")
    parser.add_argument("--rate", type=int, default=None,
                        help="W3 records per second (default 5000; --quick 2000)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="W3 duration in seconds (default 10; --quick 1)")
    parser.add_argument("--producer-settings", default=None, metavar="MS:BYTES[:many],...",
                        help="W1 producer settings to try, linger_ms:batch_size pairs, "
                        ":many for send_many() instead of send() per record "
                        "(default 5:65536,5:1048576,50:1048576,5:1048576:many)")
    parser.add_argument("--w4-producer-settings", default=None,
                        metavar="MS:BYTES[:many],...",
                        help="the same for W4 (default 5:1048576,50:1048576,5:1048576:many)")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds one workload may take before the bench aborts (300)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run: 20,000 records, W3 at 2,000/s for 1 s")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write every figure to PATH as JSON")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the temporary data directory (default ./.bench; use a "
                        "disk filesystem, not tmpfs, or fdatasync costs nothing)")
    args = parser.parse_args(argv)
    records = args.records if args.records is not None else (20_000 if args.quick else 1_000_000)
    rate = args.rate if args.rate is not None else (2000 if args.quick else 5000)
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 10.0)
    workloads = tuple(w.strip().upper() for w in args.workloads.split(",") if w.strip())
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        parser.error(f"--workloads takes a subset of {','.join(WORKLOADS)}, not {args.workloads}")
    if not 1 <= records <= 100_000_000:
        parser.error("--records must be between 1 and 100,000,000")
    if not 8 <= args.value_bytes <= 1_000_000:
        parser.error("--value-bytes must be between 8 and 1,000,000")
    if not 1 <= rate <= 1_000_000 or not 0.1 <= seconds <= 3600:
        parser.error("--rate must be 1..1,000,000 and --seconds 0.1..3600")
    if "W3" in workloads and int(rate * seconds) < 1:
        parser.error("--rate times --seconds must come to at least one W3 record")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        producer_settings = (parse_settings(args.producer_settings)
                             if args.producer_settings else DEFAULT_SETTINGS)
        w4_producer_settings = (parse_settings(args.w4_producer_settings)
                                if args.w4_producer_settings else DEFAULT_W4_SETTINGS)
    except ValueError as exc:
        parser.error(f"--producer-settings: {exc}")
    settings = Settings(records=records, value_bytes=args.value_bytes,
                        workloads=tuple(w for w in WORKLOADS if w in workloads),
                        rate=rate, seconds=seconds, timeout=args.timeout,
                        producer_settings=producer_settings,
                        w4_producer_settings=w4_producer_settings, w4_records=records,
                        quick=args.quick)
    return args, settings


# --- results --------------------------------------------------------------------------


@dataclass
class Result:
    workload: str
    what: str
    settings: str
    records: int
    value_bytes: int
    seconds: float
    client_cpu_s: float
    appliance_cpu_s: float
    batches: int | None = None
    requests: int | None = None
    latency_ms: dict[str, float] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.rate * self.value_bytes / MB


# --- W1 / W4: produce ---------------------------------------------------------------------


def count_requests(producer: Producer) -> dict[str, int]:
    """Count the produce requests and batches the producer's sender thread sends.

    Wraps the sender's internal _send (a bench-only peek; if it is gone the
    counts stay at zero and the table shows '-')."""
    counts = {"requests": 0, "batches": 0}
    sender = getattr(producer, "_sender", None)
    send = getattr(sender, "_send", None)
    if send is None:
        return counts

    def counting(connection, batches, *rest):
        counts["requests"] += 1
        counts["batches"] += len(batches)
        return send(connection, batches, *rest)

    sender._send = counting
    return counts


def run_produce(workload: str, bootstrap: str, topic: str, records: int, value_bytes: int,
                setting: ProducerSetting, meter: CpuMeter, deadline: Deadline) -> Result:
    values = make_values(value_bytes, seed=len(topic))
    mask = VALUE_POOL - 1
    producer = Producer(bootstrap, acks=1, linger_ms=setting.linger_ms,
                        batch_size=setting.batch_size)
    try:
        # Untimed: metadata, the producer id and the connection.
        producer.partitions_for_topic(topic)
        sender = getattr(producer, "_sender", None)
        if hasattr(sender, "_identity"):  # the producer id, asked for once
            sender._identity()
        counts = count_requests(producer)
        send = producer.send
        chunk = [values[i & mask] for i in range(min(BULK_CHUNK, records))]
        meter.start()
        began = time.perf_counter()
        if setting.bulk:
            for start in range(0, records, BULK_CHUNK):
                producer.send_many(topic, chunk[:records - start], partition=0)
                deadline.check()
        else:
            for i in range(records):
                send(topic, values[i & mask], partition=0)
                if not i & 0x3FFF:
                    deadline.check()
        sent = time.perf_counter()
        producer.flush(timeout=max(1.0, deadline.remaining()))
        seconds = time.perf_counter() - began
        client_cpu, appliance_cpu = meter.stop()
    finally:
        producer.close(timeout=10)
    check_stored(bootstrap, topic, records, f"{workload} ({setting.label()})")
    return Result(workload, f"produce {value_bytes} B, acks=1", setting.label(), records,
                  value_bytes, seconds, client_cpu, appliance_cpu,
                  batches=counts["batches"] or None, requests=counts["requests"] or None,
                  extra={"send_loop_seconds": sent - began, "linger_ms": setting.linger_ms,
                         "batch_size": setting.batch_size, "topic": topic})


def check_stored(bootstrap: str, topic: str, records: int, what: str) -> None:
    """A produce figure counts only acknowledged records: flush() also returns
    when batches failed (e.g. larger than message.max.bytes), so look at the log."""
    with Consumer(bootstrap_servers=bootstrap) as consumer:
        stored = consumer.end_offsets([(topic, 0)])[(topic, 0)]
    if stored != records:
        raise RuntimeError(f"{what}: {stored:,} of {records:,} records were stored; "
                           "is the batch size above message.max.bytes (1 MiB)?")


# --- W2: consume --------------------------------------------------------------------------


def run_consume(bootstrap: str, topic: str, records: int, value_bytes: int, meter: CpuMeter,
                deadline: Deadline) -> Result:
    consumer = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                        enable_auto_commit=False)
    try:
        consumer.assign([(topic, 0)])
        consumer.position(topic, 0)  # untimed: the list_offsets round trip
        got = 0
        polls = 0
        last_offset = -1
        meter.start()
        began = time.perf_counter()
        while got < records:
            batch = consumer.poll(timeout_ms=1000, max_records=1_000_000)
            polls += 1
            if batch:
                got += len(batch)
                last_offset = batch[-1].offset
            deadline.check()
        seconds = time.perf_counter() - began
        client_cpu, appliance_cpu = meter.stop()
    finally:
        consumer.close()
    if last_offset != records - 1:
        raise RuntimeError(f"W2 read {got} records ending at offset {last_offset}, "
                           f"expected offsets 0..{records - 1}")
    return Result("W2", f"consume {value_bytes} B", "assign, poll(max_records=1M), "
                  "fetch 1 MiB", got, value_bytes, seconds, client_cpu, appliance_cpu,
                  extra={"polls": polls, "topic": topic})


# --- W3: latency --------------------------------------------------------------------------


def latency_consumer(bootstrap: str, topic: str, ready, control, results) -> None:
    """Child process: receive records, record receive time minus the embedded send time.

    Tells the parent on `ready` once positioned; stops when the parent has sent
    the number of records to expect on `control` and that many arrived, or
    when the parent sends -1."""
    from array import array

    consumer = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                        enable_auto_commit=False, fetch_max_wait_ms=100)
    me = psutil.Process()
    latencies = array("q")
    try:
        consumer.assign([(topic, 0)])
        consumer.position(topic, 0)
        ready.send(True)
        expected = None
        cpu0 = None
        while expected is None or len(latencies) < expected:
            messages = consumer.poll(timeout_ms=100, max_records=100_000)
            now = time.time_ns()
            for m in messages:
                sent = int.from_bytes(m.value[:8], "big")
                if sent == 0:
                    continue  # warm-up record
                if cpu0 is None:
                    cpu0 = cpu_seconds(me)
                latencies.append(now - sent)
            if control.poll():
                expected = control.recv()
                if expected < 0:
                    break
        cpu = cpu_seconds(me) - cpu0 if cpu0 is not None else 0.0
        results.send((latencies.tobytes(), cpu))
    finally:
        consumer.close()


def run_latency(bootstrap: str, topic: str, rate: int, seconds: float, value_bytes: int,
                meter: CpuMeter, deadline: Deadline) -> Result:
    from array import array

    ctx = multiprocessing.get_context("spawn")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    control_r, control_w = ctx.Pipe(duplex=False)
    results_r, results_w = ctx.Pipe(duplex=False)
    child = ctx.Process(target=latency_consumer, name="ringlog-bench-consumer",
                        args=(bootstrap, topic, ready_w, control_r, results_w), daemon=True)
    child.start()
    producer = Producer(bootstrap, acks=1, linger_ms=0, batch_size=64 * KiB)
    padding = b"\x00" * (value_bytes - 8)
    acks = array("q")
    try:
        if not ready_r.poll(max(1.0, min(60.0, deadline.remaining()))):
            raise BenchTimeout("W3: the consumer process did not start within 60 s")
        ready_r.recv()
        # Warm-up: connection, producer id, a round trip through the consumer.
        for _ in range(10):
            producer.send(topic, bytes(value_bytes), partition=0).result(timeout=30)

        def on_ack(sent_ns: int):
            def done(_future) -> None:
                acks.append(time.time_ns() - sent_ns)
            return done

        sent_count = 0
        period = 1.0 / rate
        total = int(rate * seconds)
        meter.start()
        began = time.perf_counter()
        while sent_count < total:
            due = min(total, int((time.perf_counter() - began) / period) + 1)
            while sent_count < due:
                now_ns = time.time_ns()
                future = producer.send(topic, now_ns.to_bytes(8, "big") + padding, partition=0)
                future.add_done_callback(on_ack(now_ns))
                sent_count += 1
            next_at = began + sent_count * period
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            if not sent_count & 0xFF:
                deadline.check()
        send_seconds = time.perf_counter() - began
        producer.flush(timeout=max(1.0, deadline.remaining()))
        control_w.send(total)
        if not results_r.poll(max(1.0, min(30.0, deadline.remaining()))):
            raise BenchTimeout(f"W3: the consumer had not received {total:,} records "
                               "30 s after the last send")
        raw, consumer_cpu = results_r.recv()
        client_cpu, appliance_cpu = meter.stop()
    finally:
        producer.close(timeout=10)
        if child.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                control_w.send(-1)
            child.join(5)
            if child.is_alive():
                child.terminate()
                child.join(5)
    received = array("q")
    received.frombytes(raw)
    if not received:
        raise RuntimeError(f"W3: the consumer received none of the {sent_count:,} records")
    e2e = latency_summary((v / 1e6 for v in received), TAIL_PERCENTILES)
    ack = latency_summary((v / 1e6 for v in acks), TAIL_PERCENTILES)
    latency = {"p50": e2e["p50"], "p99": e2e["p99"], "p99.9": e2e["p99.9"], "max": e2e["max"],
               **{f"ack_{name}": ack[name] for name, _ in TAIL_PERCENTILES}}
    return Result("W3", f"end-to-end {value_bytes} B, acks=1",
                  f"{rate:,}/s for {seconds:g} s, linger 0 ms", sent_count, value_bytes,
                  send_seconds, client_cpu + consumer_cpu, appliance_cpu, latency_ms=latency,
                  extra={"received": len(received), "producer_cpu_s": client_cpu,
                         "consumer_cpu_s": consumer_cpu, "topic": topic,
                         "mean_ms": e2e["avg"]})


# --- report ------------------------------------------------------------------------------


def best_runs(results: list[Result]) -> dict[str, Result]:
    """The result judged against each workload's target: the fastest W1/W4 setting."""
    best: dict[str, Result] = {}
    for r in results:
        if r.workload not in best or r.rate > best[r.workload].rate:
            best[r.workload] = r
    return best


def judge(r: Result) -> tuple[str, bool]:
    """(the measured figure in the target's unit, whether the target is met)."""
    kind, goal = TARGETS[r.workload]
    if kind == "records/s":
        return f"{r.rate:,.0f} rec/s = {r.rate / goal:.1%} of target", r.rate >= goal
    if kind == "MB/s":
        return f"{r.mbps:,.1f} MB/s = {r.mbps / goal:.1%} of target", r.mbps >= goal
    lat = r.latency_ms or {}
    values = [lat.get(k, float("nan")) for k in ("p50", "p99", "p99.9")]
    met = all(v <= g for v, g in zip(values, goal, strict=True))
    return " / ".join(f"{v:.2f}" for v in values) + " ms", met


def report(s: Settings, workdir: Path, results: list[Result], load: tuple[float, float],
           elapsed: float) -> str:
    fstype, device, mount = fs_of(workdir)
    out = [
        "Ringlog appliance bench (issue #3)",
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Linux {platform.release()}; load average {load[0]:.2f} at start, {load[1]:.2f} at end",
        f"  data in {workdir} on {fstype} ({device} at {mount})",
        "  one appliance: supervisor + 1 worker, flush policy batch (fdatasync before the ack); "
        "one partition per topic",
        "  MB/s = record values only, 10^6 bytes; CPU = user+system seconds over the timed "
        "interval / its length (100% = one core; this host has 2)",
        "",
    ]
    best = best_runs(results)
    several = {w for w in ("W1", "W4") if sum(r.workload == w for r in results) > 1}
    rows = []
    for r in results:
        lat = r.latency_ms
        mark = " *" if r.workload in several and best[r.workload] is r else ""
        rows.append([
            r.workload,
            r.what,
            r.settings + mark,
            f"{r.records:,}",
            f"{r.seconds:.2f}",
            f"{r.rate:,.0f}",
            f"{r.mbps:,.1f}",
            f"{r.records / r.batches:,.0f}" if r.batches else "-",
            f"{r.client_cpu_s / r.seconds:.0%}",
            f"{r.appliance_cpu_s / r.seconds:.0%}",
            f"{lat['p50']:.2f} / {lat['p99']:.2f} / {lat['p99.9']:.2f}" if lat else "-",
        ])
    out.append(table(rows, ["", "workload", "settings", "records", "seconds", "records/s",
                            "MB/s", "rec/batch", "client CPU", "appl. CPU",
                            "e2e ms p50/p99/p99.9"], text_columns=3))
    notes = []
    if several:
        notes.append("* the fastest setting of the workload: the one judged below")
    for r in results:
        if r.workload == "W3" and r.latency_ms:
            lat = r.latency_ms
            notes.append(
                f"W3: {r.extra['received']:,} of {r.records:,} records received; producer ack "
                f"latency p50/p99/p99.9 {lat['ack_p50']:.2f} / {lat['ack_p99']:.2f} / "
                f"{lat['ack_p99.9']:.2f} ms, e2e max {lat['max']:.2f} ms; client CPU = "
                f"producer {r.extra['producer_cpu_s'] / r.seconds:.0%} + consumer process "
                f"{r.extra['consumer_cpu_s'] / r.seconds:.0%}")
        if r.workload == "W2":
            notes.append(f"W2: read back {r.extra['topic']} (written by the first W1 setting) "
                         f"in {r.extra['polls']} polls")
    out += ["", *notes, "", "Targets (issue #3)"]
    width = max(len(TARGET_TEXT[w]) for w in best)
    for w in WORKLOADS:
        if w in best:
            figure, met = judge(best[w])
            out.append(f"  {w} {TARGET_TEXT[w].ljust(width)}  {figure}  "
                       + ("OK" if met else "MISSED"))
    out.append(f"  total time {elapsed:.1f} s")
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------


def run(s: Settings, workdir: Path, progress: Callable[[str], None]) -> list[Result]:
    results: list[Result] = []
    appliance = Appliance(workdir, "log.flush.policy=batch")
    try:
        appliance.wait_until_serving()
        meter = CpuMeter(appliance)
        bootstrap = appliance.bootstrap
        w1_topic = None
        needs_w1_data = "W1" in s.workloads or "W2" in s.workloads
        if needs_w1_data:
            settings = s.producer_settings if "W1" in s.workloads else s.producer_settings[:1]
            for i, setting in enumerate(settings):
                label = f"W1 ({setting.label()})"
                progress(f"{label}: producing {s.records:,} records")
                deadline = Deadline(label, s.timeout)
                topic = f"bench-w1-{i}"
                appliance.create_topic(topic, deadline)
                result = run_produce("W1", bootstrap, topic, s.records, s.value_bytes, setting,
                                     meter, deadline)
                if "W1" in s.workloads:
                    results.append(result)
                w1_topic = w1_topic or topic
        if "W2" in s.workloads:
            progress(f"W2: consuming {s.records:,} records")
            results.append(run_consume(bootstrap, w1_topic, s.records, s.value_bytes, meter,
                                       Deadline("W2", s.timeout)))
        if "W3" in s.workloads:
            progress(f"W3: {s.rate:,} records/s for {s.seconds:g} s")
            deadline = Deadline("W3", s.timeout)
            appliance.create_topic("bench-w3", deadline)
            results.append(run_latency(bootstrap, "bench-w3", s.rate, s.seconds, s.value_bytes,
                                       meter, deadline))
        if "W4" in s.workloads:
            for i, setting in enumerate(s.w4_producer_settings):
                label = f"W4 ({setting.label()})"
                progress(f"{label}: producing {s.w4_records:,} records of 1 KiB")
                deadline = Deadline(label, s.timeout)
                topic = f"bench-w4-{i}"
                appliance.create_topic(topic, deadline)
                results.append(run_produce("W4", bootstrap, topic, s.w4_records, W4_VALUE_BYTES,
                                           setting, meter, deadline))
    finally:
        progress("stopping the appliance")
        code = appliance.stop()
    if code != 0:
        raise RuntimeError(f"the appliance exited with {code} after SIGTERM (expected 0):\n"
                           + appliance.stderr_tail())
    return results


def main(argv: list[str] | None = None) -> int:
    args, s = parse_args(argv)
    need = 2 * s.records * (s.value_bytes + 64) * len(s.producer_settings) + (1 << 30)
    if "W4" in s.workloads:
        need += s.w4_records * (W4_VALUE_BYTES + 64) * len(s.w4_producer_settings)
    try:
        with work_directory(args.dir, "appliance-", need) as workdir:
            load0 = os.getloadavg()[0]
            began = time.perf_counter()
            try:
                results = run(s, workdir, progress)
            except RUN_FAILURES as exc:
                return stopped(exc)
            progress("")
            print(report(s, workdir, results, (load0, os.getloadavg()[0]),
                         time.perf_counter() - began))
            if args.json:
                args.json.write_text(json.dumps({
                    "settings": asdict(s),
                    "machine": machine(workdir),
                    "results": [{**asdict(r), "records_per_s": r.rate, "mb_per_s": r.mbps}
                                for r in results],
                }, indent=2) + "\n")
    except NotEnoughSpace as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
