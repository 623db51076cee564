"""`ringlog serve`: the appliance itself, in the foreground."""

from __future__ import annotations

import logging
import sys

import click


@click.command()
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
