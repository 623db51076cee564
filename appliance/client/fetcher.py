"""The fetching side of the consumer: positions, fetches and decoding, as Kafka's
Fetcher (with the assignment and positions of its SubscriptionState).

Positions start from the group's committed offset when there is one (set by
the coordinator), else from `auto_offset_reset` ("earliest" or "latest").
Each partition is fetched from its leader: at its worker's door, else the
leader broker's front end, else the bootstrap front end (routes.py): one
long-poll fetch in flight per endpoint, all waited on together
(a NetworkClient), so a commit on one worker wakes this consumer without a
hop through the supervisor. A fetched batch may begin before the position
(batches are whole), so records below it are skipped here. An endpoint's
next fetch is sent as soon as its reply arrives, before the records are
decoded. A partition whose leader is restarting, moved or at another epoch,
or whose connection was lost, backs off RETRY_BACKOFF_S and has its route
asked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import zmq

from appliance import protocol
from appliance.client.connection import raise_for
from appliance.client.network_client import NetworkClient
from appliance.client.routes import REROUTE, Routes
from shm.errors import (
    FencedLeaderEpochError,
    LeaderNotAvailableError,
    NetworkError,
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    RinglogError,
    UnknownLeaderEpochError,
    error_for,
)
from shm.records import iter_batch_rows, next_fetch_offset

TopicPartition = tuple[str, int]

# A partition's fetch errors that say to ask its route again after a backoff
# (an unknown topic is the caller's to hear of, as before).
MOVED = frozenset({LeaderNotAvailableError.name, NotLeaderOrFollowerError.name,
                   FencedLeaderEpochError.name, UnknownLeaderEpochError.name})
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


class _InFlight(NamedTuple):
    """An endpoint's fetch, sent and not yet answered."""

    request_id: int
    partitions: list[list]  # [topic, partition, offset, max_bytes] as sent
    expires: float  # monotonic time after which it is given up


