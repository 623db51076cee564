"""codec.KafkaDoor, sans I/O: request frames written with kio's own writers
(request header v1 and the body of each API and version the table serves)
decode into the core's requests; what needs no core is answered at once
(ApiVersions, versions refused); what cannot be read is MalformedRequest
and nothing else; core replies encode to bytes kio's readers parse back to
the values they carried."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import struct
import types
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.schema.response_header.v0.header import ResponseHeader
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import Records, i64Timedelta

from appliance.broker import replies as r
from appliance.broker import requests as q
from appliance.config import default_config
from appliance.kafka import apis as k
from appliance.kafka.apis import APIS
from appliance.kafka.codec import Decoded, KafkaDoor, MalformedRequest
from shm.errors import (
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from shm.records import Record, encode_batch

ADVERTISED = ("127.0.0.1", 9092)
CORRELATION_ID = 4242
UNSUPPORTED_VERSION, INVALID_REQUEST = 35, 42
BATCH = encode_batch([Record(value=b"v1", key=b"k1"), Record(value=b"v2")])
OTHER_BATCH = encode_batch([Record(value=b"other" * 20)], compression="gzip")


# --- building requests with kio --------------------------------------------------------------

def make(cls: type, values: dict) -> Any:
    """kio's dataclass `cls` from plain values; keys this version lacks are left
    out (so one dict describes a request at every version), nested entities
    from dicts, milliseconds to timedeltas, error codes to kio's enum."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kwargs[f.name] = _convert(hints[f.name], values[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert(next(a for a in typing.get_args(hint) if a is not type(None)), value)
    if origin is tuple:
        return tuple(_convert(typing.get_args(hint)[0], v) for v in value)
    if dataclasses.is_dataclass(hint):
        return make(hint, value)
    if hint is ErrorCode:
        return ErrorCode(value)
    base = hint
    while hasattr(base, "__supertype__"):
        base = base.__supertype__
    if isinstance(base, type) and issubclass(base, datetime.timedelta) and isinstance(value, int):
        return datetime.timedelta(milliseconds=value)
    return value


def request_frame(api_key: int, version: int, values: dict, correlation_id: int = CORRELATION_ID,
                  client_id: str | None = "ringlog-test") -> bytes:
    """A request frame (no size prefix) as a client sends it: header v1, body."""
    out = io.BytesIO()
    entity_writer(RequestHeaderV1)(out, RequestHeaderV1(
        request_api_key=api_key, request_api_version=version, correlation_id=correlation_id,
        client_id=client_id))
    cls = load_request_schema(api_key, version)
    entity_writer(cls)(out, make(cls, values))
    return out.getvalue()


def door() -> KafkaDoor:
    return KafkaDoor(default_config(), ADVERTISED)


class Slots:
    """A connection's take_slot, counting."""

    def __init__(self) -> None:
        self.taken: list[int] = []

    def __call__(self) -> int:
        self.taken.append(len(self.taken))
        return self.taken[-1]


def decode(frame: bytes, the_door: KafkaDoor | None = None) -> tuple[Decoded, Slots]:
    slots = Slots()
    return (the_door or door()).decode(1, frame, slots), slots


def parse_response(api_key: int, version: int, buffers: list, correlation_id: int = CORRELATION_ID
                   ) -> Any:
    """Response header v0 and the body read back with kio, to the last byte."""
    data = b"".join(bytes(b) for b in buffers)
    header, offset = entity_reader(ResponseHeader)(memoryview(data), 0)  # (value, size read)
    assert header.correlation_id == correlation_id
    body, size = entity_reader(load_response_schema(api_key, version))(memoryview(data), offset)
    assert offset + size == len(data), f"{len(data) - offset - size} bytes after the response"
    return body


def versions(api_key: int) -> list[int]:
    api = APIS[api_key]
    return list(range(api.min_version, api.max_version + 1))


def served(api_key: int) -> list[int]:
    return [v for v in versions(api_key) if APIS[api_key].serves(v)]


def by_version(api_key: int) -> list[tuple[int, int]]:
    return [(api_key, v) for v in served(api_key)]


# --- each API: a request at every served version, and the core request it becomes ------------

def _metadata(version: int) -> tuple[dict, q.Request]:
    values = {"topics": [{"name": "a"}, {"name": "b"}], "allow_auto_topic_creation": False,
              "include_cluster_authorized_operations": False,
              "include_topic_authorized_operations": False}
    return values, q.MetadataRequest(["a", "b"], version < 4)  # v0-3 always auto-create


def _produce(_version: int) -> tuple[dict, q.Request]:
    values = {"transactional_id": None, "acks": -1, "timeout": 1500, "topic_data": [
        {"name": "t", "partition_data": [{"index": 0, "records": BATCH},
                                         {"index": 2, "records": OTHER_BATCH}]},
        {"name": "u", "partition_data": [{"index": 1, "records": BATCH}]}]}
    return values, q.ProduceRequest(-1, [("t", 0), ("t", 2), ("u", 1)],
                                    [BATCH, OTHER_BATCH, BATCH], 1500)


