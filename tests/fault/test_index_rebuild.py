"""Indexes are hints: any damage to .index or .timeindex files changes no answer.

docs/storage.md §3, §4 and §6: an offset or time index entry is checked
against the batch header it points at before it is used, index files that
fail the structural check on open are rebuilt from the .log, and the last
segment's indexes are rebuilt by the recovery scan after a crash. So whatever
happens to the index files of a stopped log -- deleted, cut to a size that is
no multiple of an entry, cut to fewer entries, overwritten with random bytes
or zeros, or swapped with another segment's -- the reopened log must give
exactly the answers of the intact log:

* read(o) for every offset o from log_start to log_end returns the same whole
  batches, the first holding o (for the writer, and for a PartitionReader
  in the same host following the writer through the shared maps);
* offset_for_timestamp(t) returns the same offset for every sampled t, and
  that offset is the first whose record timestamp is >= t (a brute-force scan
  of every record is the oracle; timestamps are deliberately not monotonic).

The log has several closed segments and an active one; it is stopped either
cleanly (close()) or by a writer that exits without close().
"""

from __future__ import annotations

import bisect
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shm.partition_log import LogConfig, PartitionLog
from shm.reader import PartitionReader
from shm.records import iter_batches
from tests.fault.conftest import abandon_writer, copy_log, open_log, read_whole_log, segment_files
from tests.fault.writer_process import generate_batch, stored_form

SEED = "index-rebuild-1"
LIMITS = {"max_records": 10, "max_value": 300}
CONFIG = LogConfig(segment_bytes=32 * 1024, index_interval_bytes=1024)
TOTAL = 240  # batches: six or seven closed segments and a partly filled active one
OPTIONS = {"segment_bytes": CONFIG.segment_bytes,
           "index_interval_bytes": CONFIG.index_interval_bytes, **LIMITS}


@dataclass
class Intact:
    """A stopped log and the answers it gives before any damage."""

    directory: Path
    mode: str
    reads: dict[int, bytes]  # offset -> read(offset, 1): the batch holding it
    start: int
    end: int
    timestamps: list[int]  # the sample of timestamps to look up
    answers: dict[int, int | None]  # timestamp -> offset_for_timestamp on the intact log


def _oracle(batches_bytes: bytes) -> Callable[[int], int | None]:
    """First offset whose record timestamp is >= t, by scanning every record."""
    records = [(r.offset, r.timestamp) for b in iter_batches(batches_bytes) for r in b.records]
    offsets = [o for o, _ in records]
    assert offsets == sorted(offsets)
    # prefix maxima make "first record with ts >= t" a binary search
    running, prefix_max = -(2**63), []
    for _, ts in records:
        running = max(running, ts)
        prefix_max.append(running)

    def first_at_or_after(t: int) -> int | None:
        i = bisect.bisect_left(prefix_max, t)
        return offsets[i] if i < len(offsets) else None

    return first_at_or_after


def _build(directory: Path, mode: str) -> Intact:
    ctl = directory.parent / "ctl"
    if mode == "abandoned":
        abandon_writer(directory, ctl, SEED, TOTAL, **OPTIONS)
    else:
        log = open_log(directory, CONFIG, ctl)
        for index in range(TOTAL):
            log.append(generate_batch(SEED, 0, index, **LIMITS))
        log.flush()
        log.close()
    assert len(segment_files(directory)) >= 5, "the template should have several segments"

    # Answers are taken from a throwaway copy: opening recovers and rewrites files.
    scratch = copy_log(directory, directory.parent / "scratch")
    log = open_log(scratch.directory, CONFIG, scratch.ctl)
    try:
        batches = read_whole_log(log)
        everything = b"".join(b.data for b in batches)
        assert [(b.base_offset, b.data) for b in batches][:3] == [
            (base, data) for base, data in _expected_head()
        ]
        reads = {}
        for b in batches:
            for offset in range(b.base_offset, b.next_offset):
                reads[offset] = b.data
        oracle = _oracle(everything)
        record_ts = sorted({r.timestamp for b in iter_batches(everything) for r in b.records})
        rng = random.Random(SEED)
        sample = set(rng.sample(record_ts, 150))
        sample |= {t + d for t in rng.sample(record_ts, 50) for d in (-1, 1)}
        sample |= {b.header.max_timestamp for b in batches}
        sample |= {record_ts[0] - 1000, record_ts[0], record_ts[-1], record_ts[-1] + 1}
        timestamps = sorted(sample)
        answers = {t: log.offset_for_timestamp(t) for t in timestamps}
        wrong = {t: (a, oracle(t)) for t, a in answers.items() if a != oracle(t)}
        assert not wrong, (
            f"offset_for_timestamp on the INTACT log disagrees with a scan of every record "
            f"for {len(wrong)} timestamps, e.g. {sorted(wrong.items())[:5]} (got, expected)"
        )
        start, end = log.log_start_offset, log.log_end_offset
    finally:
        log.close()
    shutil.rmtree(scratch.directory.parent)
    return Intact(directory, mode, reads, start, end, timestamps, answers)


