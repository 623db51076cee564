"""Kafka's protocol to the broker core and back, sans I/O: a request frame
becomes core requests, core replies become response bytes.

The door (KafkaDoor) is per broker, not per connection: the listener hands
it each frame with the connection it came on and a way to take that
connection's next response slot; it answers at once what needs no core
(ApiVersions, a version not served, a broker's configs), and otherwise
returns the core requests to hand to `Broker.handle`, each with a
KafkaClient naming where its reply goes. A Kafka request that is several
core requests (the resources of one DescribeConfigs) gathers their replies
and is encoded once they are all in.

A request that cannot be parsed raises MalformedRequest: Kafka closes such
a connection, there being no way to answer a request it cannot read.

Whole-request failures of the core (ErrorReply) become Kafka's per-partition
or per-topic error codes, which is how Kafka reports them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.broker import replies as r
from appliance.broker import requests as q
from appliance.config import KAFKA_SCHEME, ServerConfig
from appliance.kafka import apis as k
from appliance.kafka.entities import encode_response, request_reader
from appliance.kafka.fetch_response import FetchedPartition, encode_fetch_response
from appliance.kafka.legacy_produce import (
    LegacyProduceUnreadable,
    legacy_produce_error,
    read_legacy_produce,
)
from appliance.metadata import INTERNAL_TOPICS
from shm.errors import (
    InvalidConfigError,
    InvalidRequestError,
    LeaderNotAvailableError,
    RinglogError,
    UnsupportedVersionError,
)

_HEADER = struct.Struct(">hhi")  # request_api_key, request_api_version, correlation_id
NONE = 0
UNSUPPORTED_VERSION = UnsupportedVersionError.code
CLUSTER_ID = "ringlog"  # Metadata's cluster_id: Ringlog names no cluster (a deviation)
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4  # DescribeConfigs/AlterConfigs resource types
CONFIG_SOURCE_TOPIC, CONFIG_SOURCE_STATIC_BROKER, CONFIG_SOURCE_DEFAULT = 1, 4, 5
CONFIG_SET, CONFIG_DELETE, CONFIG_APPEND, CONFIG_SUBTRACT = 0, 1, 2, 3  # IncrementalAlterConfigs


class MalformedRequest(Exception):
    """A frame that is not a request this door can read: close the connection."""


@dataclass(slots=True)
class _Gather:
    """The core replies one Kafka request waits for, by part."""

    replies: list[r.Reply | None]
    local: dict[int, Any] = field(default_factory=dict)  # parts answered by the door itself


@dataclass(frozen=True, slots=True)
class KafkaClient:
    """Where a core reply goes: a connection's response slot (None: acks=0,
    no response), and what the encoder needs of the request."""

    connection: int
    slot: int | None
    api_key: int
    version: int
    correlation_id: int
    request: Any  # the kio request: the encoder answers in its order
    gather: _Gather | None = None
    part: int = 0
    client_id: str = ""  # the request header's
    host: str = ""  # the peer's address, as DescribeGroups names a member's host


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a frame asks for: bytes to send now, or core requests to hand in."""

    response: list[Any] | None = None  # framed by the caller
    slot: int | None = None  # the response's slot, with `response`
    calls: list[tuple[KafkaClient, q.Request]] = field(default_factory=list)


