"""Every click usage error of `ringlog`, in every command and subgroup, is
one line on stderr, "ringlog: <problem>; see '<command> --help'", and exit 2.

In process with click's CliRunner: the arguments are refused before any
appliance would be contacted. tests/integration/test_cli.py runs some as
real processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner, Result

from appliance.cli import main


def every_command(command: click.Command = main,
                  path: tuple[str, ...] = ("ringlog",)) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from every_command(sub, (*path, name))


COMMANDS = dict(every_command())
GROUPS = [path for path, command in COMMANDS.items() if isinstance(command, click.Group)]
WITH_REQUIRED = [path for path, command in COMMANDS.items()
                 if any(param.required for param in command.params)]


def ringlog(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="ringlog")


def one_usage_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringlog: "), result.stderr
    return lines[0]


def test_the_walk_finds_every_command_and_subgroup():
    assert {"ringlog", "ringlog serve", "ringlog topics create", "ringlog groups describe",
            "ringlog consume", "ringlog status", "ringlog perf e2e"} <= set(COMMANDS)
    assert GROUPS == ["ringlog", "ringlog groups", "ringlog perf", "ringlog topics"]


@pytest.mark.parametrize("path", COMMANDS)
def test_an_unknown_option_is_one_line(path):
    line = one_usage_line(ringlog(*path.split()[1:], "--no-such-flag"))
    assert line == f"ringlog: No such option '--no-such-flag'; see '{path} --help'"


@pytest.mark.parametrize("path", GROUPS)
def test_an_unknown_command_is_one_line(path):
    line = one_usage_line(ringlog(*path.split()[1:], "nosuchcommand"))
    assert line == f"ringlog: No such command 'nosuchcommand'; see '{path} --help'"


@pytest.mark.parametrize("path", WITH_REQUIRED)
def test_a_missing_argument_or_option_is_one_line(path):
    line = one_usage_line(ringlog(*path.split()[1:]))
    assert line.startswith("ringlog: Missing ") and line.endswith(f"; see '{path} --help'")


@pytest.mark.parametrize(("args", "words"), [
    (["topics", "create", "x"], "Missing option '--partitions'"),
    (["produce", "t", "--acks", "2"], "'2' is not one of"),  # a click type refuses it
    (["topics", "alter", "t", "--config", "=1"], "'=1' is not KEY=VALUE"),  # a callback
    (["topics", "list", "--bootstrap-server", "no-port"], "'no-port' is not HOST:PORT"),
    (["consume", "t", "--offset", "3"], "--offset needs --partition"),  # the command's body
    (["produce", "t", "--key-separator", ""], "'--key-separator': must not be empty"),
    (["perf", "consume", "--topic", "t", "--num-records", "0"], "--num-records"),
])
def test_usage_errors_from_types_callbacks_and_bodies_are_one_line(args, words):
    command = next(path for path in sorted(COMMANDS, key=len, reverse=True)
                   if " ".join(["ringlog", *args]).startswith(path + " "))
    line = one_usage_line(ringlog(*args))
    assert words in line and line.endswith(f"; see '{command} --help'"), line


@pytest.mark.parametrize("path", GROUPS)
def test_a_group_without_a_command_still_shows_its_commands(path):
    result = ringlog(*path.split()[1:])
    assert "Commands:" in result.output and "Usage: " in result.output
