"""A writer killed with SIGKILL at any moment loses nothing it acknowledged.

DESIGN.md §4: "Nothing acknowledged may be lost; a torn tail is cut." A child
process (writer_process.py, mode ``stream``) appends deterministic batches to
a log with small segments, so that it rolls every few dozen batches, and
reports each batch once flush() has returned for it. The parent kills it at a
random moment, recovers the log in the test process and compares it with what
the writer reported and with what the writer would have generated. The same
directory is used for every round, so recovery runs again and again over a
growing log of many segments, after kills that land in appends, flushes,
index updates and segment rolls alike.

Set RINGLOG_FAULT_SEED to replay a particular run; failures name the seed,
the round, each writer and how long it ran before the kill.
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
from dataclasses import dataclass
from pathlib import Path

import pytest

from shm.partition_log import LogConfig
from tests.fault.conftest import (
    SEGMENT_BYTES,
    StoredBatch,
    WriterProcess,
    open_log,
    read_whole_log,
)
from tests.fault.writer_process import generate_batch, stored_form

SEED = os.environ.get("RINGLOG_FAULT_SEED", "kill9-ringlog-1")
KILLS = 50
MAX_DELAY_S = 0.3
CONFIG = LogConfig(segment_bytes=SEGMENT_BYTES)
# The first 21 bytes of a stored batch: base offset, length, epoch, magic, CRC-32C.
# With the CRC checked on every read, an unchanged prefix means unchanged bytes.
PREFIX = 21


@dataclass
class KilledWriter:
    writer: int
    start_offset: int  # the log end the writer found when it opened the log
    ran_s: float  # how long it produced before SIGKILL
    durable: list[tuple[int, int, int, int, str]]  # what it reported after flush()

    def describe(self) -> str:
        return (f"writer {self.writer} (opened at offset {self.start_offset}, killed after "
                f"{self.ran_s * 1000:.0f} ms, {len(self.durable)} batches reported durable)")


def _kill_round(directory: Path, ctl: Path, tmp_path: Path, rng: random.Random,
                writer: int) -> KilledWriter:
    """Start a writer, let it produce for a random time, SIGKILL it."""
    child = WriterProcess(directory, ctl, SEED, writer, tmp_path / f"writer-{writer}.stderr",
                          segment_bytes=SEGMENT_BYTES)
    start = child.wait_ready()
    ran_s = 0.0 if rng.random() < 0.08 else rng.uniform(0.0, MAX_DELAY_S)
    try:
        child.run_for(ran_s)
    finally:
        child.kill()
    return KilledWriter(writer, start, ran_s, child.durable())


def _check_writer(log, batches: list[StoredBatch], run: KilledWriter, stop: int,
                  where: str) -> None:
    """The batches in [run.start_offset, stop) are exactly the writer's first ones,
    stamped at their offsets, and include everything it reported durable."""
    mine = [b for b in batches if run.start_offset <= b.base_offset < stop]
    end = mine[-1].next_offset if mine else run.start_offset
    assert end == stop, f"{where}: {run.describe()}: its batches end at {end}, not at {stop}"
    produced = [generate_batch(SEED, run.writer, index) for index in range(len(mine))]
    offset = run.start_offset
    for index, (batch, got) in enumerate(zip(produced, mine, strict=True)):
        assert got.base_offset == offset and got.data == stored_form(batch, offset), (
            f"{where}: {run.describe()}: batch #{index} at offset {got.base_offset} is not "
            f"the one the writer generated for offset {offset} (lengths {len(got.data)} vs "
            f"{len(batch)}): recovery kept bytes the writer never wrote"
        )
        offset = got.next_offset
    reported = len(run.durable)
    assert [entry[0] for entry in run.durable] == list(range(reported)), "reports out of order"
    assert reported <= len(mine), (
        f"{where}: {run.describe()}: LOST ACKNOWLEDGED DATA: {reported} batches were reported "
        f"durable (the last at offset {run.durable[-1][1]}), only {len(mine)} were recovered "
        f"and the log ends at {log.log_end_offset}"
    )
    for index, base, count, length, sha in run.durable:
        batch = produced[index]
        assert hashlib.sha256(batch).hexdigest() == sha and len(batch) == length, (
            f"writer {run.writer} batch {index}: the parent regenerated different bytes"
        )
        stored = log.read(base, 1)
        assert stored == stored_form(batch, base, log.leader_epoch), (
            f"{where}: {run.describe()}: acknowledged batch {index} ({count} records at offset "
            f"{base}) does not read back byte for byte ({len(stored)} bytes read)"
        )


@pytest.fixture
def enough_file_descriptors():
    """The log grows to several hundred segments and each open segment holds six
    descriptors (three files and three maps: Python's mmap keeps a dup of its fd),
    more than the common soft limit of 1024. Raise it; the writers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("enough_file_descriptors")
def test_sigkill_at_random_moments_keeps_every_flushed_batch_and_cuts_only_torn_ones(tmp_path):
    """Pins: after SIGKILL of the writer at any moment, PartitionLog.open recovers
    a log in which (1) every batch whose flush() returned is present and reads back
    byte for byte as the engine stamped it, (2) log_start..log_end is one contiguous
    run of whole, CRC-valid batches with no partial batch, (3) every batch beyond the
    acknowledged ones is exactly what the writer generated, in order (a torn tail is
    cut, never patched or reordered), and (4) nothing recovered in an earlier round
    changes or disappears. One round in four kills two writers in a row, so a
    writer also recovers its killed predecessor's log before the test process does.
    """
    directory, ctl = tmp_path / "log", tmp_path / "ctl"
    rng = random.Random(SEED)
    known: dict[int, bytes] = {}  # base offset -> stored prefix, for every verified batch
    known_end = 0
    writer = kills = round_no = 0
    total_reported = beyond_acks = 0
    while kills < KILLS:
        round_no += 1
        chain = 2 if kills + 2 <= KILLS and rng.random() < 0.25 else 1
        runs = []
        for _ in range(chain):
            runs.append(_kill_round(directory, ctl, tmp_path, rng, writer))
            writer += 1
            kills += 1
        where = f"seed {SEED!r}, round {round_no}"
        assert runs[0].start_offset == known_end, (
            f"{where}: the writer reopened a log ending at {runs[0].start_offset}, "
            f"the test process closed it at {known_end}"
        )

        log = open_log(directory, CONFIG, ctl)
        try:
            batches = read_whole_log(log)
            assert log.log_start_offset == 0
            old = [b for b in batches if b.base_offset < known_end]
            assert [b.base_offset for b in old] == sorted(known), (
                f"{where}: batches recovered in earlier rounds are missing or moved"
            )
            for b in old:
                assert b.data[:PREFIX] == known[b.base_offset], (
                    f"{where}: the batch at offset {b.base_offset} from an earlier round changed"
                )
            for k, run in enumerate(runs):
                stop = runs[k + 1].start_offset if k + 1 < len(runs) else log.log_end_offset
                _check_writer(log, batches, run, stop, where)
                total_reported += len(run.durable)
                beyond_acks += sum(1 for b in batches
                                   if run.start_offset <= b.base_offset < stop) - len(run.durable)
            for b in batches[len(old):]:
                known[b.base_offset] = b.data[:PREFIX]
            known_end = log.log_end_offset
        finally:
            log.close()

    assert total_reported > 0, "no writer ever reported a flush: the test exercised nothing"
    segments = len(list(directory.glob("*.log")))
    print(f"{kills} kills in {round_no} rounds: {total_reported} batches acknowledged, "
          f"{beyond_acks} more recovered beyond the acknowledged ones; log end {known_end}, "
          f"{segments} segments")
    assert segments > 10, f"only {segments} segments: the writers never rolled much"
