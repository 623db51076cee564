"""Supervisor duties: process names, SIGHUP reloads, start-up errors in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil

from tests.integration.conftest import REPO, start_appliance


def test_processes_name_themselves_for_ps_and_top(appliance):
    names = {" ".join(p.cmdline()).strip()
             for p in [psutil.Process(appliance.process.pid),
                       *map(psutil.Process, appliance.worker_pids())]}
    assert names == {"ringlog: supervisor", "ringlog: worker 0", "ringlog: worker 1"}


def test_sighup_applies_dynamic_settings_and_names_static_ones(tmp_path):
    config = tmp_path / "server.properties"
    config.write_text("log.retention.ms=3600000\nnum.partitions=1\n")
    appliance = start_appliance(tmp_path, config_path=config)
    try:
        config.write_text("log.retention.ms=7200000\nnum.partitions=1\nbroker.id=5\n")
        appliance.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "reloaded log.retention.ms" not in appliance.stderr():
            time.sleep(0.05)
        log = appliance.stderr()
        assert "reloaded log.retention.ms: 3600000 -> 7200000" in log
        assert "broker.id changed; it takes effect after a restart" in log
        config.write_text("log.retention.hour=1\n")  # a typo: the running settings stay
        appliance.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "reload refused" not in appliance.stderr():
            time.sleep(0.05)
        assert "did you mean 'log.retention.hours'" in appliance.stderr()
        assert appliance.process.poll() is None
    finally:
        assert appliance.stop() == 0


def test_a_client_port_in_use_stops_start_up_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "appliance", "serve",
             "--override", f"listeners=tcp://127.0.0.1:{port}",
             "--override", f"log.dirs={tmp_path / 'data'}", "--override", "http.listener="],
            cwd=REPO, capture_output=True, text=True, timeout=30,
            env={**os.environ, "RINGLOG_SHM_DIR": str(tmp_path / "shm")})
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ringlog:")]
    assert errors == [f"ringlog: cannot start: listeners=tcp://127.0.0.1:{port}: Address "
                      "already in use; choose a free HOST:PORT for listeners"]
    assert "Traceback" not in result.stderr


def test_a_bad_setting_stops_start_up_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "serve", "--override", "log.retention.hour=1"],
        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "log.retention.hours" in lines[0]
    assert "Traceback" not in result.stderr


def _workers_endpoint(pid: int) -> str:
    """The supervisor's workers' socket: an abstract ipc name that begins with its pid."""
    with open("/proc/net/unix") as table:
        for line in table:
            path = line.split()[-1]
            if path.startswith(f"@ringlog-{pid}-") and path.endswith("-workers"):
                return f"ipc://{path}"
    raise AssertionError(f"no workers' socket of pid {pid} in /proc/net/unix")


def test_garbage_on_the_workers_socket_is_dropped_and_serving_goes_on(appliance):
    import zmq

    from appliance.client import Admin, Producer

    context = zmq.Context.instance()
    for identity, frames in ((b"intruder", [b"hello"]), (b"worker-9", [b"nonsense", b"{"]),
                             (b"worker-8", [b"produced"])):
        intruder = context.socket(zmq.DEALER)
        intruder.setsockopt(zmq.IDENTITY, identity)
        intruder.setsockopt(zmq.LINGER, 1000)
        intruder.connect(_workers_endpoint(appliance.process.pid))
        intruder.send_multipart(frames)
        intruder.close()
    deadline = time.monotonic() + 10
    while "dropped a message on the workers' socket" not in appliance.stderr():
        assert time.monotonic() < deadline, appliance.stderr()
        time.sleep(0.05)
    assert appliance.process.poll() is None
    with Producer(appliance.bootstrap) as producer:
        assert producer.send("after-garbage", b"still here").result(10).offset == 0
    with Admin(appliance.bootstrap) as admin:
        assert admin.status()["serving"]
