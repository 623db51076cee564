"""Topics: metadata, creation (and auto-creation), new partitions, deletion,
configs, description.

Creating a topic records its partitions' owners in the metadata and asks
each owner to open its partitions; deleting one asks the owners to close
and remove them, and the name stays taken until every owner has (again
after a restart of the owner).

In a cluster (`cluster` set: appliance.cluster.replica_roles) topics live in
ZooKeeper: creating, deleting and reconfiguring write there, and every
broker applies what its watches report (`cluster_changed`); metadata names
each partition's leader, leader epoch, replicas and ISR as ZooKeeper has
them, and only the leader broker hands out its worker's door.

CreatePartitions (Kafka's API 37) grows a topic: on a single node the
metadata spreads the new partitions over the workers and their owners open
them; in a cluster the assignment of the new partitions is written to
ZooKeeper and every broker adopts them from its watch. The offsets topic
is refused: a group's partition of it is murmur2(group) modulo its count,
so growing it would hide every group's committed offsets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from appliance.broker import replies as r
from appliance.broker.outbox import Outbox
from appliance.broker.readers import PartitionReaders
from appliance.broker.requests import (
    AlterConfigsRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    DescribeTopicsRequest,
    MetadataRequest,
)
from appliance.config import (
    ConfigError,
    ServerConfig,
    validate_topic_config_names,
    validate_topic_configs,
)
from appliance.metadata import INTERNAL_TOPICS, NOT_HOSTED, Metadata
from shm.errors import (
    InvalidConfigError,
    InvalidRequestError,
    LeaderNotAvailableError,
    RinglogError,
    TopicAlreadyExistsError,
    TopicDeletionDisabledError,
    UnknownTopicOrPartitionError,
)
from workers import protocol as wp


class Topics:
    def __init__(self, config: ServerConfig, metadata: Metadata, readers: PartitionReaders,
                 outbox: Outbox, doors: dict[int, str] | None = None):
        self.config = config
        self.metadata = metadata
        self.readers = readers
        self.outbox = outbox
        self.doors = doors if doors is not None else {}  # worker -> its client door
        # Deleted topics whose owners have not yet closed and removed every
        # partition: the name cannot be reused until they have.
        self._deleting: dict[str, dict[int, int]] = {}  # topic -> partition -> owner
        self.on_change = lambda: None  # the groups rebalance on topic changes
        self.cluster: Any = None  # ReplicaRoles in a cluster: topics live in ZooKeeper

    # --- the workers' side ---------------------------------------------------------------

    def open_message(self, partitions: list[tuple[str, int]]) -> wp.Open:
        """Open (or reconfigure) these partitions with their topics' log configs."""
        configs: dict[str, dict] = {}
        entries = []
        for t, p in partitions:
            if t not in configs:
                config = self.config.log_config(self.metadata.get(t).configs)
                configs[t] = {name: getattr(config, name) for name in config.__dataclass_fields__}
            entries.append(wp.PartitionToOpen(t, p, str(self.readers.directory(t, p)),
                                              configs[t]))
        return wp.Open(entries)

    def open_all(self, topic: str) -> None:
        """Every owner of the topic (re)opens its partitions of it."""
        self.open_partitions(topic, range(self.metadata.get(topic).partitions))

    def open_partitions(self, topic: str, partitions: range) -> None:
        """The owners of these partitions of the topic (re)open them."""
        owners = self.metadata.get(topic).owners
        by_worker: dict[int, list[tuple[str, int]]] = {}
        for p in partitions:
            if owners[p] != NOT_HOSTED:
                by_worker.setdefault(owners[p], []).append((topic, p))
        for worker, entries in by_worker.items():
            self.outbox.to_worker(worker, self.open_message(entries))

    def deletions_for(self, worker: int) -> wp.Close | None:
        """What a worker still has to remove of deleted topics (after a restart too)."""
        entries = [(t, p, str(self.readers.directory(t, p)))
                   for t, owners in self._deleting.items()
                   for p, owner in owners.items() if owner == worker]
        return wp.Close(entries, delete=True) if entries else None

    def on_closed(self, partitions: list[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            owners = self._deleting.get(topic)
            if owners is not None:
                owners.pop(partition, None)
                if not owners:
                    del self._deleting[topic]

    # --- requests --------------------------------------------------------------------------

    def create(self, name: str, partitions: int, replication_factor: int,
               configs: dict[str, str]) -> None:
        if self._deleting.get(name):
            raise TopicAlreadyExistsError(
                f"topic {name!r} is still being deleted; retry in a moment")
        _validate(configs)
        if self.cluster is not None:  # the local metadata takes it from ZooKeeper's answer
            self.metadata.check_new_topic(name, partitions)
            self.cluster.create_topic(name, partitions, replication_factor, configs)
            return
        self.metadata.create(name, partitions, replication_factor, configs)
        self.open_all(name)
        self.on_change()

    def cluster_changed(self, added: set[str], removed: set[str],
                        reconfigured: set[str]) -> None:
        """ZooKeeper's topics moved: open what this broker now hosts, remove
        what was deleted, reopen with new configs."""
        for name in added:
            self.open_all(name)
        for name in removed:
            if name in self.metadata.topics:
                self._remove(name)
        for name in reconfigured:
            if name in self.metadata.topics:
                self.metadata.alter(name, self.cluster.view.configs.get(name, {}), replace=True)
                self.open_all(name)
        if added or removed:
            self.on_change()

    def for_write(self, name: str) -> None:
        """Auto-create on first use when the configuration allows it, as Kafka does."""
        if name in self.metadata.topics:
            return
        if self._deleting.get(name):
            raise LeaderNotAvailableError(f"topic {name!r} is being deleted; retry")
        if not self.config["auto.create.topics.enable"]:
            raise UnknownTopicOrPartitionError(
                f"topic {name!r} does not exist and auto.create.topics.enable is false; "
                "create it first")
        self.create(name, int(self.config["num.partitions"]),
                    int(self.config["default.replication.factor"]), {})

    def metadata_reply(self, request: MetadataRequest) -> r.MetadataReply:
        topics = []
        for name in self._names(request.topics):
            try:
                if request.allow_auto_create:
                    self.for_write(name)
                topic = self.metadata.get(name)
            except RinglogError as exc:
                topics.append(r.TopicMetadata(name, error=exc))
                continue
            topics.append(r.TopicMetadata(name, [self._partition_metadata(name, p)
                                                 for p in range(topic.partitions)]))
        if self.cluster is None:
            broker_id = self.config["broker.id"]
            host, port = self.config.listener_host_port("listeners")
            return r.MetadataReply([r.BrokerInfo(broker_id, host, port)], topics, broker_id)
        brokers = [r.BrokerInfo(b, *reg.client_host_port, reg.kafka_host_port)
                   for b, reg in sorted(self.cluster.view.brokers.items())]
        return r.MetadataReply(brokers, topics, self.cluster.view.controller_id)

    def _partition_metadata(self, topic: str, partition: int) -> r.PartitionMetadata:
        """Its leader as ZooKeeper has it, and the door only where this broker
        leads it (it knows no other broker's doors)."""
        leader, epoch, replicas, isr = self._leader(topic, partition)
        error = None if leader >= 0 else LeaderNotAvailableError(
            f"partition {topic}-{partition} has no leader now; retry")
        door = self._door(topic, partition) if leader == self.config["broker.id"] else None
        return r.PartitionMetadata(partition, leader, replicas, isr, door, epoch, error)

    def _door(self, topic: str, partition: int) -> str | None:
        """Where clients produce and fetch the partition directly: its owner's
        door, once the owner has opened it (None: through the front end)."""
        owner = self.metadata.topics[topic].owners[partition]
        if owner == NOT_HOSTED or owner in self.readers.opening:
            return None
        return self.doors.get(owner)

    def create_topics(self, request: CreateTopicsRequest) -> r.CreateTopicsReply:
        results = []
        for spec in request.topics:
            try:
                self.create(spec.name, spec.partitions, spec.replication_factor, spec.configs)
                results.append(r.TopicResult(spec.name))
            except RinglogError as exc:
                results.append(r.TopicResult(spec.name, exc))
        return r.CreateTopicsReply(results)

    def create_partitions(self, request: CreatePartitionsRequest) -> r.CreatePartitionsReply:
        results = []
        grown = False
        for name, partitions in request.topics:
            try:
                grown |= self._add_partitions(name, partitions, request.validate_only)
                results.append(r.TopicResult(name))
            except RinglogError as exc:
                results.append(r.TopicResult(name, exc))
        if grown:
            self.on_change()  # the groups subscribed to it rebalance over the new partitions
        return r.CreatePartitionsReply(results)

    def _add_partitions(self, name: str, partitions: int, validate_only: bool) -> bool:
        """Grow one topic (or only check that it may grow); whether it grew here now."""
        if name in INTERNAL_TOPICS:
            raise InvalidRequestError(
                f"{name} is internal: its partition count decides each group's partition")
        if self._deleting.get(name):
            raise UnknownTopicOrPartitionError(f"topic {name!r} is being deleted")
        self.metadata.check_partition_count(name, partitions)
        if self.cluster is not None:  # every broker adopts them when its watch reports them
            self.cluster.create_partitions(name, partitions, validate_only)
            return False
        if validate_only:
            return False
        self.open_partitions(name, self.metadata.add_partitions(name, partitions))
        return True

    def delete_topics(self, request: DeleteTopicsRequest) -> r.DeleteTopicsReply:
        results = []
        for name in request.topics:
            try:
                self._delete(name)
                results.append(r.TopicResult(name))
            except RinglogError as exc:
                results.append(r.TopicResult(name, exc))
        self.on_change()
        return r.DeleteTopicsReply(results)

    def _delete(self, name: str) -> None:
        if not self.config["delete.topic.enable"]:
            raise TopicDeletionDisabledError(
                "topic deletion is disabled; set delete.topic.enable=true")
        if name in INTERNAL_TOPICS:
            raise InvalidRequestError(f"{name} is internal and cannot be deleted")
        if self.cluster is not None:  # removed here too once the watch reports it gone
            self.cluster.delete_topic(name)
            return
        self._remove(name)

    def _remove(self, name: str) -> None:
        """Forget the topic and have its owners close and remove its partitions."""
        topic = self.metadata.delete(name)
        owners = {p: o for p, o in enumerate(topic.owners) if o != NOT_HOSTED}
        if owners:
            self._deleting[name] = owners
        for p in range(topic.partitions):
            self.readers.forget(name, p)
        for worker in set(owners.values()):
            self.outbox.to_worker(worker, self.deletions_for(worker))

    def alter_configs(self, request: AlterConfigsRequest) -> r.AlterConfigsReply:
        _validate(request.configs, request.deleted)
        if self.cluster is not None:  # every broker reopens when its watch reports it
            self.metadata.get(request.topic)
            return r.AlterConfigsReply(request.topic, self.cluster.alter_configs(
                request.topic, request.configs, request.replace, request.deleted))
        topic = self.metadata.alter(request.topic, request.configs, request.replace,
                                    request.deleted)
        self.open_all(request.topic)
        return r.AlterConfigsReply(request.topic, topic.configs)

    def describe_topics(self, request: DescribeTopicsRequest) -> r.DescribeTopicsReply:
        topics = []
        for name in self._names(request.topics):
            try:
                topic = self.metadata.get(name)
            except RinglogError as exc:
                topics.append(r.TopicDescription(name, error=exc))
                continue
            partitions = []
            for p, owner in enumerate(topic.owners):
                offsets, error = self.offsets_or_error(name, p)
                leader, epoch, replicas, isr = self._leader(name, p)
                partitions.append(r.PartitionDescription(
                    p, owner, offsets, _disk_usage(self.readers.directory(name, p)), error,
                    leader, epoch, replicas, isr))
            topics.append(r.TopicDescription(name, partitions, topic.replication_factor,
                                             topic.configs))
        return r.DescribeTopicsReply(topics)

    def _leader(self, topic: str, partition: int) -> tuple[int, int, list[int], list[int]]:
        """(leader, leader epoch, replicas, isr): a single node leads everything."""
        if self.cluster is not None:
            return self.cluster.leader(topic, partition)
        broker_id = self.config["broker.id"]
        return broker_id, 0, [broker_id], [broker_id]

    def offsets_or_error(self, topic: str, partition: int
                         ) -> tuple[r.PartitionOffsets | None, RinglogError | None]:
        try:
            return self.readers.offsets(topic, partition)[0], None
        except RinglogError as exc:
            return None, exc

    def _names(self, names: list[str] | None) -> list[str]:
        return names if names is not None else sorted(self.metadata.topics)


def _validate(configs: dict[str, str], deleted: tuple[str, ...] = ()) -> dict:
    try:
        validate_topic_config_names(deleted)
        return validate_topic_configs(configs)
    except ConfigError as exc:
        raise InvalidConfigError(str(exc)) from None


def _disk_usage(directory: Path) -> int:
    """Bytes the partition's files occupy (sparse preallocation is not counted)."""
    try:
        return sum(e.stat().st_blocks * 512 for e in os.scandir(directory) if e.is_file())
    except FileNotFoundError:
        return 0
