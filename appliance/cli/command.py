"""What every `ringlog` command shares: the root group, the one-line
failures and their exit codes, the options that name the appliance.

Imports no command module: the commands import this one, and
`appliance.cli` puts them under the root group.

Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from shm.errors import (
    NetworkError,
    RequestTimedOutError,
    RinglogError,
    UnsupportedVersionError,
)

if TYPE_CHECKING:
    from appliance.client import Admin


class UsageLine(click.UsageError):
    """A usage error as the one line every ringlog failure is: the problem,
    then where the fix is, instead of click's usage block."""

    def __init__(self, error: click.UsageError):
        super().__init__(error.format_message(), error.ctx)

    def format_message(self) -> str:
        problem = " ".join(self.message.split()).rstrip(".")
        if self.ctx is None:
            return problem
        return f"{problem}; see '{self.ctx.command_path} --help'"

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"ringlog: {self.format_message()}", file=file, err=True)


class RootGroup(click.Group):
    """The root group. Every command and subgroup is parsed and run inside its
    `make_context` and `invoke`, so each of their usage errors passes here and
    leaves as a UsageLine, exit 2, with no class for them to inherit.

    A group given no command still prints its help (click's
    NoArgsIsHelpError): that is the list of commands asked for, not a mistake.
    """

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None


def _one_line(error: click.UsageError) -> click.UsageError:
    if isinstance(error, UsageLine | click.exceptions.NoArgsIsHelpError):
        return error
    return UsageLine(error)


@click.group(cls=RootGroup)
@click.version_option(package_name="ringlog")
def ringlog() -> None:
    """Ringlog: a Kafka-style log broker appliance."""


# --- the client commands ------------------------------------------------------------------
#
# Every command but `serve` talks to a running appliance. Failures are one
# line on stderr, "ringlog: <message>", and exit 1 for an error from (or no
# answer from) the appliance, 2 for a usage error; never a traceback. Ctrl-C ends
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


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"ringlog: {message}", err=True)
    sys.exit(code)


def quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into a closed
    pipe does not print an error of its own."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def error_line(exc: RinglogError, bootstrap: str | None, timeout_ms: int | None) -> str:
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
                fail(str(exc), exc.code)
            except UnsupportedVersionError as exc:
                fail(f"the appliance at {bootstrap} does not serve this yet: {exc}", EXIT_USAGE)
            except RinglogError as exc:
                fail(error_line(exc, bootstrap, timeout_ms), EXIT_ERROR)
            except BrokenPipeError:
                quiet_stdout()
                sys.exit(0)
            except KeyboardInterrupt:
                sys.exit(interrupt_code)
            except ValueError as exc:
                fail(str(exc), EXIT_USAGE)
            except Exception as exc:  # a bug: still one line, naming what it was
                fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_ERROR)

        return wrapper

    return decorate


def _check_bootstrap(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from appliance.client.connection import parse_bootstrap

    try:
        parse_bootstrap(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


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


def open_admin(bootstrap_server: str, timeout_ms: int) -> Admin:
    from appliance.client import Admin

    return Admin(bootstrap_server, request_timeout_ms=timeout_ms)
