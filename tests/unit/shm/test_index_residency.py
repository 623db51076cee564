"""Opening and reading a log leaves the unused pages of its sparse offset index
unread: at 10,000 partitions, a whole-file search of each index had faulted
about 400 KiB of zeros (read-ahead included) into every process's RSS."""

from __future__ import annotations

import os
from pathlib import Path

from shm.index import OffsetIndex, data_end
from shm.partition_log import LogConfig, PartitionLog
from shm.reader import PartitionReader
from tests.unit.shm.conftest import make_batch

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(path_suffix: str) -> int:
    """Rss of this process's maps of files ending in `path_suffix` (from smaps)."""
    total, counting = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping's header line
                counting = line.rstrip().endswith(path_suffix)
            elif counting and first == "Rss:":
                total += int(line.split()[1]) * 1024
    return total


def test_a_new_log_faults_no_page_of_its_offset_index(tmp_path: Path) -> None:
    logs = [PartitionLog.open(tmp_path / f"t-{i}", LogConfig(),
                              control_path=tmp_path / f"t-{i}.ctl") for i in range(20)]
    try:
        assert resident_bytes(".index") == 0
    finally:
        for log in logs:
            log.close()


def test_a_reopened_log_reads_only_the_written_part_of_its_index(tmp_path: Path) -> None:
    config = LogConfig(index_interval_bytes=64)
    log = PartitionLog.open(tmp_path / "t-0", config, control_path=tmp_path / "t-0.ctl")
    for _ in range(40):
        log.append(make_batch(count=2, value_size=50))
    log.flush()
    entries = log.active.offset_index.count
    log.close()
    assert entries > 10
    index_file = next((tmp_path / "t-0").glob("*.index"))
    assert index_file.stat().st_size > 1 << 20  # the offset index keeps its full size
    log = PartitionLog.open(tmp_path / "t-0", config, control_path=tmp_path / "t-0.ctl")
    try:
        assert log.active.offset_index.count == entries
        assert resident_bytes(".index") <= 4 * PAGE
        reader = PartitionReader.open(tmp_path / "t-0", control_path=tmp_path / "t-0.ctl")
        try:
            middle = log.log_end_offset // 2
            data = reader.read(middle, 4096)  # a miss of the sequential hint: the index
            assert data and int.from_bytes(data[:8], "big") <= middle
        finally:
            reader.close()
        assert resident_bytes(".index") <= 8 * PAGE
    finally:
        log.close()


def test_data_end_bounds_the_written_entries(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000000.index"
    index = OffsetIndex(path, 1 << 18)
    for i in range(1, 600):
        index.append(i, i * 100)
    index.write_pending()
    end = data_end(index._fd)
    assert 599 * 8 <= end < 1 << 21
    assert OffsetIndex.published_count(index._mapped(), end) == 599
    assert OffsetIndex.published_count(index._mapped()) == 599
    index.close()
