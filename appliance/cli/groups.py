"""`ringlog groups list|describe`: consumer groups, their members and lag."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

from appliance.cli.command import (
    EXIT_USAGE,
    Fail,
    bootstrap_option,
    client_command,
    open_admin,
    timeout_option,
)
from appliance.cli.table import table
from shm.errors import UnsupportedVersionError

GROUPS_NOT_SERVED = "consumer groups are not served yet by the appliance at {}"


@contextlib.contextmanager
def _groups_served(bootstrap: str) -> Iterator[None]:
    """An appliance that serves no group APIs is a usage error, said so."""
    try:
        yield
    except UnsupportedVersionError:
        raise Fail(GROUPS_NOT_SERVED.format(bootstrap), EXIT_USAGE) from None


@click.group()
def groups() -> None:
    """List consumer groups and show their members and lag."""


@groups.command("list")
@bootstrap_option
@timeout_option
@client_command()
def groups_list(bootstrap_server: str, timeout_ms: int) -> None:
    """Consumer groups the appliance knows, with their state and member count."""
    with open_admin(bootstrap_server, timeout_ms) as admin, _groups_served(bootstrap_server):
        listed = admin.list_groups()
    if not listed:
        return
    rows = []
    for g in listed:
        members = g.get("members")
        rows.append([g.get("group_id"), g.get("state"),
                     len(members) if isinstance(members, list) else members or 0])
    click.echo(table(["GROUP", "STATE", "MEMBERS"], rows, right={2}))


@groups.command("describe")
@click.argument("group")
@bootstrap_option
@timeout_option
@client_command()
def groups_describe(group: str, bootstrap_server: str, timeout_ms: int) -> None:
    """Members of GROUP and, per partition, committed offset, high watermark and lag."""
    from appliance.client.connection import raise_for

    with open_admin(bootstrap_server, timeout_ms) as admin, _groups_served(bootstrap_server):
        described = admin.describe_group(group)
    raise_for(described)
    members = described.get("members") or []
    offsets = described.get("offsets") or []
    if described.get("state") == "Dead" and not members and not offsets:
        raise Fail(f"consumer group {group!r} does not exist")
    click.echo(f"Group: {group}  State: {described.get('state')}  "
               f"Assignor: {described.get('assignor') or described.get('protocol') or '-'}  "
               f"Generation: {described.get('generation_id', '-')}  Members: {len(members)}")
    owner: dict[tuple[str, int], str] = {}
    for m in members:
        # a Kafka client's (classic) member: its assignment is opaque, "partitions" decoded
        assigned = m["partitions"] if "partitions" in m else m.get("assignment")
        for t, p in assigned or []:
            owner[(t, p)] = m.get("member_id", "?")
    rows_by_tp: dict[tuple[str, int], list[Any]] = {}
    for entry in offsets:
        tp = (entry["topic"], entry["partition"])
        rows_by_tp[tp] = [tp[0], tp[1], entry.get("committed"), entry.get("high_watermark"),
                          entry.get("lag"), owner.get(tp)]
    for tp, member_id in owner.items():
        rows_by_tp.setdefault(tp, [tp[0], tp[1], None, None, None, member_id])
    if rows_by_tp:
        click.echo()
        click.echo(table(["TOPIC", "PARTITION", "COMMITTED", "HIGH WATERMARK", "LAG", "MEMBER"],
                          [rows_by_tp[tp] for tp in sorted(rows_by_tp)], right={1, 2, 3, 4}))
