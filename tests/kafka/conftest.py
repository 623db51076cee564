"""A real appliance with a Kafka (PLAINTEXT) listener, for the suites whose
judges are unmodified Kafka clients: kafka-python, confluent-kafka,
aiokafka and kcat. One appliance per module (each test uses topics and
groups of its own names), started by the integration suite's launcher."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from loadtest.harness import Appliance
from tests.integration.conftest import start_appliance

_names = itertools.count()


@pytest.fixture(scope="module")
def kafka_appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    running = start_appliance(tmp_path_factory.mktemp("kafka"))
    yield running
    assert running.stop() == 0, running.stderr_tail()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A topic or group name of this test's own."""
    return f"{request.node.name[:40].replace('[', '-').strip(']')}-{os.getpid()}-{next(_names)}"