def _fetch(_version: int) -> tuple[dict, q.Request]:
    values = {"replica_id": -1, "max_wait": 250, "min_bytes": 1, "max_bytes": 1000,
              "isolation_level": 0, "session_id": 0, "session_epoch": -1,
              "forgotten_topics_data": [], "rack_id": "",
              "topics": [{"topic": "t", "partitions": [
                  {"partition": 0, "current_leader_epoch": -1, "fetch_offset": 5,
                   "log_start_offset": -1, "partition_max_bytes": 100},
                  {"partition": 3, "current_leader_epoch": -1, "fetch_offset": 0,
                   "log_start_offset": -1, "partition_max_bytes": 200}]}]}
    return values, q.FetchRequest([q.FetchPartition("t", 0, 5, 100),
                                   q.FetchPartition("t", 3, 0, 200)], 250, 1, 1000)


def _list_offsets(_version: int) -> tuple[dict, q.Request]:
    values = {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": "t", "partitions": [{"partition_index": 0, "current_leader_epoch": -1,
                                      "timestamp": -2},
                                     {"partition_index": 1, "current_leader_epoch": -1,
                                      "timestamp": 1_700_000_000_000}]}]}
    return values, q.ListOffsetsRequest([("t", 0, -2), ("t", 1, 1_700_000_000_000)])


def _find_coordinator(_version: int) -> tuple[dict, q.Request]:
    return {"key": "group-1", "key_type": 0}, q.FindCoordinatorRequest("group-1")


def _init_producer_id(_version: int) -> tuple[dict, q.Request]:
    return {"transactional_id": None, "transaction_timeout": 60_000}, q.InitProducerIdRequest()


def _create_topics(_version: int) -> tuple[dict, q.Request]:
    values = {"timeout": 30_000, "validate_only": False, "topics": [
        {"name": "t", "num_partitions": 3, "replication_factor": 1, "assignments": [],
         "configs": [{"name": "retention.ms", "value": "1000"},
                     {"name": "segment.bytes", "value": None}]},
        {"name": "u", "num_partitions": -1, "replication_factor": -1, "assignments": [],
         "configs": []}]}
    return values, q.CreateTopicsRequest([q.TopicSpec("t", 3, 1, {"retention.ms": "1000"}),
                                          q.TopicSpec("u", 1, 1, {})])  # -1: the defaults


def _delete_topics(_version: int) -> tuple[dict, q.Request]:
    return {"topic_names": ["a", "b"], "timeout": 5000}, q.DeleteTopicsRequest(["a", "b"])


def _describe_configs(_version: int) -> tuple[dict, list]:
    values = {"include_synonyms": False, "resources": [
        {"resource_type": 2, "resource_name": "t", "configuration_keys": None},
        {"resource_type": 2, "resource_name": "u", "configuration_keys": ["retention.ms"]}]}
    return values, [q.DescribeTopicsRequest(["t"]), q.DescribeTopicsRequest(["u"])]


def _alter_configs(_version: int) -> tuple[dict, list]:
    values = {"validate_only": False, "resources": [
        {"resource_type": 2, "resource_name": "t",
         "configs": [{"name": "retention.ms", "value": "5"}]}]}
    return values, [q.AlterConfigsRequest("t", {"retention.ms": "5"}, replace=True)]


def _incremental_alter_configs(_version: int) -> tuple[dict, list]:
    values = {"validate_only": False, "resources": [
        {"resource_type": 2, "resource_name": "t", "configs": [
            {"name": "retention.ms", "config_operation": 0, "value": "5"},
            {"name": "segment.bytes", "config_operation": 1, "value": None}]},
        {"resource_type": 2, "resource_name": "u", "configs": [
            {"name": "retention.bytes", "config_operation": 1, "value": "ignored"}]}]}
    return values, [q.AlterConfigsRequest("t", {"retention.ms": "5"}, deleted=("segment.bytes",)),
                    q.AlterConfigsRequest("u", {}, deleted=("retention.bytes",))]


def _offset_commit(_version: int) -> tuple[dict, q.Request]:
    values = {"group_id": "g", "generation_id_or_member_epoch": 3, "member_id": "m-1",
              "retention_time": -1, "group_instance_id": None, "topics": [
                  {"name": "t", "partitions": [
                      {"partition_index": 0, "committed_offset": 10, "committed_leader_epoch": -1,
                       "committed_metadata": "md"},
                      {"partition_index": 1, "committed_offset": 20, "committed_leader_epoch": -1,
                       "committed_metadata": None}]}]}
    return values, q.OffsetCommitRequest("g", [("t", 0, 10, "md"), ("t", 1, 20, "")], "m-1", 3)


