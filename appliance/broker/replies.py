"""The broker core's replies: typed values, independent of any wire.

Per-partition (or per-topic) errors are exceptions of the shared registry
(shm.errors) in an `error` field, None on success; an error of the whole
request is an ErrorReply. An adapter turns these into its own frames.

A produce's, a list-offsets' and a delete-records' per-partition results
are the owners' own answers (workers.protocol's ProduceResult,
OffsetForTime and DeleteRecordsResult), passed
through: the core builds them itself only for parts it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shm.errors import RinglogError
from workers.protocol import DeleteRecordsResult, OffsetForTime, ProduceResult

__all__ = ["DeleteRecordsResult", "OffsetForTime", "ProduceResult"]  # with the classes below

Frame = Any


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The whole request failed."""

    error: RinglogError


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    id: int
    host: str
    port: int  # the native front end's
    kafka: tuple[str, int] | None = None  # its Kafka listener, as advertised; None: none


@dataclass(frozen=True, slots=True)
class PartitionMetadata:
    partition: int
    leader: int  # a broker id; -1 while the partition has no leader
    replicas: list[int]
    isr: list[int]
    endpoint: str | None = None  # the leader's worker door, given by the leader broker only
    leader_epoch: int = 0
    error: RinglogError | None = None  # LEADER_NOT_AVAILABLE without a leader


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    name: str
    partitions: list[PartitionMetadata] = field(default_factory=list)
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class MetadataReply:
    brokers: list[BrokerInfo]
    topics: list[TopicMetadata]
    controller_id: int = -1


@dataclass(frozen=True, slots=True)
class TopicResult:
    name: str
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class CreateTopicsReply:
    topics: list[TopicResult]


@dataclass(frozen=True, slots=True)
class DeleteTopicsReply:
    topics: list[TopicResult]


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """A partition's positions, from its control block."""

    log_start_offset: int
    log_end_offset: int
    high_watermark: int


@dataclass(frozen=True, slots=True)
class PartitionDescription:
    partition: int
    owner_worker: int  # -1: no replica on this broker
    offsets: PartitionOffsets | None  # None with an error
    size_bytes: int
    error: RinglogError | None = None
    leader: int = -1
    leader_epoch: int = 0
    replicas: list[int] = field(default_factory=list)
    isr: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TopicDescription:
    name: str
    partitions: list[PartitionDescription] = field(default_factory=list)
    replication_factor: int = 0
    configs: dict[str, str] = field(default_factory=dict)
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class DescribeTopicsReply:
    topics: list[TopicDescription]


@dataclass(frozen=True, slots=True)
class AlterConfigsReply:
    topic: str
    configs: dict[str, str]


@dataclass(frozen=True, slots=True)
class ProduceReply:
    partitions: list[ProduceResult]  # as the owners answered, in request order


@dataclass(frozen=True, slots=True)
class PartitionFetchResult:
    topic: str
    partition: int
    offsets: PartitionOffsets | None = None  # None with an error
    records: Frame | None = None  # whole batches from the shared map, or None
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class FetchReply:
    partitions: list[PartitionFetchResult]


@dataclass(frozen=True, slots=True)
class ListOffsetsReply:
    partitions: list[OffsetForTime]


@dataclass(frozen=True, slots=True)
class FindCoordinatorReply:
    broker_id: int
    host: str
    port: int
    kafka: tuple[str, int] | None = None  # the coordinator's Kafka listener, if it has one


@dataclass(frozen=True, slots=True)
class InitProducerIdReply:
    producer_id: int
    producer_epoch: int


@dataclass(frozen=True, slots=True)
class GroupViewReply:
    """What a member learns from a join or heartbeat (the coordinator's MemberView)."""

    member_id: str
    generation_id: int
    assignment: list[tuple[str, int]]
    revoke: list[tuple[str, int]]
    rebalancing: bool
    members: int


@dataclass(frozen=True, slots=True)
class LeaveGroupReply:
    pass


@dataclass(frozen=True, slots=True)
class OffsetCommitReply:
    committed: int


@dataclass(frozen=True, slots=True)
class OffsetFetchReply:
    offsets: list[tuple[str, int, int, str]]  # topic, partition, offset (-1: none), metadata


@dataclass(frozen=True, slots=True)
class DescribeGroupsReply:
    groups: list[dict[str, Any]]  # the coordinator's description, offsets and lag added


@dataclass(frozen=True, slots=True)
class ListGroupsReply:
    groups: list[dict[str, Any]]  # group_id, state


@dataclass(frozen=True, slots=True)
class StatusReply:
    workers: list[int]
    topics: int
    serving: bool
    processes: list[dict[str, Any]]
    partitions: list[dict[str, Any]] | None = None  # with details
    groups: list[dict[str, Any]] | None = None  # with details; None while offsets load
    cluster: dict[str, Any] | None = None  # this broker's role; None on a single node


@dataclass(frozen=True, slots=True)
class EpochEndOffset:
    topic: str
    partition: int
    leader_epoch: int = -1  # the largest epoch at or before the one asked for; -1: none
    end_offset: int = -1
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class OffsetForLeaderEpochReply:
    partitions: list[EpochEndOffset]


@dataclass(frozen=True, slots=True)
class JoinGroupReply:
    """The classic protocol's join: the leader alone gets every member's
    (member id, group.instance.id, metadata for the chosen protocol)."""

    generation_id: int
    protocol_type: str
    protocol_name: str
    leader: str
    member_id: str
    members: list[tuple[str, str | None, bytes]]


@dataclass(frozen=True, slots=True)
class SyncGroupReply:
    protocol_type: str
    protocol_name: str
    assignment: bytes  # opaque: what the leader computed for this member


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """A classic member's heartbeat: still in the group at this generation."""


@dataclass(frozen=True, slots=True)
class ClassicLeaveReply:
    members: list[tuple[str, str | None, RinglogError | None]]  # member, instance, outcome


@dataclass(frozen=True, slots=True)
class DeleteGroupsReply:
    groups: list[tuple[str, RinglogError | None]]


Reply = (ErrorReply | MetadataReply | CreateTopicsReply | DeleteTopicsReply | DescribeTopicsReply
         | AlterConfigsReply | ProduceReply | FetchReply | ListOffsetsReply | InitProducerIdReply
         | GroupViewReply | LeaveGroupReply | OffsetCommitReply | OffsetFetchReply
         | DescribeGroupsReply | ListGroupsReply | StatusReply | FindCoordinatorReply
         | OffsetForLeaderEpochReply | JoinGroupReply | SyncGroupReply | ClassicLeaveReply
         | DeleteGroupsReply | HeartbeatReply)


# --- partition admin: Kafka's DeleteRecords (API 21) and CreatePartitions (API 37) ----

@dataclass(frozen=True, slots=True)
class DeleteRecordsReply:
    """Per partition its new low watermark (the log start offset), as the
    owners answered, in request order."""

    partitions: list[DeleteRecordsResult]


@dataclass(frozen=True, slots=True)
class CreatePartitionsReply:
    topics: list[TopicResult]


Reply = Reply | DeleteRecordsReply | CreatePartitionsReply
