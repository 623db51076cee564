"""A real appliance for integration tests: `ringlog serve` on loopback, random
port, started by the load-test harness's launcher (loadtest.harness.Appliance)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.harness import REPO, Appliance, free_port, kill_leftovers

__all__ = ["REPO", "Appliance", "free_port", "kill_leftovers", "start_appliance"]


# Settings whose production defaults only make tests slow; a test that is about
# one of them passes its own value, which wins.
TEST_DEFAULTS = (
    # a new group's first generation would wait 3 s for more members
    "group.initial.rebalance.delay.ms=0",
)


def start_appliance(tmp_path: Path, *overrides: str, workers: int = 2,
                    env: dict[str, str] | None = None, port: int | None = None,
                    wait: bool = True, config_path: Path | None = None,
                    kafka_port: int | None = None) -> Appliance:
    """Start `ringlog serve` in its own session (so a test can kill the whole
    group) with two workers and TEST_DEFAULTS, and by default wait until both
    are ready."""
    given = {item.partition("=")[0].strip() for item in overrides}
    defaults = [item for item in TEST_DEFAULTS if item.partition("=")[0] not in given]
    appliance = Appliance(tmp_path, *defaults, *overrides, workers=workers, env=env, port=port,
                          config_path=config_path, kafka_port=kafka_port)
    if wait:
        appliance.wait_until_serving()
    return appliance


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    running = start_appliance(tmp_path)
    yield running
    assert running.stop() == 0, running.stderr()
