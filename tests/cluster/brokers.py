"""Brokers of a test cluster: real appliances with zookeeper.connect set, each
on a loopback address of its own (127.0.0.11, .12, ...), so that a fault
test can cut one from another with iptables."""

from __future__ import annotations

from pathlib import Path

from loadtest.harness import Appliance, free_port

SESSION_MS = 2000  # 2 s sessions: the shortest that holds on 2 busy cores (replication.md)


def broker_host(broker_id: int) -> str:
    return f"127.0.0.{10 + broker_id}"


def start_broker(tmp_path: Path, zookeeper_connect: str, broker_id: int, *overrides: str,
                 wait: bool = True, workers: int = 1) -> Appliance:
    """Broker `broker_id` with its data under tmp_path/broker-N (again: a restart)."""
    directory = tmp_path / f"broker-{broker_id}"
    directory.mkdir(exist_ok=True)
    host = broker_host(broker_id)
    port_file = directory / "ports"
    if port_file.exists():  # a restart keeps its endpoints, as an operator's config does
        port, replication_port = map(int, port_file.read_text().split())
    else:
        port, replication_port = free_port(), free_port()
        port_file.write_text(f"{port} {replication_port}")
    appliance = Appliance(directory, f"zookeeper.connect={zookeeper_connect}",
                          f"broker.id={broker_id}", f"zookeeper.session.timeout.ms={SESSION_MS}",
                          f"replication.listener=tcp://{host}:{replication_port}", *overrides,
                          port=port, host=host, workers=workers)
    if wait:
        appliance.wait_until_serving()
    return appliance
