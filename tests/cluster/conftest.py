"""A real ZooKeeper for the cluster suites: one standalone server for the
session, each test under a chroot of its own so none sees another's state."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.zookeeper import ZooKeeperServer

_chroots = itertools.count(1)


@pytest.fixture(scope="session")
def zookeeper_server(tmp_path_factory) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(Path(tmp_path_factory.mktemp("zookeeper")))
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


@pytest.fixture
def zookeeper_connect(zookeeper_server: ZooKeeperServer) -> str:
    """`zookeeper.connect` for this test: the server and a fresh chroot."""
    return f"{zookeeper_server.connect}/test-{os.getpid()}-{next(_chroots)}"


def wait_until(predicate, timeout_s: float, what: str) -> float:
    """Poll `predicate` until it holds; the seconds it took, or AssertionError."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if predicate():
            return time.monotonic() - began
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")