class KafkaDoor:
    """`advertised` is this broker's Kafka endpoint as metadata gives it."""

    def __init__(self, config: ServerConfig, advertised: tuple[str, int]):
        self.config = config
        self.broker_id = int(config["broker.id"])
        self.advertised = advertised

    # --- requests in ---------------------------------------------------------------------

    def decode(self, connection: int, frame: bytes, take_slot: Callable[[], int],
               host: str = "") -> Decoded:
        if len(frame) < _HEADER.size + 2:
            raise MalformedRequest(f"a request of {len(frame)} bytes has no header")
        api_key, version, correlation_id = _HEADER.unpack_from(frame)
        api = k.APIS.get(api_key)
        if api_key == k.API_VERSIONS and (api is None or not api.serves(version)):
            # A version we do not serve (librdkafka tries v3 first): UNSUPPORTED_VERSION
            # in a v0 body that lists ours, so the client retries with one of them.
            return Decoded(self._api_versions(0, correlation_id, UNSUPPORTED_VERSION),
                           take_slot())
        if api is None or not (api.min_version <= version <= api.max_version):
            # Kafka closes a connection that sends an API or version it never
            # advertised: there is no schema to write an answer with.
            raise MalformedRequest(f"API {api_key} v{version} is not served")
        if not api.serves(version):  # Produce v0-2: advertised for old clients, refused
            return _refuse_legacy_produce(frame, version, correlation_id, take_slot)
        try:
            client_id, request = self._read(api_key, version, frame)
        except Exception as exc:  # kio's parser: any error means a frame we cannot read
            raise MalformedRequest(f"API {api_key} v{version}: {exc}") from None
        # Bytes after the body are ignored, as Kafka does: librdkafka's ApiVersions v0
        # retry carries v3's fields.
        if api_key == k.API_VERSIONS:
            return Decoded(self._api_versions(version, correlation_id, NONE), take_slot())
        # A produce with acks=0 gets no response, not even an error one.
        slot = None if api_key == k.PRODUCE and request.acks == 0 else take_slot()
        client = KafkaClient(connection, slot, api_key, version, correlation_id, request,
                             client_id=client_id, host=host)
        try:
            try:
                built = _REQUESTS[api_key](self, client, request)
            except RinglogError as exc:  # refused: answered with the error, if it can be written
                built = exc
            if isinstance(built, RinglogError):
                return Decoded(self._encode_error(client, built), slot)
        except (TypeError, AttributeError, ValueError) as exc:  # e.g. a null array: unreadable
            raise MalformedRequest(f"API {api_key} v{version}: {exc}") from None
        if isinstance(built, list):  # a request of several core requests: gather them
            gather = _Gather([None] * len(built))
            calls = []
            for part, core in enumerate(built):
                part_client = KafkaClient(connection, slot, api_key, version, correlation_id,
                                          request, gather, part)
                if isinstance(core, q.Request.__args__):  # type: ignore[attr-defined]
                    calls.append((part_client, core))
                else:
                    gather.local[part] = core
                    gather.replies[part] = core
            if not calls:
                return Decoded(self._encode(client, gather.replies), slot)
            return Decoded(calls=calls)
        return Decoded(calls=[(client, built)])

    @staticmethod
    def _read(api_key: int, version: int, frame: bytes) -> tuple[str, Any]:
        """The client id and the request body after the header."""
        client_id, offset = _client_id(frame)
        return client_id, request_reader(api_key, version)(memoryview(frame), offset)[0]

    # --- replies out ---------------------------------------------------------------------

    def encode(self, client: KafkaClient, reply: r.Reply) -> list[Any] | None:
        """The response's buffers (no size prefix); None while parts of its
        request are still out, or when it gets no response (acks=0)."""
        if client.gather is not None:
            client.gather.replies[client.part] = reply
            if any(part is None for part in client.gather.replies):
                return None
            reply = client.gather.replies  # type: ignore[assignment]
        if client.slot is None:
            return None
        try:
            return self._encode(client, reply)
        except Exception as exc:  # a reply the encoder cannot write must not cost the loop
            return self._encode_error(client, InvalidRequestError(f"{type(exc).__name__}: {exc}"))

    def _encode(self, client: KafkaClient, reply: Any) -> list[Any]:
        if isinstance(reply, r.ErrorReply):
            return self._encode_error(client, reply.error)
        if client.api_key == k.FETCH:
            return _fetch_response(client, reply)
        values = _RESPONSES[client.api_key](self, client, reply)
        return [encode_response(client.api_key, client.version, client.correlation_id, values)]

    def _encode_error(self, client: KafkaClient, error: RinglogError) -> list[Any]:
        """The whole request failed: every part of the response says why."""
        code = error.code
        if client.api_key == k.FETCH:
            return _fetch_response(client, None, code)
        errors = _join_group_error(error) if client.api_key == k.JOIN_GROUP else \
            _ERRORS[client.api_key]
        values = errors(client.request, code, str(error))
        return [encode_response(client.api_key, client.version, client.correlation_id, values)]

    def _api_versions(self, version: int, correlation_id: int, code: int) -> list[Any]:
        values = {"error_code": code, "throttle_time": 0,
                  "api_keys": [{"api_key": api.key, "min_version": api.min_version,
                                "max_version": api.max_version}
                               for api in sorted(k.APIS.values(), key=lambda a: a.key)]}
        return [encode_response(k.API_VERSIONS, version, correlation_id, values)]

    # --- metadata ------------------------------------------------------------------------

    def kafka_brokers(self, brokers: list[r.BrokerInfo]) -> list[dict]:
        """Each broker's Kafka endpoint; a broker without a Kafka listener is left out."""
        out = []
        for broker in brokers:
            endpoint = broker.kafka if broker.id != self.broker_id else self.advertised
            if endpoint is not None:
                out.append({"node_id": broker.id, "host": endpoint[0],
                            "port": endpoint[1], "rack": None})
        return out


def _client_id(frame: bytes) -> tuple[str, int]:
    """The v1 request header's nullable client id (after api key, version and
    correlation id), and where the body starts."""
    (client_id_length,) = struct.unpack_from(">h", frame, _HEADER.size)
    offset = _HEADER.size + 2 + max(client_id_length, 0)
    if offset > len(frame):
        raise MalformedRequest("the client id runs past the request")
    return frame[_HEADER.size + 2:offset].decode(errors="replace"), offset


def _refuse_legacy_produce(frame: bytes, version: int, correlation_id: int,
                           take_slot: Callable[[], int]) -> Decoded:
    """UNSUPPORTED_VERSION on every partition of a Produce v0-2 (message sets
    before record batch v2). With acks=0 there is no response to carry the
    error, so the connection is closed, which is how Kafka tells an acks=0
    producer that its records were not taken."""
    try:
        request = read_legacy_produce(frame, _client_id(frame)[1])
    except LegacyProduceUnreadable as exc:
        raise MalformedRequest(f"produce v{version}: {exc}") from None
    if request.acks == 0:
        raise MalformedRequest(f"produce v{version} with acks=0 predates record batch v2")
    return Decoded([legacy_produce_error(version, correlation_id, request, UNSUPPORTED_VERSION)],
                   take_slot())


