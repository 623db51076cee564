"""The broker's view of every partition's log: readers of the shared maps.

The core reads fetches and positions straight from the segment maps and
control blocks the owning workers publish; it is handed this object, which
maps them on first use and forgets a partition whose files went away (its
worker is reopening or removed it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from appliance.broker.replies import PartitionOffsets
from appliance.metadata import Metadata, partition_dir
from shm import LogPosition, PartitionReader
from shm.errors import LeaderNotAvailableError, NotLeaderOrFollowerError


class PartitionReaders:
    """PartitionReader per partition, opened lazily, closed with their topic."""

    def __init__(self, metadata: Metadata):
        self.metadata = metadata
        # Workers that were told to open their partitions and have not answered:
        # their control blocks may still hold a previous run's positions or a
        # half-recovered log's, so none is read until the owner says it is open.
        self.opening: set[int] = set()
        self._readers: dict[tuple[str, int], PartitionReader] = {}
        # In a cluster, whether this broker leads a partition: only the leader serves fetches.
        self.leads: Callable[[str, int], bool] | None = None

    def directory(self, topic: str, partition: int) -> Path:
        return partition_dir(self.metadata.log_dir, topic, partition)

    def reader(self, topic: str, partition: int) -> PartitionReader:
        """The partition's reader; UNKNOWN_TOPIC_OR_PARTITION for one that does
        not exist, LEADER_NOT_AVAILABLE while its worker has not published it."""
        key = (topic, partition)
        reader = self._readers.get(key)
        if reader is None or self.opening:
            owner = self.metadata.owner(topic, partition)  # raises for unknown partitions
            if owner in self.opening:
                raise LeaderNotAvailableError(
                    f"partition {topic}-{partition} is being opened by its worker; retry")
        if reader is None:
            try:
                reader = PartitionReader.open(self.directory(topic, partition))
            except (FileNotFoundError, ValueError):  # no control block yet, or half made
                raise LeaderNotAvailableError(
                    f"partition {topic}-{partition} is being opened by its worker; retry"
                ) from None
            self._readers[key] = reader
        return reader

    def position(self, topic: str, partition: int) -> LogPosition:
        """The published positions; a reader whose files went is forgotten."""
        try:
            return self.reader(topic, partition).position()
        except FileNotFoundError:
            self.forget(topic, partition)
            raise LeaderNotAvailableError(
                f"partition {topic}-{partition} is reopening; retry") from None

    def read(self, topic: str, partition: int, offset: int, max_bytes: int):
        """Whole batches from `offset`, up to the high watermark (a memoryview)."""
        try:
            return self.reader(topic, partition).read(offset, max_bytes)
        except FileNotFoundError:
            self.forget(topic, partition)
            raise LeaderNotAvailableError(
                f"partition {topic}-{partition} is reopening; retry") from None

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int
              ) -> tuple[PartitionOffsets, memoryview | None]:
        """A fetch's read of one partition with one reader lookup: its positions
        and whole batches from `offset` (None when there are none, or when
        `max_bytes` is 0: positions only)."""
        self.check_leader(topic, partition)
        reader = self.reader(topic, partition)
        try:
            position = reader.position()
            data = reader.read(offset, max_bytes) if max_bytes > 0 else None
        except FileNotFoundError:
            self.forget(topic, partition)
            raise LeaderNotAvailableError(
                f"partition {topic}-{partition} is reopening; retry") from None
        return PartitionOffsets(position.log_start_offset, position.log_end_offset,
                                position.high_watermark), data or None

    def check_leader(self, topic: str, partition: int) -> None:
        """What clients read (fetch, list offsets) only the leader answers: a
        follower's copy may lag, or hold a tail the leader will cut."""
        if self.leads is not None and not self.leads(topic, partition):
            raise NotLeaderOrFollowerError(
                f"this broker does not lead {topic}-{partition}; ask metadata for its leader")

    def offsets(self, topic: str, partition: int) -> tuple[PartitionOffsets, LogPosition]:
        position = self.position(topic, partition)
        return PartitionOffsets(position.log_start_offset, position.log_end_offset,
                                position.high_watermark), position

    def forget(self, topic: str, partition: int) -> None:
        reader = self._readers.pop((topic, partition), None)
        if reader is not None:
            reader.close()

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
