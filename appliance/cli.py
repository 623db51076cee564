"""The `ringlog` command line."""

import sys

import click


@click.group()
@click.version_option(package_name="ringlog")
def main() -> None:
    """Ringlog: a Kafka-style log broker appliance."""


@main.command()
@click.option("--config", "config_path", type=click.Path(), help="server.properties to read")
@click.option("--override", multiple=True, metavar="KEY=VALUE", help="override one setting")
def serve(config_path: str | None, override: tuple[str, ...]) -> None:
    """Start the appliance (not built yet: the storage engine comes first)."""
    click.echo(
        "ringlog serve: the appliance is not built yet; the storage engine (shm/) is. "
        "Run `make test` to exercise it.",
        err=True,
    )
    sys.exit(0)
