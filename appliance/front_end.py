"""The front end: the clients' ROUTER, request dispatch and fetches from shared maps.

It runs in the supervisor's process, on the supervisor's loop. Produce
requests go to the owning workers (split by owner, answered when every part
is back); fetches are read here, straight from the segment maps through
PartitionReaders, up to the published high watermark, and long polls wait
for a worker's "positions" announcement or their deadline.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zmq

from appliance import protocol
from appliance.group_coordinator import GroupCoordinator
from appliance.metadata import INTERNAL_TOPICS, OFFSETS_TOPIC, Metadata, partition_dir
from appliance.metrics import RequestMetrics, log_size_bytes
from appliance.partitioner import partition_for_key
from shm import LogPosition, PartitionReader
from shm.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    InvalidConfigError,
    InvalidReplicationFactorError,
    InvalidRequestError,
    InvalidRequiredAcksError,
    LeaderNotAvailableError,
    OffsetOutOfRangeError,
    RinglogError,
    ThrottlingQuotaExceededError,
    TopicAlreadyExistsError,
    TopicDeletionDisabledError,
    UnknownServerError,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
)
from shm.records import Record, encode_batch, iter_batches

log = logging.getLogger("ringlog.front_end")

DEFAULT_SESSION_TIMEOUT_MS = 10_000
DEFAULT_FETCH_MAX_BYTES = 50 * 1024 * 1024  # Kafka's fetch.max.bytes
DEFAULT_PARTITION_MAX_BYTES = 1024 * 1024  # Kafka's max.partition.fetch.bytes
MAX_WAIT_MS_LIMIT = 60_000


@dataclass
class _ProduceInFlight:
    """A produce request split across workers, answered when every part is in."""

    identity: bytes
    request_id: int
    acks: int
    results: list[dict | None]
    parts_left: int
    part_indices: dict[bytes, tuple[int, list[int]]] = field(default_factory=dict)
    on_done: Any = None  # internal writes (offset commits) finish here instead of a reply
    started: float = 0.0  # perf_counter at arrival, for the produce latency histogram


@dataclass
class _ParkedFetch:
    identity: bytes
    request: protocol.Request
    deadline: float
    partitions: set[tuple[str, int]]
    started: float = 0.0  # perf_counter at arrival, for the fetch latency histogram


class FrontEnd:
    """Serves client requests; `send_to_worker` reaches a worker by index."""

    def __init__(self, config: Any, metadata: Metadata, client_socket: zmq.Socket,
                 worker_socket: zmq.Socket, metrics: RequestMetrics | None = None):
        self.config = config
        self.metrics = metrics if metrics is not None else RequestMetrics(protocol.SCHEMAS)
        self.opening: set[int] = set()  # workers that have not yet answered their start-up open
        # The supervisor's processes for `status` (pid, RSS, CPU, partitions per process).
        self.process_table: Any = list
        self.metadata = metadata
        self.clients = client_socket
        self.workers = worker_socket
        self.ready_workers: set[int] = set()
        self._readers: dict[tuple[str, int], PartitionReader] = {}
        self._produces: dict[bytes, _ProduceInFlight] = {}
        self._parked: list[_ParkedFetch] = []
        self._tokens = itertools.count(1)
        self._next_producer_id = int(time.time() * 1000) << 8  # unique across restarts
        self.max_in_flight = int(config["queued.max.requests"])
        self.groups = GroupCoordinator(self._partition_count,
                                       int(config["group.min.session.timeout.ms"]),
                                       int(config["group.max.session.timeout.ms"]))
        self._committed: dict[str, dict[tuple[str, int], tuple[int, str]]] = {}
        self._offsets_loaded = False
        # Deleted topics whose workers have not yet closed and removed every
        # partition: the name cannot be reused until they have.
        self._deleting: dict[str, dict[int, int]] = {}  # topic -> partition -> owner

    def _partition_count(self, topic: str) -> int | None:
        found = self.metadata.topics.get(topic)
        return found.partitions if found else None

    # --- dispatch ---------------------------------------------------------------------

    def on_client_message(self, frames: list) -> None:
        identity, body = frames[0].bytes, frames[1:]
        try:
            request = protocol.parse_request(body)
        except protocol.ProtocolError as exc:
            log.info("bad request from %s: %s", identity.hex(), exc)
            self.metrics.error("", exc.error.name)
            self._send(identity, exc.reply)
            return
        self.metrics.request(request.api)
        handler = getattr(self, f"_api_{request.api}", None)
        try:
            if handler is None:
                raise UnsupportedVersionError(f"api {request.api!r} is not served yet")
            try:
                handler(identity, request)
            except (TypeError, ValueError) as exc:  # a value the schema's types let through
                raise InvalidRequestError(f"{request.api}: {exc}") from None
        except RinglogError as exc:
            self.metrics.error(request.api, exc.name)
            self._send(identity, protocol.encode_error(request.api, request.id, exc))
        except Exception as exc:  # a bug must cost one request, never the appliance
            self.metrics.error(request.api, UnknownServerError.name)
            log.exception("request %s %d failed", request.api, request.id)
            self._send(identity, protocol.encode_error(
                request.api, request.id, UnknownServerError(f"{type(exc).__name__}: {exc}")))

    def _send(self, identity: bytes, frames: list) -> None:
        try:
            # Never block: a client that does not read its replies must cost
            # only its own replies, not the loop every other client needs.
            self.clients.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # gone, or not reading: nothing to answer
            log.debug("reply to %s dropped: %s", identity.hex(), exc)

    def _reply(self, identity: bytes, request: protocol.Request, fields: dict,
               payloads: list | tuple = ()) -> None:
        self._send(identity, protocol.encode_response(request.api, request.id, fields, payloads))

    # --- topics -------------------------------------------------------------------------

    def log_config_for(self, topic: str) -> dict:
        config = self.config.log_config(self.metadata.get(topic).configs)
        return {name: getattr(config, name) for name in config.__dataclass_fields__}

    def open_message(self, partitions: list[tuple[str, int]]) -> list:
        entries = [[t, p, str(partition_dir(self.metadata.log_dir, t, p)), self.log_config_for(t)]
                   for t, p in partitions]
        return [b"open", orjson.dumps({"partitions": entries})]

    def send_to_worker(self, worker: int, frames: list) -> bool:
        try:
            self.workers.send_multipart([f"worker-{worker}".encode(), *frames], zmq.NOBLOCK,
                                        copy=False)
        except zmq.ZMQError:  # restarting or overwhelmed: the caller answers retriably
            return False
        return True

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     configs: dict[str, str]) -> None:
        if self._deleting.get(name):
            raise TopicAlreadyExistsError(
                f"topic {name!r} is still being deleted; retry in a moment")
        self._validate_topic_configs(configs)
        topic = self.metadata.create(name, partitions, replication_factor, configs)
        by_worker: dict[int, list[tuple[str, int]]] = {}
        for p, owner in enumerate(topic.owners):
            by_worker.setdefault(owner, []).append((name, p))
        for worker, entries in by_worker.items():
            self.send_to_worker(worker, self.open_message(entries))
        self.groups.topics_changed()

    def send_deletions(self, worker: int) -> None:
        """Ask a worker to close and remove its partitions of deleted topics
        (again after a restart: the removal must happen before the name is reused)."""
        entries = [[t, p, str(partition_dir(self.metadata.log_dir, t, p))]
                   for t, owners in self._deleting.items()
                   for p, owner in owners.items() if owner == worker]
        if entries:
            self.send_to_worker(worker, [b"close", orjson.dumps(
                {"partitions": entries, "delete": True})])

    def on_closed(self, partitions: list) -> None:
        """A worker closed and removed these partitions of deleted topics."""
        for topic, partition in partitions:
            owners = self._deleting.get(topic)
            if owners is not None:
                owners.pop(partition, None)
                if not owners:
                    del self._deleting[topic]

    def _validate_topic_configs(self, configs: dict[str, str]) -> dict:
        from appliance.config import ConfigError, validate_topic_configs

        try:
            return validate_topic_configs(configs)
        except ConfigError as exc:
            raise InvalidConfigError(str(exc)) from None

    def _topic_for_write(self, name: str) -> None:
        """Auto-create on first use when the configuration allows it, as Kafka does."""
        if name in self.metadata.topics:
            return
        if self._deleting.get(name):
            raise LeaderNotAvailableError(f"topic {name!r} is being deleted; retry")
        if not self.config["auto.create.topics.enable"]:
            raise UnknownTopicOrPartitionError(
                f"topic {name!r} does not exist and auto.create.topics.enable is false; "
                "create it first")
        self.create_topic(name, int(self.config["num.partitions"]),
                          int(self.config["default.replication.factor"]), {})

    def _api_metadata(self, identity: bytes, request: protocol.Request) -> None:
        names = request.fields.get("topics")
        allow_create = request.fields.get("allow_auto_create", True)
        topics = []
        for name in (names if names is not None else sorted(self.metadata.topics)):
            entry: dict[str, Any] = {"name": name}
            try:
                if allow_create:
                    self._topic_for_write(name)
                topic = self.metadata.get(name)
            except RinglogError as exc:
                entry.update(protocol.error_entry(exc), partitions=[])
            else:
                entry.update(error=None, partitions=[
                    {"partition": p, "leader": self.config["broker.id"],
                     "replicas": [self.config["broker.id"]], "isr": [self.config["broker.id"]]}
                    for p in range(topic.partitions)])
            topics.append(entry)
        host, port = self.config.listener_host_port("listeners")
        self._reply(identity, request, {
            "brokers": [{"id": self.config["broker.id"], "host": host, "port": port}],
            "topics": topics})

    def _api_create_topics(self, identity: bytes, request: protocol.Request) -> None:
        results = []
        for spec in request.fields["topics"]:
            entry = {"name": spec["name"]}
            try:
                self.create_topic(spec["name"], spec.get("partitions", 1),
                                  spec.get("replication_factor", 1), spec.get("configs", {}))
                entry.update(error=None)
            except InvalidReplicationFactorError as exc:
                entry.update(protocol.error_entry(exc))
            except RinglogError as exc:
                entry.update(protocol.error_entry(exc))
            results.append(entry)
        self._reply(identity, request, {"topics": results})

    def _api_delete_topics(self, identity: bytes, request: protocol.Request) -> None:
        results = []
        for name in request.fields["topics"]:
            entry = {"name": name}
            try:
                if not self.config["delete.topic.enable"]:
                    raise TopicDeletionDisabledError(
                        "topic deletion is disabled; set delete.topic.enable=true")
                if name in INTERNAL_TOPICS:
                    raise InvalidRequestError(f"{name} is internal and cannot be deleted")
                topic = self.metadata.delete(name)
                self._deleting[name] = dict(enumerate(topic.owners))
                self.metrics.topic_deleted(name)
                for p in range(topic.partitions):
                    reader = self._readers.pop((name, p), None)
                    if reader is not None:
                        reader.close()
                for worker in set(topic.owners):
                    self.send_deletions(worker)
                entry.update(error=None)
            except RinglogError as exc:
                entry.update(protocol.error_entry(exc))
            results.append(entry)
        self.groups.topics_changed()
        self._reply(identity, request, {"topics": results})

    def _api_alter_configs(self, identity: bytes, request: protocol.Request) -> None:
        name = request.fields["topic"]
        configs = request.fields["configs"]
        self._validate_topic_configs(configs)
        topic = self.metadata.alter(name, configs)
        by_worker: dict[int, list[tuple[str, int]]] = {}
        for p, owner in enumerate(topic.owners):
            by_worker.setdefault(owner, []).append((name, p))
        for worker, entries in by_worker.items():
            self.send_to_worker(worker, self.open_message(entries))
        self._reply(identity, request, {"topic": name, "configs": topic.configs})

    def _api_describe_topics(self, identity: bytes, request: protocol.Request) -> None:
        names = request.fields.get("topics")
        topics = []
        for name in (names if names is not None else sorted(self.metadata.topics)):
            try:
                topic = self.metadata.get(name)
            except RinglogError as exc:
                topics.append({"name": name, **protocol.error_entry(exc)})
                continue
            partitions = []
            for p, owner in enumerate(topic.owners):
                entry: dict[str, Any] = {"partition": p, "owner_worker": owner}
                entry.update(self._offsets_entry(name, p)[0])
                entry["size_bytes"] = _disk_usage(partition_dir(self.metadata.log_dir, name, p))
                partitions.append(entry)
            topics.append({"name": name, "error": None, "partitions": partitions,
                           "replication_factor": topic.replication_factor,
                           "configs": topic.configs})
        self._reply(identity, request, {"topics": topics})

    # --- produce ------------------------------------------------------------------------

    def _api_init_producer_id(self, identity: bytes, request: protocol.Request) -> None:
        self._next_producer_id += 1
        self._reply(identity, request, {"producer_id": self._next_producer_id,
                                        "producer_epoch": 0})

    def _api_produce(self, identity: bytes, request: protocol.Request) -> None:
        started = time.perf_counter()
        acks = request.fields["acks"]
        if acks not in (protocol.ACKS_NONE, protocol.ACKS_LEADER, protocol.ACKS_ALL):
            raise InvalidRequiredAcksError(f"acks must be 0, 1 or -1 (all), not {acks}")
        entries = request.fields["partitions"]
        if len(entries) != len(request.payloads):
            raise InvalidRequestError(
                f"produce names {len(entries)} partitions but carries "
                f"{len(request.payloads)} record sets; send one frame per partition")
        if len(self._produces) >= self.max_in_flight:
            raise ThrottlingQuotaExceededError(
                f"{len(self._produces)} produce requests in flight; retry shortly")
        results: list[dict | None] = [None] * len(entries)
        by_worker: dict[int, list[int]] = {}
        for i, (topic, partition) in enumerate(entries):
            try:
                if topic in INTERNAL_TOPICS:
                    raise InvalidRequestError(f"{topic} is internal: clients cannot write to it")
                self._topic_for_write(topic)
                by_worker.setdefault(self.metadata.owner(topic, partition), []).append(i)
                self.metrics.bytes_in(topic, len(request.payloads[i]))
            except RinglogError as exc:
                results[i] = {"topic": topic, "partition": partition,
                              **protocol.error_entry(exc), "base_offset": -1}
        flight = _ProduceInFlight(identity, request.id, acks, results, 0, started=started)
        self._dispatch(flight, by_worker, entries, lambda token, indices: [
            b"produce", token,
            orjson.dumps({"acks": acks, "partitions": [entries[i] for i in indices]}),
            *(request.payloads[i] for i in indices)])

    def _dispatch(self, flight: _ProduceInFlight, by_worker: dict[int, list[int]],
                  entries: list, frames_for: Any) -> None:
        """Send each worker its part of a request (frames_for(token, indices));
        a worker that cannot take it fails its part retriably. The flight
        finishes when the last part is answered, or now if none went out."""
        for worker, indices in by_worker.items():
            token = b"%d" % next(self._tokens)
            if worker in self.ready_workers and self.send_to_worker(
                    worker, frames_for(token, indices)):
                flight.parts_left += 1
                flight.part_indices[token] = (worker, indices)
                self._produces[token] = flight
            else:
                self._fail_part(flight, indices, entries, LeaderNotAvailableError(
                    f"worker {worker} is restarting; retry"))
        if flight.parts_left == 0:
            self._finish_produce(flight)

    @staticmethod
    def _fail_part(flight: _ProduceInFlight, indices: list[int], entries: list,
                   error: RinglogError) -> None:
        for i in indices:
            topic, partition = entries[i] if entries else ("", -1)
            flight.results[i] = {"topic": topic, "partition": partition,
                                 **protocol.error_entry(error), "base_offset": -1}

    def on_worker_answer(self, token: bytes, results: list[dict]) -> None:
        """A worker answered one part of a request (a produce, an offsets lookup)."""
        flight = self._produces.pop(token, None)
        if flight is None:
            return
        _, indices = flight.part_indices.pop(token)
        for i, result in zip(indices, results, strict=True):
            flight.results[i] = result
        flight.parts_left -= 1
        if flight.parts_left == 0:
            self._finish_produce(flight)

    def _finish_produce(self, flight: _ProduceInFlight) -> None:
        if flight.on_done is not None:
            flight.on_done(flight.results)
            return
        self.metrics.observe("produce", flight.started)
        if flight.acks == protocol.ACKS_NONE:
            return
        self._send(flight.identity, protocol.encode_response(
            "produce", flight.request_id, {"partitions": flight.results}))

    def worker_lost(self, worker: int) -> None:
        """A worker died: its unanswered produce parts fail retriably, its maps go."""
        self.ready_workers.discard(worker)
        self.opening.discard(worker)
        for token, flight in list(self._produces.items()):
            owner, indices = flight.part_indices.get(token, (None, []))
            if owner != worker:
                continue
            del self._produces[token]
            del flight.part_indices[token]
            for i in indices:
                flight.results[i] = {"topic": "", "partition": -1, "base_offset": -1,
                                     "error": LeaderNotAvailableError.name,
                                     "message": f"worker {worker} died; retry"}
            flight.parts_left -= 1
            if flight.parts_left == 0:
                self._finish_produce(flight)

    # --- fetch ------------------------------------------------------------------------

    def _reader(self, topic: str, partition: int) -> PartitionReader:
        key = (topic, partition)
        reader = self._readers.get(key)
        if reader is None:
            self.metadata.owner(topic, partition)  # raises for unknown partitions
            try:
                reader = PartitionReader.open(partition_dir(self.metadata.log_dir, topic,
                                                            partition))
            except (FileNotFoundError, ValueError):  # no control block yet, or half made
                raise LeaderNotAvailableError(
                    f"partition {topic}-{partition} is being opened by its worker; retry"
                ) from None
            self._readers[key] = reader
        return reader

    def _api_fetch(self, identity: bytes, request: protocol.Request) -> None:
        started = time.perf_counter()
        if not self._try_fetch(identity, request, final=False, started=started):
            wait_ms = min(max(request.fields.get("max_wait_ms", 500), 0), MAX_WAIT_MS_LIMIT)
            partitions = {(t, p) for t, p, _, _ in request.fields["partitions"]}
            self._parked.append(_ParkedFetch(identity, request,
                                             time.monotonic() + wait_ms / 1000, partitions,
                                             started))

    def _try_fetch(self, identity: bytes, request: protocol.Request, final: bool,
                   started: float) -> bool:
        """Read every partition; reply and return True when min_bytes is met, an
        error occurred, the request does not wait, or `final` says time is up."""
        fields = request.fields
        max_bytes = fields.get("max_bytes", DEFAULT_FETCH_MAX_BYTES)
        results, payloads, total, errors = [], [], 0, False
        for topic, partition, offset, partition_max in fields["partitions"]:
            entry: dict[str, Any] = {"topic": topic, "partition": partition, "records": None}
            try:
                reader = self._reader(topic, partition)
                position = reader.position()
                entry.update(error=None, high_watermark=position.high_watermark,
                             log_start_offset=position.log_start_offset,
                             log_end_offset=position.log_end_offset)
                budget = min(partition_max, max_bytes - total)
                if budget > 0 or total == 0:
                    data = reader.read(offset, max(budget, 1))
                    if data:
                        entry["records"] = len(payloads)
                        payloads.append(data)
                        total += len(data)
            except FileNotFoundError:
                self._readers.pop((topic, partition), None)
                entry.update(protocol.error_entry(LeaderNotAvailableError(
                    f"partition {topic}-{partition} is reopening; retry")))
                errors = True
            except (OffsetOutOfRangeError, RinglogError) as exc:
                entry.update(protocol.error_entry(exc))
                errors = True
            results.append(entry)
        done = (final or errors or total >= max(fields.get("min_bytes", 1), 1)
                or fields.get("max_wait_ms", 500) <= 0)
        if done:
            self._reply(identity, request, {"partitions": results}, payloads)
            self._count_fetch(results, payloads, started)
        return done

    def _count_fetch(self, results: list[dict], payloads: list, started: float) -> None:
        """Bytes out per topic and the latency, once per reply (per partition, not record)."""
        for entry in results:
            if entry["records"] is not None:
                self.metrics.bytes_out(entry["topic"], len(payloads[entry["records"]]))
        self.metrics.observe("fetch", started)

    def on_positions(self, partitions: list) -> None:
        """A worker advanced high watermarks: retry the long polls waiting on them."""
        advanced = {(t, p) for t, p, _ in partitions}
        still = []
        for parked in self._parked:
            if parked.partitions & advanced and self._try_fetch(
                    parked.identity, parked.request, final=False, started=parked.started):
                continue
            still.append(parked)
        self._parked = still

    def expire_fetches(self, now: float) -> None:
        still = []
        for parked in self._parked:
            if parked.deadline <= now:
                self._try_fetch(parked.identity, parked.request, final=True,
                                started=parked.started)
            else:
                still.append(parked)
        self._parked = still

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._parked), default=None)

    # --- offsets ----------------------------------------------------------------------

    def _api_list_offsets(self, identity: bytes, request: protocol.Request) -> None:
        """Earliest and latest come from the control blocks; by timestamp asks
        the owner, which alone reads the time indexes."""
        entries = request.fields["partitions"]
        results: list[dict | None] = [None] * len(entries)
        by_worker: dict[int, list[int]] = {}
        for i, (topic, partition, timestamp) in enumerate(entries):
            entry: dict[str, Any] = {"topic": topic, "partition": partition}
            try:
                position = self._reader(topic, partition).position()
                if timestamp == protocol.EARLIEST:
                    entry.update(error=None, offset=position.log_start_offset, timestamp=-1)
                elif timestamp == protocol.LATEST:
                    entry.update(error=None, offset=position.high_watermark, timestamp=-1)
                elif timestamp >= 0:
                    by_worker.setdefault(self.metadata.owner(topic, partition), []).append(i)
                    continue
                else:
                    raise InvalidRequestError(
                        f"timestamp {timestamp}: use -2 (earliest), -1 (latest) or a time in ms")
            except FileNotFoundError:
                entry.update(protocol.error_entry(LeaderNotAvailableError("reopening; retry")))
            except RinglogError as exc:
                entry.update(protocol.error_entry(exc))
            results[i] = entry

        def done(final: list[dict | None]) -> None:
            self._reply(identity, request, {"partitions": final})

        flight = _ProduceInFlight(identity, request.id, protocol.ACKS_ALL, results, 0,
                                  on_done=done)
        self._dispatch(flight, by_worker, entries, lambda token, indices: [
            b"offsets", token, orjson.dumps({"partitions": [entries[i] for i in indices]})])

    # --- consumer groups ----------------------------------------------------------------

    @staticmethod
    def _view(view) -> dict:
        return {"member_id": view.member_id, "generation_id": view.generation_id,
                "assignment": [list(tp) for tp in view.assignment],
                "revoke": [list(tp) for tp in view.revoke],
                "rebalancing": view.rebalancing, "members": view.members}

    def _api_join_group(self, identity: bytes, request: protocol.Request) -> None:
        f = request.fields
        view = self.groups.join(
            f["group_id"], f.get("member_id"), f["topics"],
            f.get("session_timeout_ms", DEFAULT_SESSION_TIMEOUT_MS),
            f.get("assignor", "cooperative-sticky"), _now_ms(), f.get("client_id", ""))
        self._reply(identity, request, self._view(view))

    def _api_heartbeat(self, identity: bytes, request: protocol.Request) -> None:
        f = request.fields
        view = self.groups.heartbeat(f["group_id"], f["member_id"], f["generation_id"],
                                     [tuple(tp) for tp in f["owned"]], _now_ms())
        self._reply(identity, request, self._view(view))

    def _api_leave_group(self, identity: bytes, request: protocol.Request) -> None:
        self.groups.leave(request.fields["group_id"], request.fields["member_id"], _now_ms())
        self._reply(identity, request, {})

    def expire_members(self) -> None:
        deadline = self.groups.next_deadline_ms()
        if deadline is not None and deadline <= _now_ms():
            for group, member in self.groups.expire(_now_ms()):
                log.info("group %s: member %s missed its session timeout; evicted", group,
                         member)

    def _load_offsets(self) -> None:
        """Read the committed offsets back from __consumer_offsets, once."""
        if self._offsets_loaded:
            return
        cache: dict[str, dict[tuple[str, int], tuple[int, str]]] = {}
        for partition in range(self.metadata.get(OFFSETS_TOPIC).partitions):
            try:
                reader = self._reader(OFFSETS_TOPIC, partition)
                position = reader.position()
            except (LeaderNotAvailableError, FileNotFoundError):
                self._readers.pop((OFFSETS_TOPIC, partition), None)
                raise CoordinatorLoadInProgressError(
                    "committed offsets are still loading; retry") from None
            offset = position.log_start_offset
            while offset < position.high_watermark:
                data = reader.read(offset, 1 << 20)
                if not data:
                    break
                for batch in iter_batches(data):
                    for record in batch.records:
                        group, topic, p = orjson.loads(record.key)
                        value = orjson.loads(record.value)
                        cache.setdefault(group, {})[(topic, p)] = (value["offset"],
                                                                  value.get("metadata", ""))
                    offset = batch.header.next_offset
        self._committed = cache
        self._offsets_loaded = True

    def _api_offset_commit(self, identity: bytes, request: protocol.Request) -> None:
        """Check the member's generation (fencing zombies), write the offsets to
        __consumer_offsets, and answer once they are as durable as any record."""
        f = request.fields
        group = f["group_id"]
        self.groups.check_commit(group, f.get("member_id"), f.get("generation_id", -1))
        offsets = [(t, p, o, m) for t, p, o, m in f["offsets"]]
        if not offsets:
            self._reply(identity, request, {"committed": 0})
            return
        self._load_offsets()
        now = _now_ms()
        batch = encode_batch([
            Record(key=orjson.dumps([group, t, p]),
                   value=orjson.dumps({"offset": o, "metadata": m, "timestamp": now}),
                   timestamp=now)
            for t, p, o, m in offsets])
        topic = self.metadata.get(OFFSETS_TOPIC)
        partition = partition_for_key(group.encode(), topic.partitions)
        worker = topic.owners[partition]

        def done(results: list[dict | None]) -> None:
            result = results[0] or {}
            if result.get("error"):
                error = CoordinatorNotAvailableError(
                    f"offsets not stored: {result.get('message') or result['error']}; retry")
                self._send(identity, protocol.encode_error(request.api, request.id, error))
                return
            committed = self._committed.setdefault(group, {})
            for t, p, o, m in offsets:
                committed[(t, p)] = (o, m)
            self._reply(identity, request, {"committed": len(offsets)})

        entries = [[OFFSETS_TOPIC, partition]]
        flight = _ProduceInFlight(identity, request.id, protocol.ACKS_ALL, [None], 0,
                                  on_done=done)
        self._dispatch(flight, {worker: [0]}, entries, lambda token, _: [
            b"produce", token,
            orjson.dumps({"acks": protocol.ACKS_ALL, "partitions": entries}), batch])

    def _api_offset_fetch(self, identity: bytes, request: protocol.Request) -> None:
        self._load_offsets()
        committed = self._committed.get(request.fields["group_id"], {})
        wanted = request.fields.get("partitions")
        keys = [tuple(tp) for tp in wanted] if wanted is not None else sorted(committed)
        offsets = [[t, p, *committed.get((t, p), (-1, ""))] for t, p in keys]
        self._reply(identity, request, {"offsets": offsets})

    def _lag(self, group: str) -> list[dict]:
        lag = []
        for (topic, partition), (offset, _) in sorted(self._committed.get(group, {}).items()):
            entry = {"topic": topic, "partition": partition, "committed": offset}
            try:
                high_watermark = self._reader(topic, partition).position().high_watermark
                entry.update(high_watermark=high_watermark, lag=max(high_watermark - offset, 0))
            except (RinglogError, FileNotFoundError):
                entry.update(high_watermark=None, lag=None)
            lag.append(entry)
        return lag

    def _api_describe_groups(self, identity: bytes, request: protocol.Request) -> None:
        self._load_offsets()
        groups = []
        for group in request.fields["groups"]:
            described = self.groups.describe(group)
            if described.get("state") == "Dead" and group in self._committed:
                described["state"] = "Empty"
            described["group_id"] = group
            described["offsets"] = self._lag(group)
            groups.append(described)
        self._reply(identity, request, {"groups": _jsonable(groups)})

    def _api_list_groups(self, identity: bytes, request: protocol.Request) -> None:
        self._load_offsets()
        listed = {g["group_id"]: g for g in _jsonable(self.groups.list_groups())}
        for group in self._committed:
            listed.setdefault(group, {"group_id": group, "state": "Empty"})
        self._reply(identity, request, {"groups": [listed[g] for g in sorted(listed)]})

    def _api_status(self, identity: bytes, request: protocol.Request) -> None:
        """Liveness and, with details, every partition's offsets and every group's lag:
        what `ringlog status` prints and /metrics exposes."""
        serving = (len(self.ready_workers) == self.metadata.num_workers and not self.opening)
        fields: dict[str, Any] = {"workers": sorted(self.ready_workers),
                                  "topics": len(self.metadata.topics), "serving": serving,
                                  "processes": self.process_table()}
        if request.fields.get("details"):
            fields["partitions"] = self._partition_status()
            fields["groups"] = self._group_status()
        self._reply(identity, request, fields)

    def _partition_status(self) -> list[dict]:
        """Offsets and log bytes of every partition, from the control blocks."""
        partitions = []
        for name in sorted(self.metadata.topics):
            for p, owner in enumerate(self.metadata.topics[name].owners):
                entry: dict[str, Any] = {"topic": name, "partition": p, "owner_worker": owner}
                offsets, position = self._offsets_entry(name, p)
                entry.update(offsets)
                if position is not None:
                    entry["log_bytes"] = log_size_bytes(
                        partition_dir(self.metadata.log_dir, name, p), position)
                partitions.append(entry)
        return partitions

    def _offsets_entry(self, topic: str, partition: int
                       ) -> tuple[dict[str, Any], LogPosition | None]:
        """A partition's offsets from its control block as reply fields (or its
        error), and the position they came from (None on error)."""
        try:
            position = self._reader(topic, partition).position()
        except FileNotFoundError:
            self._readers.pop((topic, partition), None)
            return protocol.error_entry(LeaderNotAvailableError(
                f"partition {topic}-{partition} is reopening; retry")), None
        except RinglogError as exc:
            return protocol.error_entry(exc), None
        return {"error": None, "log_start_offset": position.log_start_offset,
                "log_end_offset": position.log_end_offset,
                "high_watermark": position.high_watermark}, position

    def _group_status(self) -> list[dict] | None:
        """Every group's committed offsets and lag; None while the offsets still load."""
        try:
            self._load_offsets()
        except CoordinatorLoadInProgressError:
            return None
        names = set(self._committed) | {g["group_id"] for g in self.groups.list_groups()}
        return [{"group_id": group, "state": self._group_state(group),
                 "offsets": self._lag(group)} for group in sorted(names)]

    def _group_state(self, group: str) -> str:
        state = self.groups.describe(group).get("state")
        return "Empty" if state == "Dead" and group in self._committed else state

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _jsonable(value: Any) -> Any:
    """Tuples and sets from the coordinator, as JSON lists."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    return value


def _disk_usage(directory: Path) -> int:
    """Bytes the partition's files occupy (sparse preallocation is not counted)."""
    try:
        return sum(e.stat().st_blocks * 512 for e in os.scandir(directory) if e.is_file())
    except FileNotFoundError:
        return 0
