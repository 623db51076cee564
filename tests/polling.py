"""Waiting on a condition with a deadline, for tests that watch real processes."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str,
             interval_s: float = 0.02) -> float:
    """Poll `predicate` until it holds; the seconds it took, or AssertionError
    naming `what`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if predicate():
            return time.monotonic() - began
        time.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")
