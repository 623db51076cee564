"""The `ringlog` command line."""

from appliance.cli.command import main

__all__ = ["main"]
