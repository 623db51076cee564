"""Kafka's error names and codes as exceptions, for the protocol and the client.

Storage errors live in shm.errors (the engine raises them); this module adds
the rest and the lookup from a name on the wire back to a class.
"""

from __future__ import annotations

from collections.abc import Iterator

from shm.errors import (
    CorruptRecordError,
    KafkaStorageError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    RinglogError,
)

__all__ = [
    "CoordinatorLoadInProgressError",
    "CoordinatorNotAvailableError",
    "CorruptRecordError",
    "DuplicateSequenceNumberError",
    "GroupIdNotFoundError",
    "IllegalGenerationError",
    "InconsistentGroupProtocolError",
    "InvalidConfigError",
    "InvalidGroupIdError",
    "InvalidPartitionsError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidReplicationFactorError",
    "InvalidRequestError",
    "InvalidRequiredAcksError",
    "InvalidSessionTimeoutError",
    "InvalidTopicError",
    "KafkaStorageError",
    "LeaderNotAvailableError",
    "NetworkError",
    "NonEmptyGroupError",
    "NotEnoughReplicasError",
    "NotLeaderOrFollowerError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceNumberError",
    "RebalanceInProgressError",
    "RecordTooLargeError",
    "RequestTimedOutError",
    "RinglogError",
    "ThrottlingQuotaExceededError",
    "TopicAlreadyExistsError",
    "TopicDeletionDisabledError",
    "UnknownMemberIdError",
    "UnknownProducerIdError",
    "UnknownServerError",
    "UnknownTopicOrPartitionError",
    "UnsupportedAssignorError",
    "UnsupportedVersionError",
    "error_for",
]


class UnknownServerError(RinglogError):
    """An unexpected server failure."""

    name, code, retriable = "UNKNOWN_SERVER_ERROR", -1, False


class UnknownTopicOrPartitionError(RinglogError):
    """The topic or partition does not exist."""

    name, code, retriable = "UNKNOWN_TOPIC_OR_PARTITION", 3, True


class LeaderNotAvailableError(RinglogError):
    """The partition's owner is restarting; retry."""

    name, code, retriable = "LEADER_NOT_AVAILABLE", 5, True


class NotLeaderOrFollowerError(RinglogError):
    """This broker does not lead the partition."""

    name, code, retriable = "NOT_LEADER_OR_FOLLOWER", 6, True


class RequestTimedOutError(RinglogError):
    """The request timed out."""

    name, code, retriable = "REQUEST_TIMED_OUT", 7, True


class NetworkError(RinglogError):
    """The connection failed."""

    name, code, retriable = "NETWORK_EXCEPTION", 13, True


class CoordinatorLoadInProgressError(RinglogError):
    """The coordinator is still reading committed offsets; retry."""

    name, code, retriable = "COORDINATOR_LOAD_IN_PROGRESS", 14, True


class CoordinatorNotAvailableError(RinglogError):
    """The group coordinator is not available."""

    name, code, retriable = "COORDINATOR_NOT_AVAILABLE", 15, True


class InvalidTopicError(RinglogError):
    """The topic name is not legal."""

    name, code, retriable = "INVALID_TOPIC_EXCEPTION", 17, False


class NotEnoughReplicasError(RinglogError):
    """Fewer in-sync replicas than min.insync.replicas."""

    name, code, retriable = "NOT_ENOUGH_REPLICAS", 19, True


class InvalidRequiredAcksError(RinglogError):
    """acks must be 0, 1 or -1."""

    name, code, retriable = "INVALID_REQUIRED_ACKS", 21, False


class UnsupportedVersionError(RinglogError):
    """Unknown API or version."""

    name, code, retriable = "UNSUPPORTED_VERSION", 35, False


class TopicAlreadyExistsError(RinglogError):
    """The topic exists."""

    name, code, retriable = "TOPIC_ALREADY_EXISTS", 36, False


class InvalidPartitionsError(RinglogError):
    """Bad partition count."""

    name, code, retriable = "INVALID_PARTITIONS", 37, False


