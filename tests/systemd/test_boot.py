"""The shipped units booted for real: systemd-nspawn runs a systemd that starts,
kills, restarts and stops ringlog.service exactly as on an installed host.

The module boots one container; after each test every ringlog unit is
stopped and its data removed. The unit files are unchanged; the only
drop-ins are test-only: LD_LIBRARY_PATH for the pyenv interpreter (see
container.py) and, in the watchdog test, a short WatchdogSec.
Records are produced and consumed by this checkout's client, run inside the
container's network namespace.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import orjson
import pytest

from tests.systemd.container import Machine, boot

UNIT = "ringlog.service"
RESTART_TIMEOUT_S = 20
DATA = "/var/lib/ringlog"
METRICS_SCRIPT = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
                  "'http://127.0.0.1:7094/metrics', timeout=10).read().decode())")
TEST_DROPIN = "/etc/systemd/system/ringlog.service.d/test-watchdog.conf"


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """One container for the module: booting and powering off cost seconds."""
    container = boot(tmp_path_factory.mktemp("machine"))
    try:
        yield container
    finally:
        container.terminate()


@pytest.fixture
def machine(booted: Machine) -> Iterator[Machine]:
    """The container as a freshly installed host: no unit running, no data,
    no test drop-in."""
    yield booted
    booted.systemctl("stop", "ringlog.service", "ringlog@*.service")
    booted.systemctl("reset-failed", "ringlog.service", "ringlog@*.service", check=False)
    booted.run("rm", "-rf", DATA, "/run/ringlog", TEST_DROPIN)
    booted.run("find", "/etc/ringlog", "-type", "f", "!", "-name", "server.properties",
               "-delete")  # the instances' files
    booted.systemctl("daemon-reload")


def start(machine: Machine, unit: str = UNIT) -> dict[str, str]:
    """systemctl start returns once the supervisor sent READY=1 (Type=notify)."""
    result = machine.systemctl("start", unit, check=False)
    assert result.returncode == 0, f"{result.stderr}\n{machine.journal(unit)}"
    state = machine.show(unit)
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    return state


def client(machine: Machine, command: str, topic: str, count: int, port: int = 7092) -> list:
    """Run tests/systemd/client_process.py in the container's network namespace."""
    out = machine.in_network(sys.executable, "-m", "tests.systemd.client_process", command,
                             topic, str(count), f"127.0.0.1:{port}")
    return orjson.loads(out)


def produce(machine: Machine, topic: str, count: int) -> list[list[int]]:
    """Send count records with acks=all; their acknowledged [partition, offset]s."""
    return client(machine, "produce", topic, count)


def consume(machine: Machine, topic: str, count: int) -> list[str]:
    """The values of the first count records of the topic's partition 0."""
    return client(machine, "consume", topic, count)


def expected(count: int) -> list[str]:
    return [f"record-{i}" for i in range(count)]


def owner(machine: Machine, pid: str) -> str:
    return machine.run("stat", "-c", "%U", f"/proc/{pid}").stdout.strip()


def test_the_unit_serves_as_ringlog_with_data_and_control_blocks_where_documented(
        machine: Machine) -> None:
    state = start(machine)
    assert owner(machine, state["MainPID"]) == "ringlog"
    assert produce(machine, "events", 20) == [[0, i] for i in range(20)]
    assert consume(machine, "events", 20) == expected(20)
    listing = machine.run("ls", "-la", f"{DATA}/events-0").stdout
    assert "ringlog ringlog" in listing and ".log" in listing
    uid = machine.run("id", "-u", "ringlog").stdout.strip()
    blocks = machine.run("ls", f"/run/ringlog/ringlog-{uid}").stdout.split()
    assert blocks and all(name.endswith(".ctl") for name in blocks)
    # Status and metrics read /proc inside the sandbox (psutil).
    status = machine.in_network(sys.executable, "-m", "appliance", "status")
    assert "Serving: yes" in status and "events" in status
    metrics = machine.in_network(sys.executable, "-c", METRICS_SCRIPT)
    assert 'ringlog_process_start_time_seconds{process="supervisor"}' in metrics
    machine.systemctl("reload", UNIT)  # SIGHUP: reloads in place
    after = machine.show(UNIT)
    assert (after["ActiveState"], after["MainPID"]) == ("active", state["MainPID"])


