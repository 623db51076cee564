"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_appliance_left_behind() -> Iterator[None]:
    """A test that fails before stopping its appliance must not leave it running."""
    yield
    from tests.integration.conftest import kill_leftovers

    kill_leftovers()
