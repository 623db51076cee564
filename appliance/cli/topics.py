"""`ringlog topics create|list|describe|alter|delete|delete-records`.

`alter --partitions N` grows a topic as `kafka-topics.sh --alter
--partitions N` does (N is the new total); `delete-records` is
`kafka-delete-records.sh` for one partition, the offset given on the
command line instead of in a JSON file.
"""

from __future__ import annotations

import click

from appliance.cli.command import bootstrap_option, client_command, open_admin, timeout_option
from appliance.cli.table import PARTITION_HEADERS, partition_rows, table, with_error_column

# After PARTITION, as kafka-topics --describe orders them: Leader, Replicas, Isr.
REPLICATION_HEADERS = ["LEADER", "REPLICAS", "ISR"]
NO_LEADER = -1


def _parse_configs(_ctx: click.Context, _param: click.Parameter,
                   values: tuple[str, ...]) -> dict[str, str]:
    configs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE, e.g. retention.ms=86400000")
        configs[key.strip()] = value.strip()
    return configs



@click.group()
def topics() -> None:
    """Create, list, describe, alter and delete topics."""


@topics.command("create")
@click.argument("name")
@click.option("--partitions", type=click.IntRange(min=1), required=True,
              help="number of partitions")
@click.option("--replication-factor", type=click.IntRange(min=1), default=1, show_default=True,
              help="copies of each partition (one node: 1)")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE",
              callback=_parse_configs, help="a topic config, e.g. retention.ms=86400000; "
              "repeatable")
@bootstrap_option
@timeout_option
@client_command()
def topics_create(name: str, partitions: int, replication_factor: int,
                  configs: dict[str, str], bootstrap_server: str, timeout_ms: int) -> None:
    """Create topic NAME."""
    with open_admin(bootstrap_server, timeout_ms) as admin:
        admin.create_topic(name, partitions, replication_factor, configs)
    click.echo(f"Created topic {name}.")


@topics.command("list")
@bootstrap_option
@timeout_option
@client_command()
def topics_list(bootstrap_server: str, timeout_ms: int) -> None:
    """List topic names, one a line."""
    with open_admin(bootstrap_server, timeout_ms) as admin:
        names = admin.list_topics()
    for name in sorted(names):
        click.echo(name)


@topics.command("describe")
@click.argument("name")
@bootstrap_option
@timeout_option
@client_command()
def topics_describe(name: str, bootstrap_server: str, timeout_ms: int) -> None:
    """Partitions of topic NAME: leader, replicas, in-sync replicas, owner worker,
    offsets, high watermark, size on disk."""
    with open_admin(bootstrap_server, timeout_ms) as admin:
        topic = admin.describe_topic(name)
    partitions = topic.get("partitions", [])
    configs = topic.get("configs") or {}
    config_text = ",".join(f"{k}={v}" for k, v in sorted(configs.items())) or "-"
    click.echo(f"Topic: {name}  Partitions: {len(partitions)}  "
               f"ReplicationFactor: {topic.get('replication_factor', 1)}  Configs: {config_text}")
    rows = [[row[0], *replication_cells(p), *row[1:]]
            for p, row in zip(partitions, partition_rows(partitions), strict=True)]
    headers = with_error_column(
        [PARTITION_HEADERS[0], *REPLICATION_HEADERS, *PARTITION_HEADERS[1:]], rows)
    click.echo(table(headers, rows, right={0, 1, 4, 5, 6, 7, 8}))


def replication_cells(partition: dict) -> list[str | None]:
    """A partition's Leader, Replicas and Isr as kafka-topics prints them:
    broker ids, lists comma-separated, "none" for no leader; None (a dash)
    where the broker did not say."""
    leader = partition.get("leader")
    if leader is not None:
        leader = "none" if leader == NO_LEADER else str(leader)
    return [leader, *(None if partition.get(key) is None
                      else ",".join(str(b) for b in partition[key])
                      for key in ("replicas", "isr"))]


@topics.command("alter")
@click.argument("name")
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="the new total number of partitions (only more than now)")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE",
              callback=_parse_configs, help="a topic config to set; repeatable")
@click.option("--delete-config", "deleted", multiple=True, metavar="KEY",
              help="a topic config to return to the broker's default; repeatable")
@bootstrap_option
@timeout_option
@client_command()
def topics_alter(name: str, partitions: int | None, configs: dict[str, str],
                 deleted: tuple[str, ...], bootstrap_server: str, timeout_ms: int) -> None:
    """Add partitions to topic NAME, or set or delete its configs (others keep
    their values)."""
    if partitions is None and not configs and not deleted:
        raise click.UsageError("give --partitions N, --config KEY=VALUE, --delete-config KEY, "
                               "or several")
    with open_admin(bootstrap_server, timeout_ms) as admin:
        if partitions is not None:
            admin.create_partitions(name, partitions)
            click.echo(f"Topic {name} now has {partitions} partitions.")
        if configs or deleted:
            result = admin.alter_configs(name, configs, deleted)
            shown = ",".join(f"{k}={v}" for k, v in sorted(result.items())) or "(defaults)"
            click.echo(f"Updated topic {name}: {shown}")


@topics.command("delete-records")
@click.argument("name")
@click.option("--partition", type=click.IntRange(min=0), required=True, help="the partition")
@click.option("--offset", type=click.IntRange(min=-1), required=True,
              help="delete every record below this offset; -1: below the high watermark")
@bootstrap_option
@timeout_option
@client_command()
def topics_delete_records(name: str, partition: int, offset: int, bootstrap_server: str,
                          timeout_ms: int) -> None:
    """Delete the records of partition P of topic NAME below an offset (its
    log start offset moves there)."""
    with open_admin(bootstrap_server, timeout_ms) as admin:
        low_watermark = admin.delete_records(name, partition, offset)
    click.echo(f"Deleted records of {name}-{partition} below offset {low_watermark}: "
               f"its low watermark is {low_watermark}.")


@topics.command("delete")
@click.argument("name")
@bootstrap_option
@timeout_option
@client_command()
def topics_delete(name: str, bootstrap_server: str, timeout_ms: int) -> None:
    """Delete topic NAME and its data (needs delete.topic.enable on the appliance)."""
    with open_admin(bootstrap_server, timeout_ms) as admin:
        admin.delete_topic(name)
    click.echo(f"Deleted topic {name}.")
