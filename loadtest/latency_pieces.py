"""Where W3's latency goes: single requests, one at a time, on an idle appliance.

    .venv/bin/python -m loadtest.latency_pieces [--requests 2000]

Prints p50/p99/p99.9 in ms of: a metadata request (client to the front end
and back, no worker), a produce request on the caller's own socket at the
front end and at the partition's worker door, one `send().result()` at a
time with acks=1 (through the producer's sender thread) under the
`batch` flush policy (fdatasync before the ack) and under `os` (no flush),
a bare fdatasync of a 120-byte write on the same disk, and two floors with
no appliance at all: a DEALER-to-ROUTER echo over ZeroMQ and an echo over a
plain TCP socket, each to a Python process of its own. The difference
between the rows is the cost of each step of the produce path.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import time
from pathlib import Path

import zmq

from appliance.client import Admin, Producer
from appliance.client.blocking_connection import BlockingConnection
from appliance.client.network_client import door_endpoint
from loadtest.harness import (
    TAIL_PERCENTILES,
    Appliance,
    free_port,
    latency_summary,
    work_directory,
)
from shm.records import Record, encode_batch

ECHO_REQUEST = (b"h" * 60, b"b" * 170)  # a produce request's size: header frame, one batch


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


def _zmq_echo_server(port: int) -> None:
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.bind(f"tcp://127.0.0.1:{port}")
    while (frames := router.recv_multipart())[-1] != b"stop":
        router.send_multipart(frames)


def _tcp_echo_server(listener: socket.socket) -> None:
    connection, _ = listener.accept()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (data := connection.recv(65536)) not in (b"", b"stop"):
        connection.sendall(data)


def echo_floors(requests: int) -> tuple[list[float], list[float]]:
    """Round trips of a produce-sized message to an echoing Python process:
    over ZeroMQ (DEALER to ROUTER, an I/O thread at each end) and over TCP."""
    context = multiprocessing.get_context("fork")
    port = free_port()
    server = context.Process(target=_zmq_echo_server, args=(port,), daemon=True)
    server.start()
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 1000)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    over_zmq = []
    for _ in range(requests):
        began = time.perf_counter()
        dealer.send_multipart(ECHO_REQUEST)
        dealer.recv_multipart()
        over_zmq.append(time.perf_counter() - began)
    dealer.send(b"stop")
    dealer.close()
    server.join(10)
    listener = socket.create_server(("127.0.0.1", 0))
    server = context.Process(target=_tcp_echo_server, args=(listener,), daemon=True)
    server.start()
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message, over_tcp = b"".join(ECHO_REQUEST), []
    for _ in range(requests):
        began = time.perf_counter()
        client.sendall(message)
        received = 0
        while received < len(message):
            received += len(client.recv(65536))
        over_tcp.append(time.perf_counter() - began)
    client.sendall(b"stop")
    client.close()
    server.join(10)
    listener.close()
    return over_zmq, over_tcp


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
    over_zmq, over_tcp = echo_floors(args.requests)
    print(f"  echo over ZeroMQ, no appliance                   {percentiles_ms(over_zmq)}")
    print(f"  echo over TCP, no appliance                      {percentiles_ms(over_tcp)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