# --- per API: Kafka request -> core request(s) ----------------------------------------------

def _metadata(_door: KafkaDoor, client: KafkaClient, request: Any) -> q.MetadataRequest:
    topics = request.topics
    if topics is None or (client.version == 0 and not topics):
        names = None  # every topic (v0 says so with an empty list)
    else:
        names = [t.name for t in topics]
    return q.MetadataRequest(names, bool(getattr(request, "allow_auto_topic_creation", True)))


def _produce(_door: KafkaDoor, _client: KafkaClient, request: Any) -> q.ProduceRequest:
    if request.transactional_id is not None:
        raise InvalidRequestError("transactions are not supported by Ringlog; "
                                  "produce without transactional.id")
    partitions, record_sets = [], []
    for topic in request.topic_data:
        for data in topic.partition_data:
            partitions.append((topic.name, data.index))
            record_sets.append(data.records if data.records is not None else b"")
    return q.ProduceRequest(request.acks, partitions, record_sets,
                            int(request.timeout.total_seconds() * 1000))


def _fetch(_door: KafkaDoor, _client: KafkaClient, request: Any) -> q.FetchRequest:
    if request.replica_id >= 0:
        raise InvalidRequestError("Ringlog's followers replicate over replication.listener, "
                                  "not Kafka's Fetch")
    partitions = [q.FetchPartition(topic.topic, p.partition, p.fetch_offset,
                                   p.partition_max_bytes)
                  for topic in request.topics for p in topic.partitions]
    return q.FetchRequest(partitions, int(request.max_wait.total_seconds() * 1000),
                          request.min_bytes, getattr(request, "max_bytes", 0x7FFFFFFF))


def _list_offsets(_door: KafkaDoor, _client: KafkaClient, request: Any) -> q.ListOffsetsRequest:
    return q.ListOffsetsRequest([(topic.name, p.partition_index, p.timestamp)
                                 for topic in request.topics for p in topic.partitions])


def _find_coordinator(_door: KafkaDoor, _client: KafkaClient, request: Any
                      ) -> q.FindCoordinatorRequest:
    if getattr(request, "key_type", 0) != 0:
        raise InvalidRequestError("transaction coordinators: Ringlog has no transactions")
    return q.FindCoordinatorRequest(request.key)


def _init_producer_id(_door: KafkaDoor, _client: KafkaClient, request: Any
                      ) -> q.InitProducerIdRequest:
    if request.transactional_id is not None:
        raise InvalidRequestError("transactions are not supported by Ringlog; "
                                  "use enable.idempotence without transactional.id")
    return q.InitProducerIdRequest()


def _create_topics(door: KafkaDoor, _client: KafkaClient, request: Any) -> q.CreateTopicsRequest:
    specs = []
    for topic in request.topics:
        if topic.assignments:
            raise InvalidRequestError("manual replica assignments are not supported; "
                                      "give num_partitions and replication_factor")
        partitions = topic.num_partitions if topic.num_partitions > 0 else int(
            door.config["num.partitions"])
        replicas = topic.replication_factor if topic.replication_factor > 0 else int(
            door.config["default.replication.factor"])
        specs.append(q.TopicSpec(topic.name, partitions, replicas,
                                 {c.name: c.value for c in topic.configs if c.value is not None}))
    if getattr(request, "validate_only", False):
        raise InvalidRequestError("validate_only is not supported; create the topics")
    return q.CreateTopicsRequest(specs)


def _delete_topics(_door: KafkaDoor, _client: KafkaClient, request: Any) -> q.DeleteTopicsRequest:
    return q.DeleteTopicsRequest(list(request.topic_names))


def _describe_configs(door: KafkaDoor, _client: KafkaClient, request: Any) -> list:
    """One core DescribeTopics per topic resource; a broker's configs are the door's own."""
    parts: list = []
    for resource in request.resources:
        if resource.resource_type == RESOURCE_TOPIC:
            parts.append(q.DescribeTopicsRequest([resource.resource_name]))
        elif resource.resource_type == RESOURCE_BROKER:
            parts.append(_broker_configs(door, resource))
        else:
            parts.append(r.ErrorReply(InvalidRequestError(
                f"resource type {resource.resource_type}: only topics (2) and brokers (4)")))
    return parts


def _broker_configs(door: KafkaDoor, resource: Any) -> r.ErrorReply | dict:
    if resource.resource_name not in ("", str(door.broker_id)):
        return r.ErrorReply(InvalidRequestError(
            f"broker {resource.resource_name}: ask that broker for its own configs"))
    config = door.config
    return {"broker": [(name, str(value), CONFIG_SOURCE_STATIC_BROKER if config.is_set(name)
                        else CONFIG_SOURCE_DEFAULT)
                       for name, value in config.items()]}


def _alter_configs(_door: KafkaDoor, _client: KafkaClient, request: Any) -> list:
    return [_unalterable(request, resource) or q.AlterConfigsRequest(
        resource.resource_name, {c.name: c.value for c in resource.configs
                                 if c.value is not None},
        replace=True)  # AlterConfigs sets them all; unnamed ones go back to defaults
            for resource in request.resources]


