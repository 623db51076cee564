"""The sender's answer to a produce error: retry (in first-sent order), and ask
the partition's leader again when the error says the route is wrong."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from appliance.client.producer_batch import ProducerBatch
from appliance.client.record_accumulator import RecordAccumulator
from appliance.client.sender import Sender, is_retriable
from appliance.partitioner import DefaultPartitioner
from shm.errors import error_for


@pytest.fixture
def sender():
    accumulator = RecordAccumulator(linger_s=0, batch_size=1 << 20, buffer_memory=1 << 30,
                                    max_block_s=1, delivery_timeout_s=120,
                                    partitioner=DefaultPartitioner())
    yield Sender(accumulator, "127.0.0.1:7092", connection=None, metadata={}, acks=-1,
                 compression="none", enable_idempotence=True, request_timeout_ms=1000,
                 retry_backoff_s=0.0, max_in_flight=5)
    os.close(accumulator._wake_r)
    os.close(accumulator._wake_w)


def sent(sender: Sender, partition: int, order: int) -> ProducerBatch:
    """A one-record batch that went out as the `order`-th first send."""
    batch = ProducerBatch("t", partition, time.monotonic(), values=[b"v"], keys=[None],
                          timestamps=[0])
    batch.sent_order, batch.deadline = order, time.monotonic() + 60
    return batch


@pytest.mark.parametrize("name", ["NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
                                  "NOT_LEADER_OR_FOLLOWER", "LEADER_NOT_AVAILABLE",
                                  "FENCED_LEADER_EPOCH", "UNKNOWN_LEADER_EPOCH",
                                  "REQUEST_TIMED_OUT", "NETWORK_EXCEPTION",
                                  "OUT_OF_ORDER_SEQUENCE_NUMBER"])
def test_errors_of_a_moving_or_short_handed_leader_are_retried(name):
    assert is_retriable(error_for(name))


@pytest.mark.parametrize("name", ["MESSAGE_TOO_LARGE", "INVALID_RECORD", "INVALID_PRODUCER_EPOCH"])
def test_errors_a_retry_cannot_mend_fail_the_batch(name):
    assert not is_retriable(error_for(name))


def test_batches_failed_for_want_of_replicas_are_retried_in_first_sent_order(sender):
    first, second = sent(sender, 0, 0), sent(sender, 0, 1)
    with sender._lock:  # the later batch's answer came first
        sender._settle(second, {"error": "NOT_ENOUGH_REPLICAS_AFTER_APPEND"})
        sender._settle(first, {"error": "NOT_ENOUGH_REPLICAS"})
        assert sender._accumulator._drain() == [first]
        assert sender._accumulator._drain() == [second]
    assert not first.settled.is_set() and not second.settled.is_set()


class NewLeader:
    """The producer's front end, answering metadata with the partition's new leader's door."""

    def request(self, api: str, fields: dict, timeout_ms: int) -> SimpleNamespace:
        assert api == "metadata"
        return SimpleNamespace(fields={"brokers": [], "topics": [{
            "name": "t", "error": None, "partitions": [{"partition": 0, "leader": 2,
                                                        "endpoint": "tcp://new:7100"}]}]})


def test_a_stale_leader_forgets_the_topics_routes_but_too_few_replicas_does_not(sender):
    sender._connection = NewLeader()
    sender.routes.learn("t", [{"partition": 0, "leader": 1, "endpoint": "tcp://old:7100"}])
    with sender._lock:
        sender._settle(sent(sender, 0, 0), {"error": "NOT_ENOUGH_REPLICAS"})
    assert sender.routes.endpoint("t", 0) == "tcp://old:7100", "the leader is still the leader"
    with sender._lock:
        sender._settle(sent(sender, 0, 1), {"error": "FENCED_LEADER_EPOCH"})
    assert sender.routes.endpoint("t", 0) == "tcp://new:7100"