def _offset_fetch(_version: int) -> tuple[dict, q.Request]:
    values = {"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0, 1]}]}
    return values, q.OffsetFetchRequest("g", [("t", 0), ("t", 1)])


def _offset_for_leader_epoch(_version: int) -> tuple[dict, q.Request]:
    values = {"replica_id": -1, "topics": [{"topic": "t", "partitions": [
        {"partition": 0, "current_leader_epoch": -1, "leader_epoch": 4}]}]}
    return values, q.OffsetForLeaderEpochRequest([("t", 0, 4)])


def _list_groups(_version: int) -> tuple[dict, q.Request]:
    return {}, q.ListGroupsRequest()


def _join_group(version: int) -> tuple[dict, q.Request]:
    values = {"group_id": "g", "session_timeout": 10_000, "rebalance_timeout": 30_000,
              "member_id": "", "group_instance_id": "static-1", "protocol_type": "consumer",
              "protocols": [{"name": "range", "metadata": b"\x00\x01meta"},
                            {"name": "roundrobin", "metadata": b""}]}
    return values, q.ClassicJoinGroupRequest(
        "g", "", "static-1" if version >= 5 else None, "consumer",
        [("range", b"\x00\x01meta"), ("roundrobin", b"")], 10_000,
        30_000 if version >= 1 else -1, "ringlog-test", "/",
        require_known_member_id=version >= 4)


def _sync_group(version: int) -> tuple[dict, q.Request]:
    values = {"group_id": "g", "generation_id": 2, "member_id": "m-1",
              "group_instance_id": "static-1",
              "assignments": [{"member_id": "m-1", "assignment": b"a1"},
                              {"member_id": "m-2", "assignment": b""}]}
    return values, q.SyncGroupRequest("g", 2, "m-1", "static-1" if version >= 3 else None,
                                      {"m-1": b"a1", "m-2": b""})


def _heartbeat(version: int) -> tuple[dict, q.Request]:
    values = {"group_id": "g", "generation_id": 2, "member_id": "m-1",
              "group_instance_id": "static-1"}
    return values, q.ClassicHeartbeatRequest("g", 2, "m-1",
                                             "static-1" if version >= 3 else None)


def _leave_group(version: int) -> tuple[dict, q.Request]:
    values = {"group_id": "g", "member_id": "m-1",
              "members": [{"member_id": "m-1", "group_instance_id": None},
                          {"member_id": "", "group_instance_id": "static-2"}]}
    members = [("m-1", None), ("", "static-2")] if version >= 3 else [("m-1", None)]
    return values, q.ClassicLeaveGroupRequest("g", members)


def _describe_groups(_version: int) -> tuple[dict, q.Request]:
    return ({"groups": ["g", "h"], "include_authorized_operations": False},
            q.DescribeGroupsRequest(["g", "h"]))


def _delete_groups(_version: int) -> tuple[dict, q.Request]:
    return {"groups_names": ["g", "h"]}, q.DeleteGroupsRequest(["g", "h"])


EXAMPLES = {
    k.JOIN_GROUP: _join_group, k.SYNC_GROUP: _sync_group, k.HEARTBEAT: _heartbeat,
    k.LEAVE_GROUP: _leave_group, k.DESCRIBE_GROUPS: _describe_groups,
    k.DELETE_GROUPS: _delete_groups,
    k.METADATA: _metadata, k.PRODUCE: _produce, k.FETCH: _fetch, k.LIST_OFFSETS: _list_offsets,
    k.FIND_COORDINATOR: _find_coordinator, k.INIT_PRODUCER_ID: _init_producer_id,
    k.CREATE_TOPICS: _create_topics, k.DELETE_TOPICS: _delete_topics,
    k.DESCRIBE_CONFIGS: _describe_configs, k.ALTER_CONFIGS: _alter_configs,
    k.INCREMENTAL_ALTER_CONFIGS: _incremental_alter_configs,
    k.OFFSET_COMMIT: _offset_commit, k.OFFSET_FETCH: _offset_fetch,
    k.OFFSET_FOR_LEADER_EPOCH: _offset_for_leader_epoch, k.LIST_GROUPS: _list_groups,
}
CASES = [case for key in EXAMPLES for case in by_version(key)]


def _plain(request: Any) -> Any:
    """A core request with its opaque byte fields as bytes, to compare."""
    if isinstance(request, q.ProduceRequest):
        return dataclasses.replace(request, record_sets=[bytes(s) for s in request.record_sets])
    if isinstance(request, q.ClassicJoinGroupRequest):
        return dataclasses.replace(request, protocols=[(n, bytes(m)) for n, m in
                                                       request.protocols])
    if isinstance(request, q.SyncGroupRequest):
        return dataclasses.replace(request, assignments={m: bytes(a) for m, a in
                                                         request.assignments.items()})
    return request


@pytest.mark.parametrize(("api_key", "version"), CASES,
                         ids=[f"{APIS[a].name}-v{v}" for a, v in CASES])
def test_each_served_request_decodes_into_its_core_request(api_key, version):
    values, expected = EXAMPLES[api_key](version)
    decoded, slots = decode(request_frame(api_key, version, values))
    assert decoded.response is None
    assert slots.taken == [0]
    wanted = expected if isinstance(expected, list) else [expected]
    assert [_plain(core) for _, core in decoded.calls] == wanted
    for part, (client, _) in enumerate(decoded.calls):
        assert (client.connection, client.slot, client.api_key, client.version,
                client.correlation_id) == (1, 0, api_key, version, CORRELATION_ID)
        assert client.part == part


def test_metadata_v0_with_no_topics_and_v1_with_null_topics_mean_every_topic():
    decoded, _ = decode(request_frame(k.METADATA, 0, {"topics": []}))
    assert [core for _, core in decoded.calls] == [q.MetadataRequest(None, True)]
    for version in range(1, 9):
        decoded, _ = decode(request_frame(k.METADATA, version, {
            "topics": None, "allow_auto_topic_creation": True,
            "include_cluster_authorized_operations": False,
            "include_topic_authorized_operations": False}))
        assert [core for _, core in decoded.calls] == [q.MetadataRequest(None, True)], version


def test_offset_fetch_v2_with_null_topics_fetches_every_committed_offset():
    for version in range(2, 6):
        decoded, _ = decode(request_frame(k.OFFSET_FETCH, version,
                                          {"group_id": "g", "topics": None}))
        assert [core for _, core in decoded.calls] == [q.OffsetFetchRequest("g", None)]


def test_a_null_client_id_is_allowed():
    values, expected = _metadata(8)
    decoded, _ = decode(request_frame(k.METADATA, 8, values, client_id=None))
    assert [core for _, core in decoded.calls] == [expected]


def test_record_sets_pass_through_byte_for_byte():
    values, _ = _produce(8)
    decoded, _ = decode(request_frame(k.PRODUCE, 8, values))
    [(_, produce)] = decoded.calls
    assert [bytes(s) for s in produce.record_sets] == [BATCH, OTHER_BATCH, BATCH]


def test_a_broker_resource_of_describe_configs_is_answered_by_the_door():
    for version in served(k.DESCRIBE_CONFIGS):
        decoded, slots = decode(request_frame(k.DESCRIBE_CONFIGS, version, {
            "include_synonyms": False, "resources": [
                {"resource_type": 4, "resource_name": "0", "configuration_keys": ["broker.id"]}]}))
        assert decoded.calls == [] and decoded.slot == 0 and slots.taken == [0]
        body = parse_response(k.DESCRIBE_CONFIGS, version, decoded.response)
        [result] = body.results
        assert result.error_code == ErrorCode.none
        assert [(c.name, c.value) for c in result.configs] == [("broker.id", "0")]


@pytest.mark.parametrize(("configs", "code", "message"), [
    ([("retention.ms", 0, "1"), ("retention.ms", 1, None)], ErrorCode.invalid_request,
     "named twice"),
    ([("retention.ms", 0, None)], ErrorCode.invalid_request, "SET retention.ms has no value"),
    ([("cleanup.policy", 2, "delete")], ErrorCode.invalid_config, "APPEND and SUBTRACT"),
    ([("cleanup.policy", 3, "delete")], ErrorCode.invalid_config, "APPEND and SUBTRACT"),
    ([("retention.ms", 7, "1")], ErrorCode.invalid_request, "config operation 7"),
], ids=["twice", "set-null", "append", "subtract", "unknown-op"])
def test_an_incremental_alter_kafka_refuses_is_refused_for_its_resource_alone(
        configs, code, message):
    """The refused topic changes nothing and says why; the other resource of
    the same request still goes to the core."""
    the_door = door()
    decoded, _ = decode(request_frame(k.INCREMENTAL_ALTER_CONFIGS, 0, {
        "validate_only": False, "resources": [
            {"resource_type": 2, "resource_name": "bad", "configs": [
                {"name": n, "config_operation": op, "value": v} for n, op, v in configs]},
            {"resource_type": 2, "resource_name": "good", "configs": [
                {"name": "retention.ms", "config_operation": 0, "value": "9"}]}]}), the_door)
    [(client, core)] = decoded.calls
    assert core == q.AlterConfigsRequest("good", {"retention.ms": "9"})
    buffers = the_door.encode(client, r.AlterConfigsReply("good", {"retention.ms": "9"}))
    body = parse_response(k.INCREMENTAL_ALTER_CONFIGS, 0, buffers)
    bad, good = body.responses
    assert (bad.resource_name, bad.error_code) == ("bad", code)
    assert message in bad.error_message
    assert (good.resource_name, good.error_code) == ("good", ErrorCode.none)


# --- what the door answers itself ------------------------------------------------------------

def table() -> list[tuple[int, int, int]]:
    return sorted((api.key, api.min_version, api.max_version) for api in APIS.values())


@pytest.mark.parametrize("version", [0, 1, 2])
def test_api_versions_v0_to_v2_are_answered_with_the_table(version):
    decoded, slots = decode(request_frame(k.API_VERSIONS, version, {}))
    assert decoded.calls == [] and decoded.slot == 0 and slots.taken == [0]
    body = parse_response(k.API_VERSIONS, version, decoded.response)
    assert body.error_code == ErrorCode.none
    assert [(a.api_key, a.min_version, a.max_version) for a in body.api_keys] == table()


@pytest.mark.parametrize("version", [3, 4, 99, -1])
def test_api_versions_past_v2_get_unsupported_version_in_a_v0_body(version):
    """librdkafka sends v3 first (request header v2, flexible): the answer is
    error 35 in a v0 body (header v0) listing the table, and it retries."""
    out = io.BytesIO()
    entity_writer(RequestHeaderV2)(out, RequestHeaderV2(
        request_api_key=k.API_VERSIONS, request_api_version=version,
        correlation_id=CORRELATION_ID, client_id="rdkafka"))
    cls = load_request_schema(k.API_VERSIONS, 3)
    entity_writer(cls)(out, cls(client_software_name="librdkafka",
                                client_software_version="2.16.0"))
    decoded, slots = decode(out.getvalue())
    assert decoded.calls == [] and decoded.slot == 0 and slots.taken == [0]
    body = parse_response(k.API_VERSIONS, 0, decoded.response)
    assert body.error_code == ErrorCode(UNSUPPORTED_VERSION)
    assert [(a.api_key, a.min_version, a.max_version) for a in body.api_keys] == table()


def test_api_versions_v0_carrying_v3_fields_is_still_read():
    """librdkafka's v0 retry keeps v3's body: bytes after the body are ignored."""
    frame = request_frame(k.API_VERSIONS, 0, {}) + b"\x0alibrdkafka\x062.16\x00"
    decoded, _ = decode(frame)
    assert parse_response(k.API_VERSIONS, 0, decoded.response).error_code == ErrorCode.none


UNKNOWN = [(4, 0), (17, 0), (36, 0), (60, 0), (1000, 0), (-1, 0), (32767, 0)]
OUT_OF_RANGE = [(key, v) for key, api in APIS.items() if key != k.API_VERSIONS
                for v in (api.min_version - 1, api.max_version + 1, -1, 32767)
                if not api.min_version <= v <= api.max_version]


@pytest.mark.parametrize(("api_key", "version"), UNKNOWN + OUT_OF_RANGE)
def test_an_api_or_version_not_in_the_table_is_malformed(api_key, version):
    frame = struct.pack(">hhih", api_key, version, 1, 4) + b"test" + bytes(64)
    slots = Slots()
    with pytest.raises(MalformedRequest):
        door().decode(1, frame, slots)
    assert slots.taken == []


def legacy_produce_frame(version: int, acks: int = 1) -> bytes:
    """Produce v0-2 by hand (kio has no schema for them): acks, timeout,
    [topic [partition, message set]]."""
    def string(text: str) -> bytes:
        return struct.pack(">h", len(text)) + text.encode()
    body = struct.pack(">hi", acks, 1000) + struct.pack(">i", 2) + string("t") + struct.pack(
        ">i", 2) + struct.pack(">ii", 0, 3) + b"old" + struct.pack(">ii", 4, -1) + string(
        "u") + struct.pack(">i", 1) + struct.pack(">ii", 1, 0)
    return struct.pack(">hhi", k.PRODUCE, version, CORRELATION_ID) + string("test") + body


def _parse_legacy_produce_response(version: int, data: bytes) -> list[tuple[str, int, int]]:
    """(topic, partition, error code) of a ProduceResponse v0-2, by hand."""
    (correlation_id, topics), offset = struct.unpack_from(">ii", data), 8
    assert correlation_id == CORRELATION_ID
    out = []
    for _ in range(topics):
        (length,) = struct.unpack_from(">h", data, offset)
        name = data[offset + 2:offset + 2 + length].decode()
        offset += 2 + length
        (partitions,) = struct.unpack_from(">i", data, offset)
        offset += 4
        for _ in range(partitions):
            partition, code, _base = struct.unpack_from(">ihq", data, offset)
            offset += 14 + (8 if version >= 2 else 0)  # log_append_time (v2)
            out.append((name, partition, code))
    offset += 4 if version >= 1 else 0  # throttle_time_ms (v1+)
    assert offset == len(data)
    return out


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_is_answered_unsupported_version(version):
    decoded, slots = decode(legacy_produce_frame(version))
    assert decoded.calls == [] and slots.taken == [0]
    data = b"".join(bytes(b) for b in decoded.response)
    assert _parse_legacy_produce_response(version, data) == [
        ("t", 0, UNSUPPORTED_VERSION), ("t", 4, UNSUPPORTED_VERSION), ("u", 1, UNSUPPORTED_VERSION)]


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_with_acks_zero_closes_the_connection(version):
    """No response can carry the error, so the connection closes: how Kafka
    tells an acks=0 producer its records were not taken."""
    with pytest.raises(MalformedRequest):
        decode(legacy_produce_frame(version, acks=0))


@pytest.mark.parametrize("version", [0, 1, 2])
def test_every_truncation_of_a_produce_v0_to_v2_is_malformed(version):
    frame = legacy_produce_frame(version)
    for cut in range(len(frame)):
        assert _outcome(frame[:cut]) == "malformed", cut


def test_produce_with_acks_zero_takes_no_slot_and_gets_no_response():
    values, _ = _produce(8)
    the_door = door()
    decoded, slots = decode(request_frame(k.PRODUCE, 8, {**values, "acks": 0}), the_door)
    assert slots.taken == [] and decoded.response is None
    [(client, produce)] = decoded.calls
    assert client.slot is None and produce.acks == 0
    reply = r.ProduceReply([r.ProduceResult("t", 0, 5), r.ProduceResult("t", 2, 0),
                            r.ProduceResult("u", 1, 9)])
    assert the_door.encode(client, reply) is None


def test_a_transactional_produce_gets_invalid_request_on_every_partition():
    values, _ = _produce(8)
    decoded, _ = decode(request_frame(k.PRODUCE, 8, {**values, "transactional_id": "tx"}))
    assert decoded.calls == [] and decoded.slot == 0
    body = parse_response(k.PRODUCE, 8, decoded.response)
    codes = [(t.name, p.index, p.error_code) for t in body.responses
             for p in t.partition_responses]
    assert codes == [("t", 0, ErrorCode(INVALID_REQUEST)), ("t", 2, ErrorCode(INVALID_REQUEST)),
                     ("u", 1, ErrorCode(INVALID_REQUEST))]


# --- frames that cannot be read --------------------------------------------------------------

def _outcome(frame: bytes) -> str:
    """'decoded' or 'malformed'; anything else raised fails the test that asks."""
    try:
        decode(frame)
    except MalformedRequest:
        return "malformed"
    return "decoded"


@pytest.mark.parametrize(("api_key", "version"), CASES,
                         ids=[f"{APIS[a].name}-v{v}" for a, v in CASES])
def test_every_truncation_of_a_request_is_malformed(api_key, version):
    values, _ = EXAMPLES[api_key](version)
    frame = request_frame(api_key, version, values)
    header = len(frame) - len(_body(api_key, version, values))
    for cut in range(len(frame)):
        outcome = _outcome(frame[:cut])
        # a cut header is malformed, and so is a cut body (an empty one cannot be cut)
        if cut < header or len(frame) > header:
            assert outcome == "malformed", (cut, len(frame))


def _body(api_key: int, version: int, values: dict) -> bytes:
    out = io.BytesIO()
    cls = load_request_schema(api_key, version)
    entity_writer(cls)(out, make(cls, values))
    return out.getvalue()


def _string(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


_NULL = struct.pack(">i", -1)  # a null array: count -1
NULL_ARRAYS = {  # (api key, version, body) with an array the schema says is never null
    "list_offsets-v1-partitions": (k.LIST_OFFSETS, 1, struct.pack(">ii", -1, 1) + _string("t")
                                   + _NULL),
    "fetch-v4-topics": (k.FETCH, 4, struct.pack(">iiiib", -1, 0, 1, 1000, 0) + _NULL),
    "fetch-v4-follower-topics": (k.FETCH, 4, struct.pack(">iiiib", 1, 0, 1, 1000, 0) + _NULL),
    "produce-v3-topic_data": (k.PRODUCE, 3, struct.pack(">hhi", -1, 1, 1000) + _NULL),
    "create_topics-v2-topics": (k.CREATE_TOPICS, 2, _NULL + struct.pack(">ib", 1000, 0)),
    "delete_topics-v1-topic_names": (k.DELETE_TOPICS, 1, _NULL + struct.pack(">i", 1000)),
    "offset_commit-v2-topics": (k.OFFSET_COMMIT, 2, _string("g") + struct.pack(">i", 1)
                                + _string("m") + struct.pack(">q", -1) + _NULL),
    "offset_for_leader_epoch-v2-topics": (k.OFFSET_FOR_LEADER_EPOCH, 2, _NULL),
    "describe_configs-v1-resources": (k.DESCRIBE_CONFIGS, 1, _NULL + b"\x00"),
    "alter_configs-v0-resources": (k.ALTER_CONFIGS, 0, _NULL + b"\x00"),
    "incremental_alter_configs-v0-resources": (k.INCREMENTAL_ALTER_CONFIGS, 0, _NULL + b"\x00"),
    "describe_groups-v0-groups": (k.DESCRIBE_GROUPS, 0, _NULL),
    "delete_groups-v0-groups_names": (k.DELETE_GROUPS, 0, _NULL),
    "sync_group-v0-assignments": (k.SYNC_GROUP, 0, _string("g") + struct.pack(">i", 1)
                                  + _string("m") + _NULL),
    "join_group-v0-protocols": (k.JOIN_GROUP, 0, _string("g") + struct.pack(">i", 10_000)
                                + _string("") + _string("consumer") + _NULL),
    "leave_group-v3-members": (k.LEAVE_GROUP, 3, _string("g") + _NULL),
}


@pytest.mark.parametrize("case", sorted(NULL_ARRAYS))
def test_a_null_array_where_the_schema_has_none_is_malformed(case):
    api_key, version, body = NULL_ARRAYS[case]
    frame = struct.pack(">hhi", api_key, version, 1) + _string("c") + body
    with pytest.raises(MalformedRequest):
        decode(frame)


@pytest.mark.parametrize("size", range(0, 12))
def test_short_frames_are_malformed(size):
    for fill in (b"\x00", b"\xff", b"\x7f"):
        assert _outcome(fill * size) == "malformed"


@st.composite
def mutated_requests(draw) -> bytes:
    api_key, version = draw(st.sampled_from(CASES))
    frame = bytearray(request_frame(api_key, version, EXAMPLES[api_key](version)[0]))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "byte", "cut", "insert", "delete"]))
        position = draw(st.integers(min_value=0, max_value=max(len(frame) - 1, 0)))
        if kind == "flip" and frame:
            frame[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "byte" and frame:
            frame[position] = draw(st.sampled_from([0x00, 0xff, 0x7f, 0x80, 0x01]))
        elif kind == "cut":
            del frame[position:]
        elif kind == "insert":
            frame[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del frame[position:position + draw(st.integers(min_value=1, max_value=8))]
    return bytes(frame)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=mutated_requests())
def test_a_mutated_request_decodes_or_is_malformed_never_anything_else(frame):
    _outcome(frame)


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(max_size=200))
def test_random_bytes_decode_or_are_malformed(frame):
    _outcome(frame)


