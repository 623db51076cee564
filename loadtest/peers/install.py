"""Bring in what the selected peers need, and only what is missing: Debian
packages with apt-get (their services never started by the install), Python
clients from the project's `peers` extra with this interpreter's pip."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from loadtest.peers.peer import PeerUnavailable

REPO = Path(__file__).resolve().parents[2]
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
APT_TIMEOUT_S = 900.0
PIP_TIMEOUT_S = 600.0


def missing_debian_packages(names: list[str]) -> list[str]:
    """The packages dpkg does not list as installed."""
    missing = []
    for name in names:
        try:
            status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                                    capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            status = ""
        if status.strip() != "install ok installed":
            missing.append(name)
    return missing


@contextlib.contextmanager
def services_held() -> Iterator[None]:
    """While apt-get runs, a policy-rc.d that forbids starting services: a
    packaged redis-server or rabbitmq-server must not start with its default
    configuration (RabbitMQ would listen on every interface). An existing
    policy file is left as it is."""
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# written by python -m loadtest.peers while apt-get "
                           "runs\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _apt_get(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env,
                          timeout=APT_TIMEOUT_S)


def install_debian_packages(names: list[str], say: Callable[[str], None]) -> None:
    """apt-get install the missing ones; `apt-get update` once if the lists are stale."""
    missing = missing_debian_packages(names)
    if not missing:
        return
    listed = " ".join(missing)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PeerUnavailable(f"Debian packages missing: {listed}; install them as root "
                              f"(apt-get install -y {listed}) or leave those peers out of "
                              "--peers")
    say(f"installing Debian packages: {listed}")
    with services_held():
        done = _apt_get("install", "-y", "--no-install-recommends", *missing)
        if done.returncode != 0:
            _apt_get("update")
            done = _apt_get("install", "-y", "--no-install-recommends", *missing)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        raise PeerUnavailable(f"apt-get install {listed} failed: {tail[0]}; run it by hand "
                              "to see why, or leave those peers out of --peers")


def missing_python_modules(modules: list[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def peers_extra() -> list[str]:
    """The requirements of the `peers` extra, read from pyproject.toml (defined once)."""
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]["peers"]


def install_python_clients(modules: list[str], say: Callable[[str], None]) -> None:
    """pip install the `peers` extra into this interpreter if a client module is missing."""
    if not missing_python_modules(modules):
        return
    requirements = peers_extra()
    say(f"installing the peers extra: {' '.join(requirements)}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *requirements],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    importlib.invalidate_caches()
    still = missing_python_modules(modules)
    if done.returncode != 0 or still:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        raise PeerUnavailable(f"pip could not install the peers extra ({tail[0]}); run "
                              f"`{sys.executable} -m pip install -e '.[peers]'` by hand")