def _expected_head() -> list[tuple[int, bytes]]:
    out, offset = [], 0
    for index in range(3):
        batch = generate_batch(SEED, 0, index, **LIMITS)
        out.append((offset, stored_form(batch, offset)))
        offset += int.from_bytes(batch[57:61], "big")
    return out


@pytest.fixture(scope="module", params=["abandoned", "clean"])
def intact(request, tmp_path_factory) -> Intact:
    return _build(tmp_path_factory.mktemp(f"intact-{request.param}") / "log", request.param)


# --- damage to index files ----------------------------------------------------------------


def _delete(path: Path, rng: random.Random, others: list[Path]) -> str:
    path.unlink()
    return "deleted"


def _odd_size(path: Path, rng: random.Random, others: list[Path]) -> str:
    entry = 8 if path.suffix == ".index" else 12
    size = path.stat().st_size
    choices = [n for n in range(1, max(size, 2)) if n % entry]
    new = rng.choice(choices)
    os.truncate(path, new)
    return f"cut from {size} to {new} bytes"


def _fewer_entries(path: Path, rng: random.Random, others: list[Path]) -> str:
    entry = 8 if path.suffix == ".index" else 12
    size = path.stat().st_size
    new = entry * rng.randrange(0, max(size // entry, 1))
    os.truncate(path, new)
    return f"cut from {size} to {new} bytes (whole entries)"


def _random_bytes(path: Path, rng: random.Random, others: list[Path]) -> str:
    size = path.stat().st_size
    path.write_bytes(rng.randbytes(size))
    return f"{size} random bytes"


def _zeros(path: Path, rng: random.Random, others: list[Path]) -> str:
    size = path.stat().st_size
    path.write_bytes(bytes(size))
    return f"{size} zero bytes"


def _swapped(path: Path, rng: random.Random, others: list[Path]) -> str:
    donor = rng.choice([p for p in others if p.name != path.name])
    path.write_bytes(donor.read_bytes())  # from the pristine template, so no chain effects
    return f"replaced by {donor.name}"


DAMAGES: dict[str, Callable[[Path, random.Random, list[Path]], str]] = {
    "deleted": _delete,
    "odd-size": _odd_size,
    "fewer-entries": _fewer_entries,
    "random-bytes": _random_bytes,
    "zeros": _zeros,
    "swapped": _swapped,
}
WHICH_FILES = {
    "index": (".index",),
    "timeindex": (".timeindex",),
    "both": (".index", ".timeindex"),
}
WHICH_SEGMENTS = ("closed", "active", "all")


def _damage(intact: Intact, directory: Path, damage: str, files: str, segments: str,
            rng: random.Random) -> list[str]:
    stems = [p.name.split(".")[0] for p in segment_files(directory)]
    chosen = {"closed": stems[:-1], "active": stems[-1:], "all": stems}[segments]
    done = []
    for suffix in WHICH_FILES[files]:
        donors = [intact.directory / (stem + suffix) for stem in stems]
        for stem in chosen:
            what = DAMAGES[damage](directory / (stem + suffix), rng, donors)
            done.append(f"{stem}{suffix}: {what}")
    return done


# --- checks ---------------------------------------------------------------------------------


def _check_answers(intact: Intact, log: PartitionLog, ctl: Path, when: str,
                   damage: list[str]) -> None:
    try:
        _compare(intact, log, ctl, when)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n  the damage: " + "; ".join(damage)) from None


def _compare(intact: Intact, log: PartitionLog, ctl: Path, when: str) -> None:
    assert (log.log_start_offset, log.log_end_offset) == (intact.start, intact.end), (
        f"{when}: the log spans [{log.log_start_offset}, {log.log_end_offset}), "
        f"intact it spans [{intact.start}, {intact.end})"
    )
    wrong_reads = [o for o in range(intact.start, intact.end)
                   if log.read(o, 1) != intact.reads[o]]
    assert not wrong_reads, (
        f"{when}: read(offset) returns a different batch for {len(wrong_reads)} of "
        f"{intact.end - intact.start} offsets, the first {wrong_reads[:8]}"
    )
    wrong_times = {t: (log.offset_for_timestamp(t), intact.answers[t])
                   for t in intact.timestamps}
    wrong_times = {t: v for t, v in wrong_times.items() if v[0] != v[1]}
    assert not wrong_times, (
        f"{when}: offset_for_timestamp differs from the intact log for {len(wrong_times)} of "
        f"{len(intact.timestamps)} timestamps, e.g. (got, intact) "
        f"{sorted(wrong_times.items())[:4]}"
    )
    reader = PartitionReader.open(log.directory, control_path=ctl)
    try:
        wrong_reads = [o for o in range(intact.start, intact.end)
                       if reader.read(o, 1) != intact.reads[o]]
    finally:
        reader.close()
    assert not wrong_reads, (
        f"{when}: a PartitionReader reads a different batch for {len(wrong_reads)} offsets, "
        f"the first {wrong_reads[:8]}"
    )


@pytest.mark.parametrize("segments", WHICH_SEGMENTS)
@pytest.mark.parametrize("files", list(WHICH_FILES))
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_index_files_change_no_answer(intact, damage, files, segments, tmp_path):
    """Pins: with the given index files of the given segments damaged while the
    log was stopped, the reopened log reads every offset and answers every
    timestamp lookup exactly as the intact log does; so does it again after a
    clean close and reopen (the rebuilt indexes are sound on disk), and it
    takes an append at the old end."""
    rng = random.Random(f"{SEED}/{intact.mode}/{damage}/{files}/{segments}")
    copy = copy_log(intact.directory, tmp_path)
    done = _damage(intact, copy.directory, damage, files, segments, rng)
    context = f"[{intact.mode} log; {damage} {files} of {segments} segments]"
    for attempt in ("first open after the damage", "reopen after a clean close"):
        log = open_log(copy.directory, CONFIG, copy.ctl)
        try:
            _check_answers(intact, log, copy.ctl, f"{context} {attempt}", done)
            if attempt.startswith("reopen"):
                batch = generate_batch(SEED, 9, 0, **LIMITS)
                assert log.append(batch) == intact.end
                log.flush()
                assert log.read(intact.end, 1) == stored_form(batch, intact.end)
        finally:
            log.close()


@pytest.mark.parametrize("round_no", range(12))
def test_a_random_mix_of_index_damage_changes_no_answer(intact, round_no, tmp_path):
    """Pins the same for a seeded mixture: each segment's .index and .timeindex
    independently intact or damaged in any of the ways above."""
    rng = random.Random(f"{SEED}/{intact.mode}/mix/{round_no}")
    copy = copy_log(intact.directory, tmp_path)
    stems = [p.name.split(".")[0] for p in segment_files(copy.directory)]
    done = []
    for suffix in (".index", ".timeindex"):
        donors = [intact.directory / (stem + suffix) for stem in stems]
        for stem in stems:
            damage = rng.choice([None, None, *DAMAGES])
            if damage:
                what = DAMAGES[damage](copy.directory / (stem + suffix), rng, donors)
                done.append(f"{stem}{suffix}: {what}")
    log = open_log(copy.directory, CONFIG, copy.ctl)
    try:
        _check_answers(intact, log, copy.ctl, f"[{intact.mode} log; mix {round_no}]", done)
    finally:
        log.close()