# kio's reader of an int64 duration (OffsetCommit v2-4's retention_time) makes a
# timedelta of microseconds, so it reads only up to int64's microseconds in ms
# (292,471 years); past that the door cannot read the request and closes the
# connection (docs/protocol.md §11.5). The strategy draws durations that kio's writer
# (which rounds through float seconds, a millisecond or so off up there) writes
# within reach of its reader; the deviation itself is specified on its own below.
KIO_READABLE_MS = (2**63 - 1) // 1000
_DRAWN_MS = KIO_READABLE_MS - 1000


@functools.cache
def _kio_strategy(api_key: int, version: int) -> st.SearchStrategy:
    st.register_type_strategy(Records, st.binary(max_size=80).map(Records))
    st.register_type_strategy(i64Timedelta, st.integers(-_DRAWN_MS, _DRAWN_MS).map(
        lambda ms: i64Timedelta(datetime.timedelta(milliseconds=ms))))
    return st.from_type(load_request_schema(api_key, version))


def _offset_commit_v2(retention_ms: int) -> bytes:
    """An OffsetCommit v2 with this retention_time, written as bytes: kio's writer
    cannot be trusted to write exactly the values near its reader's reach."""
    marker = 1234567
    frame = request_frame(k.OFFSET_COMMIT, 2, {
        "group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "",
        "retention_time": marker, "topics": []})
    at = frame.rindex(struct.pack(">q", marker))
    return frame[:at] + struct.pack(">q", retention_ms) + frame[at + 8:]


