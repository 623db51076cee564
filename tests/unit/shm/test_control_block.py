"""The control block's seqlock: readers never see a half-published position."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from shm.control_block import ControlBlockReader, ControlBlockWriter, LogPosition


def publish_in_a_loop(path: str, rounds: int, ready) -> None:
    """Child process: publish positions whose fields all equal the round number."""
    writer = ControlBlockWriter(Path(path))
    writer.publish(LogPosition(*([0] * 8)))
    ready.set()
    for n in range(1, rounds + 1):
        writer.publish(LogPosition(*([n] * 8)))
    writer.close(unlink=False)


def test_snapshots_are_never_torn_while_the_writer_publishes(tmp_path):
    path = tmp_path / "p.ctl"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=publish_in_a_loop, args=(str(path), 300_000, ready))
    proc.start()
    assert ready.wait(30)
    reader = ControlBlockReader(path)
    seen, last = 0, 0
    while proc.is_alive() or seen == 0:
        snapshot = reader.snapshot()
        fields = set(vars_of(snapshot))
        assert len(fields) == 1, snapshot  # all fields from one publish
        value = fields.pop()
        assert value >= last  # and never going back
        last = value
        seen += 1
    proc.join(30)
    assert reader.snapshot() == LogPosition(*([300_000] * 8))
    assert seen > 100
    reader.close()


def vars_of(position: LogPosition) -> list[int]:
    return [getattr(position, name) for name in position.__slots__]


def test_a_block_left_mid_update_by_a_dead_writer_is_repaired_on_reopen(tmp_path):
    path = tmp_path / "p.ctl"
    writer = ControlBlockWriter(path)
    writer.publish(LogPosition(*([7] * 8)))
    writer._words[0] += 1  # the writer died between the two counter stores
    writer.close(unlink=False)
    reader = ControlBlockReader(path)
    try:
        reader.snapshot(timeout_s=0.05)
    except TimeoutError:
        pass
    else:
        raise AssertionError("a half-published block must not be read")
    ControlBlockWriter(path).close(unlink=False)  # the restarted owner repairs it
    assert reader.snapshot() == LogPosition(*([7] * 8))
    reader.close()
