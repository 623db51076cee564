"""The sender: the producer's thread that turns ready batches into produce
requests and their replies into outcomes, as Kafka's Sender.

Each partition is produced to at its leader's worker door, else its leader
broker's front end, else the bootstrap front end (routes.py): one produce
request per endpoint for the batches ready together. The
thread owns its sockets (a NetworkClient), so no I/O thread stands between
it and the appliance. It encodes each batch once
(shm.records.encode_columns, compressed as asked, with the producer id and
sequence numbers when idempotent), with at most `max_in_flight_requests`
requests unanswered. Retriable errors resend the same encoded batch after
`retry_backoff_ms`, until `delivery_timeout_ms`, in the order they were
first sent (the accumulator puts a retried batch back ahead of its
partition's later ones). Retriable are the errors the registry marks so:
among them NOT_ENOUGH_REPLICAS (nothing was written) and
NOT_ENOUGH_REPLICAS_AFTER_APPEND (it may have been: with idempotence the
retry is recognised by its sequence numbers and answered with its first
offsets, as Kafka's producer relies on). An error that says the route is
wrong (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, a lost connection, ...:
routes.REROUTE) also forgets the topic's routes, so the retry asks metadata
again and goes to the new leader. Other errors fail the batch's futures.
"""

from __future__ import annotations

import time

import zmq

from appliance import protocol
from appliance.client.bootstrap import Bootstrap
from appliance.client.connection import parse_bootstrap
from appliance.client.network_client import NetworkClient
from appliance.client.producer_batch import ProducerBatch
from appliance.client.record_accumulator import RecordAccumulator
from appliance.client.routes import REROUTE, Endpoint, Routes
from shm.errors import (
    InvalidRecordError,
    NetworkError,
    RequestTimedOutError,
    RinglogError,
    UnknownTopicOrPartitionError,
    error_for,
)
from shm.records import encode_columns

ACKS_NONE_CLOSE_LINGER_MS = 1000  # what close() waits for unacknowledged sends to go out