@pytest.mark.parametrize("retention_ms", [KIO_READABLE_MS + 1, 2**63 - 1])
def test_a_retention_time_past_kios_reach_closes_the_connection(retention_ms):
    assert decode(_offset_commit_v2(KIO_READABLE_MS))[0].calls  # the last one it reads
    with pytest.raises(MalformedRequest):
        decode(_offset_commit_v2(retention_ms))


MAPPED = [(api.key, v) for api in APIS.values() for v in served(api.key)
          if api.key != k.API_VERSIONS]


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_well_formed_request_of_a_served_version_is_answered_or_handed_to_the_core(data):
    """kio's own random requests, of every API and version the table serves:
    each becomes core requests or an answer, never an exception (values the
    core refuses become error responses)."""
    api_key, version = data.draw(st.sampled_from(MAPPED))
    request = data.draw(_kio_strategy(api_key, version))
    out = io.BytesIO()
    entity_writer(RequestHeaderV1)(out, RequestHeaderV1(
        request_api_key=api_key, request_api_version=version, correlation_id=1, client_id="x"))
    entity_writer(type(request))(out, request)
    decoded, slots = decode(out.getvalue())
    if decoded.response is not None:
        parse_response(api_key, version, decoded.response, correlation_id=1)
    else:
        assert decoded.calls or slots.taken == []
        for _, core in decoded.calls:
            assert isinstance(core, q.Request.__args__)  # type: ignore[attr-defined]


