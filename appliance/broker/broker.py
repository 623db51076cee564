"""The broker core: every request of every door, protocol-neutral and sans I/O.

An adapter hands in typed requests (appliance.broker.requests) with an
opaque `client` to answer; the loop that owns the sockets hands in the
workers' messages and the clock, then drains the outbox: replies for
clients, messages for workers. Nothing here holds a socket; the only
things it touches are the metadata it is given and the shared maps of
the partitions (through PartitionReaders), so it is tested without
processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from appliance.broker import replies as r
from appliance.broker import requests as q
from appliance.broker.delete_records import DeleteRecords
from appliance.broker.fetch import Fetch
from appliance.broker.groups import Groups
from appliance.broker.leader_epochs import offsets_for_leader_epochs
from appliance.broker.offsets import CommittedOffsets, ListOffsets
from appliance.broker.outbox import Event, Outbox
from appliance.broker.produce import Produce
from appliance.broker.readers import PartitionReaders
from appliance.broker.status import ProcessTable, Status
from appliance.broker.topics import Topics
from appliance.broker.worker_calls import WorkerCalls
from appliance.config import ServerConfig
from appliance.group_coordinator import GroupCoordinator
from appliance.metadata import Metadata
from appliance.metrics import RequestMetrics
from shm.errors import InvalidRequestError, RinglogError, UnknownServerError
from workers import protocol as wp

log = logging.getLogger("ringlog.broker")
Coordinator = tuple[int, str, int, tuple[str, int] | None]


class Broker:
    def __init__(self, config: ServerConfig, metadata: Metadata, readers: PartitionReaders,
                 metrics: RequestMetrics, process_table: ProcessTable = list):
        self.metadata = metadata
        self.readers = readers
        self.metrics = metrics
        self.outbox = Outbox()
        self.calls = WorkerCalls(self.outbox)
        # Each ready worker's client door (tcp://HOST:PORT), handed out in metadata.
        self.doors: dict[int, str] = {}
        self.topics = Topics(config, metadata, readers, self.outbox, self.doors)
        self.produce = Produce(metadata, self.topics, self.calls, self.outbox, metrics,
                               int(config["queued.max.requests"]))
        self.fetch = Fetch(readers, self.outbox, metrics, on_park=self._watch)
        self.list_offsets = ListOffsets(metadata, readers, self.calls, self.outbox)
        self.committed = CommittedOffsets(metadata, readers, self.produce)
        self.delete_records = DeleteRecords(metadata, readers, self.calls, self.outbox)
        coordinator = GroupCoordinator(metadata_partition_count(metadata),
                                       int(config["group.min.session.timeout.ms"]),
                                       int(config["group.max.session.timeout.ms"]),
                                       initial_rebalance_delay_ms=int(
                                           config["group.initial.rebalance.delay.ms"]))
        self.topics.on_change = coordinator.topics_changed
        self.groups = Groups(coordinator, self.committed, readers, self.outbox)
        self.status = Status(metadata, readers, self.groups, self.calls, process_table)
        self._next_producer_id = int(time.time() * 1000) << 8  # unique across restarts
        # In a cluster, ids unique across brokers (appliance.cluster.producer_ids).
        self.producer_ids: Callable[[], int] | None = None
        # In a cluster, (broker id, host, port, Kafka host and port) of a group's coordinator.
        self.coordinator_of: Callable[[str], Coordinator] | None = None
        self.config = config
        reply = self._reply
        self._handlers: dict[type, Callable[[Any, Any], None]] = {
            q.MetadataRequest: reply(self.topics.metadata_reply),
            q.CreateTopicsRequest: reply(self.topics.create_topics),
            q.DeleteTopicsRequest: reply(self.topics.delete_topics),
            q.DescribeTopicsRequest: reply(self.topics.describe_topics),
            q.AlterConfigsRequest: reply(self.topics.alter_configs),
            q.ProduceRequest: self.produce.produce,
            q.FetchRequest: lambda client, request: self.fetch.fetch(client, request,
                                                                     time.monotonic()),
            q.ListOffsetsRequest: self.list_offsets.list_offsets,
            q.InitProducerIdRequest: reply(self._init_producer_id),
            q.JoinGroupRequest: reply(self.groups.join),
            q.HeartbeatRequest: reply(self.groups.heartbeat),
            q.LeaveGroupRequest: reply(self.groups.leave),
            q.OffsetCommitRequest: self.groups.commit,
            q.OffsetFetchRequest: reply(self.committed.fetch),
            q.DescribeGroupsRequest: reply(self.groups.describe),
            q.ListGroupsRequest: reply(lambda _request: self.groups.list_groups()),
            q.StatusRequest: reply(self.status.status),
            q.FindCoordinatorRequest: reply(self._find_coordinator),
            q.ClassicJoinGroupRequest: self.groups.classic_join,
            q.SyncGroupRequest: self.groups.sync,
            q.ClassicHeartbeatRequest: reply(self.groups.classic_heartbeat),
            q.ClassicLeaveGroupRequest: reply(self.groups.classic_leave),
            q.DeleteGroupsRequest: self.groups.delete_groups,
            q.OffsetForLeaderEpochRequest: reply(
                lambda request: offsets_for_leader_epochs(self.readers, request)),
            q.DeleteRecordsRequest: self.delete_records.delete_records,
            q.CreatePartitionsRequest: reply(self.topics.create_partitions),
        }

    def _reply(self, answer: Callable[[Any], r.Reply]) -> Callable[[Any, Any], None]:
        """A handler for requests answered at once."""
        return lambda client, request: self.outbox.reply(client, answer(request))

    # --- calls in -------------------------------------------------------------------------

    def handle(self, client: Any, request: q.Request) -> None:
        """Serve one request; its reply (now or later) goes to the outbox for `client`."""
        api = request.API
        self.metrics.request(api)
        try:
            try:
                self._handlers[type(request)](client, request)
            except (TypeError, ValueError) as exc:  # a value the codec's checks let through
                raise InvalidRequestError(f"{api}: {exc}") from None
        except RinglogError as exc:
            self.metrics.error(api, exc.name)
            self.outbox.reply(client, r.ErrorReply(exc))
        except Exception as exc:  # a bug must cost one request, never the appliance
            self.metrics.error(api, UnknownServerError.name)
            log.exception("request %s failed", api)
            self.outbox.reply(client, r.ErrorReply(
                UnknownServerError(f"{type(exc).__name__}: {exc}")))

    def on_worker_message(self, worker: int, message: wp.FromWorker) -> None:
        if isinstance(message, wp.Produced | wp.OffsetsForTimes | wp.RecordsDeleted):
            self.calls.answered(message.token, message)
        elif isinstance(message, wp.Positions):
            self.fetch.on_positions({(t, p) for t, p, _ in message.partitions})
        elif isinstance(message, wp.Traffic):
            self.metrics.add(message)
        elif isinstance(message, wp.Ready):
            if message.door:
                self.doors[worker] = message.door
            self._worker_ready(worker)
        elif isinstance(message, wp.Closed):
            self.topics.on_closed(message.partitions)
        elif isinstance(message, wp.Opened):
            self.readers.opening.discard(worker)
            for opened in message.partitions:
                if opened.error is not None:
                    log.error("worker %d could not open %s-%d: %s", worker, opened.topic,
                              opened.partition, opened.error)

    def _worker_ready(self, worker: int) -> None:
        """A worker (re)started: give it its partitions, and what it must still delete."""
        self.calls.ready.add(worker)
        partitions = self.metadata.partitions_of(worker)
        if partitions:
            self.outbox.to_worker(worker, self.topics.open_message(partitions))
            self.readers.opening.add(worker)  # not serving until it has opened them
        deletions = self.topics.deletions_for(worker)
        if deletions is not None:
            self.outbox.to_worker(worker, deletions)

    def _watch(self, partitions: list[tuple[str, int, int]]) -> None:
        """A long poll parked: ask each owner to announce these partitions."""
        by_owner: dict[int, list[tuple[str, int, int]]] = {}
        for topic, partition, offset in partitions:
            try:
                owner = self.metadata.owner(topic, partition)
            except RinglogError:  # unknown: the fetch's own answer says so
                continue
            by_owner.setdefault(owner, []).append((topic, partition, offset))
        for owner, watched in by_owner.items():
            self.outbox.to_worker(owner, wp.Watch(watched))

    def undeliverable(self, worker: int, message: wp.ToWorker) -> None:
        """The loop could not hand `message` to its worker (restarting, or its
        queue is full): what waited on it fails retriably."""
        if isinstance(message, wp.Produce | wp.ListOffsetsForTimes | wp.DeleteRecords):
            self.calls.undeliverable(message.token)
        elif isinstance(message, wp.Open):
            self.readers.opening.discard(worker)

    def worker_lost(self, worker: int) -> None:
        """A worker died: its unanswered parts fail retriably."""
        self.readers.opening.discard(worker)
        self.doors.pop(worker, None)
        self.calls.worker_lost(worker)

    def expire(self, now: float) -> None:
        """Answer long polls past their wait and evict members past their session."""
        self.fetch.expire(now)
        self.groups.expire()

    def next_deadline(self) -> float | None:
        """When expire() next has work (time.monotonic()), None if nothing waits:
        a parked fetch's wait, a member's session or a group's initial
        rebalance delay (the coordinator counts in wall-clock ms)."""
        deadlines = [d for d in (self.fetch.next_deadline(), self.groups.next_deadline())
                     if d is not None]
        return min(deadlines, default=None)

    def reconfigure(self, config: ServerConfig) -> None:
        """New dynamic settings: new log settings for every partition."""
        self.topics.config = config
        for worker in self.calls.ready:
            partitions = self.metadata.partitions_of(worker)
            if partitions:
                self.outbox.to_worker(worker, self.topics.open_message(partitions))

    # --- events out -----------------------------------------------------------------------

    def drain(self) -> list[Event]:
        return self.outbox.drain()

    def close(self) -> None:
        self.readers.close()

    # --- small requests -------------------------------------------------------------------

    def _find_coordinator(self, request: q.FindCoordinatorRequest) -> r.FindCoordinatorReply:
        """A single node coordinates every group; a cluster broker names the
        leader of the group's offsets partition."""
        if self.coordinator_of is not None:
            return r.FindCoordinatorReply(*self.coordinator_of(request.group_id))
        host, port = self.config.listener_host_port("listeners")
        return r.FindCoordinatorReply(int(self.config["broker.id"]), host, port)

    def _init_producer_id(self, _request: q.InitProducerIdRequest) -> r.InitProducerIdReply:
        if self.producer_ids is not None:
            return r.InitProducerIdReply(self.producer_ids(), 0)
        self._next_producer_id += 1
        return r.InitProducerIdReply(self._next_producer_id, 0)



def metadata_partition_count(metadata: Metadata) -> Callable[[str], int | None]:
    """The coordinator's view of topics: partition counts, None for a topic that is not."""
    def count(topic: str) -> int | None:
        found = metadata.topics.get(topic)
        return found.partitions if found else None
    return count
