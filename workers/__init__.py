"""Partition-worker processes: each the one writer of the partitions it owns."""

from workers.worker import Worker

__all__ = ["Worker"]
