"""What the broker core costs per request, in-process, without sockets.

One produce of one 100 B record, the supervisor's side of it end to end:
decode the client's frames, Broker.handle, drain the outbox, encode the
worker message, parse the owner's answer (as the loop would receive it),
encode the reply. The owner's own work (parse, append, fdatasync, answer)
is left out: the worker process does it, and the bench measures it whole.
Per request, never per record: the core never looks inside a record set.

    python -m loadtest.core_bench [--requests N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from appliance import protocol
from appliance.broker import Broker, ClientReply, PartitionReaders
from appliance.config import load_config
from appliance.metadata import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS, Metadata
from appliance.metrics import RequestMetrics
from appliance.native import decode_request, encode_reply
from shm.records import Record, encode_batch
from workers import protocol as wp


def core(directory: Path) -> Broker:
    """A core with one ready worker and one topic of one partition."""
    config = load_config(overrides=[f"log.dirs={directory}", "num.workers=1"], environ={})
    metadata = Metadata(directory, 1)
    metadata.create(OFFSETS_TOPIC, 1, 1, dict(OFFSETS_TOPIC_CONFIGS))
    metadata.create("bench", 1, 1, {})
    broker = Broker(config, metadata, PartitionReaders(metadata),
                    RequestMetrics(protocol.SCHEMAS, CollectorRegistry()))
    broker.calls.ready.add(0)
    return broker


def produce_round_trip(broker: Broker, frames: list) -> int:
    """One produce through the core; returns how many reply frames went out."""
    client, request = decode_request(b"client", frames)
    broker.handle(client, request)
    sent = 0
    while events := broker.drain():
        for event in events:
            if isinstance(event, ClientReply):
                sent += len(encode_reply(event.client, event.reply))
                continue
            message = event.message.encode()
            token = wp.parse(message).token  # what the worker does first
            answer = wp.Produced(token, [wp.ProduceResult("bench", 0, 0)]).encode()
            broker.on_worker_message(event.worker, wp.parse(answer))
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.core_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000,
                        help="timed produce requests (default 20,000)")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    frames = protocol.encode_request("produce", 1, {"acks": 1, "partitions": [["bench", 0]]},
                                     [encode_batch([Record(value=b"x" * 100)])])
    with tempfile.TemporaryDirectory(prefix="ringlog-core-bench-") as directory:
        broker = core(Path(directory))
        for _ in range(min(args.requests, 1000)):  # warm up
            produce_round_trip(broker, frames)
        began = time.perf_counter()
        for _ in range(args.requests):
            if produce_round_trip(broker, frames) == 0:
                raise SystemExit("ringlog: the core sent no reply; the bench is broken")
        elapsed = time.perf_counter() - began
        broker.close()
    print(f"broker core, one produce request in-process: "
          f"{elapsed / args.requests * 1e6:.1f} us per request ({args.requests:,} requests)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