def _unalterable(request: Any, resource: Any) -> r.ErrorReply | None:
    """Why the resource's configs cannot change here, if they cannot."""
    if resource.resource_type != RESOURCE_TOPIC:
        return r.ErrorReply(InvalidRequestError(
            "only topic configs change at run time; edit server.properties and send "
            "SIGHUP for a broker's"))
    if request.validate_only:
        return r.ErrorReply(InvalidRequestError("validate_only is not supported"))
    return None


def _incremental_alter_configs(_door: KafkaDoor, _client: KafkaClient, request: Any) -> list:
    return [_unalterable(request, resource) or _incremental_alter(resource)
            for resource in request.resources]


def _incremental_alter(resource: Any) -> q.AlterConfigsRequest | r.ErrorReply:
    """One topic's SETs and DELETEs as one core request, refused whole as
    Kafka refuses it: a name given twice, a SET without a value, or an
    APPEND or SUBTRACT (they edit list configs, and no topic config Ringlog
    has holds a list of more than one value)."""
    configs: dict[str, str] = {}
    deleted: list[str] = []
    names = [c.name for c in resource.configs]
    if len(set(names)) != len(names):
        return r.ErrorReply(InvalidRequestError(
            f"configs of {resource.resource_name!r} are named twice; name each once"))
    for c in resource.configs:
        if c.config_operation == CONFIG_SET and c.value is not None:
            configs[c.name] = c.value
        elif c.config_operation == CONFIG_SET:
            return r.ErrorReply(InvalidRequestError(
                f"SET {c.name} has no value; give one, or DELETE it"))
        elif c.config_operation == CONFIG_DELETE:
            deleted.append(c.name)
        elif c.config_operation in (CONFIG_APPEND, CONFIG_SUBTRACT):
            return r.ErrorReply(InvalidConfigError(
                f"APPEND and SUBTRACT are not supported for {c.name}; SET its whole value"))
        else:
            return r.ErrorReply(InvalidRequestError(
                f"config operation {c.config_operation} of {c.name} is unknown; use SET (0) "
                "or DELETE (1)"))
    return q.AlterConfigsRequest(resource.resource_name, configs, deleted=tuple(deleted))


def _offset_commit(_door: KafkaDoor, _client: KafkaClient, request: Any
                   ) -> q.OffsetCommitRequest:
    offsets = [(topic.name, p.partition_index, p.committed_offset, p.committed_metadata or "")
               for topic in request.topics for p in topic.partitions]
    return q.OffsetCommitRequest(request.group_id, offsets, request.member_id or None,
                                 request.generation_id_or_member_epoch)


def _offset_fetch(_door: KafkaDoor, _client: KafkaClient, request: Any) -> q.OffsetFetchRequest:
    partitions = None if request.topics is None else [
        (topic.name, index) for topic in request.topics for index in topic.partition_indexes]
    return q.OffsetFetchRequest(request.group_id, partitions)


def _offset_for_leader_epoch(_door: KafkaDoor, _client: KafkaClient, request: Any
                             ) -> q.OffsetForLeaderEpochRequest:
    return q.OffsetForLeaderEpochRequest([(topic.topic, p.partition, p.leader_epoch)
                                          for topic in request.topics for p in topic.partitions])


def _ms(value: Any) -> int:
    return int(value.total_seconds() * 1000)


def _join_group(_door: KafkaDoor, client: KafkaClient, request: Any
                ) -> q.ClassicJoinGroupRequest:
    rebalance = getattr(request, "rebalance_timeout", None)
    return q.ClassicJoinGroupRequest(
        request.group_id, request.member_id, getattr(request, "group_instance_id", None),
        request.protocol_type, [(p.name, p.metadata) for p in request.protocols],
        _ms(request.session_timeout), _ms(rebalance) if rebalance is not None else -1,
        client.client_id, f"/{client.host}", require_known_member_id=client.version >= 4)


def _sync_group(_door: KafkaDoor, _client: KafkaClient, request: Any) -> q.SyncGroupRequest:
    return q.SyncGroupRequest(request.group_id, request.generation_id, request.member_id,
                              getattr(request, "group_instance_id", None),
                              {a.member_id: a.assignment for a in request.assignments})


def _heartbeat(_door: KafkaDoor, _client: KafkaClient, request: Any
               ) -> q.ClassicHeartbeatRequest:
    return q.ClassicHeartbeatRequest(request.group_id, request.generation_id, request.member_id,
                                     getattr(request, "group_instance_id", None))


def _leave_group(_door: KafkaDoor, _client: KafkaClient, request: Any
                 ) -> q.ClassicLeaveGroupRequest:
    if hasattr(request, "members"):  # v3: a batch, by member id or group.instance.id
        members = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        members = [(request.member_id, None)]
    return q.ClassicLeaveGroupRequest(request.group_id, members)


def _delete_records(_door: KafkaDoor, _client: KafkaClient, request: Any
                    ) -> q.DeleteRecordsRequest:
    return q.DeleteRecordsRequest([(t.name, p.partition_index, p.offset)
                                   for t in request.topics for p in t.partitions],
                                  _ms(request.timeout))


def _create_partitions(_door: KafkaDoor, _client: KafkaClient, request: Any
                       ) -> q.CreatePartitionsRequest:
    if any(t.assignments for t in request.topics):
        raise InvalidRequestError("manual replica assignments are not supported; give the "
                                  "new partition count only")
    return q.CreatePartitionsRequest([(t.name, t.count) for t in request.topics],
                                     bool(request.validate_only))


