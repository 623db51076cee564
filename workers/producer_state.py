"""Idempotent produce: per partition, the last batches of each producer.

Every batch from an idempotent producer carries its producer id, epoch and
base sequence (fields of the v2 header). For each producer the partition's
owner keeps the last five batches it appended, as Kafka does:

- a batch whose sequences equal a remembered one is a retry of it: answer
  with its original base offset and append nothing;
- a batch that starts past the next expected sequence leaves a gap:
  OUT_OF_ORDER_SEQUENCE_NUMBER (the producer resends what is missing first);
- a batch from an older epoch than the producer's newest is fenced:
  INVALID_PRODUCER_EPOCH.

The table is rebuilt from batch headers (never records) of the newest
segments when a worker opens the partition, so retries after a restart are
still recognised.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from shm import PartitionLog
from shm.errors import (
    DuplicateSequenceNumberError,
    InvalidProducerEpochError,
    OutOfOrderSequenceNumberError,
)
from shm.record_batch import BatchHeader

REMEMBERED_BATCHES = 5  # Kafka's max.in.flight.requests.per.connection bound
SEGMENTS_TO_SCAN = 2
NO_PRODUCER_ID = -1


@dataclass
class _Producer:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=REMEMBERED_BATCHES))

    @property
    def next_sequence(self) -> int:
        return self.batches[-1][1] + 1 if self.batches else 0


class ProducerStateTable:
    def __init__(self) -> None:
        self._producers: dict[int, _Producer] = {}

    @classmethod
    def from_log(cls, log: PartitionLog) -> ProducerStateTable:
        """What the newest segments say about their producers."""
        table = cls()
        for segment in log.segments[-SEGMENTS_TO_SCAN:]:
            for _, header in segment.headers_from(segment.base_offset):
                if header.producer_id != NO_PRODUCER_ID:
                    table.record(header, header.base_offset)
        return table

    def check(self, header: BatchHeader) -> int | None:
        """None to append the batch; its original base offset if it is a retry.

        Raises OutOfOrderSequenceNumberError for a gap, InvalidProducerEpochError
        for a fenced epoch, DuplicateSequenceNumberError for a batch too old to remember.
        """
        if header.producer_id == NO_PRODUCER_ID:
            return None
        producer = self._producers.get(header.producer_id)
        if producer is None:
            return None  # a producer we know nothing of (new, or older than our scan)
        if header.producer_epoch < producer.epoch:
            raise InvalidProducerEpochError(
                f"producer {header.producer_id} epoch {header.producer_epoch} is older than "
                f"{producer.epoch}: a newer producer with this id exists")
        if header.producer_epoch > producer.epoch:
            return None  # a new session of this producer starts its sequences afresh
        last_sequence = header.base_sequence + header.last_offset_delta
        for first, last, base_offset in producer.batches:
            if (first, last) == (header.base_sequence, last_sequence):
                return base_offset
        if header.base_sequence > producer.next_sequence:
            raise OutOfOrderSequenceNumberError(
                f"producer {header.producer_id} sent sequence {header.base_sequence}, "
                f"expected {producer.next_sequence}")
        if header.base_sequence < producer.next_sequence:
            raise DuplicateSequenceNumberError(
                f"producer {header.producer_id} sequence {header.base_sequence} was "
                "written long ago")
        return None

    def record(self, header: BatchHeader, base_offset: int) -> None:
        """Remember an appended batch."""
        if header.producer_id == NO_PRODUCER_ID:
            return
        producer = self._producers.get(header.producer_id)
        if producer is None or header.producer_epoch > producer.epoch:
            producer = self._producers[header.producer_id] = _Producer(header.producer_epoch)
        last_sequence = header.base_sequence + header.last_offset_delta
        producer.batches.append((header.base_sequence, last_sequence, base_offset))
