"""The native door's codec: frames to core requests, core replies to frames."""

from __future__ import annotations

import orjson
import pytest

from appliance import protocol
from appliance.broker import replies as r
from appliance.broker import requests as q
from appliance.native import NativeClient, decode_request, encode_reply
from shm.errors import NotLeaderOrFollowerError, OffsetOutOfRangeError


def decode(api: str, fields: dict, payloads=()):
    return decode_request(b"peer", protocol.encode_request(api, 7, fields, list(payloads)))


def test_every_native_api_decodes_to_its_core_request():
    examples = {
        "metadata": {}, "create_topics": {"topics": [{"name": "t", "partitions": 3}]},
        "delete_topics": {"topics": ["t"]}, "describe_topics": {},
        "alter_configs": {"topic": "t", "configs": {"retention.ms": "1"}},
        "produce": {"acks": 1, "partitions": [["t", 0]]},
        "fetch": {"partitions": [["t", 0, 5, 100]], "max_wait_ms": 0},
        "list_offsets": {"partitions": [["t", 0, -2]]}, "init_producer_id": {},
        "join_group": {"group_id": "g", "topics": ["t"]},
        "heartbeat": {"group_id": "g", "member_id": "m", "generation_id": 1, "owned": []},
        "leave_group": {"group_id": "g", "member_id": "m"},
        "offset_commit": {"group_id": "g", "offsets": [["t", 0, 1, ""]]},
        "offset_fetch": {"group_id": "g"}, "describe_groups": {"groups": ["g"]},
        "list_groups": {}, "status": {"details": True}, "find_coordinator": {"group_id": "g"},
        "delete_records": {"partitions": [["t", 0, -1]]},
        "create_partitions": {"topics": [["t", 4]], "validate_only": True},
    }
    assert set(examples) == set(protocol.SCHEMAS)
    for api, fields in examples.items():
        client, request = decode(api, fields, [b"x"] if api == "produce" else ())
        assert client == NativeClient(b"peer", 7, api)
        assert api == request.API


def test_produce_keeps_its_record_sets_and_fetch_its_partitions_typed():
    _, produce = decode("produce", {"acks": -1, "partitions": [["t", 0], ["t", 1]]},
                        [b"a", b"b"])
    assert produce.partitions == [("t", 0), ("t", 1)] and produce.record_sets == [b"a", b"b"]
    _, fetch = decode("fetch", {"partitions": [["t", 0, 5, 100]]})
    assert fetch.partitions == [q.FetchPartition("t", 0, 5, 100)]
    assert fetch.max_wait_ms == q.DEFAULT_MAX_WAIT_MS


def test_delete_records_and_create_partitions_decode_typed_and_reply_per_entry():
    _, delete = decode("delete_records", {"partitions": [["t", 0, 7]], "timeout_ms": 5})
    assert delete == q.DeleteRecordsRequest([("t", 0, 7)], 5)
    _, create = decode("create_partitions", {"topics": [["t", 4]]})
    assert create == q.CreatePartitionsRequest([("t", 4)], validate_only=False)
    client = NativeClient(b"peer", 7, "delete_records")
    reply = protocol.parse_response(encode_reply(client, r.DeleteRecordsReply([
        r.DeleteRecordsResult("t", 0, 7),
        r.DeleteRecordsResult("t", 1, error=OffsetOutOfRangeError("past the high watermark"))])))
    assert [(p["low_watermark"], p["error"]) for p in reply.fields["partitions"]] == [
        (7, None), (-1, "OFFSET_OUT_OF_RANGE")]


def test_an_unknown_key_in_a_nested_entry_is_a_protocol_error_with_its_reply():
    with pytest.raises(protocol.ProtocolError) as caught:
        decode("create_topics", {"topics": [{"name": "t", "colour": "red"}]})
    assert protocol.parse_response(caught.value.reply).error == "INVALID_REQUEST"


def test_a_fetch_reply_carries_records_as_frames_named_by_index():
    offsets = r.PartitionOffsets(0, 10, 10)
    reply = r.FetchReply([
        r.PartitionFetchResult("t", 0, offsets, memoryview(b"records")),
        r.PartitionFetchResult("t", 1, error=OffsetOutOfRangeError("past the end")),
        r.PartitionFetchResult("t", 2, offsets, None)])
    frames = encode_reply(NativeClient(b"peer", 9, "fetch"), reply)
    response = protocol.parse_response(frames)
    assert response.id == 9 and response.error is None
    first, second, third = response.fields["partitions"]
    assert first["records"] == 0 and bytes(response.payloads[0]) == b"records"
    assert first["high_watermark"] == 10
    assert second["error"] == "OFFSET_OUT_OF_RANGE" and second["message"] == "past the end"
    assert third["records"] is None and len(response.payloads) == 1


def test_a_whole_request_error_is_the_error_reply():
    frames = encode_reply(NativeClient(b"p", 3, "produce"),
                          r.ErrorReply(NotLeaderOrFollowerError("moved")))
    header = orjson.loads(frames[0])
    assert header == {"api": "produce", "id": 3, "error": "NOT_LEADER_OR_FOLLOWER",
                      "message": "moved"}


def test_every_reply_type_has_an_encoding():
    from appliance.native import codec

    reply_types = {t for t in r.Reply.__args__}  # type: ignore[attr-defined]
    assert reply_types - set(codec._FIELDS) == {r.ErrorReply, r.FetchReply,
                                                 *codec.KAFKA_ONLY_REPLIES}
