"""What one Producer.send() costs per record, in-process: the C path beside the Python one.

    python -m loadtest.send_bench                      # against an appliance it starts
    python -m loadtest.send_bench --accumulator-only   # no appliance, no sender thread
    python -m loadtest.send_bench --records 1000000 --rounds 3 --shape keyed

Each measurement times a loop of `--records` send() calls (100 B values by
default, cycled from a pool built before the clock) and reports nanoseconds
per record of the loop alone; against an appliance also the records/s from
the first send() to flush() returning, as W1 in loadtest.bench times it
(acks=1, linger 50 ms, 1 MiB batches). The paths alternate round by round,
so that the noise of a shared machine falls on both alike:

c       `producer.send`, the C method (appliance.client._accumulator)
python  `producer._python_send`, the pure-Python path the C one falls back to
        (where there is no C path, as on main before it, `send` itself)

--accumulator-only leaves out the sender thread and the network: the
accumulator's side of send() alone (records pile up in closed batches that
nobody drains, so the buffer is made big enough for all of them).

--shape: `partition` (partition=0, as W1), `keyed` (a 16-byte key, murmur2
picks among --partitions), `keyless` (the sticky partition), `headers`
(partition=0 and one header).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from appliance.client import Producer
from appliance.client.record_accumulator import RecordAccumulator
from appliance.partitioner import DefaultPartitioner
from loadtest.harness import VALUE_POOL, Appliance, Deadline, make_values

SHAPES = ("partition", "keyed", "keyless", "headers")
TOPIC = "send-bench"


def send_of(producer: Producer, path: str) -> Callable:
    """The bound send() of the path asked for."""
    if path == "python":
        return getattr(producer, "_python_send", producer.send)
    return producer.send


def loop(send: Callable, records: int, values: list[bytes], shape: str) -> float:
    """Seconds taken by `records` send() calls of `shape`."""
    mask = VALUE_POOL - 1
    topic = TOPIC
    keys = [random.Random(i).randbytes(16) for i in range(VALUE_POOL)]
    headers = [("trace", b"0123456789abcdef")]
    began = time.perf_counter()
    if shape == "partition":
        for i in range(records):
            send(topic, values[i & mask], partition=0)
    elif shape == "keyed":
        for i in range(records):
            send(topic, values[i & mask], keys[i & mask])
    elif shape == "keyless":
        for i in range(records):
            send(topic, values[i & mask])
    else:
        for i in range(records):
            send(topic, values[i & mask], partition=0, headers=headers)
    return time.perf_counter() - began


def accumulator_only(partitions: int) -> Producer:
    """A Producer's accumulator side with no sender thread and no connection:
    what send() does up to handing a batch over, nothing after."""
    producer = Producer.__new__(Producer)
    producer._partitions = {TOPIC: partitions}
    RecordAccumulator.__init__(producer, linger_s=3600, batch_size=1 << 20,
                               buffer_memory=1 << 40, max_block_s=60,
                               delivery_timeout_s=120, partitioner=DefaultPartitioner())
    return producer


def discard(producer: Producer) -> None:
    os.close(producer._wake_r)
    os.close(producer._wake_w)


def measure(path: str, args: argparse.Namespace, values: list[bytes],
            bootstrap: str | None) -> tuple[float, float | None]:
    """One round of one path: ns per record of the send() loop, and the
    records/s to flush() when an appliance takes them."""
    if bootstrap is None:
        producer = accumulator_only(args.partitions)
        gc.collect()
        seconds = loop(send_of(producer, path), args.records, values, args.shape)
        discard(producer)
        return seconds / args.records * 1e9, None
    producer = Producer(bootstrap, acks=1, linger_ms=50, batch_size=1 << 20)
    try:
        producer.partitions_for_topic(TOPIC)
        sender = getattr(producer, "_sender", None)
        if hasattr(sender, "_identity"):
            sender._identity()  # the producer id, untimed
        began = time.perf_counter()
        seconds = loop(send_of(producer, path), args.records, values, args.shape)
        producer.flush(timeout=300)
        total = time.perf_counter() - began
    finally:
        producer.close(timeout=10)
    return seconds / args.records * 1e9, args.records / total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.send_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", default="c,python",
                        help="comma-separated, in the order run each round (default c,python)")
    parser.add_argument("--shape", choices=SHAPES, default="partition")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--accumulator-only", action="store_true")
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if any(p not in ("c", "python") for p in paths) or args.records < 1:
        parser.error("--paths takes c and python; --records must be positive")
    values = make_values(args.value_bytes, seed=1)
    results: dict[str, list[tuple[float, float | None]]] = {p: [] for p in paths}
    with tempfile.TemporaryDirectory(prefix="send-bench-", dir=Path.cwd()) as workdir:
        appliance = None
        if not args.accumulator_only:
            appliance = Appliance(Path(workdir), "log.flush.policy=batch")
            appliance.wait_until_serving()
            appliance.create_topic(TOPIC, Deadline("create the topic", 60),
                                   partitions=args.partitions)
        try:
            for round_ in range(args.rounds):
                for path in paths:
                    ns, rate = measure(path, args, values,
                                       appliance.bootstrap if appliance else None)
                    results[path].append((ns, rate))
                    shown = f", {rate:,.0f} rec/s to flush" if rate else ""
                    print(f"round {round_ + 1} {path:6s}: {ns:7.0f} ns/record{shown}",
                          file=sys.stderr)
        finally:
            if appliance is not None:
                appliance.stop()
    where = "accumulator only" if args.accumulator_only else "against an appliance"
    print(f"send() loop, {args.records:,} records of {args.value_bytes} B, shape "
          f"{args.shape}, {where}, best of {args.rounds}:")
    for path, runs in results.items():
        best_ns = min(ns for ns, _ in runs)
        rates = [rate for _, rate in runs if rate]
        extra = f"  {max(rates):>12,.0f} rec/s to flush" if rates else ""
        print(f"  {path:6s} {best_ns:7.0f} ns/record  {1e9 / best_ns:>12,.0f} send()/s{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