def test_sigkill_of_the_supervisor_is_restarted_and_keeps_acknowledged_records(
        machine: Machine) -> None:
    before = start(machine)
    assert len(produce(machine, "orders", 50)) == 50
    machine.systemctl("kill", "--signal=KILL", "--kill-whom=main", UNIT)
    after = machine.wait_for(UNIT, lambda s: s["ActiveState"] == "active"
                             and s["SubState"] == "running"
                             and s["MainPID"] not in ("0", before["MainPID"]),
                             RESTART_TIMEOUT_S)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert owner(machine, after["MainPID"]) == "ringlog"
    assert consume(machine, "orders", 50) == expected(50)


def test_a_supervisor_that_stops_pinging_the_watchdog_is_killed_and_restarted(
        machine: Machine) -> None:
    # Test-only: the shipped 30 s would make this test slow.
    machine.write(TEST_DROPIN, "[Service]\nWatchdogSec=2s\n")
    machine.systemctl("daemon-reload")
    before = start(machine)
    assert len(produce(machine, "clicks", 30)) == 30
    machine.run("kill", "-STOP", before["MainPID"])  # the loop stops, so do the pings
    restarts = int(before["NRestarts"]) + 1
    after = machine.wait_for(UNIT, lambda s: int(s["NRestarts"]) == restarts
                             and s["ActiveState"] == "active" and s["SubState"] == "running",
                             RESTART_TIMEOUT_S)
    assert after["MainPID"] != before["MainPID"]
    assert "Watchdog timeout" in machine.journal(UNIT)
    assert consume(machine, "clicks", 30) == expected(30)


def test_stop_drains_the_workers_and_exits_zero(machine: Machine) -> None:
    start(machine)
    assert len(produce(machine, "audit", 10)) == 10
    machine.systemctl("stop", UNIT)
    state = machine.show(UNIT)
    assert (state["ActiveState"], state["Result"]) == ("inactive", "success"), state
    assert (state["ExecMainCode"], state["ExecMainStatus"]) == ("1", "0")  # exited, 0
    # Every worker closed its logs (the marker a kill would not leave) and
    # the runtime directory with the control blocks went away.
    machine.run("test", "-e", f"{DATA}/audit-0/.clean-shutdown")
    assert machine.run("test", "-e", "/run/ringlog", check=False).returncode == 1
    start(machine)
    assert consume(machine, "audit", 10) == expected(10)


def test_template_instances_serve_side_by_side_each_with_its_own_data(
        machine: Machine) -> None:
    ports = {"east": 7192, "west": 7292}
    for name, port in ports.items():
        machine.write(f"/etc/ringlog/{name}.properties",
                      f"listeners=tcp://127.0.0.1:{port}\n"
                      f"replication.listener=tcp://127.0.0.1:{port + 1}\n"
                      f"http.listener=127.0.0.1:{port + 2}\n")
    for name in ports:
        state = start(machine, f"ringlog@{name}.service")
        assert owner(machine, state["MainPID"]) == "ringlog"
    for name, port in ports.items():
        acknowledged, values = client(machine, "round-trip", f"{name}-topic", 5, port)
        assert (len(acknowledged), values) == (5, expected(5))
        other = "west" if name == "east" else "east"
        machine.run("test", "-d", f"{DATA}/{name}/{name}-topic-0")
        machine.run("test", "!", "-e", f"{DATA}/{other}/{name}-topic-0")
        machine.run("test", "-d", f"/run/ringlog/{name}")
    start(machine)  # ringlog.service conflicts with the instances: they stop
    for name in ports:
        assert machine.show(f"ringlog@{name}.service")["ActiveState"] == "inactive"


def test_a_configuration_error_fails_the_unit_once_with_one_line(machine: Machine) -> None:
    """Exit 2 (configuration error) is not restarted: it would fail again."""
    machine.write("/etc/ringlog/broken.properties", "log.retention.hours=a week\n")
    result = machine.systemctl("start", "ringlog@broken.service", check=False)
    assert result.returncode != 0
    state = machine.show("ringlog@broken.service")
    assert (state["ActiveState"], state["Result"]) == ("failed", "exit-code"), state
    assert (state["ExecMainStatus"], state["NRestarts"]) == ("2", "0")
    lines = [line for line in machine.journal("ringlog@broken.service").splitlines()
             if line.startswith("ringlog:")]
    assert len(lines) == 1 and "log.retention.hours" in lines[0], lines
