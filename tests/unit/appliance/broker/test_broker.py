"""The broker core without processes: produce split across owners and merged,
parked fetches woken and expired, offset commits, status, errors."""

from __future__ import annotations

import time

from appliance.broker import replies as r
from appliance.broker import requests as q
from shm.errors import (
    InvalidRequiredAcksError,
    LeaderNotAvailableError,
    UnknownTopicOrPartitionError,
)
from shm.records import Record, encode_batch, iter_batches
from workers import protocol as wp


def batch(*values: bytes) -> bytes:
    return encode_batch([Record(value=v) for v in values])


def create(cluster, name: str, partitions: int) -> None:
    [reply] = cluster.call(("admin", name), q.CreateTopicsRequest([q.TopicSpec(name, partitions)]))
    assert reply.topics[0].error is None


def produce(cluster, client, *parts: tuple[str, int, bytes], acks: int = 1) -> list:
    return cluster.call(client, q.ProduceRequest(
        acks, [(t, p) for t, p, _ in parts], [records for _, _, records in parts]))


def test_a_produce_split_across_two_owners_is_answered_once_with_both_parts_in_order(cluster):
    create(cluster, "t", 4)  # owners spread over workers 0 and 1
    owners = cluster.broker.metadata.get("t").owners
    assert set(owners) == {0, 1}
    cluster.hold = {1}
    replies = produce(cluster, "c", ("t", 0, batch(b"a")), ("t", 1, batch(b"b", b"c")),
                      ("t", 2, batch(b"d")))
    assert replies == []  # worker 1 has not answered: no partial reply
    cluster.hold = set()
    cluster.release()
    [reply] = cluster.replies["c"]
    assert [(p.topic, p.partition, p.base_offset, p.error) for p in reply.partitions] == [
        ("t", 0, 0, None), ("t", 1, 0, None), ("t", 2, 0, None)]


def test_a_worker_that_dies_fails_its_part_retriably_and_the_rest_stands(cluster):
    create(cluster, "t", 2)
    cluster.hold = {1}
    produce(cluster, "c", ("t", 0, batch(b"a")), ("t", 1, batch(b"b")))
    cluster.broker.worker_lost(1)
    cluster.run()
    [reply] = cluster.replies["c"]
    errors = {p.partition: p.error for p in reply.partitions}
    assert errors[0] is None and isinstance(errors[1], LeaderNotAvailableError)
    assert errors[1].retriable


def test_a_message_the_loop_cannot_deliver_fails_its_part(cluster):
    create(cluster, "t", 1)
    cluster.hold = {0}
    produce(cluster, "c", ("t", 0, batch(b"a")))
    [(worker, message)] = cluster.held
    cluster.broker.undeliverable(worker, message)
    cluster.run()
    [reply] = cluster.replies["c"]
    assert isinstance(reply.partitions[0].error, LeaderNotAvailableError)


def test_acks_zero_is_not_answered_and_bad_acks_is_a_request_error(cluster):
    create(cluster, "t", 1)
    assert produce(cluster, "quiet", ("t", 0, batch(b"a")), acks=0) == []
    [reply] = produce(cluster, "bad", ("t", 0, batch(b"a")), acks=2)
    assert isinstance(reply, r.ErrorReply) and isinstance(reply.error, InvalidRequiredAcksError)


def test_an_unknown_partition_is_refused_without_reaching_a_worker(cluster):
    create(cluster, "t", 1)
    sent = len(cluster.sent)
    [reply] = produce(cluster, "c", ("t", 5, batch(b"a")))
    assert isinstance(reply.partitions[0].error, UnknownTopicOrPartitionError)
    assert len(cluster.sent) == sent


def test_a_long_poll_is_parked_then_woken_by_positions(cluster):
    create(cluster, "t", 1)
    fetch = q.FetchRequest([q.FetchPartition("t", 0, 0)], max_wait_ms=10_000)
    assert cluster.call("consumer", fetch) == []
    assert cluster.broker.fetch.parked == 1
    produce(cluster, "p", ("t", 0, batch(b"hello")))  # the worker announces positions
    [reply] = cluster.replies["consumer"]
    [part] = reply.partitions
    assert part.offsets.high_watermark == 1
    assert [rec.value for b in iter_batches(part.records) for rec in b.records] == [b"hello"]
    assert cluster.broker.fetch.parked == 0


def test_a_long_poll_short_of_min_bytes_watches_for_growth_not_its_position(cluster):
    """Data past the position but short of min_bytes: the watch asks to hear
    of a higher high watermark, else the owner would announce at once, the
    fetch would watch again, and the two would ping-pong until the deadline."""
    create(cluster, "t", 1)
    produce(cluster, "p", ("t", 0, batch(b"small")))
    cluster.call("consumer", q.FetchRequest([q.FetchPartition("t", 0, 0)], max_wait_ms=10_000,
                                            min_bytes=1 << 20))
    assert cluster.broker.fetch.parked == 1
    watches = [m.partitions for _, m in cluster.sent if isinstance(m, wp.Watch)]
    assert watches == [[("t", 0, 1)]]  # the high watermark seen, not offset 0


def test_a_parked_fetch_is_answered_empty_at_its_deadline(cluster):
    create(cluster, "t", 1)
    cluster.call("consumer", q.FetchRequest([q.FetchPartition("t", 0, 0)], max_wait_ms=200))
    deadline = cluster.broker.next_deadline()
    assert deadline is not None
    cluster.broker.expire(deadline - 0.1)
    cluster.run()
    assert "consumer" not in cluster.replies
    cluster.broker.expire(deadline)
    cluster.run()
    [reply] = cluster.replies["consumer"]
    assert reply.partitions[0].records is None and reply.partitions[0].error is None
    assert cluster.broker.next_deadline() is None


