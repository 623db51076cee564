"""The metrics' own arithmetic: log sizes from real logs, families from a status
reply, per-topic series that go with their topic."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from appliance.metrics import ProcessProbe, RequestMetrics, exposition, log_size_bytes
from shm.partition_log import LogConfig, PartitionLog
from shm.reader import PartitionReader
from shm.records import Record, encode_batch


def parse(body: bytes) -> dict[str, dict[tuple, float]]:
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value)
    return samples


def test_log_size_counts_closed_segments_and_the_active_ones_published_bytes(tmp_path: Path):
    directory, control = tmp_path / "t-0", tmp_path / "t-0.ctl"
    log = PartitionLog.open(directory, LogConfig(segment_bytes=4096), control_path=control)
    try:
        batches = [encode_batch([Record(value=b"x" * 700, key=b"%d" % i)]) for i in range(12)]
        for batch in batches:
            log.append(batch)
            log.maybe_flush()
        reader = PartitionReader.open(directory, control_path=control)
        position = reader.position()
        assert position.active_segment_base > 0  # it rolled: closed segments count too
        assert log_size_bytes(directory, position) == sum(map(len, batches))
        # The active segment is preallocated: its file is larger than its contents.
        active = directory / f"{position.active_segment_base:020d}.log"
        assert active.stat().st_size > position.active_segment_size
        reader.close()
    finally:
        log.close()


def test_status_families_skip_missing_figures_and_label_every_process():
    metrics = RequestMetrics(["produce", "fetch", "status"])
    metrics.request("produce")
    metrics.bytes_in("orders", 100)
    status = {
        "serving": False,
        "processes": [
            {"process": "supervisor", "worker": None, "pid": 1, "rss_bytes": 1000,
             "cpu_seconds": 1.5, "start_time": 10.0, "ready": True, "restarts": 0,
             "partitions": []},
            {"process": "worker-0", "worker": 0, "pid": None, "rss_bytes": None,
             "cpu_seconds": None, "start_time": None, "ready": False, "restarts": 2,
             "partitions": [["orders", 0], ["orders", 1]]}],
        "partitions": [
            {"topic": "orders", "partition": 0, "error": None, "log_start_offset": 0,
             "log_end_offset": 5, "high_watermark": 4, "log_bytes": 321},
            {"topic": "orders", "partition": 1, "error": "LEADER_NOT_AVAILABLE"}],
        "groups": [{"group_id": "g", "state": "Empty", "offsets": [
            {"topic": "orders", "partition": 0, "committed": 1, "high_watermark": 4,
             "lag": 3},
            {"topic": "orders", "partition": 1, "committed": 0, "high_watermark": None,
             "lag": None}]}]}
    samples = parse(exposition(metrics, status))
    assert samples["ringlog_serving"] == {(): 0}
    assert samples["ringlog_requests_total"][(("api", "produce"),)] == 1
    assert samples["ringlog_bytes_in_total"] == {(("topic", "orders"),): 100}
    # A worker that is down has no RSS; its restarts and partitions still show.
    assert samples["ringlog_process_resident_memory_bytes"] == {
        (("process", "supervisor"),): 1000}
    assert samples["ringlog_worker_restarts_total"] == {(("worker", "0"),): 2}
    assert samples["ringlog_worker_partitions"] == {(("worker", "0"),): 2}
    assert samples["ringlog_log_size_bytes"] == {
        (("partition", "0"), ("topic", "orders")): 321}
    assert samples["ringlog_consumer_group_lag"] == {
        (("group", "g"), ("partition", "0"), ("topic", "orders")): 3}
    assert not any(name.endswith("_created") for name in samples)


def test_a_deleted_topics_byte_series_go():
    metrics = RequestMetrics(["produce"])
    metrics.bytes_in("gone", 5)
    metrics.bytes_out("gone", 7)
    metrics.bytes_in("kept", 1)
    metrics.topic_deleted("gone")
    samples = parse(exposition(metrics, {}))
    assert samples["ringlog_bytes_in_total"] == {(("topic", "kept"),): 1}
    assert "ringlog_bytes_out_total" not in samples


def test_process_probe_reads_this_process_and_nothing_for_a_missing_one():
    probe = ProcessProbe()
    mine = probe.stats(os.getpid())
    assert mine["rss_bytes"] > 1 << 20 and mine["cpu_seconds"] > 0
    assert 0 <= mine["cpu_percent"] <= 100 * (os.cpu_count() or 1)
    assert probe.stats(None)["rss_bytes"] is None
    assert probe.stats(2**22 + 12345)["rss_bytes"] is None  # beyond pid_max: no such process
