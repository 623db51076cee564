"""The supervisor-worker protocol: every message survives its own frames."""

from __future__ import annotations

import pytest

from shm.errors import KafkaStorageError, NotLeaderOrFollowerError, OffsetOutOfRangeError
from workers import protocol as wp

MESSAGES = [
    wp.Open([wp.PartitionToOpen("t", 0, "/data/t-0", {"segment_bytes": 1024}),
             wp.PartitionToOpen("u", 3, "/data/u-3", {})]),
    wp.Close([("t", 0, "/data/t-0")], delete=True),
    wp.Close([], delete=False),
    wp.Produce(b"17", -1, [("t", 0), ("t", 1)], [b"batch-0", b"batch-1"]),
    wp.ListOffsetsForTimes(b"18", [("t", 0, 1_700_000_000_000)]),
    wp.Watch([("t", 0, 42)]),
    wp.Stop(),
    wp.Ready(3, 4242, "tcp://127.0.0.1:40123"),
    wp.Opened([wp.OpenResult("t", 0), wp.OpenResult("t", 1, KafkaStorageError("disk"))]),
    wp.Produced(b"17", [wp.ProduceResult("t", 0, 10, -1),
                        wp.ProduceResult("t", 1, error=NotLeaderOrFollowerError("moved"))]),
    wp.OffsetsForTimes(b"18", [wp.OffsetForTime("t", 0, 5, 1_700_000_000_001),
                               wp.OffsetForTime("t", 1, error=NotLeaderOrFollowerError("x"))]),
    wp.Positions([("t", 0, 11)]),
    wp.DeleteRecords(b"19", [("t", 0, 42), ("t", 1, wp.DELETE_TO_HIGH_WATERMARK)]),
    wp.RecordsDeleted(b"19", [wp.DeleteRecordsResult("t", 0, 42),
                              wp.DeleteRecordsResult("t", 1, error=OffsetOutOfRangeError("x"))]),
    wp.Traffic({"produce": 3, "fetch": 1}, [("produce", "NOT_LEADER_OR_FOLLOWER", 1)],
               {"produce": [0.0004, 0.0011]}, {"t": 300}, {"t": 120}),
    wp.Closed([("t", 0)]),
    wp.Lead([wp.PartitionLeader("t", 0, 4, [1, 2, 3], [1, 2], 2)]),
    wp.Follow([wp.PartitionFollower("t", 1, 4, "tcp://127.0.0.12:40124"),
               wp.PartitionFollower("t", 2, 0, "")]),
    wp.IsrChange([("t", 0, 4, [1, 2, 3])]),
    wp.FollowerLag([("t", 1, 17)]),
    wp.Ready(0, 4243, "tcp://127.0.0.11:40125", "tcp://127.0.0.11:40126"),
]


def _comparable(message):
    """Exceptions compare by identity: compare their class and text instead."""
    def plain(value):
        if isinstance(value, Exception):
            return (type(value), str(value))
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if hasattr(value, "__dataclass_fields__"):
            return (type(value), {k: plain(getattr(value, k)) for k in value.__dataclass_fields__})
        return value
    return plain(message)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_a_message_parses_back_to_itself(message):
    frames = message.encode()
    assert frames[0] == type(message).KIND
    assert _comparable(wp.parse(frames)) == _comparable(message)


def test_every_kind_has_a_round_trip_case():
    assert {type(m) for m in MESSAGES} == set(wp._KINDS.values())


def test_errors_cross_as_registry_classes_not_strings():
    produced = next(m for m in MESSAGES if isinstance(m, wp.Produced))
    parsed = wp.parse(produced.encode())
    error = parsed.results[1].error
    assert isinstance(error, NotLeaderOrFollowerError) and error.retriable


def test_record_sets_pass_through_as_the_frames_given():
    record_set = memoryview(b"\x00" * 64)
    frames = wp.Produce(b"1", 1, [("t", 0)], [record_set]).encode()
    assert frames[-1] is record_set


def test_identities_name_workers_both_ways():
    assert wp.worker_identity(12) == b"worker-12"
    assert wp.worker_index(wp.worker_identity(12)) == 12
    assert wp.worker_name(3) == "worker-3"
    with pytest.raises(ValueError):
        wp.worker_index(b"client-1")


@pytest.mark.parametrize("frames", [[], [b"nonsense"], [b"produce", b"1"], [b"ready", b"{"]])
def test_frames_that_are_not_a_message_are_a_protocol_error(frames):
    with pytest.raises(wp.ProtocolError):
        wp.parse(frames)
