"""Recovery cuts a damaged tail of the active segment, exactly, and the log goes on.

DESIGN.md §4 and docs/storage.md §6: on open, the active segment is scanned
batch by batch and cut at the first zero length, short read, bad CRC or
offset discontinuity; nothing before the damage is lost. Each case here
takes a private copy of a log of TOTAL batches (two or three closed segments
and an active one), damages the active segment's .log the way a crash, a
torn write or a bad disk would, opens it with PartitionLog.open and checks:

1. the log holds exactly the batches wholly before the damage, byte for byte
   as stamped, and reads back as whole CRC-valid batches up to its end;
2. the active segment reads as zeros after its last kept batch, so no later
   recovery can pick the damage up again;
3. an append lands at the recovered end, and the log reopens with it both
   after a clean close and after a crash (no .clean-shutdown marker).

The log is written either by a child process that exits without close()
("abandoned": the active segment is preallocated and carries no clean-shutdown
marker, as after a crash) or by a clean close() ("clean": the active segment
is trimmed to its data and marked clean).

The partitionLeaderEpoch field (bytes 12..16 of a batch) is deliberately
outside every damage here: Kafka's CRC-32C does not cover it (the leader
stamps it), so a flip there is undetectable by design.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shm.errors import CorruptRecordError
from shm.partition_log import CLEAN_SHUTDOWN, LogConfig
from tests.fault.conftest import (
    abandon_writer,
    copy_log,
    expected_batches,
    open_log,
    read_whole_log,
    segment_files,
)
from tests.fault.writer_process import generate_batch, stored_form

SEED = "torn-tail-1"
LIMITS = {"max_records": 10, "max_value": 500}
SEGMENT_BYTES = 64 * 1024
CONFIG = LogConfig(segment_bytes=SEGMENT_BYTES)
TOTAL = 100  # batches: a few closed segments and a partly filled active one
CASES = 25  # damaged copies per kind of damage and way of stopping
APPENDED = 10  # batches a writer appends to a reopened damaged log: they fit its active segment


@dataclass
class Template:
    """A log built once per mode, copied for every case, and what it holds."""

    directory: Path
    mode: str
    expected: list[tuple[int, bytes]]  # (base offset, stored bytes) of every batch
    first_active: int  # index in `expected` of the active segment's first batch
    layout: list[tuple[int, int]]  # (position, size) of each active-segment batch

    @property
    def data_end(self) -> int:
        pos, size = self.layout[-1]
        return pos + size

    def kept_before(self, cut: int) -> int:
        """How many batches survive cutting the active segment's file at `cut`.

        Those wholly before the cut, and the one the cut falls in if it only
        lost zero bytes (a record's last field is often a zero header count):
        growing the file back to its size with zeros restores that batch intact.
        """
        active = [data for _, data in self.expected[self.first_active :]]
        return self.first_active + sum(
            1 for (pos, size), data in zip(self.layout, active, strict=True)
            if pos + size <= cut or (pos < cut and not any(data[cut - pos :]))
        )


def _build(directory: Path, mode: str) -> Template:
    ctl = directory.parent / f"{mode}.ctl"
    if mode == "abandoned":
        end = abandon_writer(directory, ctl, SEED, TOTAL, segment_bytes=SEGMENT_BYTES, **LIMITS)
    else:
        log = open_log(directory, CONFIG, ctl)
        for index in range(TOTAL):
            log.append(generate_batch(SEED, 0, index, **LIMITS))
        log.flush()
        end = log.log_end_offset
        log.close()
    expected = expected_batches(SEED, 0, 0, TOTAL, **LIMITS)
    assert expected[-1][0] + int.from_bytes(expected[-1][1][57:61], "big") == end

    active = segment_files(directory)[-1]
    active_base = int(active.name.split(".")[0])
    first_active = next(i for i, (base, _) in enumerate(expected) if base == active_base)
    layout, pos = [], 0
    for _, data in expected[first_active:]:
        layout.append((pos, len(data)))
        pos += len(data)
    raw = active.read_bytes()
    assert raw[:pos] == b"".join(d for _, d in expected[first_active:])
    assert raw[pos:] == bytes(len(raw) - pos)
    assert len(segment_files(directory)) >= 3 and len(layout) >= 8, "template too small"
    assert (len(raw) == SEGMENT_BYTES) == (mode == "abandoned")  # preallocated vs trimmed
    assert (directory / CLEAN_SHUTDOWN).exists() == (mode == "clean")
    return Template(directory, mode, expected, first_active, layout)


@pytest.fixture(scope="module")
def abandoned(tmp_path_factory) -> Template:
    """TOTAL batches written by a child that flushed and exited without close()."""
    return _build(tmp_path_factory.mktemp("template-abandoned") / "log", "abandoned")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Template:
    """The same TOTAL batches, written in-process and closed with close()."""
    return _build(tmp_path_factory.mktemp("template-clean") / "log", "clean")


# --- damage -----------------------------------------------------------------------------
# Each returns (description, number of batches recovery must keep).


def _active(directory: Path) -> Path:
    return segment_files(directory)[-1]


def _write(path: Path, pos: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(data)


def truncate_inside_data(t: Template, path: Path, rng: random.Random, case: int):
    """Cut the file short at a position inside the data: a write torn by a crash
    (or a file system that lost its tail). The boundaries of the last batches and
    cuts inside their headers come first, then random positions."""
    last_pos, last_size = t.layout[-1]
    prev_pos = t.layout[-2][0]
    special = [0, last_pos, last_pos + 1, last_pos + 11, last_pos + 12, last_pos + 60,
               last_pos + 61, last_pos + last_size - 1, prev_pos + 30]
    cut = special[case] if case < len(special) else rng.randrange(0, t.data_end)
    _truncate(path, cut)
    return f"file cut at byte {cut} of {t.data_end}", t.kept_before(cut)


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def flip_bytes_in_last_batch(t: Template, path: Path, rng: random.Random, case: int):
    """Flip one to three bits or bytes inside the last batch: bit rot or a torn
    sector that the CRC-32C (or the offset-continuity check for the base offset
    field) must catch."""
    pos, size = t.layout[-1]
    candidates = [p for p in range(pos, pos + size) if not pos + 12 <= p < pos + 16]
    spots = rng.sample(candidates, rng.randint(1, 3))
    raw = bytearray(path.read_bytes())
    for spot in spots:
        raw[spot] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randint(1, 255)
    path.write_bytes(bytes(raw))
    rel = sorted(s - pos for s in spots)
    return f"flipped bytes {rel} of the last batch ({size} bytes)", len(t.expected) - 1


def overwrite_middle_of_last_batch(t: Template, path: Path, rng: random.Random, case: int):
    """Overwrite a run in the middle of the last batch with zeros or garbage: a
    torn multi-sector write where a later sector never made it."""
    pos, size = t.layout[-1]
    raw = path.read_bytes()
    for _ in range(100):  # find a run whose bytes the overwrite really changes
        start = rng.randrange(pos + 16, pos + size)
        length = rng.randint(1, pos + size - start)
        fill = bytes(length) if case % 2 == 0 else rng.randbytes(length)
        if fill != raw[start : start + length]:
            break
    else:
        raise AssertionError("no run of the last batch could be changed")
    _write(path, start, fill)
    what = "zeros" if case % 2 == 0 else "random bytes"
    return (f"{length} bytes of {what} at byte {start - pos} of the last batch ({size} bytes)",
            len(t.expected) - 1)


def garbage_after_last_batch(t: Template, path: Path, rng: random.Random, case: int):
    """Leave bytes after the last batch: random garbage, a stale copy of an earlier
    batch (valid CRC, wrong offset), or the batch that would come next (valid CRC,
    right offset) beyond a gap of zeros. Recovery must keep every batch, stop at
    the first byte that does not continue the log, and zero what follows."""
    end = t.data_end
    room = SEGMENT_BYTES - end - 4096
    gap = rng.choice([0, 0, rng.randint(1, 64), rng.randrange(0, room)])
    variant = case % 4
    if variant == 0:
        junk, what = rng.randbytes(rng.randint(1, 4096)), "random bytes"
    elif variant == 1:  # a zero length then garbage: the scan stops at the zero length
        junk, what = bytes(12) + rng.randbytes(rng.randint(1, 2000)), "zero length, then garbage"
    elif variant == 2:
        _, junk = t.expected[rng.randrange(len(t.expected))]
        what = "a stale copy of an earlier batch"
    else:
        nxt_base = t.expected[-1][0] + int.from_bytes(t.expected[-1][1][57:61], "big")
        junk = stored_form(generate_batch(SEED, 0, TOTAL, **LIMITS), nxt_base)
        gap = max(gap, 1)
        what = "the next batch, after a gap of zeros"
    _write(path, end + gap, junk)
    return f"{what} ({len(junk)} bytes) at {gap} bytes after the last batch", len(t.expected)


DAMAGES: dict[str, Callable] = {
    "truncate": truncate_inside_data,
    "flip": flip_bytes_in_last_batch,
    "overwrite": overwrite_middle_of_last_batch,
    "garbage-after": garbage_after_last_batch,
}


# --- checks -----------------------------------------------------------------------------


def _check_recovered(t: Template, directory: Path, ctl: Path, kept: int, case: str) -> None:
    expected = t.expected[:kept]
    log = open_log(directory, CONFIG, ctl)
    try:
        try:
            batches = read_whole_log(log)
        except CorruptRecordError as exc:
            raise AssertionError(
                f"{case}: recovery kept a corrupt batch; reading the log fails: {exc}"
            ) from None
        got = [(b.base_offset, b.data) for b in batches]
        assert len(got) == kept, (
            f"{case}: recovery kept {len(got)} batches (log end {log.log_end_offset}); "
            f"exactly {kept} lie wholly before the damage (their end: "
            f"{expected[-1][0] + int.from_bytes(expected[-1][1][57:61], 'big')})"
        )
        assert got == expected, f"{case}: the kept batches differ from those written"

        # Zeros after the data: nothing of the damage is left for a later recovery.
        raw = _active(directory).read_bytes()
        data_end = sum(len(d) for _, d in expected[t.first_active :])
        assert len(raw) == SEGMENT_BYTES, f"{case}: the active segment was not grown back"
        junk = len(raw) - data_end - raw.count(0, data_end)
        assert junk == 0, (
            f"{case}: {junk} nonzero bytes remain after the last kept batch of the active "
            f"segment; a later recovery could read them as data"
        )

        new = generate_batch(SEED, 1, kept, **LIMITS)
        end = log.log_end_offset
        assert log.append(new) == end, f"{case}: the first append after recovery is misplaced"
        log.flush()
        assert log.read(end, 1) == stored_form(new, end), (
            f"{case}: the batch appended after recovery does not read back at offset {end}"
        )
    finally:
        log.close()
    expected = [*expected, (end, stored_form(new, end))]

    for how in ("after a clean close", "after a crash (no clean-shutdown marker)"):
        if "crash" in how:
            (directory / CLEAN_SHUTDOWN).unlink()
        log = open_log(directory, CONFIG, ctl)
        try:
            try:
                got = [(b.base_offset, b.data) for b in read_whole_log(log)]
            except CorruptRecordError as exc:
                raise AssertionError(f"{case}: reopened {how}, reading fails: {exc}") from None
            assert got == expected, (
                f"{case}: reopened {how}, the log holds {len(got)} batches ending at "
                f"{log.log_end_offset}, not the {len(expected)} kept and appended"
                + (" -- THE ACKNOWLEDGED APPEND AFTER RECOVERY IS LOST"
                   if len(got) < len(expected) else "")
            )
        finally:
            log.close()


def _run_cases(template: Template, damage: str, tmp_path: Path) -> None:
    """Damage CASES copies of the template one way and check each recovery."""
    rng = random.Random(f"{SEED}/{template.mode}/{damage}")
    failures = []
    for case in range(CASES):
        copy = copy_log(template.directory, tmp_path / f"case-{case}")
        what, kept = DAMAGES[damage](template, _active(copy.directory), rng, case)
        description = f"[{template.mode} log, case {case}] {what}"
        try:
            _check_recovered(template, copy.directory, copy.ctl, kept, description)
        except AssertionError as exc:
            first = str(exc).splitlines()[0]
            failures.append(first if first.startswith("[") else f"{description}: {first}")
        except Exception as exc:  # the engine itself failed: report it with the case
            failures.append(f"{description}: {type(exc).__name__} raised: {exc}")
        shutil.rmtree(tmp_path / f"case-{case}")
    assert not failures, (
        f"{len(failures)} of {CASES} damaged logs recovered wrongly:\n" + "\n".join(failures)
    )


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_recovery_after_a_crash_keeps_exactly_the_batches_before_the_damage(
        abandoned, damage, tmp_path):
    """Pins, for a log whose writer stopped without close() and whose active
    segment was then cut short, bit-flipped, overwritten or followed by garbage:
    recovery keeps exactly the intact batches before the damage and not one byte
    after, and the log takes appends at the recovered end and reopens with them
    cleanly or after a crash."""
    _run_cases(abandoned, damage, tmp_path)


# A cleanly closed active segment is trimmed: it has no preallocated area to
# hold garbage after its last batch, so "garbage-after" applies to crashes only.
@pytest.mark.parametrize("damage", ["truncate", "flip", "overwrite"])
def test_reopening_after_a_clean_close_cuts_a_damaged_tail_too(clean, damage, tmp_path):
    """Pins the same as above for a log closed cleanly and damaged while stopped
    (a bad disk does not care how the broker stopped). docs/storage.md §6 lets
    open() trust the active segment when .clean-shutdown is present, but a
    trusted tail that is torn or corrupt makes the engine count a partial batch,
    serve CRC-invalid bytes, reuse offsets, and later lose every batch appended
    after it (see the next test): the tail must be checked before it is trusted.
    """
    _run_cases(clean, damage, tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_batches_acknowledged_after_reopening_a_damaged_clean_log_survive_a_crash(
        clean, damage, tmp_path):
    """Pins "nothing acknowledged may be lost" across two stops: a log closed
    cleanly, damaged in its last batch while stopped, then reopened by a writer
    that appends and flushes APPENDED batches and dies without close(). Every
    one of those flushed batches must be in the log recovered after the crash."""
    copy = copy_log(clean.directory, tmp_path)
    pos, size = clean.layout[-1]
    active = _active(copy.directory)
    if damage == "truncate":
        _truncate(active, pos + size // 2)
    else:
        _write(active, pos + size // 2, bytes([active.read_bytes()[pos + size // 2] ^ 0xFF]))
    kept = len(clean.expected) - 1
    log_end = clean.expected[kept][0]  # where the damaged batch began

    segments = len(segment_files(copy.directory))
    reported_end = abandon_writer(copy.directory, copy.ctl, SEED, APPENDED, writer=5,
                                  segment_bytes=SEGMENT_BYTES, **LIMITS)
    assert len(segment_files(copy.directory)) == segments, (
        "precondition: the writer should not have rolled past the damaged segment"
    )
    log = open_log(copy.directory, CONFIG, copy.ctl)
    try:
        try:
            got = [(b.base_offset, b.data) for b in read_whole_log(log)]
        except CorruptRecordError as exc:
            raise AssertionError(f"the log recovered after the crash is corrupt: {exc}") from None
        lost = reported_end - log.log_end_offset
        assert lost <= 0, (
            f"ACKNOWLEDGED DATA LOST: the writer that reopened the damaged clean log flushed "
            f"{APPENDED} batches up to offset {reported_end}; after its crash the log ends at "
            f"{log.log_end_offset} ({lost} acknowledged offsets gone)"
        )
        assert got[:kept] == clean.expected[:kept]
        appended = expected_batches(SEED, 5, log_end, APPENDED, **LIMITS)
        assert got[kept:] == appended, "the batches appended after reopening differ"
    finally:
        log.close()


@pytest.mark.parametrize("mode", ["abandoned", "clean"])
def test_a_clean_close_and_reopen_loses_nothing_and_appends_continue(mode, request, tmp_path):
    """Pins: an undamaged log reopens with every batch byte for byte, whether it
    was closed cleanly or abandoned by its writer; the next append takes the next
    offset, and the log survives further clean closes and reopens unchanged."""
    template: Template = request.getfixturevalue(mode)
    copy = copy_log(template.directory, tmp_path)
    expected = list(template.expected)
    for round_no in range(3):
        log = open_log(copy.directory, CONFIG, copy.ctl)
        try:
            got = [(b.base_offset, b.data) for b in read_whole_log(log)]
            assert got == expected, f"reopen {round_no}: the log changed across close/open"
            for k in range(5):  # enough to roll at least once over the three rounds
                batch = generate_batch(SEED, 2, round_no * 10 + k, **LIMITS)
                end = log.log_end_offset
                assert log.append(batch) == end
                expected.append((end, stored_form(batch, end)))
            log.flush()
        finally:
            log.close()
        assert (copy.directory / CLEAN_SHUTDOWN).exists()
