"""The HTTP endpoint of a real appliance: /metrics figures match what was done,
/healthz and /readyz follow the supervisor and the workers, bad input is refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from appliance import protocol
from appliance.client import Admin
from shm.records import Record, encode_batch
from tests.integration.conftest import REPO, free_port, start_appliance

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def http_get(port: int, path: str, method: str = "GET") -> tuple[int | None, str]:
    """(status, body); status None when nothing listens yet."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None, ""


def scrape(port: int) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client: name -> labels -> value."""
    status, body = http_get(port, "/metrics")
    assert status == 200, body
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.02):
    """Poll `condition` until it returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval_s)
    raise AssertionError(f"not within {timeout_s}s: {what}")


class Wire:
    """The native protocol by hand, so that every request and byte is counted here."""

    def __init__(self, bootstrap: str):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(f"tcp://{bootstrap}")
        self.ids = 0

    def call(self, api: str, fields: dict, payloads: list[bytes] = ()) -> protocol.Response:
        self.ids += 1
        self.socket.send_multipart(protocol.encode_request(api, self.ids, fields, payloads))
        assert self.socket.poll(10_000), f"no reply to {api}"
        response = protocol.parse_response(self.socket.recv_multipart())
        assert response.id == self.ids and response.error is None, response
        return response

    def close(self) -> None:
        self.socket.close()
        self.context.term()


@pytest.fixture
def metered(tmp_path):
    port = free_port()
    appliance = start_appliance(tmp_path, f"http.listener=127.0.0.1:{port}")
    yield appliance, port
    assert appliance.stop() == 0, appliance.stderr()


def test_metrics_count_the_requests_bytes_offsets_and_lag_that_were_produced(metered):
    appliance, port = metered
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic("metered", partitions=2)
    wire = Wire(appliance.bootstrap)
    try:
        sent = {0: [], 1: []}
        for i in range(7):  # 7 produce requests of one batch each, 4 to partition 0
            partition = i % 2
            batch = encode_batch([Record(value=b"v" * (10 + i), key=b"k%d" % n)
                                  for n in range(i + 1)])
            reply = wire.call("produce", {"acks": -1, "partitions": [["metered", partition]]},
                              [batch])
            assert reply.fields["partitions"][0]["error"] is None
            sent[partition].append(batch)
        fetched = 0
        for partition in (0, 1):  # 2 fetches, everything from offset 0
            reply = wire.call("fetch", {"max_wait_ms": 0, "partitions": [
                ["metered", partition, 0, 1 << 20]]})
            fetched += sum(len(p) for p in reply.payloads)
        wire.call("offset_commit", {"group_id": "watchers", "offsets": [
            ["metered", 0, 3, ""], ["metered", 1, 10, ""]]})
    finally:
        wire.close()
    bytes_sent = {p: sum(map(len, batches)) for p, batches in sent.items()}
    records = {0: 1 + 3 + 5 + 7, 1: 2 + 4 + 6}  # batch i holds i + 1 records

    samples = scrape(port)
    assert value(samples, "ringlog_requests_total", api="produce") == 7
    assert value(samples, "ringlog_requests_total", api="fetch") == 2
    assert value(samples, "ringlog_request_latency_seconds_count", api="produce") == 7
    assert value(samples, "ringlog_request_latency_seconds_count", api="fetch") == 2
    assert value(samples, "ringlog_request_latency_seconds_bucket", api="produce",
                 le="+Inf") == 7
    assert 0 < value(samples, "ringlog_request_latency_seconds_sum", api="produce") < 7 * 10
    assert value(samples, "ringlog_bytes_in_total", topic="metered") == sum(bytes_sent.values())
    assert value(samples, "ringlog_bytes_out_total", topic="metered") == fetched
    assert fetched == sum(bytes_sent.values())
    for partition in (0, 1):
        labels = {"topic": "metered", "partition": str(partition)}
        assert value(samples, "ringlog_log_size_bytes", **labels) == bytes_sent[partition]
        assert value(samples, "ringlog_log_start_offset", **labels) == 0
        assert value(samples, "ringlog_log_end_offset", **labels) == records[partition]
        assert value(samples, "ringlog_high_watermark", **labels) == records[partition]
    group = {"group": "watchers", "topic": "metered"}
    assert value(samples, "ringlog_consumer_group_committed_offset", partition="0",
                 **group) == 3
    assert value(samples, "ringlog_consumer_group_lag", partition="0", **group) == 16 - 3
    assert value(samples, "ringlog_consumer_group_lag", partition="1", **group) == 12 - 10
    assert value(samples, "ringlog_serving") == 1


