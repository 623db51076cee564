"""The consumer: fetch record batches, decode them, hand out messages in order.

A consumer reads the partitions it is given (`assign`) or all partitions of
the topics it subscribes to. Positions start from the group's committed
offset when there is one, else from `auto_offset_reset` ("earliest" or
"latest"). Fetches are long polls; a fetched batch may begin before the
position (batches are whole), so records below it are skipped here.
Consumer groups (group_id) arrive with the group coordinator.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from appliance import protocol
from appliance.client.connection import DEFAULT_BOOTSTRAP, Connection, raise_for
from appliance.errors import LeaderNotAvailableError
from shm.errors import OffsetOutOfRangeError
from shm.records import iter_batches

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed record and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    timestamp_type: int
    headers: tuple[tuple[str, bytes | None], ...]
    attributes: int
    magic: int
    high_watermark: int

    @property
    def next_offset(self) -> int:
        return self.offset + 1


class Consumer:
    """Kafka-style consumer for one thread."""

    def __init__(self, *topics: str, bootstrap_servers: str | list[str] = DEFAULT_BOOTSTRAP,
                 group_id: str | None = None, auto_offset_reset: str = "latest",
                 enable_auto_commit: bool = True, max_poll_records: int = 500,
                 fetch_max_wait_ms: int = 500, fetch_min_bytes: int = 1,
                 max_partition_fetch_bytes: int = 1 << 20, fetch_max_bytes: int = 50 << 20,
                 request_timeout_ms: int = 30_000):
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError("auto_offset_reset must be 'earliest' or 'latest'")
        if group_id is not None:
            raise NotImplementedError("consumer groups are not served yet; use assign()")
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit
        self.max_poll_records = max_poll_records
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.request_timeout_ms = request_timeout_ms
        self._connection = Connection(bootstrap_servers)
        self._assignment: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._buffer: deque[Message] = deque()
        if topics:
            self.subscribe(list(topics))

    # --- what to read -------------------------------------------------------------------

    def subscribe(self, topics: list[str]) -> None:
        """Read every partition of `topics` (no group: nothing is committed)."""
        response = self._request("metadata", {"topics": topics})
        assignment = []
        for entry in response.fields["topics"]:
            raise_for(entry)
            assignment += [(entry["name"], p["partition"]) for p in entry["partitions"]]
        self.assign(assignment)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._assignment = [tuple(tp) for tp in partitions]
        self._positions = {tp: off for tp, off in self._positions.items()
                           if tp in self._assignment}
        self._buffer = deque(m for m in self._buffer if (m.topic, m.partition) in self._positions)

    def assignment(self) -> list[TopicPartition]:
        return list(self._assignment)

    # --- positions ------------------------------------------------------------------------

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._positions[(topic, partition)] = offset
        self._drop_buffered(topic, partition)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._reset(list(partitions) or self._assignment, protocol.EARLIEST)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._reset(list(partitions) or self._assignment, protocol.LATEST)

    def position(self, topic: str, partition: int) -> int:
        """The offset of the next message poll() will return for the partition."""
        for message in self._buffer:
            if (message.topic, message.partition) == (topic, partition):
                return message.offset
        if (topic, partition) not in self._positions:
            self._reset([(topic, partition)], self._reset_timestamp())
        return self._positions[(topic, partition)]

    def _reset_timestamp(self) -> int:
        return protocol.EARLIEST if self.auto_offset_reset == "earliest" else protocol.LATEST

    def _reset(self, partitions: list[TopicPartition], timestamp: int) -> None:
        response = self._request("list_offsets",
                                 {"partitions": [[t, p, timestamp] for t, p in partitions]})
        for entry in response.fields["partitions"]:
            raise_for(entry)
            self._positions[(entry["topic"], entry["partition"])] = entry["offset"]
            self._drop_buffered(entry["topic"], entry["partition"])

    def _drop_buffered(self, topic: str, partition: int) -> None:
        self._buffer = deque(m for m in self._buffer
                             if (m.topic, m.partition) != (topic, partition))

    # --- reading --------------------------------------------------------------------------

    def poll(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[Message]:
        """Messages from the assigned partitions, in offset order per partition;
        waits up to `timeout_ms` for the first one."""
        limit = max_records or self.max_poll_records
        deadline = time.monotonic() + timeout_ms / 1000
        while not self._buffer:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self._assignment:
                break
            self._fetch(min(remaining_ms, self.fetch_max_wait_ms))
        out = []
        while self._buffer and len(out) < limit:
            out.append(self._buffer.popleft())
        return out

    def __iter__(self):
        while True:
            yield from self.poll()

    def _fetch(self, wait_ms: int) -> None:
        missing = [tp for tp in self._assignment if tp not in self._positions]
        if missing:
            self._reset(missing, self._reset_timestamp())
        partitions = [[t, p, self._positions[(t, p)], self.max_partition_fetch_bytes]
                      for t, p in self._assignment]
        response = self._request("fetch", {
            "partitions": partitions, "max_wait_ms": wait_ms,
            "min_bytes": self.fetch_min_bytes, "max_bytes": self.fetch_max_bytes},
            timeout_ms=self.request_timeout_ms + wait_ms)
        for entry in response.fields["partitions"]:
            key = (entry["topic"], entry["partition"])
            error = entry.get("error")
            if error == OffsetOutOfRangeError.name:
                self._reset([key], self._reset_timestamp())
                continue
            if error == LeaderNotAvailableError.name:
                continue  # the owner is restarting; the next poll retries
            raise_for(entry)
            if entry.get("records") is None or key not in self._positions:
                continue
            self._take(key, response.payloads[entry["records"]], entry["high_watermark"])

    def _take(self, key: TopicPartition, payload, high_watermark: int) -> None:
        position = self._positions[key]
        data = payload.buffer if hasattr(payload, "buffer") else payload
        topic, partition = key
        for batch in iter_batches(data):
            header = batch.header
            for record in batch.records:
                if record.offset < position:
                    continue
                self._buffer.append(Message(
                    topic, partition, record.offset, record.key, record.value,
                    record.timestamp, header.timestamp_type, record.headers,
                    header.attributes, header.magic, high_watermark))
            position = max(position, header.next_offset)
        self._positions[key] = position

    def _request(self, api: str, fields: dict, timeout_ms: int | None = None):
        return self._connection.request(api, fields,
                                        timeout_ms=timeout_ms or self.request_timeout_ms)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
