"""Produce or consume through the appliance, run by the tests inside the
container's network namespace (where the unit listens on 127.0.0.1:7092).

    python -m tests.systemd.client_process produce TOPIC COUNT
        sends COUNT records with acks=all, prints the acknowledged [partition, offset]s
    python -m tests.systemd.client_process consume TOPIC COUNT
        prints the values of the first COUNT records of partition 0 (JSON list)
    python -m tests.systemd.client_process round-trip TOPIC COUNT
        both in one process: the acknowledged positions and the values read back

A fourth argument HOST:PORT names another broker than 127.0.0.1:7092.
"""

from __future__ import annotations

import sys
import time

import orjson

from appliance.client import Consumer, Producer

BOOTSTRAP = "127.0.0.1:7092"
TIMEOUT_S = 15


def produce(bootstrap: str, topic: str, count: int) -> list[list[int]]:
    with Producer(bootstrap, acks="all") as producer:
        futures = [producer.send(topic, value=b"record-%d" % i) for i in range(count)]
        return [[md.partition, md.offset] for md in (f.result(TIMEOUT_S) for f in futures)]


def consume(bootstrap: str, topic: str, count: int) -> list[str]:
    consumer = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    consumer.assign([(topic, 0)])
    messages: list = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(messages) < count and time.monotonic() < deadline:
        messages += consumer.poll(timeout_ms=500)
    consumer.close()
    return [m.value.decode() for m in messages]


if __name__ == "__main__":
    command, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bootstrap = sys.argv[4] if len(sys.argv) > 4 else BOOTSTRAP
    commands = {
        "produce": lambda: produce(bootstrap, topic, count),
        "consume": lambda: consume(bootstrap, topic, count),
        "round-trip": lambda: [produce(bootstrap, topic, count),
                               consume(bootstrap, topic, count)],
    }
    sys.stdout.write(orjson.dumps(commands[command]()).decode())