_REQUESTS: dict[int, Callable[[KafkaDoor, KafkaClient, Any], Any]] = {
    k.METADATA: _metadata,
    k.PRODUCE: _produce,
    k.FETCH: _fetch,
    k.LIST_OFFSETS: _list_offsets,
    k.FIND_COORDINATOR: _find_coordinator,
    k.INIT_PRODUCER_ID: _init_producer_id,
    k.CREATE_TOPICS: _create_topics,
    k.DELETE_TOPICS: _delete_topics,
    k.DESCRIBE_CONFIGS: _describe_configs,
    k.ALTER_CONFIGS: _alter_configs,
    k.INCREMENTAL_ALTER_CONFIGS: _incremental_alter_configs,
    k.OFFSET_COMMIT: _offset_commit,
    k.OFFSET_FETCH: _offset_fetch,
    k.OFFSET_FOR_LEADER_EPOCH: _offset_for_leader_epoch,
    k.LIST_GROUPS: lambda _door, _client, _request: q.ListGroupsRequest(),
    k.JOIN_GROUP: _join_group,
    k.SYNC_GROUP: _sync_group,
    k.HEARTBEAT: _heartbeat,
    k.LEAVE_GROUP: _leave_group,
    k.DESCRIBE_GROUPS: lambda _door, _client, request: q.DescribeGroupsRequest(
        list(request.groups)),
    k.DELETE_GROUPS: lambda _door, _client, request: q.DeleteGroupsRequest(
        list(request.groups_names)),
    k.DELETE_RECORDS: _delete_records,
    k.CREATE_PARTITIONS: _create_partitions,
}


# --- per API: core reply -> Kafka response values --------------------------------------------

def _code(error: RinglogError | None) -> int:
    return NONE if error is None else error.code


def _message(error: RinglogError | None) -> str | None:
    return None if error is None else str(error)


def _by_topic(entries: list[tuple[str, dict]], key: str, name: str = "name") -> list[dict]:
    """Per-partition entries grouped under their topics, in order."""
    topics: list[dict] = []
    for topic, entry in entries:
        if not topics or topics[-1][name] != topic:
            topics.append({name: topic, key: []})
        topics[-1][key].append(entry)
    return topics


def _metadata_response(door: KafkaDoor, _client: KafkaClient, reply: r.MetadataReply) -> dict:
    topics = []
    for topic in reply.topics:
        partitions = [{"error_code": _code(p.error), "partition_index": p.partition,
                       "leader_id": p.leader, "leader_epoch": p.leader_epoch,
                       "replica_nodes": list(p.replicas), "isr_nodes": list(p.isr),
                       "offline_replicas": []} for p in topic.partitions]
        topics.append({"error_code": _code(topic.error), "name": topic.name,
                       "is_internal": topic.name in INTERNAL_TOPICS, "partitions": partitions})
    return {"throttle_time": 0, "brokers": door.kafka_brokers(reply.brokers),
            "cluster_id": CLUSTER_ID, "controller_id": reply.controller_id, "topics": topics}


def _produce_response(_door: KafkaDoor, _client: KafkaClient, reply: r.ProduceReply) -> dict:
    entries = [(result.topic, {
        "index": result.partition, "error_code": _code(result.error),
        "base_offset": result.base_offset,
        "log_append_time": None if result.log_append_time < 0 else result.log_append_time,
        "log_start_offset": -1, "record_errors": [], "error_message": _message(result.error)})
        for result in reply.partitions]
    return {"responses": _by_topic(entries, "partition_responses"), "throttle_time": 0}


def _fetch_response(client: KafkaClient, reply: r.FetchReply | None, code: int = NONE
                    ) -> list[Any]:
    if reply is None:  # the whole fetch failed: each partition says so
        fetched = [FetchedPartition(t.topic, p.partition, code, -1, -1, None)
                   for t in client.request.topics for p in t.partitions]
    else:
        fetched = []
        for result in reply.partitions:
            offsets = result.offsets
            fetched.append(FetchedPartition(
                result.topic, result.partition, _code(result.error),
                offsets.high_watermark if offsets else -1,
                offsets.log_start_offset if offsets else -1, result.records))
    return encode_fetch_response(client.version, client.correlation_id, fetched)


def _list_offsets_response(_door: KafkaDoor, _client: KafkaClient, reply: r.ListOffsetsReply
                           ) -> dict:
    entries = [(found.topic, {"partition_index": found.partition, "error_code": _code(found.error),
                              "timestamp": found.timestamp, "offset": found.offset,
                              "leader_epoch": -1})
               for found in reply.partitions]
    return {"throttle_time": 0, "topics": _by_topic(entries, "partitions")}


def _find_coordinator_response(door: KafkaDoor, _client: KafkaClient,
                               reply: r.FindCoordinatorReply) -> dict:
    endpoint = door.advertised if reply.broker_id == door.broker_id else reply.kafka
    if endpoint is None:
        error = LeaderNotAvailableError(f"broker {reply.broker_id} coordinates the group but "
                                        "has no Kafka listener")
        return {"throttle_time": 0, "error_code": 15, "error_message": str(error),
                "node_id": -1, "host": "", "port": -1}
    return {"throttle_time": 0, "error_code": NONE, "error_message": None,
            "node_id": reply.broker_id, "host": endpoint[0], "port": endpoint[1]}


