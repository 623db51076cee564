"""`ringlog produce`: stdin lines to records, as Kafka's console producer."""

from __future__ import annotations

import sys
import threading

import click

from appliance.cli.command import (
    EXIT_ERROR,
    EXIT_USAGE,
    Fail,
    bootstrap_option,
    client_command,
    error_line,
    timeout_option,
)
from shm.errors import RinglogError

MAX_UNACKNOWLEDGED = 10_000  # records read ahead of their acknowledgements


@click.command()
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
                           + (error_line(first, bootstrap_server, timeout_ms)
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
