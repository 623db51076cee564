"""The broker core's requests: typed values, independent of any wire.

An adapter (the native ZeroMQ codec, later Kafka's protocol) turns what a
client sent into one of these and hands it to `Broker.handle`. Field
defaults are the broker's, so every door gets the same ones. `API` names
the request in metrics and logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

# DeleteRecords' offset -1, defined with the worker message that carries it
from workers.protocol import DELETE_TO_HIGH_WATERMARK as DELETE_TO_HIGH_WATERMARK

Frame = Any  # bytes, memoryview or zmq.Frame: anything with the buffer protocol
TopicPartition = tuple[str, int]

DEFAULT_SESSION_TIMEOUT_MS = 10_000
DEFAULT_ASSIGNOR = "cooperative-sticky"
DEFAULT_MAX_WAIT_MS = 500
DEFAULT_FETCH_MAX_BYTES = 50 * 1024 * 1024  # Kafka's fetch.max.bytes
DEFAULT_PARTITION_MAX_BYTES = 1024 * 1024  # Kafka's max.partition.fetch.bytes
ACKS_NONE, ACKS_LEADER, ACKS_ALL = 0, 1, -1
EARLIEST, LATEST = -2, -1  # list_offsets timestamps, as in Kafka


@dataclass(frozen=True, slots=True)
class MetadataRequest:
    API: ClassVar[str] = "metadata"
    topics: list[str] | None = None  # None: every topic
    allow_auto_create: bool = True


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int = 1
    replication_factor: int = 1
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateTopicsRequest:
    API: ClassVar[str] = "create_topics"
    topics: list[TopicSpec]


@dataclass(frozen=True, slots=True)
class DeleteTopicsRequest:
    API: ClassVar[str] = "delete_topics"
    topics: list[str]


@dataclass(frozen=True, slots=True)
class DescribeTopicsRequest:
    API: ClassVar[str] = "describe_topics"
    topics: list[str] | None = None


@dataclass(frozen=True, slots=True)
class AlterConfigsRequest:
    API: ClassVar[str] = "alter_configs"
    topic: str
    configs: dict[str, str]
    replace: bool = False  # Kafka's AlterConfigs: these are all the topic's configs now
    deleted: tuple[str, ...] = ()  # back to their defaults (IncrementalAlterConfigs' DELETE)


@dataclass(frozen=True, slots=True)
class ProduceRequest:
    """One record set per partition, passed through to its owner untouched."""

    API: ClassVar[str] = "produce"
    acks: int
    partitions: list[TopicPartition]
    record_sets: list[Frame]
    timeout_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class FetchPartition:
    topic: str
    partition: int
    offset: int
    max_bytes: int = DEFAULT_PARTITION_MAX_BYTES


@dataclass(frozen=True, slots=True)
class FetchRequest:
    API: ClassVar[str] = "fetch"
    partitions: list[FetchPartition]
    max_wait_ms: int = DEFAULT_MAX_WAIT_MS
    min_bytes: int = 1
    max_bytes: int = DEFAULT_FETCH_MAX_BYTES


@dataclass(frozen=True, slots=True)
class ListOffsetsRequest:
    API: ClassVar[str] = "list_offsets"
    partitions: list[tuple[str, int, int]]  # topic, partition, timestamp (or EARLIEST/LATEST)


@dataclass(frozen=True, slots=True)
class InitProducerIdRequest:
    API: ClassVar[str] = "init_producer_id"


@dataclass(frozen=True, slots=True)
class FindCoordinatorRequest:
    """Which broker coordinates a group: the leader of its __consumer_offsets partition."""

    API: ClassVar[str] = "find_coordinator"
    group_id: str


@dataclass(frozen=True, slots=True)
class JoinGroupRequest:
    API: ClassVar[str] = "join_group"
    group_id: str
    topics: list[str]
    member_id: str | None = None
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    assignor: str = DEFAULT_ASSIGNOR
    client_id: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    API: ClassVar[str] = "heartbeat"
    group_id: str
    member_id: str
    generation_id: int
    owned: list[TopicPartition]


@dataclass(frozen=True, slots=True)
class LeaveGroupRequest:
    API: ClassVar[str] = "leave_group"
    group_id: str
    member_id: str


@dataclass(frozen=True, slots=True)
class OffsetCommitRequest:
    API: ClassVar[str] = "offset_commit"
    group_id: str
    offsets: list[tuple[str, int, int, str]]  # topic, partition, offset, metadata
    member_id: str | None = None
    generation_id: int = -1


@dataclass(frozen=True, slots=True)
class OffsetFetchRequest:
    API: ClassVar[str] = "offset_fetch"
    group_id: str
    partitions: list[TopicPartition] | None = None  # None: every committed one


@dataclass(frozen=True, slots=True)
class DescribeGroupsRequest:
    API: ClassVar[str] = "describe_groups"
    groups: list[str]


@dataclass(frozen=True, slots=True)
class ListGroupsRequest:
    API: ClassVar[str] = "list_groups"


@dataclass(frozen=True, slots=True)
class StatusRequest:
    API: ClassVar[str] = "status"
    details: bool = False


@dataclass(frozen=True, slots=True)
class OffsetForLeaderEpochRequest:
    """Where each (topic, partition)'s leader epoch ended, as Kafka's clients ask."""

    API: ClassVar[str] = "offset_for_leader_epoch"
    partitions: list[tuple[str, int, int]]  # topic, partition, leader epoch


@dataclass(frozen=True, slots=True)
class ClassicJoinGroupRequest:
    """Kafka's classic JoinGroup: opaque metadata per protocol, assignment on the client."""

    API: ClassVar[str] = "classic_join_group"
    group_id: str
    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    rebalance_timeout_ms: int = -1  # -1: the session timeout (JoinGroup v0)
    client_id: str = ""
    client_host: str = ""
    require_known_member_id: bool = True  # JoinGroup v4+ (KIP-394)