def _init_producer_id_response(_door: KafkaDoor, _client: KafkaClient,
                               reply: r.InitProducerIdReply) -> dict:
    return {"throttle_time": 0, "error_code": NONE, "producer_id": reply.producer_id,
            "producer_epoch": reply.producer_epoch}


def _topic_results_response(_door: KafkaDoor, client: KafkaClient,
                            reply: r.CreateTopicsReply | r.DeleteTopicsReply) -> dict:
    results = [{"name": t.name, "error_code": _code(t.error), "error_message": _message(t.error)}
               for t in reply.topics]
    key = "topics" if client.api_key == k.CREATE_TOPICS else "responses"
    return {"throttle_time": 0, key: results}


def _describe_configs_response(door: KafkaDoor, client: KafkaClient, parts: list) -> dict:
    results = []
    for resource, part in zip(client.request.resources, parts, strict=True):
        entry = {"resource_type": resource.resource_type,
                 "resource_name": resource.resource_name, "error_code": NONE,
                 "error_message": None, "configs": []}
        wanted = set(resource.configuration_keys) if resource.configuration_keys else None
        if isinstance(part, r.ErrorReply):
            entry.update(error_code=part.error.code, error_message=str(part.error))
        elif isinstance(part, dict):  # this broker's settings
            entry["configs"] = [_config(name, value, source, read_only=True)
                                for name, value, source in part["broker"]
                                if wanted is None or name in wanted]
        else:
            [topic] = part.topics
            if topic.error is not None:
                entry.update(error_code=topic.error.code, error_message=str(topic.error))
            else:
                defaults = door.config.topic_defaults()
                configs = {name: (str(value), CONFIG_SOURCE_DEFAULT)
                           for name, value in defaults.items()}
                configs.update({name: (str(value), CONFIG_SOURCE_TOPIC)
                                for name, value in topic.configs.items()})
                entry["configs"] = [_config(name, value, source, read_only=False)
                                    for name, (value, source) in sorted(configs.items())
                                    if wanted is None or name in wanted]
        results.append(entry)
    return {"throttle_time": 0, "results": results}


def _config(name: str, value: str, source: int, read_only: bool) -> dict:
    return {"name": name, "value": value, "read_only": read_only,
            "is_default": source == CONFIG_SOURCE_DEFAULT, "config_source": source,
            "is_sensitive": False, "synonyms": []}


def _alter_configs_response(_door: KafkaDoor, client: KafkaClient, parts: list) -> dict:
    responses = []
    for resource, part in zip(client.request.resources, parts, strict=True):
        error = part.error if isinstance(part, r.ErrorReply) else None
        responses.append({"error_code": _code(error), "error_message": _message(error),
                          "resource_type": resource.resource_type,
                          "resource_name": resource.resource_name})
    return {"throttle_time": 0, "responses": responses}


def _offset_commit_response(_door: KafkaDoor, client: KafkaClient, _reply: r.OffsetCommitReply
                            ) -> dict:
    return _offset_commit_error(client.request, NONE, "")


def _offset_fetch_response(_door: KafkaDoor, _client: KafkaClient, reply: r.OffsetFetchReply
                           ) -> dict:
    entries = [(topic, {"partition_index": partition, "committed_offset": offset,
                        "committed_leader_epoch": -1, "metadata": metadata, "error_code": NONE})
               for topic, partition, offset, metadata in reply.offsets]
    return {"throttle_time": 0, "topics": _by_topic(entries, "partitions"), "error_code": NONE}


def _offset_for_leader_epoch_response(_door: KafkaDoor, _client: KafkaClient,
                                      reply: r.OffsetForLeaderEpochReply) -> dict:
    entries = [(found.topic, {"error_code": _code(found.error), "partition": found.partition,
                              "leader_epoch": found.leader_epoch,
                              "end_offset": found.end_offset})
               for found in reply.partitions]
    return {"throttle_time": 0, "topics": _by_topic(entries, "partitions", name="topic")}


def _list_groups_response(_door: KafkaDoor, _client: KafkaClient, reply: r.ListGroupsReply
                          ) -> dict:
    return {"throttle_time": 0, "error_code": NONE, "groups": [
        {"group_id": group["group_id"], "protocol_type": group.get("protocol_type", "consumer")}
        for group in reply.groups]}


def _join_group_response(_door: KafkaDoor, _client: KafkaClient, reply: r.JoinGroupReply
                         ) -> dict:
    return {"throttle_time": 0, "error_code": NONE, "generation_id": reply.generation_id,
            "protocol_type": reply.protocol_type, "protocol_name": reply.protocol_name,
            "leader": reply.leader, "member_id": reply.member_id,
            "members": [{"member_id": m, "group_instance_id": instance, "metadata": metadata}
                        for m, instance, metadata in reply.members]}


def _sync_group_response(_door: KafkaDoor, _client: KafkaClient, reply: r.SyncGroupReply
                         ) -> dict:
    return {"throttle_time": 0, "error_code": NONE, "protocol_type": reply.protocol_type,
            "protocol_name": reply.protocol_name, "assignment": reply.assignment}