def test_list_offsets_earliest_latest_and_by_time_from_the_owner(cluster):
    create(cluster, "t", 1)
    produce(cluster, "p", ("t", 0, encode_batch([Record(value=b"a", timestamp=1000),
                                                  Record(value=b"b", timestamp=2000)])))
    [reply] = cluster.call("c", q.ListOffsetsRequest([("t", 0, q.EARLIEST), ("t", 0, q.LATEST),
                                                      ("t", 0, 1500), ("t", 0, 9999)]))
    assert [(p.offset, p.timestamp) for p in reply.partitions] == [
        (0, -1), (2, -1), (1, 2000), (-1, -1)]


def test_committed_offsets_are_stored_through_a_worker_and_read_back(cluster):
    create(cluster, "t", 2)
    [joined] = cluster.call("m", q.JoinGroupRequest("g", ["t"]))
    commit = q.OffsetCommitRequest("g", [("t", 0, 5, "meta"), ("t", 1, 7, "")],
                                   joined.member_id, joined.generation_id)
    [reply] = cluster.call("commit", commit)
    assert reply == r.OffsetCommitReply(2)
    stored = [log for (topic, _), log in cluster.workers.logs.items()
              if topic == "__consumer_offsets" and log.log_end_offset > 0]
    assert len(stored) == 1  # the group's one partition of the offsets topic
    [fetched] = cluster.call("fetch", q.OffsetFetchRequest("g"))
    assert fetched.offsets == [("t", 0, 5, "meta"), ("t", 1, 7, "")]
    cluster.broker.committed._committed = None  # forget: read back from the log
    [again] = cluster.call("again", q.OffsetFetchRequest("g", [("t", 1), ("t", 9)]))
    assert again.offsets == [("t", 1, 7, ""), ("t", 9, -1, "")]


def test_a_commit_from_a_stale_generation_is_fenced(cluster):
    create(cluster, "t", 1)
    [joined] = cluster.call("m", q.JoinGroupRequest("g", ["t"]))
    [reply] = cluster.call("c", q.OffsetCommitRequest("g", [("t", 0, 1, "")], joined.member_id,
                                                      joined.generation_id + 5))
    assert isinstance(reply, r.ErrorReply) and reply.error.name == "ILLEGAL_GENERATION"


def test_status_says_serving_once_every_worker_has_opened(cluster):
    [status] = cluster.call("s", q.StatusRequest(details=True))
    assert status.serving and status.workers == [0, 1]
    create(cluster, "t", 1)
    produce(cluster, "p", ("t", 0, batch(b"a", b"b")))
    [status] = cluster.call("s2", q.StatusRequest(details=True))
    [entry] = [p for p in status.partitions if p["topic"] == "t"]
    assert (entry["log_end_offset"], entry["high_watermark"]) == (2, 2)
    assert status.groups == []
    cluster.broker.on_worker_message(1, wp.Ready(1, 0))  # restarted: opening again
    cluster.hold = {1}
    cluster.run()
    [status] = cluster.call("s3", q.StatusRequest())
    assert not status.serving


def test_a_bug_in_a_handler_costs_one_request_not_the_core(cluster):
    def broken(_request):
        raise KeyError("boom")

    cluster.broker._handlers[q.ListGroupsRequest] = cluster.broker._reply(broken)
    [reply] = cluster.call("c", q.ListGroupsRequest())
    assert isinstance(reply, r.ErrorReply) and reply.error.name == "UNKNOWN_SERVER_ERROR"
    [status] = cluster.call("s", q.StatusRequest())
    assert status.serving


def test_a_restarted_workers_partitions_are_not_read_until_it_has_opened_them(cluster):
    """Its control blocks may still hold the previous run's positions."""
    create(cluster, "t", 2)
    produce(cluster, "p", ("t", 0, batch(b"a")), ("t", 1, batch(b"b")))
    owner = cluster.broker.metadata.owner("t", 1)
    cluster.hold = {owner}
    cluster.broker.on_worker_message(owner, wp.Ready(owner, 0))
    cluster.run()
    [reply] = cluster.call("c", q.ListOffsetsRequest([("t", 0, q.LATEST), ("t", 1, q.LATEST)]))
    by_partition = {p.partition: p for p in reply.partitions}
    assert isinstance(by_partition[1].error, LeaderNotAvailableError)
    if cluster.broker.metadata.owner("t", 0) != owner:
        assert by_partition[0].error is None and by_partition[0].offset == 1
    cluster.hold = set()
    cluster.release()  # the worker answers Opened
    [_, reply] = cluster.call("c", q.ListOffsetsRequest([("t", 1, q.LATEST)]))
    assert reply.partitions[0].error is None and reply.partitions[0].offset == 1


def test_the_loop_is_woken_when_a_new_groups_initial_rebalance_delay_ends(cluster):
    """group.initial.rebalance.delay.ms is 3000 by default: the first
    generation is due then, not at the loop's next idle turn."""
    create(cluster, "t", 1)
    assert cluster.broker.next_deadline() is None
    before = time.monotonic()
    [view] = cluster.call("m", q.JoinGroupRequest("g", ["t"], session_timeout_ms=6000))
    assert view.rebalancing and view.assignment == []
    deadline = cluster.broker.next_deadline()
    assert deadline is not None and before + 2.9 < deadline <= time.monotonic() + 3.1
