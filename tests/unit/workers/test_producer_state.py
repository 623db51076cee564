"""Idempotent produce: retries are recognised, gaps and fenced epochs refused."""

from __future__ import annotations

import pytest

from shm import LogConfig, PartitionLog, Record, encode_batch, parse_header
from shm.errors import (
    DuplicateSequenceNumberError,
    InvalidProducerEpochError,
    OutOfOrderSequenceNumberError,
)
from workers.producer_state import ProducerStateTable


def batch(sequence: int, count: int = 2, producer_id: int = 7, epoch: int = 0) -> bytes:
    return encode_batch([Record(value=b"v%d" % i) for i in range(count)],
                        producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)


def test_a_retried_batch_gets_its_original_offset_and_is_not_appended_again():
    table = ProducerStateTable()
    first = parse_header(batch(0))
    assert table.check(first) is None
    table.record(first, 100)
    assert table.check(parse_header(batch(0))) == 100
    nxt = parse_header(batch(2))
    assert table.check(nxt) is None


def test_the_last_five_batches_are_remembered():
    table = ProducerStateTable()
    for i in range(7):
        table.record(parse_header(batch(2 * i)), 10 * i)
    assert table.check(parse_header(batch(4))) == 20
    with pytest.raises(DuplicateSequenceNumberError):
        table.check(parse_header(batch(2)))  # older than the five kept


def test_a_gap_in_sequences_is_out_of_order():
    table = ProducerStateTable()
    table.record(parse_header(batch(0)), 0)
    with pytest.raises(OutOfOrderSequenceNumberError):
        table.check(parse_header(batch(5)))


def test_an_older_epoch_is_fenced_and_a_newer_one_starts_afresh():
    table = ProducerStateTable()
    table.record(parse_header(batch(0, epoch=3)), 0)
    with pytest.raises(InvalidProducerEpochError):
        table.check(parse_header(batch(2, epoch=2)))
    assert table.check(parse_header(batch(0, epoch=4))) is None


def test_batches_without_a_producer_id_are_never_deduplicated():
    table = ProducerStateTable()
    plain = parse_header(encode_batch([Record(value=b"x")]))
    table.record(plain, 0)
    assert table.check(plain) is None


def test_the_table_is_rebuilt_from_the_log(tmp_path):
    log = PartitionLog.open(tmp_path / "p", LogConfig(), control_path=tmp_path / "ctl")
    base = log.append(batch(0))
    log.append(batch(2))
    log.flush()
    table = ProducerStateTable.from_log(log)
    assert table.check(parse_header(batch(0))) == base
    assert table.check(parse_header(batch(4))) is None
    log.close()
