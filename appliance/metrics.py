"""Ringlog's metrics, in Prometheus' text format, from one registry in the supervisor.

Two kinds of figures:

- counted as requests pass through the front end (RequestMetrics): requests
  per API, produce and fetch latencies, record-set bytes in and out per
  topic. Each is one counter bump or histogram observation per request or
  per record set, never per record: the front end never decodes records.
- read when Prometheus scrapes (status_families): log offsets and sizes per
  partition, consumer-group lag, the RSS and CPU of every appliance process.
  They come from one `status` snapshot that the supervisor's loop computes
  (the same reply `ringlog status` prints), so nothing here reads the front
  end's state from another thread.

Why not prometheus_client's multiprocess mode: every request passes through
the supervisor's front end, and the workers' figures that matter (offsets,
sizes, RSS, CPU) are readable from the supervisor through the shared control
blocks and psutil. Multiprocess mode would add a directory of mmap files to
clean at start and after each respawn, and it cannot run custom collectors,
which the per-process CPU and memory figures need. docs/appliance.md says
more.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from shm.control_block import LogPosition
from shm.segment import parse_segment_name

# Produce waits for a group commit (milliseconds); a fetch may long-poll for
# up to MAX_WAIT_MS_LIMIT (60 s): the buckets span both.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                     1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TIMED_APIS = ("produce", "fetch")

# The *_created series (a counter's creation time) only double what a scrape
# shows; the supervisor is the only process that imports this module.
disable_created_metrics()


class RequestMetrics:
    """What the front end counts per request; cheap enough for the hot path
    (label children are looked up once and kept)."""

    def __init__(self, apis: Iterable[str], registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self._requests = Counter("ringlog_requests", "Requests received, by API.", ["api"],
                                 registry=self.registry)
        self._errors = Counter(
            "ringlog_request_errors",
            "Requests answered with a whole-request error, by API and Kafka error name.",
            ["api", "error"], registry=self.registry)
        latency = Histogram(
            "ringlog_request_latency_seconds",
            "Time from a request's arrival to its reply: produce includes the workers' "
            "append and group commit, fetch includes any long-poll wait.",
            ["api"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self._bytes_in = Counter("ringlog_bytes_in",
                                 "Record-set bytes received in produce requests, by topic.",
                                 ["topic"], registry=self.registry)
        self._bytes_out = Counter("ringlog_bytes_out",
                                  "Record-set bytes sent in fetch replies, by topic.",
                                  ["topic"], registry=self.registry)
        self._request_children = {api: self._requests.labels(api) for api in apis}
        self.latency = {api: latency.labels(api) for api in TIMED_APIS}
        self._in_children: dict[str, Any] = {}
        self._out_children: dict[str, Any] = {}

    def request(self, api: str) -> None:
        child = self._request_children.get(api)
        if child is None:
            child = self._request_children[api] = self._requests.labels(api)
        child.inc()

    def error(self, api: str, error: str) -> None:
        self._errors.labels(api or "unknown", error).inc()

    def observe(self, api: str, started: float) -> None:
        """Record a produce or fetch latency; `started` is its perf_counter at arrival."""
        self.latency[api].observe(time.perf_counter() - started)

    def bytes_in(self, topic: str, size: int) -> None:
        child = self._in_children.get(topic)
        if child is None:
            child = self._in_children[topic] = self._bytes_in.labels(topic)
        child.inc(size)

    def bytes_out(self, topic: str, size: int) -> None:
        child = self._out_children.get(topic)
        if child is None:
            child = self._out_children[topic] = self._bytes_out.labels(topic)
        child.inc(size)

    def add(self, traffic: Any) -> None:
        """Count what a worker's door served (a workers.protocol.Traffic)."""
        for api, count in traffic.requests.items():
            child = self._request_children.get(api)
            if child is None:
                child = self._request_children[api] = self._requests.labels(api)
            child.inc(count)
        for api, error, count in traffic.errors:
            self._errors.labels(api or "unknown", error).inc(count)
        for api, seconds in traffic.latencies.items():
            histogram = self.latency.get(api)
            if histogram is not None:
                for value in seconds:
                    histogram.observe(value)
        for topic, size in traffic.bytes_in.items():
            self.bytes_in(topic, size)
        for topic, size in traffic.bytes_out.items():
            self.bytes_out(topic, size)

    def topic_deleted(self, topic: str) -> None:
        """A deleted topic's series go, so names that come and go do not pile up."""
        for children, metric in ((self._in_children, self._bytes_in),
                                 (self._out_children, self._bytes_out)):
            if children.pop(topic, None) is not None:
                metric.remove(topic)


