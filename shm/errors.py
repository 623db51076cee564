"""Errors the storage engine raises, named and numbered as Kafka names them.

The protocol layer maps each to its Kafka error code, so the code and name
live on the class, defined once here.
"""

import errno


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

    @classmethod
    def from_os_error(cls, what: str, exc: OSError) -> "KafkaStorageError":
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
