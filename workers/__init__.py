"""Partition-worker processes: each the one writer of the partitions it owns.

`Worker` loads on first use (PEP 562): the supervisor's side imports
workers.protocol, and the worker imports the broker core's fetch purgatory
for its door, so an eager import here would make the two packages a cycle.
"""

from typing import Any

__all__ = ["Worker"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from workers.worker import Worker

        return Worker
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