class Fetcher:
    """What the consumer reads and from where, and the messages fetched but not
    yet handed out.

    `request` is the consumer's request-with-retries to the front end (offsets
    and metadata); fetches go through `network`, which the fetcher owns.
    """

    def __init__(self, network: NetworkClient,
                 request: Callable[..., protocol.Response], *, auto_offset_reset: str,
                 fetch_max_wait_ms: int, fetch_min_bytes: int, max_partition_fetch_bytes: int,
                 fetch_max_bytes: int, request_timeout_ms: int):
        self.auto_offset_reset = auto_offset_reset
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.request_timeout_ms = request_timeout_ms
        self._network = network
        self._request = request
        # A leader broker's doors are asked on the connection fetches use there.
        self._routes = Routes(network.front_end, request,
                              lambda endpoint, api, fields, timeout_ms: network.connection(
                                  endpoint).request(api, fields, timeout_ms=timeout_ms))
        self.assignment: list[TopicPartition] = []
        self.positions: dict[TopicPartition, int] = {}
        # Decoded messages not yet handed out: _buffer[_next:]. A list and an
        # index, so that poll() hands out a slice rather than one pop per message.
        self._buffer: list[Message] = []
        self._next = 0
        self._in_flight: dict[str, _InFlight] = {}  # endpoint, as the network names it
        self._backing_off: dict[TopicPartition, float] = {}  # partition -> fetch again after

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
        offsets = {}
        for entry in self._list_offsets(partitions, timestamp):
            raise_for(entry)
            offsets[(entry["topic"], entry["partition"])] = entry["offset"]
        return offsets

    def _list_offsets(self, partitions: list[TopicPartition], timestamp: int) -> list[dict]:
        """Each partition's list_offsets answer, asked of its leader broker
        (only a leader answers); a partition whose leader moved is asked
        again through fresh metadata by the caller's retry."""
        by_leader: dict[str | None, list[TopicPartition]] = {}
        for topic, partition in partitions:
            by_leader.setdefault(self._routes.leader(topic, partition), []).append(
                (topic, partition))
        entries = []
        for leader, asked in by_leader.items():
            fields = {"partitions": [[t, p, timestamp] for t, p in asked]}
            if leader is None:
                response = self._request("list_offsets", fields)
            else:
                try:
                    response = self._network.connection(leader).request(
                        "list_offsets", fields, timeout_ms=self.request_timeout_ms)
                except RinglogError as exc:  # the leader went: retried with fresh routes
                    entries += [{"topic": t, "partition": p, "error": exc.name,
                                 "message": str(exc)} for t, p in asked]
                    for topic, _ in asked:
                        self._routes.forget(topic)
                    continue
            for entry in response.fields["partitions"]:
                if entry.get("error") in REROUTE:
                    self._routes.forget(entry["topic"])
                entries.append(entry)
        return entries

    def consumed_position(self, key: TopicPartition) -> int | None:
        """Next offset to hand out: the first buffered message, else the fetch position."""
        for message in self._buffer[self._next:]:
            if (message.topic, message.partition) == key:
                return message.offset
        return self.positions.get(key)

    def reset_timestamp(self) -> int:
        return protocol.EARLIEST if self.auto_offset_reset == "earliest" else protocol.LATEST

    def reset(self, partitions: list[TopicPartition], timestamp: int) -> None:
        for entry in self._list_offsets(partitions, timestamp):
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
        """Fetch every readable partition, waiting up to `wait_ms` for a reply.

        Each endpoint's fetch asks from the positions as they are when it is
        sent; one whose positions no longer hold (a seek, a rebalance, a
        route that changed) is forgotten and sent afresh.
        """
        missing = [tp for tp in self.assignment if tp not in self.positions]
        if missing:
            self.reset(missing, self.reset_timestamp())
        wanted = self._readable_by_endpoint()
        for endpoint, sent in list(self._in_flight.items()):
            if wanted.get(endpoint) != sent.partitions:
                self._network.forget(endpoint, sent.request_id)
                del self._in_flight[endpoint]
        for endpoint, partitions in wanted.items():
            if endpoint not in self._in_flight:
                self._send(endpoint, partitions, wait_ms)
        if not self._in_flight:
            time.sleep(min(wait_ms, 100) / 1000)  # nothing readable yet: do not spin
            return
        soonest = min(sent.expires for sent in self._in_flight.values())
        self._network.wait(max(0, min(wait_ms, int((soonest - time.monotonic()) * 1000) + 1)))
        self._collect()

    def close(self) -> None:
        self._network.close()

    def _readable_by_endpoint(self) -> dict[str, list[list]]:
        """The fetch each endpoint should have in flight: its partitions that
        have a position and are not backing off, [topic, partition, offset, max_bytes]."""
        now, front_end = time.monotonic(), self._network.front_end
        wanted: dict[str, list[list]] = {}
        for key in self.assignment:
            offset = self.positions.get(key)
            if offset is None:
                continue
            if key in self._backing_off:
                if self._backing_off[key] > now:
                    continue
                del self._backing_off[key]
            topic, partition = key
            endpoint = self._routes.endpoint(topic, partition) or front_end
            wanted.setdefault(endpoint, []).append(
                [topic, partition, offset, self.max_partition_fetch_bytes])
        return wanted

    def _send(self, endpoint: str, partitions: list[list], wait_ms: int) -> None:
        try:
            request_id = self._network.send(endpoint, "fetch",
                                            self._fetch_fields(partitions, wait_ms))
        except (zmq.ZMQError, NetworkError):
            self._back_off(partitions)
            return
        expires = time.monotonic() + (self.request_timeout_ms + wait_ms) / 1000
        self._in_flight[endpoint] = _InFlight(request_id, partitions, expires)

    def _back_off(self, partitions: list[list]) -> None:
        """Fetch these again after RETRY_BACKOFF_S, through routes asked afresh."""
        until = time.monotonic() + RETRY_BACKOFF_S
        for topic, partition, *_ in partitions:
            self._backing_off[(topic, partition)] = until
            self._routes.forget(topic)

    def _collect(self) -> None:
        """Take what was answered; back off what lost its connection or timed out."""
        for endpoint, response in self._network.replies():
            sent = self._in_flight.get(endpoint)
            if sent is not None and sent.request_id == response.id:
                del self._in_flight[endpoint]
                self._take_response(endpoint, sent, response)
        for endpoint, request_id in self._network.lost():
            sent = self._in_flight.get(endpoint)
            if sent is not None and sent.request_id == request_id:
                del self._in_flight[endpoint]
                self._back_off(sent.partitions)
        now = time.monotonic()
        for endpoint, sent in list(self._in_flight.items()):
            if sent.expires <= now:
                del self._in_flight[endpoint]
                self._network.forget(endpoint, sent.request_id)
                self._back_off(sent.partitions)

    def _take_response(self, endpoint: str, sent: _InFlight,
                       response: protocol.Response) -> None:
        """Send the endpoint's next fetch, then decode this one's records."""
        if response.error:
            error = error_for(response.error, response.message)
            if not error.retriable:
                raise error
            self._back_off(sent.partitions)
            return
        entries = response.fields["partitions"]
        # zmq frames as buffers, once for both the next fetch and the decoder
        record_sets = [p.buffer if hasattr(p, "buffer") else p for p in response.payloads]
        self._fetch_ahead(endpoint, sent.partitions, entries, record_sets)
        for entry in entries:
            key = (entry["topic"], entry["partition"])
            error = entry.get("error")
            if error == OffsetOutOfRangeError.name:
                self.reset([key], self.reset_timestamp())
                continue
            if error in MOVED:  # the leader is restarting, elsewhere or at another epoch
                self._back_off([[*key]])
                continue
            raise_for(entry)
            if entry.get("records") is None or key not in self.positions:
                continue
            self._take(key, record_sets[entry["records"]], entry["high_watermark"])

    def _fetch_fields(self, partitions: list[list], wait_ms: int) -> dict:
        return {"partitions": partitions, "max_wait_ms": wait_ms,
                "min_bytes": self.fetch_min_bytes, "max_bytes": self.fetch_max_bytes}

    def _fetch_ahead(self, endpoint: str, partitions: list[list], entries: list[dict],
                     record_sets: list) -> None:
        """Send the endpoint's next fetch now, from where this one's records end,
        if it brought records and no error: the appliance serves it while we
        decode (Kafka's consumer pipelines its fetches the same way)."""
        ends = {}
        for entry in entries:
            if entry.get("error"):
                return
            if entry.get("records") is not None:
                end = next_fetch_offset(record_sets[entry["records"]])
                if end is not None:
                    ends[(entry["topic"], entry["partition"])] = end
        if ends:
            self._send(endpoint, [[t, p, max(offset, ends.get((t, p), offset)), max_bytes]
                                  for t, p, offset, max_bytes in partitions],
                       self.fetch_max_wait_ms)

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