# --- figures read on demand ---------------------------------------------------------------

def log_size_bytes(directory: Path, position: LogPosition) -> int:
    """Bytes of record batches a partition holds, as Kafka's Log Size: closed
    segments are cut to their contents, the active one is preallocated, so its
    published size counts instead of its file size."""
    total = position.active_segment_size
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return total
    for entry in entries:
        base = parse_segment_name(entry.name)  # None for indexes and other files
        if base is None or base == position.active_segment_base:
            continue
        if position.log_start_offset <= base < position.active_segment_base:
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                continue  # deleted by retention since the listing
    return total


class ProcessProbe:
    """RSS and CPU of one process by pid; keeps the psutil handle between calls."""

    def __init__(self) -> None:
        self._handles: dict[int, psutil.Process] = {}

    def stats(self, pid: int | None) -> dict[str, Any]:
        """rss_bytes, cpu_seconds, cpu_percent (CPU time over the process's
        lifetime, as ps(1) computes %CPU) and start_time (Unix seconds)."""
        empty = {"pid": pid, "rss_bytes": None, "cpu_seconds": None, "cpu_percent": None,
                 "start_time": None}
        if pid is None:
            return empty
        handle = self._handles.get(pid)
        try:
            if handle is None:
                handle = self._handles[pid] = psutil.Process(pid)
            with handle.oneshot():
                rss = handle.memory_info().rss
                times = handle.cpu_times()
        except (psutil.Error, OSError):
            self._handles.pop(pid, None)
            return empty
        cpu = times.user + times.system
        try:  # needs /proc/stat (boot time), hidden under systemd's ProcSubset=pid
            started = handle.create_time()
        except (psutil.Error, OSError):
            return {**empty, "rss_bytes": rss, "cpu_seconds": round(cpu, 3)}
        elapsed = max(time.time() - started, 1e-3)
        return {"pid": pid, "rss_bytes": rss, "cpu_seconds": round(cpu, 3),
                "cpu_percent": round(100.0 * cpu / elapsed, 1), "start_time": started}

    def forget(self, live_pids: Iterable[int]) -> None:
        """Drop handles of processes that are gone (respawned workers)."""
        live = set(live_pids)
        for pid in list(self._handles):
            if pid not in live:
                del self._handles[pid]