def _leave_group_response(_door: KafkaDoor, client: KafkaClient, reply: r.ClassicLeaveReply
                          ) -> dict:
    members = [{"member_id": m, "group_instance_id": instance, "error_code": _code(error)}
               for m, instance, error in reply.members]
    # v0-2 name one member: its outcome is the response's error
    code = members[0]["error_code"] if client.version < 3 and members else NONE
    return {"throttle_time": 0, "error_code": code, "members": members}


def _describe_groups_response(_door: KafkaDoor, _client: KafkaClient,
                              reply: r.DescribeGroupsReply) -> dict:
    groups = []
    for group in reply.groups:
        members = [{"member_id": m["member_id"], "group_instance_id": m.get("group_instance_id"),
                    "client_id": m.get("client_id", ""), "client_host": m.get("client_host", ""),
                    "member_metadata": m.get("metadata", b""),
                    "member_assignment": m["assignment"]
                    if isinstance(m.get("assignment"), bytes) else b""}
                   for m in group.get("members", [])]
        groups.append({"error_code": NONE, "group_id": group["group_id"],
                       "group_state": group.get("state") or "Dead",
                       "protocol_type": group.get("protocol_type") or "",
                       "protocol_data": group.get("protocol") or group.get("assignor") or "",
                       "members": members})
    return {"throttle_time": 0, "groups": groups}


def _delete_groups_response(_door: KafkaDoor, _client: KafkaClient, reply: r.DeleteGroupsReply
                            ) -> dict:
    return {"throttle_time": 0, "results": [{"group_id": g, "error_code": _code(error)}
                                            for g, error in reply.groups]}


def _delete_records_response(_door: KafkaDoor, _client: KafkaClient,
                             reply: r.DeleteRecordsReply) -> dict:
    entries = [(d.topic, {"partition_index": d.partition, "low_watermark": d.low_watermark,
                          "error_code": _code(d.error)}) for d in reply.partitions]
    return {"throttle_time": 0, "topics": _by_topic(entries, "partitions")}


def _create_partitions_response(_door: KafkaDoor, _client: KafkaClient,
                                reply: r.CreatePartitionsReply) -> dict:
    return {"throttle_time": 0, "results": [
        {"name": t.name, "error_code": _code(t.error), "error_message": _message(t.error)}
        for t in reply.topics]}


_RESPONSES: dict[int, Callable[[KafkaDoor, KafkaClient, Any], dict]] = {
    k.METADATA: _metadata_response,
    k.PRODUCE: _produce_response,
    k.LIST_OFFSETS: _list_offsets_response,
    k.FIND_COORDINATOR: _find_coordinator_response,
    k.INIT_PRODUCER_ID: _init_producer_id_response,
    k.CREATE_TOPICS: _topic_results_response,
    k.DELETE_TOPICS: _topic_results_response,
    k.DESCRIBE_CONFIGS: _describe_configs_response,
    k.ALTER_CONFIGS: _alter_configs_response,
    k.INCREMENTAL_ALTER_CONFIGS: _alter_configs_response,  # the same response, v0
    k.OFFSET_COMMIT: _offset_commit_response,
    k.OFFSET_FETCH: _offset_fetch_response,
    k.OFFSET_FOR_LEADER_EPOCH: _offset_for_leader_epoch_response,
    k.LIST_GROUPS: _list_groups_response,
    k.JOIN_GROUP: _join_group_response,
    k.SYNC_GROUP: _sync_group_response,
    k.HEARTBEAT: lambda _door, _client, _reply: {"throttle_time": 0, "error_code": NONE},
    k.LEAVE_GROUP: _leave_group_response,
    k.DESCRIBE_GROUPS: _describe_groups_response,
    k.DELETE_GROUPS: _delete_groups_response,
    k.DELETE_RECORDS: _delete_records_response,
    k.CREATE_PARTITIONS: _create_partitions_response,
}


# --- per API: the whole request failed ----------------------------------------------------

def _produce_error(request: Any, code: int, message: str) -> dict:
    entries = [(t.name, {"index": p.index, "error_code": code, "base_offset": -1,
                         "log_append_time": None, "log_start_offset": -1, "record_errors": [],
                         "error_message": message})
               for t in request.topic_data for p in t.partition_data]
    return {"responses": _by_topic(entries, "partition_responses"), "throttle_time": 0}


def _metadata_error(request: Any, code: int, _message_text: str) -> dict:
    return {"throttle_time": 0, "brokers": [], "cluster_id": CLUSTER_ID, "controller_id": -1,
            "topics": [{"error_code": code, "name": t.name, "partitions": []}
                       for t in (request.topics or ())]}


def _list_offsets_error(request: Any, code: int, _message_text: str) -> dict:
    entries = [(t.name, {"partition_index": p.partition_index, "error_code": code})
               for t in request.topics for p in t.partitions]
    return {"throttle_time": 0, "topics": _by_topic(entries, "partitions")}


def _plain_error(request: Any, code: int, message: str) -> dict:
    return {"throttle_time": 0, "error_code": code, "error_message": message,
            "node_id": -1, "host": "", "port": -1, "producer_id": -1, "producer_epoch": -1}


