"""The leader-epoch cache: which epoch started at which offset.

Every batch carries the epoch of the leader that appended it (its
partitionLeaderEpoch field); this file records where each epoch began, so a
follower can ask "where did epoch N end?" and cut a divergent tail
(Kafka's OffsetsForLeaderEpoch). Kafka's checkpoint format, text::

    0                 version
    2                 number of entries
    0 0               epoch start_offset
    3 1200

Written whole to a temporary file, fsynced and renamed, so it is never half written.
"""

from __future__ import annotations

from pathlib import Path

from shm.files import write_atomically

FILE_NAME = "leader-epoch-checkpoint"
_VERSION = 0


class LeaderEpochCache:
    """(epoch, start offset) pairs, both increasing."""

    def __init__(self, directory: Path):
        self.path = directory / FILE_NAME
        self.entries: list[tuple[int, int]] = self._load()
        self.unsaved = False  # an entry observed with save=False is not in the file yet

    def _load(self) -> list[tuple[int, int]]:
        try:
            lines = self.path.read_text().split("\n")
            count = int(lines[1])
            entries = [tuple(map(int, line.split())) for line in lines[2 : 2 + count]]
            if int(lines[0]) != _VERSION or len(entries) != count:
                return []
            return [(e, o) for e, o in entries]
        except (OSError, ValueError, IndexError):
            return []  # missing or damaged: recovery rebuilds what the log still shows

    def _store(self) -> None:
        body = "\n".join([str(_VERSION), str(len(self.entries))]
                         + [f"{e} {o}" for e, o in self.entries]) + "\n"
        write_atomically(self.path, body.encode())
        self.unsaved = False

    def save(self) -> None:
        """Write the entries observed with save=False, if any."""
        if self.unsaved:
            self._store()

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else -1

    def observe(self, epoch: int, base_offset: int, save: bool = True) -> bool:
        """Note a batch of `epoch` at `base_offset`; True when that began a new epoch.

        save=False leaves the file to save(): the append path, whose log
        rescans its active segment after a crash and saves before that
        segment stops being the active one (see PartitionLog.roll).
        """
        if epoch < 0 or epoch <= self.latest_epoch:
            return False
        self.entries.append((epoch, base_offset))
        if save:
            self._store()
        else:
            self.unsaved = True
        return True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest epoch <= `epoch`, the offset where it ended), as a follower asks it."""
        later = [(e, o) for e, o in self.entries if e > epoch]
        earlier = [(e, o) for e, o in self.entries if e <= epoch]
        if not earlier:
            return -1, -1
        end = later[0][1] if later else log_end_offset
        return earlier[-1][0], end

    def truncate_from_end(self, offset: int) -> None:
        """Forget epochs that started at or after `offset` (the log was cut there)."""
        kept = [(e, o) for e, o in self.entries if o < offset]
        if kept != self.entries:
            self.entries = kept
            self._store()

    def truncate_from_start(self, log_start_offset: int) -> None:
        """Drop epochs wholly below the log start; the oldest kept starts at it."""
        kept = [(e, o) for e, o in self.entries if o >= log_start_offset]
        older = [(e, o) for e, o in self.entries if o < log_start_offset]
        if older and (not kept or kept[0][1] > log_start_offset):
            kept.insert(0, (older[-1][0], log_start_offset))
        if kept != self.entries:
            self.entries = kept
            self._store()