def status_families(status: dict[str, Any]) -> Iterator[Metric]:
    """Metric families from a detailed `status` reply (docs/protocol.md §4.17)."""
    yield _gauge("ringlog_serving", "1 while every worker is up and has opened its "
                 "partitions, else 0.", [], [([], 1 if status.get("serving") else 0)])
    processes = status.get("processes") or []
    labelled = [([p["process"]], p) for p in processes]
    yield _gauge("ringlog_process_resident_memory_bytes", "Resident set size of each "
                 "appliance process.", ["process"],
                 [(k, p["rss_bytes"]) for k, p in labelled])
    yield _counter("ringlog_process_cpu_seconds", "User and system CPU time of each "
                   "appliance process (a respawned worker starts again at 0).", ["process"],
                   [(k, p["cpu_seconds"]) for k, p in labelled])
    yield _gauge("ringlog_process_start_time_seconds", "Start of each appliance process, "
                 "in Unix seconds.", ["process"], [(k, p["start_time"]) for k, p in labelled])
    workers = [p for p in processes if p.get("worker") is not None]
    yield _gauge("ringlog_worker_ready", "1 when the worker is up and has reported ready.",
                 ["worker"], [([str(w["worker"])], 1 if w.get("ready") else 0)
                              for w in workers])
    yield _counter("ringlog_worker_restarts", "Times the supervisor respawned the worker.",
                   ["worker"], [([str(w["worker"])], w.get("restarts", 0)) for w in workers])
    yield _gauge("ringlog_worker_partitions", "Partitions the worker owns.", ["worker"],
                 [([str(w["worker"])], len(w.get("partitions") or [])) for w in workers])
    partitions = [p for p in status.get("partitions") or [] if not p.get("error")]
    keyed = [([p["topic"], str(p["partition"])], p) for p in partitions]
    for name, field, text in (
            ("ringlog_log_start_offset", "log_start_offset", "First offset the log holds."),
            ("ringlog_log_end_offset", "log_end_offset", "Offset the next record will get."),
            ("ringlog_high_watermark", "high_watermark",
             "Offset below which records are durable and readable."),
            ("ringlog_log_size_bytes", "log_bytes",
             "Bytes of record batches the partition's log holds (Kafka's Log Size).")):
        yield _gauge(name, text, ["topic", "partition"], [(k, p[field]) for k, p in keyed])
    yield from _replication_families(status, keyed)
    committed, lag = [], []
    for group in status.get("groups") or []:
        for entry in group.get("offsets") or []:
            key = [group["group_id"], entry["topic"], str(entry["partition"])]
            committed.append((key, entry.get("committed")))
            lag.append((key, entry.get("lag")))
    yield _gauge("ringlog_consumer_group_committed_offset", "The group's committed offset.",
                 ["group", "topic", "partition"], committed)
    yield _gauge("ringlog_consumer_group_lag", "High watermark minus the group's committed "
                 "offset.", ["group", "topic", "partition"], lag)


def _replication_families(status: dict[str, Any], keyed: list) -> Iterator[Metric]:
    """A cluster broker's replication health; nothing on a single node."""
    cluster = status.get("cluster")
    if not cluster:
        return
    led = [p for _, p in keyed if p.get("role") == "leader"]
    yield _gauge("ringlog_under_replicated_partitions", "Partitions this broker leads whose "
                 "in-sync replicas are fewer than their replicas.", [],
                 [([], sum(1 for p in led if len(p.get("isr", ())) < len(p.get("replicas", ()))))])
    yield _counter("ringlog_isr_shrinks", "ISR shrinks this broker wrote as a leader.", [],
                   [([], cluster.get("isr_shrinks", 0))])
    yield _counter("ringlog_isr_expands", "ISR expansions this broker wrote as a leader.", [],
                   [([], cluster.get("isr_expands", 0))])
    yield _gauge("ringlog_follower_lag", "Records a followed partition is behind its leader's "
                 "log end, as of the last fetch.", ["topic", "partition"],
                 [(k, p.get("follower_lag")) for k, p in keyed if p.get("role") == "follower"])


def _family(kind: type[Metric], name: str, documentation: str, labels: list[str],
            samples: list[tuple[list[str], Any]]) -> Metric:
    """A metric family of the samples that have a value (None: not known now)."""
    family = kind(name, documentation, labels=labels)
    for key, value in samples:
        if value is not None:
            family.add_metric(key, value)
    return family


def _gauge(name: str, documentation: str, labels: list[str],
           samples: list[tuple[list[str], Any]]) -> Metric:
    return _family(GaugeMetricFamily, name, documentation, labels, samples)


def _counter(name: str, documentation: str, labels: list[str],
             samples: list[tuple[list[str], Any]]) -> Metric:
    return _family(CounterMetricFamily, name, documentation, labels, samples)


class _Snapshot:
    """A collector for one scrape's status reply (one per scrape: thread-safe)."""

    def __init__(self, status: dict[str, Any]):
        self.status = status

    def collect(self) -> Iterator[Metric]:
        return status_families(self.status)


def exposition(request_metrics: RequestMetrics, status: dict[str, Any]) -> bytes:
    """The /metrics body: the request counters, then the snapshot's figures."""
    snapshot = CollectorRegistry()
    snapshot.register(_Snapshot(status))
    return generate_latest(request_metrics.registry) + generate_latest(snapshot)
