"""The accumulator's sending order: a partition's batches leave in the order
they were first sent, retries included, so an idempotent retry always lands
within the last batches its partition's owner remembers."""

from __future__ import annotations

import os

import pytest

from appliance.client.producer_batch import ProducerBatch
from appliance.client.record_accumulator import RecordAccumulator
from appliance.partitioner import DefaultPartitioner


@pytest.fixture
def accumulator():
    acc = RecordAccumulator(linger_s=0, batch_size=1 << 20, buffer_memory=1 << 30,
                            max_block_s=1, delivery_timeout_s=120,
                            partitioner=DefaultPartitioner())
    yield acc
    os.close(acc._wake_r)
    os.close(acc._wake_w)


def closed(acc: RecordAccumulator, partition: int, topic: str = "t") -> ProducerBatch:
    """A one-record batch for `partition`, closed and waiting to be sent."""
    with acc._lock:
        batch = acc._open_batch(topic, partition)
        batch.values.append(b"v")
        batch.keys.append(None)
        batch.timestamps.append(0)
        acc._close_batch(batch)
    return batch


def drained(acc: RecordAccumulator, order: list[int]) -> list[ProducerBatch]:
    """Drain, numbering first sends as the sender does."""
    with acc._lock:
        batches = acc._drain()
    for batch in batches:
        if batch.sent_order < 0:
            batch.sent_order = len(order)
            order.append(batch.sent_order)
    return batches


def test_one_batch_per_partition_per_drain_in_the_order_they_closed(accumulator):
    first, second, other = closed(accumulator, 0), closed(accumulator, 0), closed(accumulator, 1)
    order: list[int] = []
    assert drained(accumulator, order) == [first, other]
    assert drained(accumulator, order) == [second]
    assert drained(accumulator, order) == []


def test_a_partition_backing_off_for_a_retry_sends_nothing_newer(accumulator):
    order: list[int] = []
    first, second = closed(accumulator, 0), closed(accumulator, 0)
    other = closed(accumulator, 1)
    assert drained(accumulator, order) == [first, other]
    assert drained(accumulator, order) == [second]
    newer = closed(accumulator, 0)
    with accumulator._lock:  # both failed (the owner died): second's failure came first
        accumulator._reenqueue(second, retry_at=float("inf"))
        accumulator._reenqueue(first, retry_at=float("inf"))
    late_other = closed(accumulator, 1)
    assert drained(accumulator, order) == [late_other], "partition 0 waits for its retries"
    first.retry_at = second.retry_at = 0.0  # their backoff has passed
    assert drained(accumulator, order) == [first]
    assert drained(accumulator, order) == [second]
    assert drained(accumulator, order) == [newer]
    assert newer.sent_order > second.sent_order


def test_a_partition_sends_no_sixth_batch_past_one_still_unanswered(accumulator):
    """The broker remembers a producer's last five batches: a sixth sent past
    an unanswered one would make that one's retry unrecognisable (it went by
    the front end, the later ones by the door, and they were answered first)."""
    batches = [closed(accumulator, 0) for _ in range(7)]
    taken = []
    for _ in range(6):
        with accumulator._lock:
            taken += accumulator._drain()
    assert taken == batches[:5]
    with accumulator._lock:
        for batch in batches[1:5]:  # answered, all but the oldest
            accumulator._complete(batch, 10, None)
        assert accumulator._drain() == []  # still five past the oldest unanswered
        accumulator._complete(batches[0], 9, None)
        assert accumulator._drain() == [batches[5]]
        assert accumulator._drain() == [batches[6]]
