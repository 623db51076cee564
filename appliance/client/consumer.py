"""The consumer: fetch record batches, decode them, hand out messages in order.

A consumer reads the partitions it is given (`assign`) or all partitions of
the topics it subscribes to. Positions start from the group's committed
offset when there is one, else from `auto_offset_reset` ("earliest" or
"latest"). Fetches are long polls; a fetched batch may begin before the
position (batches are whole), so records below it are skipped here.

With a group_id, the consumer joins the group on subscribe() and the
appliance assigns it partitions. poll() heartbeats; a partition the group
takes away is committed (with auto-commit on) and released before its new
owner gets it, so a clean rebalance delivers no record twice.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from appliance import protocol
from appliance.client.blocking_connection import BlockingConnection
from appliance.client.connection import DEFAULT_BOOTSTRAP, raise_for
from shm.errors import (
    IllegalGenerationError,
    LeaderNotAvailableError,
    OffsetOutOfRangeError,
    RinglogError,
    UnknownMemberIdError,
    error_for,
)
from shm.records import iter_batch_rows, next_fetch_offset

TopicPartition = tuple[str, int]
RETRY_BACKOFF_S = 0.1


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


class Consumer:
    """Kafka-style consumer for one thread."""

    def __init__(self, *topics: str, bootstrap_servers: str | list[str] = DEFAULT_BOOTSTRAP,
                 group_id: str | None = None, auto_offset_reset: str = "latest",
                 enable_auto_commit: bool = True, max_poll_records: int = 500,
                 fetch_max_wait_ms: int = 500, fetch_min_bytes: int = 1,
                 max_partition_fetch_bytes: int = 1 << 20, fetch_max_bytes: int = 50 << 20,
                 request_timeout_ms: int = 30_000, session_timeout_ms: int = 10_000,
                 heartbeat_interval_ms: int = 1_000, auto_commit_interval_ms: int = 5_000,
                 partition_assignment_strategy: str = "cooperative-sticky",
                 client_id: str = "ringlog-consumer"):
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError("auto_offset_reset must be 'earliest' or 'latest'")
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit
        self.max_poll_records = max_poll_records
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.request_timeout_ms = request_timeout_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_ms / 1000
        self.auto_commit_interval_s = auto_commit_interval_ms / 1000
        self.assignor = partition_assignment_strategy
        self.client_id = client_id
        self._member_id: str | None = None
        self._generation = -1
        self._topics: list[str] = []
        self._next_heartbeat = 0.0
        self._next_auto_commit = time.monotonic() + self.auto_commit_interval_s
        self._connection = BlockingConnection(bootstrap_servers)
        self._assignment: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        # Decoded messages not yet handed out: _buffer[_next:]. A list and an
        # index, so that poll() hands out a slice rather than one pop per message.
        self._buffer: list[Message] = []
        self._next = 0
        self._ahead: _FetchAhead | None = None
        if topics:
            self.subscribe(list(topics))

    # --- what to read -------------------------------------------------------------------

    def subscribe(self, topics: list[str]) -> None:
        """Read `topics`: with a group, the partitions the group assigns this
        member; without one, every partition (and nothing is committed)."""
        if self.group_id is not None:
            self._topics = list(topics)
            self._join()
            return
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
        self._keep_buffered(lambda m: (m.topic, m.partition) in self._positions)

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
        consumed = self._consumed_position((topic, partition))
        if consumed is not None:
            return consumed
        if (topic, partition) not in self._positions:
            self._reset([(topic, partition)], self._reset_timestamp())
        return self._positions[(topic, partition)]

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's log start offset, as Kafka's beginning_offsets()."""
        return self._list_offsets(partitions, protocol.EARLIEST)

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's high watermark (the offset after the last readable
        record), as Kafka's end_offsets()."""
        return self._list_offsets(partitions, protocol.LATEST)

    def _list_offsets(self, partitions: list[TopicPartition], timestamp: int
                      ) -> dict[TopicPartition, int]:
        response = self._request("list_offsets",
                                 {"partitions": [[t, p, timestamp] for t, p in partitions]})
        offsets = {}
        for entry in response.fields["partitions"]:
            raise_for(entry)
            offsets[(entry["topic"], entry["partition"])] = entry["offset"]
        return offsets

    def _consumed_position(self, key: TopicPartition) -> int | None:
        """Next offset to hand out: the first buffered message, else the fetch position."""
        for message in self._buffer[self._next:]:
            if (message.topic, message.partition) == key:
                return message.offset
        return self._positions.get(key)

    def _reset_timestamp(self) -> int:
        return protocol.EARLIEST if self.auto_offset_reset == "earliest" else protocol.LATEST

    def _reset(self, partitions: list[TopicPartition], timestamp: int) -> None:
        response = self._request("list_offsets",
                                 {"partitions": [[t, p, timestamp] for t, p in partitions]})
        for entry in response.fields["partitions"]:
            if entry.get("error") and error_for(entry["error"]).retriable:
                continue  # e.g. the partition is still being opened: the next poll retries
            raise_for(entry)
            self._positions[(entry["topic"], entry["partition"])] = entry["offset"]
            self._drop_buffered(entry["topic"], entry["partition"])

    def _drop_buffered(self, topic: str, partition: int) -> None:
        self._keep_buffered(lambda m: (m.topic, m.partition) != (topic, partition))

    def _keep_buffered(self, keep) -> None:
        self._buffer = [m for m in self._buffer[self._next:] if keep(m)]
        self._next = 0

    # --- reading --------------------------------------------------------------------------

    def poll(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[Message]:
        """Messages from the assigned partitions, in offset order per partition;
        waits up to `timeout_ms` for the first one."""
        limit = max_records or self.max_poll_records
        deadline = time.monotonic() + timeout_ms / 1000
        self._group_duties()
        while self._next >= len(self._buffer):
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self._assignment:
                break
            wait_ms = min(remaining_ms, self.fetch_max_wait_ms)
            if self.group_id is not None:  # wake up in time for the next heartbeat
                heartbeat_ms = int((self._next_heartbeat - time.monotonic()) * 1000)
                wait_ms = max(0, min(wait_ms, heartbeat_ms))
            self._fetch(wait_ms)
            self._group_duties()
        start = self._next
        out = self._buffer[start:start + limit]
        self._next = start + len(out)
        if self._next >= len(self._buffer):
            self._buffer, self._next = [], 0
        return out

    def __iter__(self):
        while True:
            yield from self.poll()

    def _fetch(self, wait_ms: int) -> None:
        """One fetch of every readable partition, then the next one sent ahead.

        The fetch sent ahead asks from where this one's records end, before
        they are decoded, so the appliance serves it while we decode (Kafka's
        consumer pipelines its fetches the same way). It is used only if the
        positions are still the ones it asked from (no seek, no rebalance).
        """
        missing = [tp for tp in self._assignment if tp not in self._positions]
        if missing:
            self._reset(missing, self._reset_timestamp())
        partitions = [[t, p, self._positions[(t, p)], self.max_partition_fetch_bytes]
                      for t, p in self._assignment if (t, p) in self._positions]
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
                self._reset([key], self._reset_timestamp())
                continue
            if error == LeaderNotAvailableError.name:
                continue  # the owner is restarting; the next poll retries
            raise_for(entry)
            if entry.get("records") is None or key not in self._positions:
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
        position = self._positions[key]
        topic, partition = key
        buffer = self._buffer
        for header, messages in iter_batch_rows(
                data, skip_below=position, row_type=Message,
                context=lambda h: (topic, partition, h.timestamp_type, high_watermark)):
            buffer += messages
            position = max(position, header.next_offset)
        self._positions[key] = position

    # --- the group ---------------------------------------------------------------------

    def _join(self) -> None:
        response = self._request("join_group", {
            "group_id": self.group_id, "member_id": self._member_id, "topics": self._topics,
            "session_timeout_ms": self.session_timeout_ms, "assignor": self.assignor,
            "client_id": self.client_id})
        self._member_id = response.fields["member_id"]
        self._apply(response.fields)

    def _heartbeat(self) -> None:
        try:
            response = self._request("heartbeat", {
                "group_id": self.group_id, "member_id": self._member_id,
                "generation_id": self._generation,
                "owned": [list(tp) for tp in self._assignment]})
        except UnknownMemberIdError:
            # Evicted (we were silent too long): our partitions are someone
            # else's now. Drop them uncommitted and join as a new member.
            self._member_id = None
            self.assign([])
            self._join()
            return
        self._apply(response.fields)

    def _apply(self, view: dict) -> None:
        """Take a join/heartbeat answer: release what is revoked, start what is new."""
        self._generation = view["generation_id"]
        revoke = {tuple(tp) for tp in view["revoke"]}
        assigned = {tuple(tp) for tp in view["assignment"]}
        if revoke & set(self._assignment):
            if self.enable_auto_commit:
                self._commit_partitions(sorted(revoke & set(self._assignment)))
            self.assign([tp for tp in self._assignment if tp not in revoke])
        added = sorted(assigned - set(self._assignment))
        if added:
            self.assign(sorted(set(self._assignment) | set(added)))
            self._start_from_committed(added)
        released = bool(revoke)
        self._next_heartbeat = time.monotonic() + (
            0 if released else self.heartbeat_interval_s / (4 if view["rebalancing"] else 1))

    def _start_from_committed(self, partitions: list[TopicPartition]) -> None:
        response = self._request("offset_fetch", {
            "group_id": self.group_id, "partitions": [list(tp) for tp in partitions]})
        for topic, partition, offset, _ in response.fields["offsets"]:
            if offset >= 0:
                self._positions[(topic, partition)] = offset

    def _group_duties(self) -> None:
        if self.group_id is None or self._member_id is None:
            return
        now = time.monotonic()
        if self.enable_auto_commit and now >= self._next_auto_commit:
            self._commit_partitions(self._assignment)
            self._next_auto_commit = now + self.auto_commit_interval_s
        if now >= self._next_heartbeat:
            self._heartbeat()

    def _commit_partitions(self, partitions: list[TopicPartition]) -> None:
        offsets = {tp: self._consumed_position(tp) for tp in partitions}
        self.commit({tp: o for tp, o in offsets.items() if o is not None})

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit the positions of the owned partitions (or `offsets`) for the group.

        A commit from a stale generation is refused (ILLEGAL_GENERATION): we
        heartbeat to learn the current one, then commit again once.
        """
        if self.group_id is None:
            raise ValueError("commit() needs a group_id")
        if offsets is None:
            offsets = {tp: o for tp in self._assignment
                       if (o := self._consumed_position(tp)) is not None}
        if not offsets:
            return
        fields = {"group_id": self.group_id, "member_id": self._member_id or None,
                  "generation_id": self._generation if self._member_id else -1,
                  "offsets": [[t, p, o, ""] for (t, p), o in sorted(offsets.items())]}
        try:
            self._request("offset_commit", fields)
        except IllegalGenerationError:
            self._heartbeat()
            fields["generation_id"] = self._generation
            self._request("offset_commit", fields)

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset for the partition, or None."""
        if self.group_id is None:
            return None
        response = self._request("offset_fetch", {"group_id": self.group_id,
                                                  "partitions": [[topic, partition]]})
        offset = response.fields["offsets"][0][2]
        return offset if offset >= 0 else None

    def _request(self, api: str, fields: dict, timeout_ms: int | None = None):
        """One request, retried on retriable errors (a partition or the offsets
        still loading after a restart) until the request timeout."""
        timeout_ms = timeout_ms or self.request_timeout_ms
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            try:
                return self._connection.request(api, fields, timeout_ms=timeout_ms)
            except RinglogError as exc:
                if not exc.retriable or time.monotonic() + RETRY_BACKOFF_S > deadline:
                    raise
            time.sleep(RETRY_BACKOFF_S)

    def close(self) -> None:
        """Commit (with auto-commit on) and leave the group, so it rebalances at once."""
        try:
            if self.group_id is not None and self._member_id is not None:
                if self.enable_auto_commit:
                    self._commit_partitions(self._assignment)
                self._request("leave_group", {"group_id": self.group_id,
                                              "member_id": self._member_id})
        finally:
            self._connection.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
