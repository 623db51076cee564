"""Where W3's acknowledgement latency goes under load: each step of a produce,
timed while the producer runs at W3's rate.

    .venv/bin/python -m loadtest.w3_steps [--rate 5000] [--seconds 4]

One producer (acks=1, linger 0, 100 B records, one partition, flush policy
`batch`) sends at `--rate` records/s, as bench.py's W3 does. Each step's
p50/p99 in microseconds:

- client: send() to the batch's request leaving on the socket (the hand-off
  to the sender thread), the request on the socket to its reply read back,
  the reply read to the record's callback;
- worker, per tick that answered a door produce: woken to its flush
  starting (receive, parse, validate, append), the flush (fdatasync), the
  flush done to the replies sent.

"On the socket to reply read" minus the worker's three steps is what the
request spends outside both Python loops: ZeroMQ's I/O threads on both
sides, the loopback, and waiting for a CPU to run on. The client's steps are
timed by wrapping the sender's methods in this process; the worker's by a
`sitecustomize` module on the appliance's PYTHONPATH that wraps the
worker's, so the appliance's own code is not changed for the measurement.
Timing costs a few microseconds a step, which the figures include.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import time
from pathlib import Path

from appliance.client import Admin, Producer
from appliance.client import sender as sender_module
from loadtest.harness import Appliance, work_directory

WORKER_TRACE = textwrap.dedent('''
    """Written by loadtest.w3_steps: time the worker's ticks that answer door produces."""
    import atexit, os, time

    def _trace():
        from workers import worker
        rows, tick = [], {}
        run_tick, flush, send_replies = (worker.Worker._tick, worker.Worker._flush_due_logs,
                                         worker.Worker._send_door_replies)

        def _tick(self, events):
            tick.clear()
            tick["woken"] = time.monotonic_ns()
            run_tick(self, events)
            if tick.get("replied"):
                rows.append((tick["flushing"] - tick["woken"], tick["flushed"] - tick["flushing"],
                             tick["sent"] - tick["flushed"]))

        def _flush(self):
            tick["flushing"] = time.monotonic_ns()
            try:
                return flush(self)
            finally:
                tick["flushed"] = time.monotonic_ns()

        def _send_replies(self):
            first = "flushed" in tick and "sent" not in tick
            if first:
                tick["replied"] = bool(self.door.outbox._events)
            send_replies(self)
            if first:
                tick["sent"] = time.monotonic_ns()

        worker.Worker._tick, worker.Worker._flush_due_logs = _tick, _flush
        worker.Worker._send_door_replies = _send_replies

        def dump():
            if not rows:  # the supervisor, or a worker that answered no door produce
                return
            with open(os.path.join(os.environ["RINGLOG_W3_STEPS"], f"worker.{os.getpid()}"),
                      "w") as out:
                out.writelines("%d %d %d\\n" % row for row in rows)
        atexit.register(dump)

    _trace()  # in every process of the appliance; only workers run Worker._tick
''')

CLIENT_STEPS = ("send() -> request on the socket", "request on the socket -> reply read",
                "reply read -> callback")
WORKER_STEPS = ("worker: woken -> flush starts", "worker: flush (fdatasync)",
                "worker: flush done -> replies sent")


class ClientSteps:
    """Wraps the sender's methods to stamp each batch on its way (monotonic ns)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[int]] = {name: [] for name in CLIENT_STEPS}
        self._sent_at: dict[int, int] = {}
        self._replied_at: dict[int, int] = {}
        self._originals = (sender_module.Sender._send_one, sender_module.Sender._on_reply)

    def install(self) -> None:
        send_one, on_reply = self._originals
        steps = self

        def _send_one(sender, network, endpoint, sending, in_flight):
            now = time.monotonic_ns()
            send_one(sender, network, endpoint, sending, in_flight)
            for batch in sending:
                steps._sent_at[id(batch)] = now
                steps.samples[CLIENT_STEPS[0]].append(now - int(batch.created * 1e9))

        def _on_reply(sender, batches, response, error):
            now = time.monotonic_ns()
            for batch in batches:
                sent = steps._sent_at.pop(id(batch), None)
                if sent is not None:
                    steps.samples[CLIENT_STEPS[1]].append(now - sent)
                steps._replied_at[id(batch)] = now
            on_reply(sender, batches, response, error)

        sender_module.Sender._send_one, sender_module.Sender._on_reply = _send_one, _on_reply

    def uninstall(self) -> None:
        sender_module.Sender._send_one, sender_module.Sender._on_reply = self._originals

    def callback(self, sent_ns: int, acks: list[int]):
        """A done-callback that records send() -> callback and reply -> callback."""
        def done(future) -> None:
            now = time.monotonic_ns()
            acks.append(now - sent_ns)
            replied = self._replied_at.get(id(future._batch))
            if replied is not None:
                self.samples[CLIENT_STEPS[2]].append(now - replied)
        return done

    def clear(self) -> None:
        for samples in self.samples.values():
            samples.clear()


def percentile_us(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000 if ordered else 0.0


def run(workdir: Path, rate: int, seconds: float) -> dict[str, list[int]]:
    trace_dir = workdir / "trace"
    trace_dir.mkdir()
    (trace_dir / "sitecustomize.py").write_text(WORKER_TRACE)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(trace_dir),
                                                       os.environ.get("PYTHONPATH")])),
           "RINGLOG_W3_STEPS": str(trace_dir)}
    client = ClientSteps()
    client.install()
    (workdir / "appliance").mkdir()
    appliance = Appliance(workdir / "appliance", "log.flush.policy=batch", env=env)
    acks: list[int] = []
    try:
        appliance.wait_until_serving()
        with Admin(appliance.bootstrap) as admin:
            admin.create_topic("steps", partitions=1)
        producer = Producer(appliance.bootstrap, acks=1, linger_ms=0, batch_size=64 << 10)
        for _ in range(10):  # connection, routes, a first fsync
            producer.send("steps", b"warm-up", partition=0).result(10)
        client.clear()
        total, value = int(rate * seconds), b"x" * 100
        began, sent = time.perf_counter(), 0
        while sent < total:
            due = min(total, int((time.perf_counter() - began) * rate) + 1)
            while sent < due:
                sent_ns = time.monotonic_ns()
                producer.send("steps", value, partition=0).add_done_callback(
                    client.callback(sent_ns, acks))
                sent += 1
            pause = began + sent / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        producer.flush(30)
        producer.close()
    finally:
        appliance.stop()
        client.uninstall()
    samples = {"send() -> ack callback, per record": acks, **client.samples}
    rows = [tuple(map(int, line.split()))
            for path in trace_dir.glob("worker.*") for line in path.read_text().splitlines()]
    for index, name in enumerate(WORKER_STEPS):
        samples[name] = [row[index] for row in rows]
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.w3_steps")
    parser.add_argument("--rate", type=int, default=5000, help="records/s (default 5,000)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    with work_directory(args.dir, "w3-steps-", 64 << 20) as workdir:
        samples = run(workdir, args.rate, args.seconds)
    print(f"W3 steps at {args.rate:,} records/s for {args.seconds:g} s (acks=1, linger 0, "
          f"100 B, fdatasync before the ack); us p50 / p99; "
          f"load average {os.getloadavg()[0]:.2f}")
    for name, values in samples.items():
        print(f"  {name:40} {percentile_us(values, 0.5):8.0f} / {percentile_us(values, 0.99):8.0f}"
              f"   (n={len(values):,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
