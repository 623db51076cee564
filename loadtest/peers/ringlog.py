"""Ringlog's side of the comparison: the harness's appliance and loadtest/bench.py's
W1/W2/W3 runs, called as they are so both benchmarks measure the same thing."""

from __future__ import annotations

from pathlib import Path

from loadtest import bench
from loadtest.harness import Appliance, ApplianceFailed, CpuMeter, MiB
from loadtest.peers.peer import Peer, PeerUnavailable
from loadtest.peers.workload import Deadline, Measurement

# W1 twice (issue #9). send_many: the fastest producer setting measured for W1 and W4
# (docs/performance.md, issue #3), the bulk call, as RabbitMQ's side uses rstream's
# send_batch and Redis's side pipelines. send: one Producer.send() per record, the way a
# Kafka user writes a producer loop; linger 5 ms and 1 MiB batches, as send_many, so the
# two rows differ in the call only. With send(), linger 50 ms was no clear win: 4% and
# 11% faster than 5 ms in the medians of issue #5's bench rounds, 5% slower in issue #3's
# last run, each inside the rounds' spread.
SETTINGS = {
    "send": bench.ProducerSetting(linger_ms=5, batch_size=MiB),
    "send_many": bench.ProducerSetting(linger_ms=5, batch_size=MiB, bulk=True),
}
W4_CALL = "send_many"


class Ringlog(Peer):
    name = "ringlog"
    producer_calls = tuple(SETTINGS)  # send first, send_many last: W2 reads its topic
    ack = ("acks=1 with flush policy `batch`: the partition worker replies after the "
           "fdatasync (group commit) that made the record durable")

    def __init__(self) -> None:
        super().__init__()
        self.version = _version()
        self.client = ("appliance.client Producer/Consumer (W1 send: "
                       f"{SETTINGS['send'].label()}; W1 and W4 send_many: "
                       f"{SETTINGS['send_many'].label().removeprefix('send_many, ')})")
        self.appliance: Appliance | None = None

    def start(self, workdir: Path) -> None:
        self.appliance = Appliance(workdir, "log.flush.policy=batch")
        try:
            self.appliance.wait_until_serving()
        except ApplianceFailed as exc:
            raise PeerUnavailable(f"ringlog: {exc}") from None
        self.meter = CpuMeter(self.appliance)

    def stop(self) -> None:
        if self.appliance is not None:
            self.appliance.stop()
            self.appliance = None

    def _topic(self, stream: str, deadline: Deadline) -> str:
        self.appliance.create_topic(stream, deadline)
        return stream

    def produce(self, workload: str, stream: str, records: int, value_bytes: int,
                deadline: Deadline, call: str = "") -> Measurement:
        setting = SETTINGS[call or W4_CALL]
        topic = self._topic(stream, deadline)
        r = bench.run_produce(workload, self.appliance.bootstrap, topic, records, value_bytes,
                              setting, self.meter, deadline)
        label = setting.label() if setting.bulk else f"send, {setting.label()}"
        return Measurement(workload, self.name, f"acks=1, {label}", r.records, value_bytes,
                           r.seconds, call=call)

    def consume(self, stream: str, records: int, value_bytes: int,
                deadline: Deadline) -> Measurement:
        r = bench.run_consume(self.appliance.bootstrap, stream, records, value_bytes,
                              self.meter, deadline)
        return Measurement("W2", self.name, "assign, poll(max_records=1M)", r.records,
                           value_bytes, r.seconds)

    def latency(self, stream: str, rate: int, seconds: float, value_bytes: int,
                deadline: Deadline) -> Measurement:
        topic = self._topic(stream, deadline)
        r = bench.run_latency(self.appliance.bootstrap, topic, rate, seconds, value_bytes,
                              self.meter, deadline)
        lat = r.latency_ms or {}
        summary = {k: lat[k] for k in ("p50", "p99", "p99.9", "max") if k in lat}
        summary["received"] = r.extra.get("received", 0)
        return Measurement("W3", self.name, "acks=1, linger 0 ms", r.records, value_bytes,
                           r.seconds, latency_ms=summary)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ringlog")
    except PackageNotFoundError:
        return "?"
