"""The leader-epoch checkpoint is written at a roll or a close, not on the append path.

The first append to each new partition used to write the checkpoint (two
fsyncs) inside the worker's loop, one partition after another: producing to
1,000 new partitions spent most of its time there. The entry is safe without
it: recovery after a crash rescans the active segment's batches for epoch
starts, and the checkpoint is saved before a segment stops being the active one.
"""

from __future__ import annotations

from pathlib import Path

from shm.leader_epoch import FILE_NAME
from shm.partition_log import LogConfig, PartitionLog
from tests.unit.shm.conftest import abandon, make_batch


def open_at(tmp_path: Path, config: LogConfig | None = None) -> PartitionLog:
    return PartitionLog.open(tmp_path / "t-0", config or LogConfig(),
                             control_path=tmp_path / "t-0.ctl")


def checkpoint(tmp_path: Path) -> Path:
    return tmp_path / "t-0" / FILE_NAME


def test_appends_and_flushes_write_no_checkpoint(tmp_path: Path) -> None:
    log = open_at(tmp_path)
    log.append(make_batch(3))
    log.flush()
    assert log.epochs.entries == [(0, 0)]
    assert not checkpoint(tmp_path).exists()
    log.close()
    assert checkpoint(tmp_path).exists()
    reopened = open_at(tmp_path)
    assert reopened.epochs.entries == [(0, 0)]
    reopened.close()


def test_a_roll_saves_the_epochs_of_the_segment_it_closes(tmp_path: Path) -> None:
    log = open_at(tmp_path, LogConfig(segment_bytes=4096))
    log.append(make_batch(2, value_size=300))
    log.set_leader_epoch(2)
    while len(log.segments) == 1:
        log.append(make_batch(2, value_size=300))
    assert "2 2" in checkpoint(tmp_path).read_text()
    abandon(log)  # a crash now: the epoch-2 start is no longer in the active segment
    recovered = open_at(tmp_path, LogConfig(segment_bytes=4096))
    assert recovered.epochs.entries == [(0, 0), (2, 2)]
    recovered.close()


def test_a_crash_before_any_save_is_repaired_from_the_active_segment(tmp_path: Path) -> None:
    log = open_at(tmp_path)
    log.append(make_batch(2))
    log.set_leader_epoch(5)
    log.append(make_batch(3))
    log.flush()
    assert not checkpoint(tmp_path).exists()
    abandon(log)
    recovered = open_at(tmp_path)
    assert recovered.epochs.entries == [(0, 0), (5, 2)]
    assert recovered.log_end_offset == 5
    recovered.close()