@dataclass(frozen=True, slots=True)
class SyncGroupRequest:
    API: ClassVar[str] = "sync_group"
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None
    assignments: dict[str, bytes]  # from the leader; empty from the others


@dataclass(frozen=True, slots=True)
class ClassicHeartbeatRequest:
    API: ClassVar[str] = "classic_heartbeat"
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClassicLeaveGroupRequest:
    API: ClassVar[str] = "classic_leave_group"
    group_id: str
    members: list[tuple[str, str | None]]  # member id, group.instance.id


@dataclass(frozen=True, slots=True)
class DeleteGroupsRequest:
    API: ClassVar[str] = "delete_groups"
    groups: list[str]


Request = (MetadataRequest | CreateTopicsRequest | DeleteTopicsRequest | DescribeTopicsRequest
           | AlterConfigsRequest | ProduceRequest | FetchRequest | ListOffsetsRequest
           | InitProducerIdRequest | JoinGroupRequest | HeartbeatRequest | LeaveGroupRequest
           | OffsetCommitRequest | OffsetFetchRequest | DescribeGroupsRequest
           | ListGroupsRequest | StatusRequest | FindCoordinatorRequest
           | OffsetForLeaderEpochRequest | ClassicJoinGroupRequest | SyncGroupRequest
           | ClassicHeartbeatRequest | ClassicLeaveGroupRequest | DeleteGroupsRequest)


# --- partition admin: Kafka's DeleteRecords (API 21) and CreatePartitions (API 37) ----



@dataclass(frozen=True, slots=True)
class DeleteRecordsRequest:
    """Advance each partition's log start offset to `offset`: the records
    below it are gone for readers. Sent to the partition's leader."""

    API: ClassVar[str] = "delete_records"
    partitions: list[tuple[str, int, int]]  # topic, partition, offset (-1: the high watermark)
    timeout_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class CreatePartitionsRequest:
    """Grow topics to a new total partition count (never shrink them)."""

    API: ClassVar[str] = "create_partitions"
    topics: list[tuple[str, int]]  # topic, new total partition count
    validate_only: bool = False


Request = Request | DeleteRecordsRequest | CreatePartitionsRequest