# --- core replies to response bytes ----------------------------------------------------------

@pytest.mark.parametrize("version", served(k.METADATA))
def test_metadata_gives_the_advertised_kafka_endpoint(version):
    the_door = door()
    values, _ = _metadata(version)
    decoded, _ = decode(request_frame(k.METADATA, version, values), the_door)
    [(client, _)] = decoded.calls
    reply = r.MetadataReply(
        brokers=[r.BrokerInfo(0, "127.0.0.1", 7092), r.BrokerInfo(1, "h1", 7092, ("k1", 9093)),
                 r.BrokerInfo(2, "h2", 7092)],  # broker 2 has no Kafka listener: left out
        topics=[r.TopicMetadata("a", [r.PartitionMetadata(0, 0, [0, 1], [0]),
                                      r.PartitionMetadata(1, 1, [1, 0], [1, 0], leader_epoch=3)]),
                r.TopicMetadata("b", error=UnknownTopicOrPartitionError("no b"))],
        controller_id=1)
    body = parse_response(k.METADATA, version, the_door.encode(client, reply))
    assert [(b.node_id, b.host, b.port) for b in body.brokers] == [
        (0, "127.0.0.1", 9092), (1, "k1", 9093)]
    if version >= 1:
        assert body.controller_id == 1
    topics = [(t.name, t.error_code, [(p.partition_index, p.leader_id, list(p.replica_nodes),
                                       list(p.isr_nodes)) for p in t.partitions])
              for t in body.topics]
    assert topics == [("a", ErrorCode.none, [(0, 0, [0, 1], [0]), (1, 1, [1, 0], [1, 0])]),
                      ("b", ErrorCode.unknown_topic_or_partition, [])]
    if version >= 7:
        assert [p.leader_epoch for p in body.topics[0].partitions] == [0, 3]


