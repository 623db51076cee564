"""Every Kafka error Ringlog uses, as exceptions: the one registry.

Each class carries Kafka's error name, numeric code and whether a client
should retry, and registers itself when the class is created, so that
`error_for` (a name read off any wire back to its exception) and
`error_class_for_code` are dictionary lookups that do not depend on which
modules happen to have been imported. The storage engine raises these, the
broker core answers with them, the worker protocol carries them, and the
client raises them to its caller.

This module is a leaf: it imports nothing of the project, so the client,
the workers and the storage engine all share it without loading each other.
"""

from __future__ import annotations

import errno
from typing import ClassVar

_BY_NAME: dict[str, type[RinglogError]] = {}
_BY_CODE: dict[int, type[RinglogError]] = {}


class RinglogError(Exception):
    """Base of every error with a Kafka error name and code."""

    name: ClassVar[str] = "UNKNOWN_SERVER_ERROR"
    code: ClassVar[int] = -1
    retriable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Register the class under its name and code; a name or code used twice
        is a programming error, caught at import."""
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an intermediate class, not a Kafka error of its own
        for table, key in ((_BY_NAME, cls.name), (_BY_CODE, cls.code)):
            if key in table:
                raise TypeError(f"{cls.__name__}: Kafka error {key!r} is already "
                                f"{table[key].__name__}")
        _BY_NAME[cls.name] = _BY_CODE[cls.code] = cls


def error_for(name: str, message: str = "") -> RinglogError:
    """The exception for an error name read off the wire (an unknown name
    becomes UNKNOWN_SERVER_ERROR carrying it)."""
    cls = _BY_NAME.get(name)
    if cls is None:
        return UnknownServerError(f"{name}: {message}" if message else name)
    return cls(message or name)


def error_class_for_code(code: int) -> type[RinglogError]:
    """The class of a Kafka numeric error code (UnknownServerError if unknown)."""
    return _BY_CODE.get(code, UnknownServerError)


def registered_errors() -> tuple[type[RinglogError], ...]:
    """Every registered error class, by code."""
    return tuple(_BY_CODE[code] for code in sorted(_BY_CODE))


# One class per Kafka error, ordered by code. name, code, retriable as in
# Kafka's org.apache.kafka.common.protocol.Errors.

class UnknownServerError(RinglogError):
    """An unexpected server failure."""
    name, code, retriable = "UNKNOWN_SERVER_ERROR", -1, False


class OffsetOutOfRangeError(RinglogError):
    """The requested offset is below the log start or past the log end."""
    name, code, retriable = "OFFSET_OUT_OF_RANGE", 1, False


class CorruptRecordError(RinglogError):
    """A record batch failed validation: bad length, magic, count or CRC
    (retriable in Kafka: a resend may arrive intact)."""
    name, code, retriable = "CORRUPT_MESSAGE", 2, True


class UnknownTopicOrPartitionError(RinglogError):
    """The topic or partition does not exist."""
    name, code, retriable = "UNKNOWN_TOPIC_OR_PARTITION", 3, True


class LeaderNotAvailableError(RinglogError):
    """The partition's owner is restarting; retry."""
    name, code, retriable = "LEADER_NOT_AVAILABLE", 5, True


class NotLeaderOrFollowerError(RinglogError):
    """This broker (or this worker) does not own the partition."""
    name, code, retriable = "NOT_LEADER_OR_FOLLOWER", 6, True


class RequestTimedOutError(RinglogError):
    """The request timed out."""
    name, code, retriable = "REQUEST_TIMED_OUT", 7, True


class RecordTooLargeError(RinglogError):
    """A record batch is larger than the configured maximum."""
    name, code, retriable = "MESSAGE_TOO_LARGE", 10, False


class NetworkError(RinglogError):
    """The connection failed."""
    name, code, retriable = "NETWORK_EXCEPTION", 13, True


class CoordinatorLoadInProgressError(RinglogError):
    """The coordinator is still reading committed offsets; retry."""
    name, code, retriable = "COORDINATOR_LOAD_IN_PROGRESS", 14, True


class CoordinatorNotAvailableError(RinglogError):
    """The group coordinator is not available."""
    name, code, retriable = "COORDINATOR_NOT_AVAILABLE", 15, True


class NotCoordinatorError(RinglogError):
    """This broker is not the group's coordinator: find it again."""
    name, code, retriable = "NOT_COORDINATOR", 16, True


class InvalidTopicError(RinglogError):
    """The topic name is not legal."""
    name, code, retriable = "INVALID_TOPIC_EXCEPTION", 17, False


class NotEnoughReplicasError(RinglogError):
    """Fewer in-sync replicas than min.insync.replicas."""
    name, code, retriable = "NOT_ENOUGH_REPLICAS", 19, True


