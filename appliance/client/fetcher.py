"""The fetching side of the consumer: positions, fetches and decoding, as Kafka's
Fetcher (with the assignment and positions of its SubscriptionState).

Positions start from the group's committed offset when there is one (set by
the coordinator), else from `auto_offset_reset` ("earliest" or "latest").
Fetches are long polls; a fetched batch may begin before the position
(batches are whole), so records below it are skipped here. The next fetch is
sent ahead while this one's records are decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from appliance import protocol
from appliance.client.blocking_connection import BlockingConnection
from appliance.client.connection import raise_for
from shm.errors import LeaderNotAvailableError, OffsetOutOfRangeError, RinglogError, error_for
from shm.records import iter_batch_rows, next_fetch_offset

TopicPartition = tuple[str, int]


class Message(NamedTuple):
    """One consumed record and where it came from.

    A named tuple, built by the record decoder itself (shm.records.read_batch
    with row_type=Message): the first five fields are the record's, the rest
    the context the consumer adds, in that order.
    """

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    topic: str
    partition: int
    timestamp_type: int
    high_watermark: int

    @property
    def next_offset(self) -> int:
        return self.offset + 1


class _FetchAhead(NamedTuple):
    """A fetch sent before its predecessor's records were decoded."""

    request_id: int
    partitions: list[list]  # [topic, partition, offset, max_bytes] as sent
    expires: float  # monotonic time after which it is given up


