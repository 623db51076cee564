"""Seeded fuzz runs that say how to replay them: the seed comes from an
environment variable when one is replayed, else fresh, and a failure prints
it again beside the appliance's log tail."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

from loadtest.harness import Appliance

LOG_TAIL_CHARS = 4000


def fuzz_seed(variable: str, label: str) -> int:
    """`variable`'s seed, or a fresh one; printed with the line that replays it."""
    seed = int(os.environ.get(variable) or random.SystemRandom().randrange(2**32))
    print(f"{label} seed: {seed}  (replay with {variable}={seed})")
    return seed


@contextlib.contextmanager
def replayable(appliance: Appliance, label: str, seed: int) -> Iterator[None]:
    """On any failure inside, print the seed and the appliance's log tail."""
    try:
        yield
    except BaseException:
        print(f"{label} seed: {seed}\n--- appliance log tail ---\n"
              f"{appliance.stderr()[-LOG_TAIL_CHARS:]}")
        raise