class NotEnoughReplicasAfterAppendError(RinglogError):
    """Written, but the in-sync replicas fell below min.insync.replicas before
    they all had it: the outcome is unknown to the producer."""
    name, code, retriable = "NOT_ENOUGH_REPLICAS_AFTER_APPEND", 20, True


class InvalidRequiredAcksError(RinglogError):
    """acks must be 0, 1 or -1."""
    name, code, retriable = "INVALID_REQUIRED_ACKS", 21, False


class IllegalGenerationError(RinglogError):
    """A commit carries a generation that is not the group's current one."""
    name, code, retriable = "ILLEGAL_GENERATION", 22, False


class InconsistentGroupProtocolError(RinglogError):
    """A member asks for an assignor different from the one the group uses."""
    name, code, retriable = "INCONSISTENT_GROUP_PROTOCOL", 23, False


class InvalidGroupIdError(RinglogError):
    """The group id is empty or not a string."""
    name, code, retriable = "INVALID_GROUP_ID", 24, False


class UnknownMemberIdError(RinglogError):
    """The member is not (or no longer) in the group: it left or was evicted."""
    name, code, retriable = "UNKNOWN_MEMBER_ID", 25, False


class InvalidSessionTimeoutError(RinglogError):
    """The session timeout is outside the coordinator's allowed range."""
    name, code, retriable = "INVALID_SESSION_TIMEOUT", 26, False


class RebalanceInProgressError(RinglogError):
    """Kafka's REBALANCE_IN_PROGRESS; defined for the wire, never raised here:
    the cooperative protocol never blocks a member during a rebalance (a
    heartbeat reply carries the new generation, revocations and assignment)."""
    name, code, retriable = "REBALANCE_IN_PROGRESS", 27, False


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
    """A batch's sequence leaves a gap (the client retries: an earlier batch
    is still on its way)."""
    name, code, retriable = "OUT_OF_ORDER_SEQUENCE_NUMBER", 45, False


class DuplicateSequenceNumberError(RinglogError):
    """A batch was already written, too long ago to know its offset."""
    name, code, retriable = "DUPLICATE_SEQUENCE_NUMBER", 46, False


class InvalidProducerEpochError(RinglogError):
    """A newer producer with the same id exists."""
    name, code, retriable = "INVALID_PRODUCER_EPOCH", 47, False


class KafkaStorageError(RinglogError):
    """The disk refused a write (full, read-only, I/O error); the log is unchanged."""
    name, code, retriable = "KAFKA_STORAGE_ERROR", 56, True

    @classmethod
    def from_os_error(cls, what: str, exc: OSError) -> KafkaStorageError:
        """One line naming the failure and the operator's fix for its cause."""
        fixes = {
            errno.ENOSPC: "free disk space or lower retention",
            errno.EDQUOT: "raise the disk quota or lower retention",
            errno.EMFILE: "raise the open-file limit (ulimit -n, systemd LimitNOFILE=)",
            errno.ENFILE: "raise the system open-file limit (fs.file-max)",
            errno.EROFS: "the file system is read-only: check the disk and remount it",
        }
        fix = fixes.get(exc.errno, "check the disk and the kernel log")
        return cls(f"{what}: {exc.strerror}; {fix}")


class UnknownProducerIdError(RinglogError):
    """The producer id is unknown."""
    name, code, retriable = "UNKNOWN_PRODUCER_ID", 59, False


class NonEmptyGroupError(RinglogError):
    """A group with members cannot be deleted."""
    name, code, retriable = "NON_EMPTY_GROUP", 68, False


class GroupIdNotFoundError(RinglogError):
    """The coordinator does not know the group."""
    name, code, retriable = "GROUP_ID_NOT_FOUND", 69, False


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


class UnsupportedAssignorError(RinglogError):
    """The requested assignor is not one of ``appliance.assignors.ASSIGNORS``."""
    name, code, retriable = "UNSUPPORTED_ASSIGNOR", 112, False


class FencedLeaderEpochError(RinglogError):
    """The request's leader epoch is older than the partition's: its sender
    has missed a leader change."""
    name, code, retriable = "FENCED_LEADER_EPOCH", 74, True


class UnknownLeaderEpochError(RinglogError):
    """The request's leader epoch is newer than the one this broker knows:
    it has not heard of the change yet."""
    name, code, retriable = "UNKNOWN_LEADER_EPOCH", 75, True


class MemberIdRequiredError(RinglogError):
    """JoinGroup v4+ without a member id: rejoin with the one this error carries
    (KIP-394), so that a client that never comes back leaves no member behind."""
    name, code, retriable = "MEMBER_ID_REQUIRED", 79, False


class FencedInstanceIdError(RinglogError):
    """A newer member joined with the same group.instance.id (static membership):
    this one is fenced."""
    name, code, retriable = "FENCED_INSTANCE_ID", 82, False