class InvalidReplicationFactorError(RinglogError):
    """Bad replication factor."""

    name, code, retriable = "INVALID_REPLICATION_FACTOR", 38, False


class InvalidConfigError(RinglogError):
    """A configuration is not valid."""

    name, code, retriable = "INVALID_CONFIG", 40, False


class InvalidRequestError(RinglogError):
    """The request is malformed."""

    name, code, retriable = "INVALID_REQUEST", 42, False


class OutOfOrderSequenceNumberError(RinglogError):
    """A batch's sequence leaves a gap."""

    name, code, retriable = "OUT_OF_ORDER_SEQUENCE_NUMBER", 45, False


class DuplicateSequenceNumberError(RinglogError):
    """A batch was already written."""

    name, code, retriable = "DUPLICATE_SEQUENCE_NUMBER", 46, False


class InvalidProducerEpochError(RinglogError):
    """A newer producer with the same id exists."""

    name, code, retriable = "INVALID_PRODUCER_EPOCH", 47, False


class UnknownProducerIdError(RinglogError):
    """The producer id is unknown."""

    name, code, retriable = "UNKNOWN_PRODUCER_ID", 59, False


class TopicDeletionDisabledError(RinglogError):
    """delete.topic.enable is false."""

    name, code, retriable = "TOPIC_DELETION_DISABLED", 73, False


class InvalidRecordError(RinglogError):
    """A record set breaks a rule of the broker (e.g. several batches from an
    idempotent producer in one partition's set)."""

    name, code, retriable = "INVALID_RECORD", 87, False


class ThrottlingQuotaExceededError(RinglogError):
    """A queue is full; retry later."""

    name, code, retriable = "THROTTLING_QUOTA_EXCEEDED", 89, True


# Consumer-group errors (the coordinator raises them; clients catch them).


class IllegalGenerationError(RinglogError):
    """A commit carries a generation that is not the group's current one."""

    code = 22
    name = "ILLEGAL_GENERATION"


class InconsistentGroupProtocolError(RinglogError):
    """A member asks for an assignor different from the one the group uses."""

    code = 23
    name = "INCONSISTENT_GROUP_PROTOCOL"


class InvalidGroupIdError(RinglogError):
    """The group id is empty or not a string."""

    code = 24
    name = "INVALID_GROUP_ID"


class UnknownMemberIdError(RinglogError):
    """The member is not (or no longer) in the group: it left or was evicted."""

    code = 25
    name = "UNKNOWN_MEMBER_ID"


class InvalidSessionTimeoutError(RinglogError):
    """The session timeout is outside the coordinator's allowed range."""

    code = 26
    name = "INVALID_SESSION_TIMEOUT"


class RebalanceInProgressError(RinglogError):
    """Kafka's REBALANCE_IN_PROGRESS; defined for the server, never raised here.

    The cooperative protocol never blocks a member during a rebalance: a heartbeat
    reply simply carries the new generation, revocations and assignment.
    """

    code = 27
    name = "REBALANCE_IN_PROGRESS"


class NonEmptyGroupError(RinglogError):
    """A group with members cannot be deleted."""

    code = 68
    name = "NON_EMPTY_GROUP"


class GroupIdNotFoundError(RinglogError):
    """The coordinator does not know the group."""

    code = 69
    name = "GROUP_ID_NOT_FOUND"


class UnsupportedAssignorError(RinglogError):
    """The requested assignor is not one of ``appliance.assignors.ASSIGNORS``."""

    code = 112
    name = "UNSUPPORTED_ASSIGNOR"


def _all_error_classes(cls: type[RinglogError] = RinglogError) -> Iterator[type[RinglogError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_error_classes(sub)


def error_for(name: str, message: str = "") -> RinglogError:
    """The exception for an error name read off the wire.

    Every RinglogError subclass imported anywhere counts, so the group
    coordinator's errors are found without a registry.
    """
    for cls in _all_error_classes():
        if cls.name == name:
            return cls(message or name)
    return UnknownServerError(f"{name}: {message}" if message else name)
