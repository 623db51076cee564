"""Brokers of a test cluster: real appliances with zookeeper.connect set, each
on a loopback address of its own (127.0.0.11, .12, ...), so that a fault
test can cut one from another with iptables."""

from __future__ import annotations

from pathlib import Path

from loadtest.harness import Appliance, free_ports

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
        port, replication_port, kafka_port = map(int, port_file.read_text().split())
    else:
        port, replication_port, kafka_port = free_ports(3)
        port_file.write_text(f"{port} {replication_port} {kafka_port}")
    appliance = Appliance(directory, f"zookeeper.connect={zookeeper_connect}",
                          f"broker.id={broker_id}", f"zookeeper.session.timeout.ms={SESSION_MS}",
                          f"replication.listener=tcp://{host}:{replication_port}", *overrides,
                          port=port, host=host, workers=workers, kafka_port=kafka_port)
    if wait:
        appliance.wait_until_serving()
    return appliance


def replica_records(broker_dir: Path, topic: str, partition: int
                    ) -> tuple[list[tuple[int, bytes | None]], int]:
    """Every record of a stopped broker's replica, (offset, value) in log
    order, and the high watermark it had checkpointed: read from its files."""
    from shm import PartitionLog
    from shm.records import iter_batches

    directory = broker_dir / "data" / f"{topic}-{partition}"
    log = PartitionLog.open(directory, control_path=broker_dir / f"read-{topic}-{partition}.ctl")
    try:
        high_watermark = log.restore_high_watermark()
        records, offset = [], log.log_start_offset
        while offset < log.log_end_offset:
            data = log.read(offset, 1 << 20, upto=log.log_end_offset)
            for batch in iter_batches(data):
                records.extend((r.offset, r.value) for r in batch.records)
                offset = batch.header.base_offset + batch.header.last_offset_delta + 1
        return records, high_watermark
    finally:
        log.close()
