"""W1 and W2 through the Kafka listener with unmodified Kafka clients, beside
the native client, side by side in one run against one appliance:

    python -m loadtest.kafka_bench                    # 1,000,000 records each
    python -m loadtest.kafka_bench --records 200000 --profile /tmp/w1-profile

W1  one producer, 100-byte values, one partition, acks=1, each ack after
    the fdatasync that made it durable (flush policy `batch`), 1 MiB
    batches, linger 50 ms; timed from the first send to flush returning.
W2  one consumer reads that topic back from offset 0 (assign, poll),
    timed from the first poll to the last record.

Clients: `native` (appliance.client, send()), `confluent-kafka`
(librdkafka), `kafka-python`. Figures: records/s, and the CPU seconds of
the client process and of the appliance's processes (supervisor and
workers, psutil) over the timed interval, so one can see who limits whom.
With --profile DIR, py-spy samples the appliance's processes during the
confluent-kafka W1 and writes DIR/w1-confluent-kafka.txt (collapsed
stacks) for the profile in docs/performance.md.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.harness import (
    RUN_FAILURES,
    Appliance,
    CpuMeter,
    Deadline,
    make_values,
    stopped,
    table,
    work_directory,
)

CLIENTS = ("native", "confluent-kafka", "kafka-python")
VALUE_BYTES = 100
BATCH_BYTES = 1 << 20
LINGER_MS = 50


def produce(client: str, appliance: Appliance, topic: str, values: list[bytes], records: int,
            deadline: Deadline) -> Callable[[], None]:
    """A function that sends `records` values and returns once all are acked
    (set up, connected and warmed before it is returned: untimed)."""
    mask = len(values) - 1
    if client == "native":
        from appliance.client import Producer
        producer = Producer(appliance.bootstrap, acks=1, linger_ms=LINGER_MS,
                            batch_size=BATCH_BYTES)
        producer.partitions_for_topic(topic)

        def run() -> None:
            send = producer.send
            for i in range(records):
                send(topic, values[i & mask], partition=0)
            producer.flush(timeout=deadline.remaining())
            producer.close(timeout=10)
        return run
    if client == "confluent-kafka":
        from confluent_kafka import Producer
        producer = Producer({"bootstrap.servers": appliance.kafka_bootstrap, "acks": 1,
                             "linger.ms": LINGER_MS, "batch.size": BATCH_BYTES,
                             "batch.num.messages": 1_000_000,
                             "queue.buffering.max.messages": 2_000_000,
                             "queue.buffering.max.kbytes": 1 << 21,
                             "enable.idempotence": False})
        producer.list_topics(topic, timeout=10)

        def run() -> None:
            send = producer.produce
            for i in range(records):
                try:
                    send(topic, values[i & mask], partition=0)
                except BufferError:
                    producer.poll(0.01)
                    send(topic, values[i & mask], partition=0)
            if producer.flush(deadline.remaining()):
                raise RuntimeError("confluent-kafka W1: records left unacknowledged")
        return run
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=appliance.kafka_bootstrap, acks=1,
                             linger_ms=LINGER_MS, batch_size=BATCH_BYTES,
                             max_request_size=2 * BATCH_BYTES,
                             enable_idempotence=False)
    producer.partitions_for(topic)

    def run() -> None:
        send = producer.send
        for i in range(records):
            send(topic, values[i & mask], partition=0)
        producer.flush(timeout=deadline.remaining())
        producer.close()
    return run


def consume(client: str, appliance: Appliance, topic: str, records: int, deadline: Deadline
            ) -> Callable[[], None]:
    if client == "native":
        from appliance.client import Consumer
        consumer = Consumer(bootstrap_servers=appliance.bootstrap, auto_offset_reset="earliest")
        consumer.assign([(topic, 0)])
        consumer.position(topic, 0)

        def run() -> None:
            got = 0
            while got < records:
                got += len(consumer.poll(timeout_ms=1000, max_records=1_000_000))
                deadline.check()
            consumer.close()
        return run
    if client == "confluent-kafka":
        from confluent_kafka import Consumer, TopicPartition
        consumer = Consumer({"bootstrap.servers": appliance.kafka_bootstrap,
                             "group.id": f"bench-{topic}", "enable.auto.commit": False,
                             "fetch.max.bytes": 50 << 20,
                             "max.partition.fetch.bytes": BATCH_BYTES})
        consumer.assign([TopicPartition(topic, 0, 0)])

        def run() -> None:
            got = 0
            while got < records:
                got += sum(1 for m in consumer.consume(100_000, 1.0) if not m.error())
                deadline.check()
            consumer.close()
        return run
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=appliance.kafka_bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_partition_fetch_bytes=BATCH_BYTES)
    consumer.assign([TopicPartition(topic, 0)])

    def run() -> None:
        got = 0
        while got < records:
            got += sum(len(b) for b in consumer.poll(timeout_ms=1000,
                                                     max_records=1_000_000).values())
            deadline.check()
        consumer.close()
    return run


def timed(run: Callable[[], None], meter: CpuMeter) -> tuple[float, float, float]:
    meter.start()
    began = time.perf_counter()
    run()
    seconds = time.perf_counter() - began
    client_cpu, appliance_cpu = meter.stop()
    return seconds, client_cpu, appliance_cpu


def profiled(appliance: Appliance, path: Path) -> subprocess.Popen | None:
    """py-spy sampling the appliance's processes until terminated."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("warning: py-spy is not installed (pip install py-spy): no profile",
              file=sys.stderr)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([spy, "record", "--subprocesses", "--format", "raw", "--rate", "200",
                             "--output", str(path), "--pid", str(appliance.process.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Leaves where a sampled thread waits rather than works (py-spy's raw format keeps them).
IDLE = ("concurrent/futures/thread.py", "zmq/utils/garbage.py", "selectors.py",
        "zmq/sugar/poll.py", "threading.py")


def summarize(path: Path, top: int = 15) -> str:
    """The profile's busiest functions (self time) and its share by module area:
    the Kafka door, the broker core, the worker's storage, ZeroMQ."""
    leaves: dict[str, int] = {}
    areas: dict[str, int] = {}
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        leaf = frames[-1]
        if any(idle in leaf for idle in IDLE):
            continue
        busy += int(count)
        leaves[leaf] = leaves.get(leaf, 0) + int(count)
        area = next((a for a in ("appliance/kafka", "kio/", "appliance/broker", "shm/",
                                 "workers/", "zmq/", "appliance/supervisor")
                     if any(a in f for f in reversed(frames[-3:]))), "other")
        areas[area] = areas.get(area, 0) + int(count)
    lines = [f"{busy} busy samples (200 Hz) in the appliance's processes"]
    lines += [f"{100 * n / busy:5.1f}%  {area}" for area, n in
              sorted(areas.items(), key=lambda kv: -kv[1])]
    lines += ["", "busiest functions (self):"]
    lines += [f"{100 * n / busy:5.1f}%  {leaf}" for leaf, n in
              sorted(leaves.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--dir", type=Path, default=None, help="work directory (on a disk)")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--profile", type=Path, default=None,
                        help="write py-spy's samples of the appliance during confluent-kafka W1")
    args = parser.parse_args(argv)
    clients = [c for c in args.clients.split(",") if c]
    rows = []
    try:
        with work_directory(args.dir, "kafka-bench-", args.records * VALUE_BYTES * 4) as workdir:
            appliance = Appliance(workdir, "log.flush.policy=batch",
                                  "message.max.bytes=2097152")
            appliance.wait_until_serving()
            meter = CpuMeter(appliance)
            values = make_values(VALUE_BYTES, seed=1)
            try:
                for client in clients:
                    topic = f"w1-{client}"
                    deadline = Deadline(f"W1 {client}", args.timeout)
                    run = produce(client, appliance, topic, values, args.records, deadline)
                    spy = (profiled(appliance, args.profile / f"w1-{client}.txt")
                           if args.profile and client == "confluent-kafka" else None)
                    seconds, own, broker = timed(run, meter)
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                        spy.wait(60)
                    rows.append(("W1", client, args.records / seconds, own, broker, seconds))
                    deadline = Deadline(f"W2 {client}", args.timeout)
                    run = consume(client, appliance, topic, args.records, deadline)
                    seconds, own, broker = timed(run, meter)
                    rows.append(("W2", client, args.records / seconds, own, broker, seconds))
            finally:
                appliance.stop()
    except RUN_FAILURES as exc:
        return stopped(exc)
    print(table([(w, c, f"{rate:,.0f}", f"{own:.2f}", f"{broker:.2f}", f"{s:.2f}")
                 for w, c, rate, own, broker, s in rows],
                ["workload", "client", "records/s", "client CPU s", "broker CPU s", "seconds"],
                text_columns=2))
    profile = args.profile / "w1-confluent-kafka.txt" if args.profile else None
    if profile is not None and profile.exists():
        print(f"\nprofile of W1 through confluent-kafka ({profile}):\n{summarize(profile)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
