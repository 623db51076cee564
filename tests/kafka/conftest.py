"""A real appliance with a Kafka (PLAINTEXT) listener, for the suites whose
judges are unmodified Kafka clients: kafka-python, confluent-kafka,
aiokafka and kcat. One appliance per module (each test uses topics and
groups of its own names), started by the integration suite's launcher."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator

import pytest

from loadtest.harness import Appliance, shared_across_tests
from tests.integration.conftest import start_appliance

_names = itertools.count()


@pytest.fixture(scope="module")
def kafka_appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    running = shared_across_tests(start_appliance(tmp_path_factory.mktemp("kafka")))
    try:
        yield running
        assert running.stop() == 0, running.stderr_tail()
    finally:
        if running.process.poll() is None:
            running.kill()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A topic or group name of this test's own."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name.removeprefix("test_"))[:40]
    return f"{base}-{os.getpid()}-{next(_names)}"
