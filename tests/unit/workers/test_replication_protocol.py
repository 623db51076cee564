"""The replication wire: fetches and answers survive encoding, record sets
travel untouched, and anything malformed is one clear error."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.shm.conftest import make_batch
from workers.follower_fetch import FetchPosition, LeaderReply
from workers.replication_protocol import (
    ReplicaFetch,
    ReplicaFetched,
    ReplicationProtocolError,
    encode_fetch,
    encode_fetched,
    parse_fetch,
    parse_fetched,
)


def test_a_fetch_round_trips():
    fetch = ReplicaFetch(7, 2, 4294967301, 500, 1, 1 << 20, (
        ("orders", 0, FetchPosition(3, 120, 3, 0)), ("orders", 5, FetchPosition(1, 0, -1, 0))))
    assert parse_fetch(encode_fetch(fetch)) == fetch


def test_an_answer_round_trips_with_its_record_sets_untouched():
    records = make_batch(3) + make_batch(2)
    reply = ReplicaFetched(7, None, (
        ("orders", 0, LeaderReply(None, 100, 0, 125, None, records)),
        ("orders", 1, LeaderReply(None, 40, 0, 44, (2, 40), None)),
        ("orders", 2, LeaderReply("FENCED_LEADER_EPOCH", 9, 0, 9))))
    frames = encode_fetched(reply)
    assert frames[2] is records, "the record set is a frame of its own, not copied"
    parsed = parse_fetched(frames)
    assert bytes(parsed.partitions[0][2].records) == records
    assert parsed.partitions[1:] == reply.partitions[1:]


def test_a_missing_records_frame_is_refused():
    frames = encode_fetched(ReplicaFetched(1, None, (
        ("t", 0, LeaderReply(None, 1, 0, 1, None, make_batch(1))),)))
    with pytest.raises(ReplicationProtocolError, match="records frame 0 is missing"):
        parse_fetched(frames[:2])


frames_strategy = st.lists(st.one_of(
    st.binary(max_size=64),
    st.just(b"replica_fetch"), st.just(b"replica_fetched"),
    st.builds(lambda v: v.encode(), st.sampled_from([
        '{"v": 1}', '{"v": 1, "id": 1, "partitions": [[1, 2]]}',
        '{"v": 1, "id": "x", "replica_id": 1, "broker_epoch": 1, "max_wait_ms": 1, '
        '"min_bytes": 1, "max_bytes": 1, "partitions": [["t", 0, 1, 2, 3]]}',
        '{"v": 1, "id": 1, "error": null, "partitions": [["t", 0, null, 1, 0, 1, [1], 0]]}',
        '{"v": 1, "id": 1, "error": null, "partitions": [["t", 0, null, 1, 0, 1, null, 5]]}',
        '[]', 'null', '{"v": 2}']))), max_size=4)


@settings(max_examples=400, deadline=None)
@given(frames=frames_strategy)
def test_garbage_is_a_protocol_error_and_nothing_else(frames):
    for parse in (parse_fetch, parse_fetched):
        with contextlib.suppress(ReplicationProtocolError):  # anything else fails the test
            parse(frames)
