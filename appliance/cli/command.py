"""The `ringlog` command line.

Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, NoReturn

import click

from shm.errors import (
    NetworkError,
    RequestTimedOutError,
    RinglogError,
    UnsupportedVersionError,
)


@click.group()
@click.version_option(package_name="ringlog")
def main() -> None:
    """Ringlog: a Kafka-style log broker appliance."""


@main.command()
@click.option("--config", "config_path", type=click.Path(), default=None,
              help="server.properties to read (default: built-in settings)")
@click.option("--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override one setting; repeatable")
def serve(config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Run the appliance in the foreground (systemd runs it as a notify service)."""
    from appliance.config import ConfigError, load_config
    from appliance.supervisor import Supervisor

    try:
        config = load_config(config_path, overrides)
    except ConfigError as exc:
        click.echo(f"ringlog: {exc}", err=True)
        sys.exit(2)
    from appliance import systemd

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(systemd.JournalFormatter() if systemd.stderr_is_journal() else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        code = Supervisor(config).run()
    except OSError as exc:
        click.echo(f"ringlog: cannot start: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


# --- the client commands ------------------------------------------------------------------
#
# Every command below talks to a running appliance. Failures are one line on
# stderr, "ringlog: <message>", and exit 1 for an error from (or no answer
# from) the appliance, 2 for a usage error; never a traceback. Ctrl-C ends
# `consume` with exit 0 and the others with 130, quietly; a closed stdout
# (`| head`) ends any command quietly with exit 0.

DEFAULT_BOOTSTRAP = "127.0.0.1:7092"
DEFAULT_TIMEOUT_MS = 5000
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class Fail(Exception):
    """A one-line failure with its exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"ringlog: {message}", err=True)
    sys.exit(code)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into a closed
    pipe does not print an error of its own."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _error_line(exc: RinglogError, bootstrap: str | None, timeout_ms: int | None) -> str:
    message = str(exc) or exc.name
    if isinstance(exc, RequestTimedOutError | NetworkError) and bootstrap:
        if message.startswith("no reply from the appliance"):  # the connection's own words
            waited = f" within {timeout_ms} ms" if timeout_ms else ""
            return f"no reply from {bootstrap}{waited}; is the appliance running? ({exc.name})"
        return f"{message} ({exc.name} from {bootstrap})"
    return message if message == exc.name else f"{message} ({exc.name})"


def client_command(interrupt_code: int = EXIT_INTERRUPTED) -> Callable:
    """Wrap a command so that whatever goes wrong ends in one line and an exit code."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bootstrap = kwargs.get("bootstrap_server")
            timeout_ms = kwargs.get("request_timeout_ms") or kwargs.get("timeout_ms")
            try:
                return fn(*args, **kwargs)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except Fail as exc:
                _fail(str(exc), exc.code)
            except UnsupportedVersionError as exc:
                _fail(f"the appliance at {bootstrap} does not serve this yet: {exc}", EXIT_USAGE)
            except RinglogError as exc:
                _fail(_error_line(exc, bootstrap, timeout_ms), EXIT_ERROR)
            except BrokenPipeError:
                _quiet_stdout()
                sys.exit(0)
            except KeyboardInterrupt:
                sys.exit(interrupt_code)
            except ValueError as exc:
                _fail(str(exc), EXIT_USAGE)
            except Exception as exc:  # a bug: still one line, naming what it was
                _fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_ERROR)

        return wrapper

    return decorate


def _check_bootstrap(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from appliance.client.connection import parse_bootstrap

    try:
        parse_bootstrap(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _parse_configs(_ctx: click.Context, _param: click.Parameter,
                   values: tuple[str, ...]) -> dict[str, str]:
    configs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE, e.g. retention.ms=86400000")
        configs[key.strip()] = value.strip()
    return configs


def bootstrap_option(fn: Callable) -> Callable:
    return click.option(
        "--bootstrap-server", "bootstrap_server", metavar="HOST:PORT",
        envvar="RINGLOG_BOOTSTRAP_SERVER", default=DEFAULT_BOOTSTRAP, show_default=True,
        show_envvar=True, callback=_check_bootstrap,
        help="the appliance to talk to")(fn)


def timeout_option(fn: Callable) -> Callable:
    return click.option(
        "--timeout-ms", "timeout_ms", type=click.IntRange(min=1), default=DEFAULT_TIMEOUT_MS,
        show_default=True, help="how long to wait for the appliance to answer")(fn)


def _admin(bootstrap_server: str, timeout_ms: int):
    from appliance.client import Admin

    return Admin(bootstrap_server, request_timeout_ms=timeout_ms)


def _table(headers: list[str], rows: list[list[Any]], right: Collection[int] = ()) -> str:
    """Columns padded to their widest cell, numbers (columns in `right`) right-aligned."""
    cells = [headers, *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.rjust(w) if i in right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _size(size: int | None) -> str | None:
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


PARTITION_HEADERS = ["PARTITION", "OWNER WORKER", "LOG START", "LOG END", "HIGH WATERMARK",
                     "SIZE"]


def _partition_rows(partitions: list[dict], topic: str | None = None) -> list[list[Any]]:
    rows = []
    for p in partitions:
        row = [p.get("partition"), p.get("owner_worker"), p.get("log_start_offset"),
               p.get("log_end_offset"), p.get("high_watermark"), _size(p.get("size_bytes"))]
        if p.get("error"):
            row.append(p["error"])
        rows.append(row if topic is None else [topic, *row])
    return rows


def _with_error_column(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if any(len(row) > len(headers) for row in rows):
        for row in rows:
            row.extend([""] * (len(headers) + 1 - len(row)))
        return [*headers, "ERROR"]
    return headers


# --- topics -------------------------------------------------------------------------------

@main.group()
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
    with _admin(bootstrap_server, timeout_ms) as admin:
        admin.create_topic(name, partitions, replication_factor, configs)
    click.echo(f"Created topic {name}.")


@topics.command("list")
@bootstrap_option
@timeout_option
@client_command()
def topics_list(bootstrap_server: str, timeout_ms: int) -> None:
    """List topic names, one a line."""
    with _admin(bootstrap_server, timeout_ms) as admin:
        names = admin.list_topics()
    for name in sorted(names):
        click.echo(name)


@topics.command("describe")
@click.argument("name")
@bootstrap_option
@timeout_option
@client_command()
def topics_describe(name: str, bootstrap_server: str, timeout_ms: int) -> None:
    """Partitions of topic NAME: owner worker, offsets, high watermark, size on disk."""
    with _admin(bootstrap_server, timeout_ms) as admin:
        topic = admin.describe_topic(name)
    partitions = topic.get("partitions", [])
    configs = topic.get("configs") or {}
    config_text = ",".join(f"{k}={v}" for k, v in sorted(configs.items())) or "-"
    click.echo(f"Topic: {name}  Partitions: {len(partitions)}  "
               f"ReplicationFactor: {topic.get('replication_factor', 1)}  Configs: {config_text}")
    rows = _partition_rows(partitions)
    headers = _with_error_column(PARTITION_HEADERS, rows)
    click.echo(_table(headers, rows, right={0, 1, 2, 3, 4, 5}))


@topics.command("alter")
@click.argument("name")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE", required=True,
              callback=_parse_configs, help="a topic config to set; repeatable")
@bootstrap_option
@timeout_option
@client_command()
def topics_alter(name: str, configs: dict[str, str], bootstrap_server: str,
                 timeout_ms: int) -> None:
    """Set configs of topic NAME (others keep their values)."""
    with _admin(bootstrap_server, timeout_ms) as admin:
        result = admin.alter_configs(name, configs)
    shown = ",".join(f"{k}={v}" for k, v in sorted((result or configs).items()))
    click.echo(f"Updated topic {name}: {shown}")


@topics.command("delete")
@click.argument("name")
@bootstrap_option
@timeout_option
@client_command()
def topics_delete(name: str, bootstrap_server: str, timeout_ms: int) -> None:
    """Delete topic NAME and its data (needs delete.topic.enable on the appliance)."""
    with _admin(bootstrap_server, timeout_ms) as admin:
        admin.delete_topic(name)
    click.echo(f"Deleted topic {name}.")


# --- produce ------------------------------------------------------------------------------

MAX_UNACKNOWLEDGED = 10_000  # records read ahead of their acknowledgements


@main.command()
@click.argument("topic")
@click.option("--key-separator", metavar="SEP", default=None,
              help="split each line into key and value at the first SEP; a line "
                   "without SEP stops the command (exit 2), lines before it are sent")
@click.option("--partition", type=click.IntRange(min=0), default=None,
              help="send every record to this partition (default: by key, else spread)")
@click.option("--acks", type=click.Choice(["0", "1", "all", "-1"]), default="all",
              show_default=True, help="acknowledgement the appliance gives each record")
@click.option("-v", "--verbose", is_flag=True, help="print a summary on stderr")
@bootstrap_option
@timeout_option
@client_command()
def produce(topic: str, key_separator: str | None, partition: int | None, acks: str,
            verbose: bool, bootstrap_server: str, timeout_ms: int) -> None:
    """Send one record per line of stdin to TOPIC (the newline is not part of it).

    Reads as lines arrive and waits at the end until every record is
    acknowledged. Prints nothing on success; the first failed record stops
    the command with its error (exit 1).
    """
    from appliance.client import Producer

    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="'--key-separator'")
    separator = key_separator.encode() if key_separator is not None else None
    producer = Producer(bootstrap_server, acks=acks, linger_ms=5,
                        request_timeout_ms=timeout_ms, delivery_timeout_ms=3 * timeout_ms)
    window = threading.Semaphore(MAX_UNACKNOWLEDGED)
    failures: list[BaseException] = []
    sent = 0

    def on_delivery(error: BaseException | None, _metadata: object) -> None:
        if error is not None:
            failures.append(error)
        window.release()

    def finish() -> None:
        producer.flush(timeout=3 * timeout_ms / 1000 + 1)
        if failures:
            first = failures[0]
            if len(failures) > 1 or sent > 1:
                raise Fail(f"{len(failures)} of {sent} records not sent: "
                           + (_error_line(first, bootstrap_server, timeout_ms)
                              if isinstance(first, RinglogError) else str(first)),
                           EXIT_ERROR if isinstance(first, RinglogError) else EXIT_USAGE)
            raise first

    bad_line: int | None = None
    try:
        for number, line in enumerate(sys.stdin.buffer, 1):
            if failures:
                break
            if line.endswith(b"\n"):
                line = line[:-1]
            key = None
            if separator is not None:
                key, found, line = line.partition(separator)
                if not found:
                    bad_line = number
                    break
            window.acquire()
            producer.send(topic, line, key=key, partition=partition, on_delivery=on_delivery)
            sent += 1
    except KeyboardInterrupt:
        finish()
        raise
    finish()
    if bad_line is not None:
        raise Fail(f"line {bad_line} has no key separator {key_separator!r}; "
                   f"sent the {sent} lines before it, nothing after", EXIT_USAGE)
    if verbose:
        click.echo(f"{sent} records sent to {topic}", err=True)
    producer.close()


# --- consume ------------------------------------------------------------------------------

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


@main.command()
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


# --- consumer groups ----------------------------------------------------------------------

GROUPS_NOT_SERVED = "consumer groups are not served yet by the appliance at {}"


def _group_request(admin: Any, api: str, fields: dict | None, bootstrap: str) -> dict:
    try:
        return admin._request(api, fields).fields
    except UnsupportedVersionError:
        raise Fail(GROUPS_NOT_SERVED.format(bootstrap), EXIT_USAGE) from None


@main.group()
def groups() -> None:
    """List consumer groups and show their members and lag."""


@groups.command("list")
@bootstrap_option
@timeout_option
@client_command()
def groups_list(bootstrap_server: str, timeout_ms: int) -> None:
    """Consumer groups the appliance knows, with their state and member count."""
    with _admin(bootstrap_server, timeout_ms) as admin:
        listed = _group_request(admin, "list_groups", None, bootstrap_server)["groups"]
    if not listed:
        return
    rows = []
    for g in listed:
        members = g.get("members")
        rows.append([g.get("group_id"), g.get("state"),
                     len(members) if isinstance(members, list) else members or 0])
    click.echo(_table(["GROUP", "STATE", "MEMBERS"], rows, right={2}))


@groups.command("describe")
@click.argument("group")
@bootstrap_option
@timeout_option
@client_command()
def groups_describe(group: str, bootstrap_server: str, timeout_ms: int) -> None:
    """Members of GROUP and, per partition, committed offset, high watermark and lag."""
    from appliance.client.connection import raise_for

    with _admin(bootstrap_server, timeout_ms) as admin:
        described = _group_request(admin, "describe_groups", {"groups": [group]},
                                   bootstrap_server)["groups"][0]
    raise_for(described)
    members = described.get("members") or []
    offsets = described.get("offsets") or []
    if described.get("state") == "Dead" and not members and not offsets:
        raise Fail(f"consumer group {group!r} does not exist")
    click.echo(f"Group: {group}  State: {described.get('state')}  "
               f"Assignor: {described.get('assignor') or '-'}  "
               f"Generation: {described.get('generation_id', '-')}  Members: {len(members)}")
    owner: dict[tuple[str, int], str] = {}
    for m in members:
        for t, p in m.get("assignment") or []:
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
        click.echo(_table(["TOPIC", "PARTITION", "COMMITTED", "HIGH WATERMARK", "LAG", "MEMBER"],
                          [rows_by_tp[tp] for tp in sorted(rows_by_tp)], right={1, 2, 3, 4}))


# --- status -------------------------------------------------------------------------------

PROCESS_HEADERS = ["PROCESS", "PID", "RSS", "CPU TIME", "CPU%", "PARTITIONS", "RESTARTS",
                   "STATE"]
GROUP_HEADERS = ["GROUP", "STATE", "TOPIC", "PARTITION", "COMMITTED", "HIGH WATERMARK", "LAG"]


@main.command()
@bootstrap_option
@timeout_option
@client_command()
def status(bootstrap_server: str, timeout_ms: int) -> None:
    """Each process (pid, RSS, CPU, partitions), each partition's offsets and size,
    each consumer group's lag."""
    with _admin(bootstrap_server, timeout_ms) as admin:
        state = admin._request("status", {"details": True}).fields
    processes = state.get("processes") or []
    workers = [p for p in processes if p.get("worker") is not None]
    click.echo(f"Appliance: {bootstrap_server}  "
               f"Serving: {'yes' if state.get('serving') else 'no'}  "
               f"Workers ready: {len(state.get('workers') or [])} of {len(workers)}  "
               f"Topics: {state.get('topics')}")
    click.echo()
    click.echo(_table(PROCESS_HEADERS, [_process_row(p) for p in processes],
                      right={1, 2, 3, 4, 5, 6}))
    rows = [row for p in state.get("partitions") or []  # SIZE: bytes of batches in the log
            for row in _partition_rows([{**p, "size_bytes": p.get("log_bytes")}], p["topic"])]
    if rows:
        click.echo()
        headers = _with_error_column(["TOPIC", *PARTITION_HEADERS], rows)
        click.echo(_table(headers, rows, right={1, 2, 3, 4, 5, 6}))
    groups = state.get("groups")
    click.echo()
    if groups is None:
        click.echo("Groups: committed offsets are still loading; try again in a moment")
    elif not groups:
        click.echo("Groups: none")
    else:
        click.echo(_table(GROUP_HEADERS, _group_rows(groups), right={3, 4, 5, 6}))


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
    return [process.get("process"), process.get("pid"), _size(process.get("rss_bytes")),
            None if cpu is None else f"{cpu:.2f}s", process.get("cpu_percent"),
            len(process.get("partitions") or []) if worker else None,
            process.get("restarts") if worker else None, state]


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


# --- perf ---------------------------------------------------------------------------------

from appliance.cli.perf import perf  # noqa: E402  (last: appliance.cli.perf imports this module)

main.add_command(perf)
