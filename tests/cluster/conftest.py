"""A real ZooKeeper for the cluster suites: one standalone server for the
session, each test under a chroot of its own so none sees another's state."""

from __future__ import annotations

import itertools
import os
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