class Fetcher:
    """What the consumer reads and from where, and the messages fetched but not
    yet handed out.

    `request` is the consumer's request-with-retries; fetches go straight to
    the connection, since a fetch sent ahead is collected later.
    """

    def __init__(self, connection: BlockingConnection,
                 request: Callable[..., protocol.Response], *, auto_offset_reset: str,
                 fetch_max_wait_ms: int, fetch_min_bytes: int, max_partition_fetch_bytes: int,
                 fetch_max_bytes: int, request_timeout_ms: int):
        self.auto_offset_reset = auto_offset_reset
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.request_timeout_ms = request_timeout_ms
        self._connection = connection
        self._request = request
        self.assignment: list[TopicPartition] = []
        self.positions: dict[TopicPartition, int] = {}
        # Decoded messages not yet handed out: _buffer[_next:]. A list and an
        # index, so that poll() hands out a slice rather than one pop per message.
        self._buffer: list[Message] = []
        self._next = 0
        self._ahead: _FetchAhead | None = None

    # --- what to read, and from where ---------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assignment = [tuple(tp) for tp in partitions]
        self.positions = {tp: off for tp, off in self.positions.items()
                          if tp in self.assignment}
        self._keep_buffered(lambda m: (m.topic, m.partition) in self.positions)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.positions[(topic, partition)] = offset
        self._drop_buffered(topic, partition)

    def position(self, topic: str, partition: int) -> int:
        """The offset of the next message poll() will return for the partition."""
        consumed = self.consumed_position((topic, partition))
        if consumed is not None:
            return consumed
        if (topic, partition) not in self.positions:
            self.reset([(topic, partition)], self.reset_timestamp())
        return self.positions[(topic, partition)]

    def list_offsets(self, partitions: list[TopicPartition], timestamp: int
                     ) -> dict[TopicPartition, int]:
        response = self._request("list_offsets",
                                 {"partitions": [[t, p, timestamp] for t, p in partitions]})
        offsets = {}
        for entry in response.fields["partitions"]:
            raise_for(entry)
            offsets[(entry["topic"], entry["partition"])] = entry["offset"]
        return offsets

    def consumed_position(self, key: TopicPartition) -> int | None:
        """Next offset to hand out: the first buffered message, else the fetch position."""
        for message in self._buffer[self._next:]:
            if (message.topic, message.partition) == key:
                return message.offset
        return self.positions.get(key)

    def reset_timestamp(self) -> int:
        return protocol.EARLIEST if self.auto_offset_reset == "earliest" else protocol.LATEST

    def reset(self, partitions: list[TopicPartition], timestamp: int) -> None:
        response = self._request("list_offsets",
                                 {"partitions": [[t, p, timestamp] for t, p in partitions]})
        for entry in response.fields["partitions"]:
            if entry.get("error") and error_for(entry["error"]).retriable:
                continue  # e.g. the partition is still being opened: the next poll retries
            raise_for(entry)
            self.positions[(entry["topic"], entry["partition"])] = entry["offset"]
            self._drop_buffered(entry["topic"], entry["partition"])

    def _drop_buffered(self, topic: str, partition: int) -> None:
        self._keep_buffered(lambda m: (m.topic, m.partition) != (topic, partition))

    def _keep_buffered(self, keep) -> None:
        self._buffer = [m for m in self._buffer[self._next:] if keep(m)]
        self._next = 0

    # --- reading --------------------------------------------------------------------------

    def has_fetched(self) -> bool:
        """Whether messages are waiting to be handed out."""
        return self._next < len(self._buffer)

    def fetched_records(self, limit: int) -> list[Message]:
        """Hand out up to `limit` waiting messages, in the order they were fetched."""
        start = self._next
        out = self._buffer[start:start + limit]
        self._next = start + len(out)
        if self._next >= len(self._buffer):
            self._buffer, self._next = [], 0
        return out

    def fetch(self, wait_ms: int) -> None:
        """One fetch of every readable partition, then the next one sent ahead.

        The fetch sent ahead asks from where this one's records end, before
        they are decoded, so the appliance serves it while we decode (Kafka's
        consumer pipelines its fetches the same way). It is used only if the
        positions are still the ones it asked from (no seek, no rebalance).
        """
        missing = [tp for tp in self.assignment if tp not in self.positions]
        if missing:
            self.reset(missing, self.reset_timestamp())
        partitions = [[t, p, self.positions[(t, p)], self.max_partition_fetch_bytes]
                      for t, p in self.assignment if (t, p) in self.positions]
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (ahead.partitions != partitions
                                  or time.monotonic() > ahead.expires):
            self._connection.forget(ahead.request_id)
            ahead = None
        if not partitions:
            time.sleep(min(wait_ms, 100) / 1000)  # nothing readable yet: do not spin
            return
        if ahead is None:
            response = self._request("fetch", self._fetch_fields(partitions, wait_ms),
                                     timeout_ms=self.request_timeout_ms + wait_ms)
        elif not self._connection.arrived(ahead.request_id, wait_ms):
            self._ahead = ahead  # still long-polling: keep waiting on the next poll
            return
        else:
            try:
                response = self._connection.receive(ahead.request_id, 0)
            except RinglogError as exc:
                if exc.retriable:
                    return  # the next poll fetches again
                raise
        entries = response.fields["partitions"]
        # zmq frames as buffers, once for both the fetch ahead and the decoder
        record_sets = [p.buffer if hasattr(p, "buffer") else p for p in response.payloads]
        self._fetch_ahead(partitions, entries, record_sets)
        for entry in entries:
            key = (entry["topic"], entry["partition"])
            error = entry.get("error")
            if error == OffsetOutOfRangeError.name:
                self.reset([key], self.reset_timestamp())
                continue
            if error == LeaderNotAvailableError.name:
                continue  # the owner is restarting; the next poll retries
            raise_for(entry)
            if entry.get("records") is None or key not in self.positions:
                continue
            self._take(key, record_sets[entry["records"]], entry["high_watermark"])

    def _fetch_fields(self, partitions: list[list], wait_ms: int) -> dict:
        return {"partitions": partitions, "max_wait_ms": wait_ms,
                "min_bytes": self.fetch_min_bytes, "max_bytes": self.fetch_max_bytes}

    def _fetch_ahead(self, partitions: list[list], entries: list[dict],
                     record_sets: list) -> None:
        """Send the next fetch now if this one brought records and no error."""
        ends = {}
        for entry in entries:
            if entry.get("error"):
                return
            if entry.get("records") is not None:
                end = next_fetch_offset(record_sets[entry["records"]])
                if end is not None:
                    ends[(entry["topic"], entry["partition"])] = end
        if not ends:
            return
        following = [[t, p, max(offset, ends.get((t, p), offset)), max_bytes]
                     for t, p, offset, max_bytes in partitions]
        request_id = self._connection.send("fetch", self._fetch_fields(
            following, self.fetch_max_wait_ms))
        expires = time.monotonic() + (self.request_timeout_ms + self.fetch_max_wait_ms) / 1000
        self._ahead = _FetchAhead(request_id, following, expires)

    def _take(self, key: TopicPartition, data, high_watermark: int) -> None:
        """Decode a fetched record set into messages from the position on.

        Batches are whole, so the first may begin below the position: the
        decoder skips those records without building them.
        """
        position = self.positions[key]
        topic, partition = key
        buffer = self._buffer
        for header, messages in iter_batch_rows(
                data, skip_below=position, row_type=Message,
                context=lambda h: (topic, partition, h.timestamp_type, high_watermark)):
            buffer += messages
            position = max(position, header.next_offset)
        self.positions[key] = position
