"""Where W3's latency goes: single requests, one at a time, on an idle appliance.

    .venv/bin/python -m loadtest.latency_pieces [--requests 2000]

Prints p50/p99/p99.9 in ms of: a metadata request (client to the front end
and back, no worker), a produce request on the caller's own socket at the
front end and at the partition's worker door, one `send().result()` at a
time with acks=1 (through the producer's sender thread) under the
`batch` flush policy (fdatasync before the ack) and under `os` (no flush),
and a bare fdatasync of a 120-byte write on the same disk. The difference
between the rows is the cost of each step of the produce path.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from appliance.client import Admin, Producer
from appliance.client.blocking_connection import BlockingConnection
from appliance.client.network_client import door_endpoint
from loadtest.harness import TAIL_PERCENTILES, Appliance, latency_summary, work_directory
from shm.records import Record, encode_batch


def percentiles_ms(samples: list[float]) -> str:
    """p50 / p99 / p99.9 of samples in seconds, in ms."""
    summary = latency_summary((v * 1e3 for v in samples), TAIL_PERCENTILES)
    return " / ".join(f"{summary[name]:.3f}" for name, _ in TAIL_PERCENTILES)


def measure(workdir: Path, policy: str, requests: int) -> None:
    appliance = Appliance(workdir, f"log.flush.policy={policy}")
    try:
        appliance.wait_until_serving()
        with Admin(appliance.bootstrap) as admin:
            admin.create_topic("pieces", partitions=1)
        connection = BlockingConnection(appliance.bootstrap)
        samples = []
        for _ in range(requests):
            began = time.perf_counter()
            connection.request("metadata", {"topics": ["pieces"]})
            samples.append(time.perf_counter() - began)
        connection.close()
        print(f"  [{policy:5}] metadata request, front end only        {percentiles_ms(samples)}")
        for where, address in (("front end", appliance.bootstrap),
                               ("door", door_of(appliance.bootstrap))):
            samples = raw_produce(address, requests)
            print(f"  [{policy:5}] produce request at the {where:9}, own socket "
                  f"{percentiles_ms(samples)}")
        with Producer(appliance.bootstrap, acks=1, linger_ms=0) as producer:
            producer.send("pieces", b"warm-up", partition=0).result(10)
            samples = []
            for _ in range(requests):
                began = time.perf_counter()
                producer.send("pieces", b"x" * 100, partition=0).result(10)
                samples.append(time.perf_counter() - began)
        print(f"  [{policy:5}] send().result(), acks=1, one at a time  {percentiles_ms(samples)}")
    finally:
        appliance.stop()


def door_of(bootstrap: str) -> str:
    """HOST:PORT of the door of the worker owning pieces-0, from metadata."""
    connection = BlockingConnection(bootstrap)
    try:
        topic = connection.request("metadata", {"topics": ["pieces"]}).fields["topics"][0]
    finally:
        connection.close()
    return door_endpoint(topic["partitions"][0]["endpoint"], f"tcp://{bootstrap}"
                         ).removeprefix("tcp://")


def raw_produce(address: str, requests: int) -> list[float]:
    """acks=1 produce requests of one 100 B record on the caller's own socket:
    the appliance's share of send().result(), without the producer's thread."""
    connection = BlockingConnection(address)
    batch = encode_batch([Record(value=b"x" * 100)])
    fields = {"acks": 1, "timeout_ms": 10_000, "partitions": [["pieces", 0]]}
    samples = []
    try:
        for _ in range(requests):
            began = time.perf_counter()
            connection.request("produce", fields, [batch])
            samples.append(time.perf_counter() - began)
    finally:
        connection.close()
    return samples


def fdatasync_ms(workdir: Path, requests: int) -> list[float]:
    path = workdir / "fdatasync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    samples = []
    try:
        for _ in range(requests):
            os.write(fd, b"x" * 120)
            began = time.perf_counter()
            os.fdatasync(fd)
            samples.append(time.perf_counter() - began)
    finally:
        os.close(fd)
        path.unlink()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.latency_pieces")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    print(f"W3 latency pieces, {args.requests} requests each; ms p50 / p99 / p99.9; "
          f"load average {os.getloadavg()[0]:.2f}")
    with work_directory(args.dir, "latency-", 64 << 20) as workdir:
        for policy in ("batch", "os"):
            (workdir / policy).mkdir()
            measure(workdir / policy, policy, args.requests)
        print(f"  bare fdatasync of a 120 B write                  "
              f"{percentiles_ms(fdatasync_ms(workdir, args.requests))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