class Sender:
    """Drains the accumulator's ready batches and settles them; run() is the thread."""

    def __init__(self, accumulator: RecordAccumulator, bootstrap_servers: str | list[str],
                 connection: Bootstrap, metadata: dict[str, int], *, acks: int,
                 compression: str, enable_idempotence: bool, request_timeout_ms: int,
                 retry_backoff_s: float, max_in_flight: int):
        self.acks = acks
        self.compression = compression
        self.enable_idempotence = enable_idempotence
        self.request_timeout_ms = request_timeout_ms
        self.retry_backoff_s = retry_backoff_s
        self.max_in_flight = max_in_flight
        self._accumulator = accumulator
        self._lock = accumulator._lock  # the accumulator's: batches change hands under it
        self._bootstrap = bootstrap_servers
        self._front_end = parse_bootstrap(bootstrap_servers)
        self._connection = connection  # the producer's front end, for init_producer_id
        self._metadata = metadata  # the producer's partition counts, dropped when stale
        self._in_flight = 0  # produce requests sent and not yet settled
        self.routes = Routes(self._front_end, lambda api, fields: self._connection.request(
            api, fields, timeout_ms=self.request_timeout_ms))
        self._producer_id, self._producer_epoch = -1, -1
        self._sequences: dict[tuple[str, int], int] = {}
        self._batches_sent = 0  # numbers each batch's first send: retries keep their place

    def run(self) -> None:
        """The sender thread: it owns the produce socket, sends ready batches and
        settles their replies itself, so no I/O thread stands in between."""
        accumulator = self._accumulator
        network = NetworkClient(self._bootstrap, wake_fd=accumulator._wake_r)
        # A leader broker's doors are asked on the connection produce uses there.
        self.routes.ask_broker = lambda endpoint, api, fields, timeout_ms: network.connection(
            endpoint).request(api, fields, timeout_ms=timeout_ms)
        # (endpoint as the network names it, request id) -> its batches and deadline
        in_flight: dict[tuple[Endpoint, int], tuple[list[ProducerBatch], float]] = {}
        ready: list[ProducerBatch] = []
        try:
            while True:
                with self._lock:
                    if accumulator._closing:  # after flush(): whatever is left is abandoned
                        return
                    # With every request slot taken only a reply (which wakes us) can help.
                    can_send = self._in_flight < self.max_in_flight
                    ready = accumulator._drain() if can_send else []
                    if ready:
                        self._in_flight += 1
                    wait_s = accumulator._next_ready_s() if can_send else 0.5
                if ready:
                    self._send(network, ready, in_flight)
                    ready = []
                    continue  # more may be ready: collect again before sleeping
                if in_flight:
                    soonest = min(deadline for _, deadline in in_flight.values())
                    wait_s = min(wait_s, max(0.0, soonest - time.monotonic()))
                network.wait(int(wait_s * 1000) + 1)
                self._collect(network, in_flight)
        finally:
            closed = NetworkError("the producer was closed before the record was acknowledged")
            with self._lock:
                self._in_flight -= len(in_flight)
                left = [b for batches, _ in in_flight.values() for b in batches]
                accumulator._abort([*left, *ready], closed)
            # acks=0 sends are done once they leave the socket: let them, for a bound
            network.close(ACKS_NONE_CLOSE_LINGER_MS if self.acks == protocol.ACKS_NONE else 0)

    def _collect(self, network: NetworkClient,
                 in_flight: dict[tuple[Endpoint, int], tuple[list[ProducerBatch], float]]
                 ) -> None:
        """Settle what was answered, what lost its connection and what timed out."""
        for endpoint, response in network.replies():
            batches, _ = in_flight.pop((endpoint, response.id))
            self._on_reply(batches, response, None)
        for key in network.lost():
            batches, _ = in_flight.pop(key)
            self._on_reply(batches, None, NetworkError(
                "the partition's owner went down before it answered"))
        now = time.monotonic()
        for key, (batches, deadline) in list(in_flight.items()):
            if deadline <= now:
                del in_flight[key]
                network.forget(*key)
                self._on_reply(batches, None, RequestTimedOutError(
                    "no reply from the appliance in time; is it running?"))

    def _identity(self) -> tuple[int, int]:
        """The producer id and epoch the appliance hands out, asked for once."""
        if self._producer_id < 0 and self.enable_idempotence:
            fields = self._connection.request("init_producer_id", {},
                                              timeout_ms=self.request_timeout_ms).fields
            self._producer_id, self._producer_epoch = fields["producer_id"], \
                fields["producer_epoch"]
        return self._producer_id, self._producer_epoch

    def _encode(self, batch: ProducerBatch) -> bytes:
        """Encode once: a retry resends these very bytes, sequence numbers and all,
        which is how the partition's owner knows it for a retry."""
        keys = batch.keys if batch.keyed else None
        if not self.enable_idempotence:
            return encode_columns(batch.values, keys, batch.timestamps, batch.headers,
                                  compression=self.compression)
        producer_id, epoch = self._identity()
        key = (batch.topic, batch.partition)
        sequence = self._sequences.get(key, 0)
        self._sequences[key] = (sequence + len(batch.values)) % 2**31
        return encode_columns(batch.values, keys, batch.timestamps, batch.headers,
                              compression=self.compression, producer_id=producer_id,
                              producer_epoch=epoch, base_sequence=sequence)

    def _send(self, network: NetworkClient, batches: list[ProducerBatch],
              in_flight: dict[tuple[Endpoint, int], tuple[list[ProducerBatch], float]]
              ) -> None:
        """Encode what is not yet encoded and send one produce request per endpoint
        (its request slot was taken by the caller; the others are taken here)."""
        by_endpoint: dict[Endpoint, list[ProducerBatch]] = {}
        failed = []
        for batch in batches:
            if batch.encoded is None:
                try:
                    batch.encoded = self._encode(batch)
                    batch.sent_order, self._batches_sent = self._batches_sent, \
                        self._batches_sent + 1
                except RinglogError as exc:  # no producer id yet: retried after the backoff
                    failed.append((batch, {"error": exc.name, "message": str(exc)}))
                    continue
                except ValueError as exc:  # a field the record format cannot hold
                    failed.append((batch, {"error": InvalidRecordError.name,
                                           "message": str(exc)}))
                    continue
            endpoint = self.routes.endpoint(batch.topic, batch.partition)
            by_endpoint.setdefault(endpoint, []).append(batch)
        with self._lock:
            self._in_flight += max(0, len(by_endpoint) - 1)
            for batch, result in failed:
                self._settle(batch, result)
            if failed:
                self._lock.notify_all()
        if not by_endpoint:
            self._on_reply([], None, None)  # nothing went out: free the request slot
        for endpoint, sending in by_endpoint.items():
            self._send_one(network, endpoint, sending, in_flight)

    def _send_one(self, network: NetworkClient, endpoint: Endpoint,
                  sending: list[ProducerBatch],
                  in_flight: dict[tuple[Endpoint, int], tuple[list[ProducerBatch], float]]
                  ) -> None:
        fields = {"acks": self.acks, "timeout_ms": self.request_timeout_ms,
                  "partitions": [[b.topic, b.partition] for b in sending]}
        payloads = [b.encoded for b in sending]
        try:
            endpoint = endpoint or network.front_end  # named once: replies come back under it
            request_id = network.send(endpoint, "produce", fields, payloads,
                                      expect_reply=self.acks != protocol.ACKS_NONE)
        except (zmq.ZMQError, NetworkError) as exc:  # the socket refused it: retriable
            self._on_reply(sending, None, NetworkError(f"cannot send: {exc}"))
            return
        if self.acks == protocol.ACKS_NONE:
            self._on_reply(sending, None, None)  # no reply will come
        else:
            in_flight[(endpoint, request_id)] = (
                sending, time.monotonic() + self.request_timeout_ms / 1000)

    def _on_reply(self, batches: list[ProducerBatch], response: protocol.Response | None,
                  error: RinglogError | None) -> None:
        """Settle a request's batches: from its reply, its error, or (acks=0) blindly."""
        if error is None and response is not None and response.error:
            error = error_for(response.error, response.message)
        if error is not None:
            results = [{"error": error.name, "message": str(error)}] * len(batches)
        elif response is not None:
            results = response.fields["partitions"]
        else:
            results = [{"error": None, "base_offset": -1}] * len(batches)
        with self._lock:
            self._in_flight -= 1
            for batch, result in zip(batches, results, strict=True):
                self._settle(batch, result)
            self._lock.notify_all()

    def _settle(self, batch: ProducerBatch, result: dict) -> None:
        """Resolve a batch's futures, or put it back for a retry. Caller holds the lock."""
        name = result.get("error")
        if name == "DUPLICATE_SEQUENCE_NUMBER":  # written long ago: delivered, offset unknown
            name, result = None, {"base_offset": -1}
        if name:
            error = error_for(name, result.get("message", ""))
            if name == UnknownTopicOrPartitionError.name:
                self._metadata.pop(batch.topic, None)
            if name in REROUTE:
                self.routes.forget(batch.topic)
            if is_retriable(error) and time.monotonic() + self.retry_backoff_s < batch.deadline:
                self._accumulator._reenqueue(batch, time.monotonic() + self.retry_backoff_s)
                return
            self._accumulator._complete(batch, -1, error)
        else:
            self._accumulator._complete(batch, result.get("base_offset", -1), None)


def is_retriable(error: RinglogError) -> bool:
    """Whether a produce error is retried (until the delivery timeout): the
    registry's retriable errors, and a gap in sequences, which means an
    earlier batch is still on its way (it is retried ahead of this one)."""
    return error.retriable or error.name == "OUT_OF_ORDER_SEQUENCE_NUMBER"