def test_metrics_give_rss_and_cpu_of_every_appliance_process(metered):
    appliance, port = metered
    samples = scrape(port)
    rss = samples["ringlog_process_resident_memory_bytes"]
    assert {dict(k)["process"] for k in rss} == {"supervisor", "worker-0", "worker-1"}
    pids = {"supervisor": appliance.process.pid}
    for pid in appliance.worker_pids():
        title = " ".join(psutil.Process(pid).cmdline()).strip()  # "ringlog: worker N"
        index = title.rsplit(" ", 1)[-1]
        pids[f"worker-{index}"] = pid
    for name, pid in pids.items():
        reported = value(samples, "ringlog_process_resident_memory_bytes", process=name)
        actual = psutil.Process(pid).memory_info().rss
        assert 0.5 * actual < reported < 2 * actual, (name, reported, actual)
        assert value(samples, "ringlog_process_cpu_seconds_total", process=name) > 0
        started = value(samples, "ringlog_process_start_time_seconds", process=name)
        assert abs(started - psutil.Process(pid).create_time()) < 1
    owned = samples["ringlog_worker_partitions"]
    assert sum(owned.values()) == 8  # __consumer_offsets, spread over both workers
    assert all(v == 1 for v in samples["ringlog_worker_ready"].values())


def test_healthz_and_readyz_while_a_killed_worker_is_respawned(metered):
    appliance, port = metered
    assert http_get(port, "/healthz")[0] == 200
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 30, "/readyz 200 once serving")
    victim = appliance.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    _, body = wait_for(lambda: (r := http_get(port, "/readyz"))[0] == 503 and r, 10,
                            "/readyz 503 while a worker is down")
    assert "not ready" in body
    assert http_get(port, "/healthz")[0] == 200  # the supervisor itself is fine
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 30, "/readyz 200 after the respawn")
    assert victim not in appliance.worker_pids()
    restarts = scrape(port)["ringlog_worker_restarts_total"]
    assert sorted(restarts.values()) == [0, 1]


def test_readyz_is_503_until_the_workers_have_opened_their_partitions(tmp_path):
    port = free_port()
    appliance = start_appliance(tmp_path, f"http.listener=127.0.0.1:{port}")
    with Admin(appliance.bootstrap) as admin:  # many partitions: a start-up to wait for
        admin.create_topic("wide", partitions=120)
    assert appliance.stop() == 0
    appliance = start_appliance(tmp_path, f"http.listener=127.0.0.1:{port}", wait=False)
    try:
        first = wait_for(lambda: http_get(port, "/readyz")[0], 30, "an answer from /readyz",
                         interval_s=0.005)
        assert first == 503
        assert http_get(port, "/healthz")[0] == 200
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, 30, "/readyz 200 once serving")
        samples = scrape(port)
        assert len([k for k in samples["ringlog_log_end_offset"]
                    if ("topic", "wide") in k]) == 120
    finally:
        assert appliance.stop() == 0, appliance.stderr()


def test_bad_http_input_is_refused_and_the_endpoint_keeps_serving(metered):
    appliance, port = metered
    assert http_get(port, "/nothing-here")[0] == 404
    assert http_get(port, "/metrics", method="POST")[0] == 405
    assert http_get(port, "/metrics", method="HEAD")[0] == 200
    assert http_get(port, "/healthz?verbose=1")[0] == 200
    for raw in (b"GARBAGE\r\n\r\n", b"GET /metrics HTTP/9.9\r\n\r\n", b"\x00\xff" * 100 + b"\r\n",
                b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(raw)
            answer = b"".join(iter(lambda: conn.recv(4096), b""))  # until it hangs up
        # A status line, or for a one-word (HTTP/0.9) request just the error page.
        assert re.search(rb"^HTTP/1\.[01] [45]\d\d |Error code: [45]\d\d", answer), (raw[:20],
                                                                                 answer)
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass  # a client that connects and says nothing
    assert http_get(port, "/healthz")[0] == 200
    assert appliance.process.poll() is None


def test_an_http_port_in_use_stops_start_up_with_one_line_naming_the_key(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "appliance", "serve",
             "--override", f"listeners=tcp://127.0.0.1:{free_port()}",
             "--override", f"log.dirs={tmp_path / 'data'}", "--override", "num.workers=1",
             "--override", f"http.listener=127.0.0.1:{port}"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**os.environ, "RINGLOG_SHM_DIR": str(tmp_path / "shm")})
    assert result.returncode == 1
    lines = [line for line in result.stderr.strip().splitlines()
             if not line[:4].isdigit()]  # the log lines before it carry a timestamp
    assert len(lines) == 1, result.stderr
    assert f"http.listener=127.0.0.1:{port}" in lines[0] and "in use" in lines[0]
    assert "Traceback" not in result.stderr


def test_an_empty_http_listener_serves_no_http(tmp_path):
    appliance = start_appliance(tmp_path, "http.listener=")
    try:
        listening = {c.laddr.port for c in psutil.Process(appliance.process.pid)
                     .net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        assert listening == {int(appliance.bootstrap.rsplit(":", 1)[1]), appliance.kafka_port}
        assert "http.listener is empty" in appliance.stderr()
    finally:
        assert appliance.stop() == 0, appliance.stderr()
