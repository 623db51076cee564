"""`ringlog status`: processes, partitions and consumer groups at a glance."""

from __future__ import annotations

from typing import Any

import click

from appliance.cli.command import bootstrap_option, client_command, open_admin, timeout_option
from appliance.cli.table import (
    PARTITION_HEADERS,
    partition_rows,
    size_text,
    table,
    with_error_column,
)

PROCESS_HEADERS = ["PROCESS", "PID", "RSS", "CPU TIME", "CPU%", "PARTITIONS", "RESTARTS",
                   "STATE"]
GROUP_HEADERS = ["GROUP", "STATE", "TOPIC", "PARTITION", "COMMITTED", "HIGH WATERMARK", "LAG"]
# A cluster's broker tells each partition's state here: after SIZE, so that a
# single node's columns stay where they are.
REPLICA_HEADERS = ["ROLE", "LEADER", "ISR"]


def broker_role(cluster: dict) -> str:
    """This broker's place in the cluster: "broker 1, controller" or "broker 2"."""
    role = f"broker {cluster.get('broker_id')}"
    return f"{role}, controller" if cluster.get("controller") else role


@click.command()
@bootstrap_option
@timeout_option
@client_command()
def status(bootstrap_server: str, timeout_ms: int) -> None:
    """Each process (pid, RSS, CPU, partitions), each partition's offsets and size,
    each consumer group's lag."""
    with open_admin(bootstrap_server, timeout_ms) as admin:
        state = admin.status(details=True)
    processes = state.get("processes") or []
    workers = [p for p in processes if p.get("worker") is not None]
    cluster = state.get("cluster")
    click.echo(f"Appliance: {bootstrap_server}  "
               f"Serving: {'yes' if state.get('serving') else 'no'}  "
               f"Workers ready: {len(state.get('workers') or [])} of {len(workers)}  "
               f"Topics: {state.get('topics')}"
               + ("" if cluster is None else f"  Cluster: {broker_role(cluster)}"))
    click.echo()
    click.echo(table(PROCESS_HEADERS, [_process_row(p) for p in processes],
                      right={1, 2, 3, 4, 5, 6}))
    partitions = state.get("partitions") or []
    rows = [row for p in partitions  # SIZE: bytes of batches in the log
            for row in partition_rows([{**p, "size_bytes": p.get("log_bytes")}], p["topic"])]
    if rows:
        click.echo()
        headers = ["TOPIC", *PARTITION_HEADERS]
        if any(p.get("role") is not None for p in partitions):  # a cluster's broker
            width = len(headers)
            rows = [[*row[:width], *_replica_cells(p), *row[width:]]
                    for p, row in zip(partitions, rows, strict=True)]
            headers += REPLICA_HEADERS
        headers = with_error_column(headers, rows)
        click.echo(table(headers, rows, right={1, 2, 3, 4, 5, 6}))
    groups = state.get("groups")
    click.echo()
    if groups is None:
        click.echo("Groups: committed offsets are still loading; try again in a moment")
    elif not groups:
        click.echo("Groups: none")
    else:
        click.echo(table(GROUP_HEADERS, _group_rows(groups), right={3, 4, 5, 6}))


def _process_row(process: dict) -> list[Any]:
    """One line of the process table; a worker that is down shows its dashes."""
    worker = process.get("worker") is not None
    cpu = process.get("cpu_seconds")
    if process.get("pid") is None:
        state = "down"
    elif worker:
        state = "ready" if process.get("ready") else "starting"
    else:
        state = "running"
    return [process.get("process"), process.get("pid"), size_text(process.get("rss_bytes")),
            None if cpu is None else f"{cpu:.2f}s", process.get("cpu_percent"),
            len(process.get("partitions") or []) if worker else None,
            process.get("restarts") if worker else None, state]


def _replica_cells(partition: dict) -> list[Any]:
    """A partition's role on this broker (leader, follower or offline), its
    leader's broker id and its in-sync replicas, comma-separated."""
    isr = partition.get("isr")
    return [partition.get("role"), partition.get("leader"),
            None if isr is None else ",".join(str(b) for b in isr)]


def _group_rows(groups: list[dict]) -> list[list[Any]]:
    """Per group and partition: committed offset, high watermark, lag."""
    rows = []
    for group in groups:
        offsets = group.get("offsets") or []
        if not offsets:
            rows.append([group["group_id"], group.get("state"), None, None, None, None, None])
        for entry in offsets:
            rows.append([group["group_id"], group.get("state"), entry.get("topic"),
                         entry.get("partition"), entry.get("committed"),
                         entry.get("high_watermark"), entry.get("lag")])
    return rows