@pytest.mark.parametrize("version", served(k.PRODUCE))
def test_produce_results_encode_per_partition(version):
    the_door = door()
    values, _ = _produce(version)
    decoded, _ = decode(request_frame(k.PRODUCE, version, values), the_door)
    [(client, _)] = decoded.calls
    reply = r.ProduceReply([r.ProduceResult("t", 0, 100), r.ProduceResult("t", 2, 7, 1234),
                            r.ProduceResult("u", 1, error=NotLeaderOrFollowerError("moved"))])
    body = parse_response(k.PRODUCE, version, the_door.encode(client, reply))
    got = [(t.name, p.index, p.error_code, p.base_offset) for t in body.responses
           for p in t.partition_responses]
    assert got == [("t", 0, ErrorCode.none, 100), ("t", 2, ErrorCode.none, 7),
                   ("u", 1, ErrorCode.not_leader_or_follower, -1)]
    if version >= 2:
        times = [p.log_append_time for t in body.responses for p in t.partition_responses]
        assert times[0] is None and times[1] == datetime.datetime.fromtimestamp(1.234,
                                                                                datetime.UTC)


@pytest.mark.parametrize("version", served(k.LIST_OFFSETS))
def test_list_offsets_results_encode_per_partition(version):
    the_door = door()
    values, _ = _list_offsets(version)
    decoded, _ = decode(request_frame(k.LIST_OFFSETS, version, values), the_door)
    [(client, _)] = decoded.calls
    reply = r.ListOffsetsReply([r.OffsetForTime("t", 0, 0, -1),
                                r.OffsetForTime("t", 1, 42, 1_700_000_000_001),
                                r.OffsetForTime("t", 2, error=OffsetOutOfRangeError("x"))])
    body = parse_response(k.LIST_OFFSETS, version, the_door.encode(client, reply))
    got = [(t.name, p.partition_index, p.error_code, p.offset) for t in body.topics
           for p in t.partitions]
    assert got == [("t", 0, ErrorCode.none, 0), ("t", 1, ErrorCode.none, 42),
                   ("t", 2, ErrorCode.offset_out_of_range, -1)]


