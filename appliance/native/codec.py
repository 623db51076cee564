"""The native protocol's adapter, sans I/O: frames to core requests, core
replies to frames.

appliance.protocol checks a request's header against its API's schema; this
module turns the checked fields into the core's typed request (the native
field names are the core's own, so most map one to one) and a typed reply
back into the header and payload frames of docs/protocol.md. Per-partition
errors become {"error": NAME, "message": text}; an ErrorReply becomes the
whole-request error reply.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance import protocol
from appliance.broker import replies as r
from appliance.broker import requests as q
from shm.errors import InvalidRequestError, RinglogError

Frame = Any


@dataclass(frozen=True, slots=True)
class NativeClient:
    """Who to answer: the peer's ROUTER identity and the request's id and API."""

    identity: bytes
    request_id: int
    api: str


_PLAIN: dict[str, type] = {cls.API: cls for cls in (
    q.MetadataRequest, q.DeleteTopicsRequest, q.DescribeTopicsRequest, q.AlterConfigsRequest,
    q.ListOffsetsRequest, q.InitProducerIdRequest, q.JoinGroupRequest, q.HeartbeatRequest,
    q.LeaveGroupRequest, q.OffsetCommitRequest, q.OffsetFetchRequest, q.DescribeGroupsRequest,
    q.ListGroupsRequest, q.StatusRequest, q.FindCoordinatorRequest)}


def _create_topics(fields: dict, _payloads: list) -> q.CreateTopicsRequest:
    return q.CreateTopicsRequest([q.TopicSpec(**spec) for spec in fields["topics"]])


def _produce(fields: dict, payloads: list) -> q.ProduceRequest:
    return q.ProduceRequest(fields["acks"], [tuple(p) for p in fields["partitions"]], payloads,
                            fields.get("timeout_ms", 30_000))


def _fetch(fields: dict, _payloads: list) -> q.FetchRequest:
    return q.FetchRequest([q.FetchPartition(*p) for p in fields["partitions"]],
                          **{k: v for k, v in fields.items() if k != "partitions"})


def _delete_records(fields: dict, _payloads: list) -> q.DeleteRecordsRequest:
    return q.DeleteRecordsRequest([tuple(p) for p in fields["partitions"]],
                                  fields.get("timeout_ms", 30_000))


def _create_partitions(fields: dict, _payloads: list) -> q.CreatePartitionsRequest:
    return q.CreatePartitionsRequest([tuple(t) for t in fields["topics"]],
                                     fields.get("validate_only", False))


_BUILT: dict[str, Callable[[dict, list], q.Request]] = {
    "create_topics": _create_topics, "produce": _produce, "fetch": _fetch,
    "delete_records": _delete_records, "create_partitions": _create_partitions}
assert set(_PLAIN) | set(_BUILT) == set(protocol.SCHEMAS), "an API without its core request"


def decode_request(identity: bytes, frames: Sequence[Frame]) -> tuple[NativeClient, q.Request]:
    """The client to answer and the core request; raises protocol.ProtocolError
    (which carries its error reply) for anything malformed."""
    request = protocol.parse_request(frames)
    client = NativeClient(identity, request.id, request.api)
    built = _BUILT.get(request.api)
    try:
        if built is not None:
            return client, built(request.fields, request.payloads)
        return client, _PLAIN[request.api](**request.fields)
    except TypeError as exc:  # e.g. a key in a nested entry that the core does not know
        raise protocol.ProtocolError(InvalidRequestError(f"{request.api}: {exc}"),
                                     request.api, request.id) from None


# --- replies ---------------------------------------------------------------------------

def _error(error: RinglogError | None) -> dict[str, Any]:
    return protocol.error_entry(error)


def _offsets(offsets: r.PartitionOffsets | None) -> dict[str, int]:
    if offsets is None:
        return {}
    return {"high_watermark": offsets.high_watermark,
            "log_start_offset": offsets.log_start_offset,
            "log_end_offset": offsets.log_end_offset}


def _metadata(reply: r.MetadataReply) -> dict:
    return {"brokers": [{"id": b.id, "host": b.host, "port": b.port} for b in reply.brokers],
            "controller_id": reply.controller_id,
            "topics": [{"name": t.name, **_error(t.error), "partitions": [
                {"partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch,
                 "replicas": p.replicas, "isr": p.isr, "endpoint": p.endpoint,
                 **_error(p.error)} for p in t.partitions]}
                for t in reply.topics]}


def _topic_results(reply: r.CreateTopicsReply | r.DeleteTopicsReply
                   | r.CreatePartitionsReply) -> dict:
    return {"topics": [{"name": t.name, **_error(t.error)} for t in reply.topics]}


def _describe_topics(reply: r.DescribeTopicsReply) -> dict:
    topics = []
    for t in reply.topics:
        if t.error is not None:
            topics.append({"name": t.name, **_error(t.error)})
            continue
        topics.append({"name": t.name, "error": None, "partitions": [
            {"partition": p.partition, "owner_worker": p.owner_worker, **_error(p.error),
             **_offsets(p.offsets), "size_bytes": p.size_bytes, "leader": p.leader,
             "leader_epoch": p.leader_epoch, "replicas": p.replicas, "isr": p.isr}
            for p in t.partitions],
            "replication_factor": t.replication_factor, "configs": t.configs})
    return {"topics": topics}


def _produce_reply(reply: r.ProduceReply) -> dict:
    return {"partitions": [{"topic": p.topic, "partition": p.partition, **_error(p.error),
                            "base_offset": p.base_offset, "log_append_time": p.log_append_time}
                           for p in reply.partitions]}


def _list_offsets(reply: r.ListOffsetsReply) -> dict:
    return {"partitions": [{"topic": p.topic, "partition": p.partition, **_error(p.error),
                            "offset": p.offset, "timestamp": p.timestamp}
                           for p in reply.partitions]}


def _group_view(reply: r.GroupViewReply) -> dict:
    return {"member_id": reply.member_id, "generation_id": reply.generation_id,
            "assignment": [list(tp) for tp in reply.assignment],
            "revoke": [list(tp) for tp in reply.revoke],
            "rebalancing": reply.rebalancing, "members": reply.members}


def _status(reply: r.StatusReply) -> dict:
    fields: dict[str, Any] = {"workers": reply.workers, "topics": reply.topics,
                              "serving": reply.serving, "processes": reply.processes,
                              "cluster": reply.cluster}
    if reply.partitions is not None:  # asked with details
        fields.update(partitions=reply.partitions, groups=_jsonable(reply.groups))
    return fields


# Replies to requests only Kafka's door makes (appliance/kafka): no native encoding.
KAFKA_ONLY_REPLIES = (r.OffsetForLeaderEpochReply, r.JoinGroupReply, r.SyncGroupReply,
                      r.ClassicLeaveReply, r.DeleteGroupsReply, r.HeartbeatReply)

_FIELDS: dict[type, Callable[[Any], dict]] = {
    r.MetadataReply: _metadata,
    r.CreateTopicsReply: _topic_results,
    r.DeleteTopicsReply: _topic_results,
    r.DescribeTopicsReply: _describe_topics,
    r.AlterConfigsReply: lambda reply: {"topic": reply.topic, "configs": reply.configs},
    r.ProduceReply: _produce_reply,
    r.ListOffsetsReply: _list_offsets,
    r.FindCoordinatorReply: lambda reply: {"broker_id": reply.broker_id, "host": reply.host,
                                           "port": reply.port},
    r.InitProducerIdReply: lambda reply: {"producer_id": reply.producer_id,
                                          "producer_epoch": reply.producer_epoch},
    r.GroupViewReply: _group_view,
    r.LeaveGroupReply: lambda _reply: {},
    r.OffsetCommitReply: lambda reply: {"committed": reply.committed},
    r.OffsetFetchReply: lambda reply: {"offsets": [list(o) for o in reply.offsets]},
    r.DescribeGroupsReply: lambda reply: {"groups": _jsonable(reply.groups)},
    r.ListGroupsReply: lambda reply: {"groups": _jsonable(reply.groups)},
    r.StatusReply: _status,
    r.DeleteRecordsReply: lambda reply: {"partitions": [
        {"topic": p.topic, "partition": p.partition, **_error(p.error),
         "low_watermark": p.low_watermark} for p in reply.partitions]},
    r.CreatePartitionsReply: _topic_results,
}


def _fetch_reply(reply: r.FetchReply) -> tuple[dict, list[Frame]]:
    """Record sets travel as frames after the header, each named by its index."""
    partitions, payloads = [], []
    for p in reply.partitions:
        entry: dict[str, Any] = {"topic": p.topic, "partition": p.partition, "records": None,
                                 **_error(p.error), **_offsets(p.offsets)}
        if p.records is not None:
            entry["records"] = len(payloads)
            payloads.append(p.records)
        partitions.append(entry)
    return {"partitions": partitions}, payloads


def encode_reply(client: NativeClient, reply: r.Reply) -> list[Frame]:
    """The frames of the reply (without the ROUTER's identity frame)."""
    if isinstance(reply, r.ErrorReply):
        return protocol.encode_error(client.api, client.request_id, reply.error)
    if isinstance(reply, r.FetchReply):
        fields, payloads = _fetch_reply(reply)
        return protocol.encode_response(client.api, client.request_id, fields, payloads)
    return protocol.encode_response(client.api, client.request_id, _FIELDS[type(reply)](reply))


def _jsonable(value: Any) -> Any:
    """Tuples and sets from the coordinator, as JSON lists (sets sorted); a
    classic group's opaque bytes as base64."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    return value
