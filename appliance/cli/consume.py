"""`ringlog consume`: records to stdout lines, as Kafka's console consumer."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import click

from appliance.cli.command import (
    DEFAULT_TIMEOUT_MS,
    EXIT_USAGE,
    Fail,
    bootstrap_option,
    client_command,
)


def _parse_offset(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None or value in ("earliest", "latest"):
        return value
    try:
        offset = int(value)
    except ValueError:
        offset = -1
    if offset < 0:
        raise click.BadParameter(f"{value!r} is not an offset (0, 1, ...), 'earliest' or 'latest'")
    return offset


def _format(message: Any, separator: bytes, print_timestamp: bool, print_partition: bool,
            print_offset: bool, print_key: bool) -> bytes:
    """One output line, Kafka's console consumer's way: the chosen fields then the value."""
    fields = []
    if print_timestamp:
        kind = "LogAppendTime" if message.timestamp_type == 1 else "CreateTime"
        fields.append(f"{kind}:{message.timestamp}".encode())
    if print_partition:
        fields.append(b"Partition:%d" % message.partition)
    if print_offset:
        fields.append(b"Offset:%d" % message.offset)
    if print_key:
        fields.append(b"null" if message.key is None else bytes(message.key))
    fields.append(b"null" if message.value is None else bytes(message.value))
    return separator.join(fields) + b"\n"


@click.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True,
              help="start at the earliest offset (default: only new records)")
@click.option("--group", metavar="G", default=None,
              help="read as a member of consumer group G, committing its offsets")
@click.option("--partition", type=click.IntRange(min=0), default=None,
              help="read only this partition")
@click.option("--offset", callback=_parse_offset, metavar="O", default=None,
              help="with --partition: start at offset O ('earliest' and 'latest' work too)")
@click.option("--max-messages", type=click.IntRange(min=1), default=None,
              help="stop after N records")
@click.option("--timeout-ms", "idle_timeout_ms", type=click.IntRange(min=1), default=None,
              help="stop when no record arrives for this long (default: run until Ctrl-C)")
@click.option("--print-key", is_flag=True, help="print each record's key before its value")
@click.option("--print-offset", is_flag=True, help="print Offset:N before each value")
@click.option("--print-partition", is_flag=True, help="print Partition:N before each value")
@click.option("--print-timestamp", is_flag=True,
              help="print CreateTime:MS (or LogAppendTime:MS) before each value")
@click.option("--key-separator", metavar="SEP", default="\t", show_default="tab",
              help="what separates the printed fields")
@click.option("--request-timeout-ms", type=click.IntRange(min=1), default=DEFAULT_TIMEOUT_MS,
              show_default=True, help="how long to wait for the appliance to answer")
@click.option("-v", "--verbose", is_flag=True, help="print how many records were read on stderr")
@bootstrap_option
@client_command(interrupt_code=0)
def consume(topic: str, from_beginning: bool, group: str | None, partition: int | None,
            offset: Any, max_messages: int | None, idle_timeout_ms: int | None,
            print_key: bool, print_offset: bool, print_partition: bool, print_timestamp: bool,
            key_separator: str, request_timeout_ms: int, verbose: bool,
            bootstrap_server: str) -> None:
    """Print the records of TOPIC, one value a line, as they arrive."""
    from appliance.client import Consumer

    if offset is not None and partition is None:
        raise click.UsageError("--offset needs --partition")
    if group is not None and partition is not None:
        raise click.UsageError("--group and --partition cannot be used together: "
                               "a group assigns the partitions")
    reset = "earliest" if from_beginning else "latest"
    try:
        consumer = Consumer(bootstrap_servers=bootstrap_server, group_id=group,
                            auto_offset_reset=reset, request_timeout_ms=request_timeout_ms)
    except NotImplementedError:
        raise Fail("consumer groups are not served yet; leave out --group", EXIT_USAGE) from None
    out = sys.stdout.buffer
    separator = key_separator.encode()
    count = 0
    try:
        if partition is None:
            consumer.subscribe([topic])
        else:
            consumer.subscribe([topic])  # learns (or auto-creates) the topic's partitions
            count_partitions = len(consumer.assignment())
            if partition >= count_partitions:
                raise Fail(f"topic {topic!r} has no partition {partition}: it has "
                           f"{count_partitions} (0 to {count_partitions - 1})")
            consumer.assign([(topic, partition)])
            if isinstance(offset, int):
                consumer.seek(topic, partition, offset)
            elif offset == "earliest" or (offset is None and from_beginning):
                consumer.seek_to_beginning((topic, partition))
            else:
                consumer.seek_to_end((topic, partition))
        idle_since = time.monotonic()
        while max_messages is None or count < max_messages:
            wait_ms = 1000
            if idle_timeout_ms is not None:
                remaining = idle_timeout_ms - (time.monotonic() - idle_since) * 1000
                if remaining <= 0:
                    break
                wait_ms = max(1, min(wait_ms, int(remaining)))
            limit = None if max_messages is None else max_messages - count
            messages = consumer.poll(timeout_ms=wait_ms, max_records=limit)
            if not messages:
                continue
            idle_since = time.monotonic()
            out.write(b"".join(_format(m, separator, print_timestamp, print_partition,
                                       print_offset, print_key) for m in messages))
            out.flush()
            count += len(messages)
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
        if verbose:
            click.echo(f"Processed a total of {count} messages", err=True)
