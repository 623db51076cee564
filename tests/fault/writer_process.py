"""A partition-log writer run as a child process by the fault tests.

The tests kill this process with SIGKILL, or let it exit without closing its
log, and then recover the log in the test process. Everything it writes is
generated deterministically from a seed, so the parent can regenerate any
batch the child may have appended and compare the log with it byte for byte.

Run as ``python writer_process.py MODE --dir D --ctl C --seed S ...``:

``stream``
    Open the log, print ``ready <log end offset>``, then append batches
    (1 to 3 concatenated per append call) and call flush() after every 1 to 4
    appends. After each flush() returns it prints one line per batch that has
    just become durable::

        durable <batch index> <base offset> <record count> <length> <sha256>

    It runs until it is killed; it exits with status 3 if it is still alive
    after --max-seconds or --max-batches (every loop here is bounded).

``abandon``
    Open the log, append --count batches, flush, print ``done <log end>`` and
    exit with os._exit(0): no close(), no clean-shutdown marker, exactly as a
    writer that died right after its last flush leaves the log.

Lines are written with os.write on the unbuffered stdout descriptor, each in
one call below PIPE_BUF, so a line the parent reads in full was printed after
the flush it reports, and a kill leaves at most one partial line behind.

This file also holds the generator of batches, imported by the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time

from shm.partition_log import LogConfig, PartitionLog
from shm.record_batch import stamp
from shm.records import Record, encode_batch

# A fixed clock: timestamps come from the seed, never from the wall clock.
EPOCH_MS = 1_700_000_000_000


def generate_batch(seed: str, writer: int, index: int, *, max_records: int = 50,
                   max_value: int = 2000) -> bytes:
    """Batch `index` of writer `writer` under `seed`, identical in every process.

    1..max_records records with values of 0..max_value random bytes, some
    keys and headers null or absent, and timestamps that mostly increase
    with the index but jitter by up to a second either way (records of a
    batch are not in timestamp order either), as real producers' clocks do.
    """
    rng = random.Random(f"{seed}/{writer}/{index}")
    count = rng.randint(1, max_records)
    base_ts = EPOCH_MS + (writer * 1_000_000 + index) * 100
    records = []
    for i in range(count):
        key = None if rng.random() < 0.2 else f"w{writer}-b{index}-r{i}".encode()
        value = None if rng.random() < 0.02 else rng.randbytes(rng.randint(0, max_value))
        headers = (("h", rng.randbytes(rng.randint(0, 8))),) if rng.random() < 0.1 else ()
        timestamp = base_ts + rng.randint(-1000, 1000)
        records.append(Record(value=value, key=key, timestamp=timestamp, headers=headers))
    return encode_batch(records)


def stored_form(batch: bytes, base_offset: int, epoch: int = 0) -> bytes:
    """A producer's batch as the engine stores it: base offset and epoch stamped."""
    return stamp(base_offset, len(batch) - 12, epoch) + batch[16:]


def record_count(batch: bytes) -> int:
    return int.from_bytes(batch[57:61], "big", signed=True)


def _say(line: str) -> None:
    data = (line + "\n").encode()
    assert len(data) < 512  # far below PIPE_BUF: one atomic write
    written = os.write(1, data)
    assert written == len(data)


def _open(args: argparse.Namespace) -> PartitionLog:
    config = LogConfig(segment_bytes=args.segment_bytes,
                       index_interval_bytes=args.index_interval_bytes)
    return PartitionLog.open(args.dir, config, control_path=args.ctl)


def stream(args: argparse.Namespace) -> int:
    log = _open(args)
    _say(f"ready {log.log_end_offset}")
    rng = random.Random(f"{args.seed}/{args.writer}/rhythm")
    deadline = time.monotonic() + args.max_seconds
    index = 0
    pending: list[tuple[int, int, int, int, str]] = []
    appends_until_flush = rng.randint(1, 4)
    while index < args.max_batches and time.monotonic() < deadline:
        group = [generate_batch(args.seed, args.writer, index + k,
                                max_records=args.max_records, max_value=args.max_value)
                 for k in range(rng.choice((1, 1, 1, 2, 3)))]
        offset = log.append(b"".join(group))
        for batch in group:
            count = record_count(batch)
            pending.append((index, offset, count, len(batch), hashlib.sha256(batch).hexdigest()))
            offset += count
            index += 1
        appends_until_flush -= 1
        if appends_until_flush == 0:
            log.flush()
            for entry in pending:
                _say("durable {} {} {} {} {}".format(*entry))
            pending.clear()
            appends_until_flush = rng.randint(1, 4)
    return 3  # nobody killed us in time: the parent reports this as a failure


def abandon(args: argparse.Namespace) -> int:
    log = _open(args)
    for index in range(args.count):
        log.append(generate_batch(args.seed, args.writer, index,
                                  max_records=args.max_records, max_value=args.max_value))
    log.flush()
    _say(f"done {log.log_end_offset}")
    sys.stdout.flush()
    os._exit(0)  # no close(): the log stays as a crashed writer leaves it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("stream", "abandon"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--ctl", required=True)
    parser.add_argument("--seed", required=True)
    parser.add_argument("--writer", type=int, default=0)
    parser.add_argument("--segment-bytes", type=int, default=256 * 1024)
    parser.add_argument("--index-interval-bytes", type=int, default=4096)
    parser.add_argument("--max-records", type=int, default=50)
    parser.add_argument("--max-value", type=int, default=2000)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--max-batches", type=int, default=100_000)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    return stream(args) if args.mode == "stream" else abandon(args)


if __name__ == "__main__":
    sys.exit(main())