@pytest.mark.parametrize("version", served(k.FETCH))
def test_fetch_records_encode_and_read_back(version):
    the_door = door()
    values, _ = _fetch(version)
    decoded, _ = decode(request_frame(k.FETCH, version, values), the_door)
    [(client, _)] = decoded.calls
    records = memoryview(BATCH)
    reply = r.FetchReply([
        r.PartitionFetchResult("t", 0, r.PartitionOffsets(0, 10, 10), records),
        r.PartitionFetchResult("t", 3, error=OffsetOutOfRangeError("x"))])
    buffers = the_door.encode(client, reply)
    assert any(b is records for b in buffers)
    body = parse_response(k.FETCH, version, buffers)
    got = [(t.topic, p.partition_index, p.error_code, p.high_watermark, p.records)
           for t in body.responses for p in t.partitions]
    assert got == [("t", 0, ErrorCode.none, 10, BATCH),
                   ("t", 3, ErrorCode.offset_out_of_range, -1, b"")]


ERROR_CASES = [case for case in CASES if case[0] not in (k.LIST_GROUPS,)]


def _error_codes(body: Any) -> list:
    """Every error code of a response, in order, wherever the API puts them."""
    codes: list = []

    def walk(value: Any) -> None:
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                item = getattr(value, f.name)
                if f.name == "error_code":
                    codes.append(item)
                else:
                    walk(item)
        elif isinstance(value, tuple):
            for item in value:
                walk(item)
    walk(body)
    return codes


def _entries(api_key: int, values: dict) -> int:
    """How many per-partition (or per-resource) entries the request names."""
    if api_key in (k.PRODUCE,):
        return sum(len(t["partition_data"]) for t in values["topic_data"])
    if api_key in (k.FETCH, k.LIST_OFFSETS, k.OFFSET_COMMIT, k.OFFSET_FOR_LEADER_EPOCH):
        return sum(len(t["partitions"]) for t in values["topics"])
    if api_key == k.OFFSET_FETCH:
        return sum(len(t["partition_indexes"]) for t in values["topics"])
    if api_key in (k.METADATA, k.CREATE_TOPICS):
        return len(values["topics"])
    if api_key == k.DELETE_TOPICS:
        return len(values["topic_names"])
    if api_key in (k.DESCRIBE_CONFIGS, k.ALTER_CONFIGS, k.INCREMENTAL_ALTER_CONFIGS):
        return len(values["resources"])
    if api_key == k.DESCRIBE_GROUPS:
        return len(values["groups"])
    if api_key == k.DELETE_GROUPS:
        return len(values["groups_names"])
    return 1


@pytest.mark.parametrize(("api_key", "version"), ERROR_CASES,
                         ids=[f"{APIS[a].name}-v{v}" for a, v in ERROR_CASES])
def test_an_error_reply_is_spread_over_every_part_of_the_response(api_key, version):
    the_door = door()
    values, _ = EXAMPLES[api_key](version)
    decoded, _ = decode(request_frame(api_key, version, values), the_door)
    error = NotLeaderOrFollowerError("the whole request failed")
    buffers = None
    for client, _ in decoded.calls:
        buffers = the_door.encode(client, r.ErrorReply(error))
    body = parse_response(api_key, version, buffers)
    codes = _error_codes(body)
    wanted = ErrorCode(error.code)
    assert codes.count(wanted) >= _entries(api_key, values), codes
    if api_key == k.LEAVE_GROUP and version >= 3:
        return  # the error is the response's; members are not listed with it
    assert set(codes) <= {wanted, ErrorCode.none}
