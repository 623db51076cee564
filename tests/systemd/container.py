"""A throwaway systemd machine that boots the shipped units, for the tests.

systemd is installed here but is not PID 1, so a real boot needs a container:
systemd-nspawn boots the host's /usr with a volatile root (a tmpfs: the
host's /etc and /var are untouched), with its own network namespace, and
with Ringlog installed the way docs/operations.md tells an operator to:

    /etc/systemd/system/ringlog.service, ringlog@.service   the shipped units
    /etc/sysusers.d/ringlog.conf                            systemd/ringlog.sysusers
    /etc/ringlog/server.properties                          config/server.properties
    /opt/ringlog/venv                                       a virtualenv with ringlog

The virtualenv is put together from what this checkout already has instead of
`pip install` (no network in the container, and it takes seconds): the
interpreter this test runs on, bound at /opt/ringlog/python; a venv skeleton
whose pyvenv.cfg points there; the checkout's site-packages and source tree
bound read-only at /opt/ringlog/deps and /opt/ringlog/src. Nothing of it lies
under /root, /home or /tmp, which the unit's ProtectHome= and PrivateTmp= hide.
The one test-only setting is a drop-in with LD_LIBRARY_PATH: a pyenv-built
interpreter finds libpython through a RUNPATH under /root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
PREFIX = "/opt/ringlog"
PYTHON_VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
BOOT_TIMEOUT_S = 20
COMMAND_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
# Backstop for a test process that dies without cleaning up; the whole
# module takes far less.
NSPAWN_LIFETIME_S = 300


class Machine:
    """A booted container; commands run inside it with nsenter."""

    def __init__(self, nspawn: subprocess.Popen, console: Path):
        self.nspawn = nspawn
        self.console = console
        self.pid = self._find_init()

    def _find_init(self) -> int:
        """The container's systemd, as a pid in the host's namespace."""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited:\n{self.console.read_text()}")
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.nspawn.pid).children(recursive=True):
                    if child.cmdline()[:1] == ["/usr/lib/systemd/systemd"]:
                        return child.pid
            time.sleep(0.05)
        raise AssertionError(f"no systemd in the container:\n{self.console.read_text()}")

    def run(self, *argv: str, input: str | None = None, check: bool = True,
            timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run argv inside the container (all its namespaces)."""
        result = subprocess.run(["nsenter", "-t", str(self.pid), "-a", *argv], input=input,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}:\n{result.stdout}"
                                 f"{result.stderr}")
        return result

    def in_network(self, *argv: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        """Run a host command inside the container's network namespace only:
        this checkout's client reaches the unit on the container's loopback."""
        result = subprocess.run(["nsenter", "-t", str(self.pid), "-n", *argv], cwd=REPO,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}:\n{result.stderr}")
        return result.stdout

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str) -> dict[str, str]:
        """The unit's properties that the tests look at."""
        names = "ActiveState,SubState,Result,MainPID,NRestarts,ExecMainCode,ExecMainStatus"
        out = self.systemctl("show", f"--property={names}", unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, unit: str, condition: Callable[[dict[str, str]], bool],
                 timeout_s: float) -> dict[str, str]:
        """Poll the unit's properties until condition holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.show(unit)
            if condition(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{unit} still {state} after {timeout_s}s:\n"
                                     f"{self.journal(unit)}")
            time.sleep(0.1)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout

    def write(self, path: str, text: str) -> None:
        """Create a file in the container's (volatile) file system."""
        self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path, input=text)

    def terminate(self) -> None:
        """Power the container off (SIGTERM to nspawn); kill it if that hangs."""
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.nspawn.pid, signal.SIGKILL)
                self.nspawn.wait(STOP_TIMEOUT_S)


def install_layout(directory: Path) -> list[str]:
    """The venv skeleton and test drop-in in directory; nspawn's bind options
    that put them, the units and the configuration where the units expect them."""
    venv = directory / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {PREFIX}/python/bin\n"
                                     "include-system-site-packages = false\n")
    (venv / "bin" / PYTHON_VERSION).symlink_to(f"{PREFIX}/python/bin/{PYTHON_VERSION}")
    for alias in ("python3", "python"):
        (venv / "bin" / alias).symlink_to(PYTHON_VERSION)
    script = Path(sys.prefix, "bin", "ringlog").read_text().split("\n", 1)[1]
    (venv / "bin" / "ringlog").write_text(f"#!{PREFIX}/venv/bin/python3\n{script}")
    (venv / "bin" / "ringlog").chmod(0o755)
    site = venv / "lib" / PYTHON_VERSION / "site-packages"
    site.mkdir(parents=True)
    # Plain path lines: the checkout's editable-install hook (which names
    # the checkout's own path) is not run, /opt/ringlog/src is used instead.
    (site / "ringlog-checkout.pth").write_text(f"{PREFIX}/src\n{PREFIX}/deps\n")
    dropin = directory / "python.conf"
    dropin.write_text(f"[Service]\nEnvironment=LD_LIBRARY_PATH={PREFIX}/python/lib\n")
    binds = [
        (UNITS / "ringlog.service", "/etc/systemd/system/ringlog.service"),
        (UNITS / "ringlog@.service", "/etc/systemd/system/ringlog@.service"),
        (dropin, "/etc/systemd/system/ringlog.service.d/test-python.conf"),
        (dropin, "/etc/systemd/system/ringlog@.service.d/test-python.conf"),
        (UNITS / "ringlog.sysusers", "/etc/sysusers.d/ringlog.conf"),
        (REPO / "config" / "server.properties", "/etc/ringlog/server.properties"),
        (Path(sys.base_prefix), f"{PREFIX}/python"),
        (venv, f"{PREFIX}/venv"),
        (Path(sysconfig.get_path("purelib")), f"{PREFIX}/deps"),
        (REPO, f"{PREFIX}/src"),
    ]
    return [f"--bind-ro={source}:{target}" for source, target in binds]


def boot(directory: Path) -> Machine:
    """Boot a container with Ringlog installed; the caller must terminate() it."""
    if shutil.which("systemd-nspawn") is None:
        raise AssertionError("systemd-nspawn is missing: run .ci/system-packages "
                             "(installs systemd-container), as make test does")
    binds = install_layout(directory)
    console = directory / "console.log"
    # A private mount namespace, so that the tmpfs over /run/systemd (which
    # keeps nspawn away from the host's systemd state) stays in this test.
    script = ("mount --make-rprivate / && mount -t tmpfs tmpfs /run/systemd && "
              f'exec timeout {NSPAWN_LIFETIME_S} systemd-nspawn "$@"')
    command = ["unshare", "-m", "sh", "-c", script, "sh", "-D", "/", "--volatile=yes",
               "--register=no", "--keep-unit", "--private-network", "--console=pipe",
               *binds, "-b", "systemd.unit=basic.target"]
    with open(console, "w") as log:
        nspawn = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    machine = Machine(nspawn, console)
    try:
        _wait_until_booted(machine)
    except BaseException:
        machine.terminate()
        raise
    return machine


def _wait_until_booted(machine: Machine) -> None:
    """Until the boot finished. It ends "degraded" (first-boot units fail on
    the empty /etc), which is no concern of these tests."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        state = machine.run("systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.1)
    raise AssertionError(f"container not booted after {BOOT_TIMEOUT_S}s:\n"
                         f"{machine.console.read_text()}")
