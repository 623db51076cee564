"""Errors the storage engine raises, named and numbered as Kafka names them.

The protocol layer maps each to its Kafka error code, so the code and name
live on the class, defined once here.
"""


class RinglogError(Exception):
    """Base of every error with a Kafka error name and code."""

    code: int = -1
    name: str = "UNKNOWN_SERVER_ERROR"
    retriable: bool = False


class OffsetOutOfRangeError(RinglogError):
    """The requested offset is below the log start or past the log end."""

    code = 1
    name = "OFFSET_OUT_OF_RANGE"


class CorruptRecordError(RinglogError):
    """A record batch failed validation: bad length, magic, count or CRC."""

    code = 2
    name = "CORRUPT_MESSAGE"
    retriable = True  # Kafka marks it retriable: a resend may arrive intact


class RecordTooLargeError(RinglogError):
    """A record batch is larger than the configured maximum."""

    code = 10
    name = "MESSAGE_TOO_LARGE"


class KafkaStorageError(RinglogError):
    """The disk refused a write (full, read-only, I/O error); the log is unchanged."""

    code = 56
    name = "KAFKA_STORAGE_ERROR"
    retriable = True