def _create_topics_error(request: Any, code: int, message: str) -> dict:
    return {"throttle_time": 0, "topics": [{"name": t.name, "error_code": code,
                                            "error_message": message} for t in request.topics]}


def _delete_topics_error(request: Any, code: int, _message_text: str) -> dict:
    return {"throttle_time": 0, "responses": [{"name": name, "error_code": code}
                                              for name in request.topic_names]}


def _resources_error(key: str) -> Callable[[Any, int, str], dict]:
    def values(request: Any, code: int, message: str) -> dict:
        return {"throttle_time": 0, key: [
            {"error_code": code, "error_message": message, "resource_type": res.resource_type,
             "resource_name": res.resource_name, "configs": []} for res in request.resources]}
    return values


def _offset_commit_error(request: Any, code: int, _message_text: str) -> dict:
    entries = [(t.name, {"partition_index": p.partition_index, "error_code": code})
               for t in request.topics for p in t.partitions]
    return {"throttle_time": 0, "topics": _by_topic(entries, "partitions")}


def _offset_fetch_error(request: Any, code: int, _message_text: str) -> dict:
    """v2+ say it once for the group; v1 only per partition."""
    entries = [(t.name, {"partition_index": index, "committed_offset": -1, "metadata": "",
                         "error_code": code})
               for t in (request.topics or ()) for index in t.partition_indexes]
    return {"throttle_time": 0, "topics": _by_topic(entries, "partitions"), "error_code": code}


def _offset_for_leader_epoch_error(request: Any, code: int, _message_text: str) -> dict:
    entries = [(t.topic, {"error_code": code, "partition": p.partition})
               for t in request.topics for p in t.partitions]
    return {"throttle_time": 0, "topics": _by_topic(entries, "partitions", name="topic")}


def _group_error(request: Any, code: int, _message_text: str) -> dict:
    """JoinGroup, SyncGroup, Heartbeat, LeaveGroup: one error for the request."""
    return {"throttle_time": 0, "error_code": code, "generation_id": -1, "protocol_name": "",
            "leader": "", "member_id": getattr(request, "member_id", "") or "", "members": [],
            "assignment": b""}


def _join_group_error(error: RinglogError) -> Callable[[Any, int, str], dict]:
    def values(request: Any, code: int, message: str) -> dict:
        found = _group_error(request, code, message)
        found["member_id"] = getattr(error, "member_id", found["member_id"])  # MEMBER_ID_REQUIRED
        return found
    return values


_ERRORS: dict[int, Callable[[Any, int, str], dict]] = {
    k.METADATA: _metadata_error,
    k.PRODUCE: _produce_error,
    k.LIST_OFFSETS: _list_offsets_error,
    k.FIND_COORDINATOR: _plain_error,
    k.INIT_PRODUCER_ID: _plain_error,
    k.CREATE_TOPICS: _create_topics_error,
    k.DELETE_TOPICS: _delete_topics_error,
    k.DESCRIBE_CONFIGS: _resources_error("results"),
    k.ALTER_CONFIGS: _resources_error("responses"),
    k.INCREMENTAL_ALTER_CONFIGS: _resources_error("responses"),
    k.OFFSET_COMMIT: _offset_commit_error,
    k.OFFSET_FETCH: _offset_fetch_error,
    k.OFFSET_FOR_LEADER_EPOCH: _offset_for_leader_epoch_error,
    k.LIST_GROUPS: lambda _request, code, _message: {"throttle_time": 0, "error_code": code,
                                                     "groups": []},
    k.SYNC_GROUP: _group_error,
    k.HEARTBEAT: _group_error,
    k.LEAVE_GROUP: _group_error,
    k.DESCRIBE_GROUPS: lambda request, code, _message: {"throttle_time": 0, "groups": [
        {"error_code": code, "group_id": g, "group_state": "", "protocol_type": "",
         "protocol_data": "", "members": []} for g in request.groups]},
    k.DELETE_GROUPS: lambda request, code, _message: {"throttle_time": 0, "results": [
        {"group_id": g, "error_code": code} for g in request.groups_names]},
    k.DELETE_RECORDS: lambda request, code, _message: {"throttle_time": 0, "topics": _by_topic(
        [(t.name, {"partition_index": p.partition_index, "low_watermark": -1,
                   "error_code": code}) for t in request.topics for p in t.partitions],
        "partitions")},
    k.CREATE_PARTITIONS: lambda request, code, message: {"throttle_time": 0, "results": [
        {"name": t.name, "error_code": code, "error_message": message}
        for t in request.topics]},
}

_SERVED = set(k.APIS) - {k.API_VERSIONS}
assert set(_REQUESTS) == _SERVED and _SERVED - {k.FETCH} == set(_RESPONSES) and \
    _SERVED - {k.FETCH, k.JOIN_GROUP} == set(_ERRORS), "an advertised API without its codec"
assert all(api.min_served is None for api in k.APIS.values() if api.key != k.PRODUCE), \
    "versions advertised but refused: only Produce's have a refusal (legacy_produce.py)"

__all__ = ["KAFKA_SCHEME", "Decoded", "KafkaClient", "KafkaDoor", "MalformedRequest"]
