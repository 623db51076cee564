"""Topic metadata of one appliance: topics, their configs and partition owners.

Persisted as one JSON file under the log directory, rewritten whole through
a temporary file, fsync and rename, so a crash leaves the old or the new
version and never a torn one::

    <log.dirs>/ringlog-metadata.json
    {"version": 1,
     "topics": {"orders": {"partitions": 3, "replication_factor": 1,
                           "configs": {"retention.ms": "3600000"},
                           "owners": [0, 1, 0]}}}

`owners[p]` is the index of the worker process that writes partition p; in
a cluster, -1 for a partition this broker holds no replica of.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from shm.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    NotLeaderOrFollowerError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from shm.files import write_atomically

FILE_NAME = "ringlog-metadata.json"
VERSION = 1
MAX_TOPIC_NAME = 249  # Kafka's limit
MAX_PARTITIONS = 100_000
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]+")
NOT_HOSTED = -1  # the owner of a partition with no replica on this broker
OFFSETS_TOPIC = "__consumer_offsets"
INTERNAL_TOPICS = (OFFSETS_TOPIC,)
# Committed offsets are kept forever: without compaction, retention would drop
# a group's only commit of a quiet partition.
OFFSETS_TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1"}


def check_topic_name(name: str) -> None:
    """Kafka's rules: 1-249 of [a-zA-Z0-9._-], and not '.' or '..'."""
    if not name or name in (".", ".."):
        raise InvalidTopicError(f"topic name {name!r} is not allowed; use letters, digits, . _ -")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters long; the limit is {MAX_TOPIC_NAME}")
    if not _LEGAL_NAME.fullmatch(name):
        raise InvalidTopicError(
            f"topic name {name!r} has illegal characters; use only letters, digits, . _ -")


def merge_topic_configs(current: dict[str, str], configs: dict[str, str], replace: bool,
                        deleted: Iterable[str]) -> dict[str, str]:
    """A topic's configs after an alter: `configs` set over the current ones
    (over none with `replace`, Kafka's AlterConfigs), `deleted` dropped so that
    they fall back to the broker's defaults."""
    merged = dict(configs) if replace else {**current, **configs}
    for name in deleted:
        merged.pop(name, None)
    return merged


@dataclass
class Topic:
    name: str
    partitions: int
    replication_factor: int = 1
    configs: dict[str, str] = field(default_factory=dict)
    owners: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"partitions": self.partitions, "replication_factor": self.replication_factor,
                "configs": self.configs, "owners": self.owners}


class Metadata:
    """The appliance's topics; the supervisor is its only writer."""

    def __init__(self, log_dir: Path, num_workers: int, num_brokers: int = 1):
        self.path = log_dir / FILE_NAME
        self.log_dir = log_dir
        self.num_workers = num_workers
        self.num_brokers = num_brokers
        self.topics: dict[str, Topic] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = orjson.loads(self.path.read_bytes())
        for name, t in data.get("topics", {}).items():
            owners = [o % self.num_workers if o >= 0 else NOT_HOSTED for o in t.get("owners", [])]
            topic = Topic(name, t["partitions"], t.get("replication_factor", 1),
                          dict(t.get("configs", {})), owners)
            if len(topic.owners) != topic.partitions:
                topic.owners = self._spread(topic.partitions)
            self.topics[name] = topic

    def _store(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        body = orjson.dumps({"version": VERSION,
                             "topics": {n: t.to_json() for n, t in sorted(self.topics.items())}},
                            option=orjson.OPT_INDENT_2)
        write_atomically(self.path, body)

    def _spread(self, partitions: int, hosted: list[bool] | None = None) -> list[int]:
        """Owners for new partitions: the least loaded workers first, round
        robin; NOT_HOSTED for those `hosted` says have no replica here."""
        load = [0] * self.num_workers
        for topic in self.topics.values():
            for owner in topic.owners:
                if owner != NOT_HOSTED:
                    load[owner] += 1
        owners = []
        for p in range(partitions):
            if hosted is not None and not hosted[p]:
                owners.append(NOT_HOSTED)
                continue
            worker = min(range(self.num_workers), key=lambda w: (load[w], w))
            load[worker] += 1
            owners.append(worker)
        return owners

    def check_new_topic(self, name: str, partitions: int) -> None:
        """What any new topic must be, on a single node or in a cluster."""
        check_topic_name(name)
        if name in self.topics:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(
                f"partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}")

    def create(self, name: str, partitions: int, replication_factor: int = 1,
               configs: dict[str, str] | None = None) -> Topic:
        self.check_new_topic(name, partitions)
        if replication_factor < 1 or replication_factor > self.num_brokers:
            raise InvalidReplicationFactorError(
                f"replication factor {replication_factor} is larger than the number of brokers "
                f"({self.num_brokers}); use at most {self.num_brokers}"
                if replication_factor > self.num_brokers
                else f"replication factor must be at least 1, not {replication_factor}")
        topic = Topic(name, partitions, replication_factor, dict(configs or {}),
                      self._spread(partitions))
        self.topics[name] = topic
        self._store()
        return topic

    def adopt(self, name: str, hosted: list[bool], replication_factor: int,
              configs: dict[str, str]) -> Topic:
        """A cluster's topic (ZooKeeper checked it): this broker's workers own
        the partitions it hosts a replica of."""
        topic = Topic(name, len(hosted), replication_factor, dict(configs),
                      self._spread(len(hosted), hosted))
        self.topics[name] = topic
        self._store()
        return topic

    def check_partition_count(self, name: str, partitions: int) -> Topic:
        """What CreatePartitions may ask of a topic: more partitions than it
        has (Kafka never shrinks a topic), at most MAX_PARTITIONS."""
        topic = self.get(name)
        if partitions <= topic.partitions:
            raise InvalidPartitionsError(
                f"topic {name!r} has {topic.partitions} partitions; the new count must be "
                f"larger, not {partitions}")
        if partitions > MAX_PARTITIONS:
            raise InvalidPartitionsError(
                f"partitions must be at most {MAX_PARTITIONS}, not {partitions}")
        return topic

    def add_partitions(self, name: str, partitions: int,
                       hosted: list[bool] | None = None) -> range:
        """Grow the topic to `partitions`, the new ones spread over the
        workers as create() spreads a topic's (in a cluster, `hosted` says
        which new ones this broker holds a replica of); the new partitions."""
        topic = self.check_partition_count(name, partitions)
        added = range(topic.partitions, partitions)
        topic.owners = topic.owners + self._spread(len(added), hosted)
        topic.partitions = partitions
        self._store()
        return added

    def delete(self, name: str) -> Topic:
        topic = self.get(name)
        del self.topics[name]
        self._store()
        return topic

    def alter(self, name: str, configs: dict[str, str], replace: bool = False,
              deleted: Iterable[str] = ()) -> Topic:
        """Update the topic's configs (`replace`: these are all of them now;
        `deleted` go back to their defaults)."""
        topic = self.get(name)
        topic.configs = merge_topic_configs(topic.configs, configs, replace, deleted)
        self._store()
        return topic

    def get(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        return topic

    def owner(self, name: str, partition: int) -> int:
        topic = self.get(name)
        if not 0 <= partition < topic.partitions:
            raise UnknownTopicOrPartitionError(
                f"partition {partition} of {name!r} does not exist "
                f"(it has {topic.partitions})")
        owner = topic.owners[partition]
        if owner == NOT_HOSTED:
            raise NotLeaderOrFollowerError(
                f"partition {name}-{partition} has no replica on this broker; ask metadata "
                "for its leader")
        return owner

    def partitions_of(self, worker: int) -> list[tuple[str, int]]:
        return [(t.name, p) for t in self.topics.values()
                for p, owner in enumerate(t.owners) if owner == worker]


def partition_dir(log_dir: Path, topic: str, partition: int) -> Path:
    """Kafka's layout: <log.dirs>/<topic>-<partition>."""
    return log_dir / f"{topic}-{partition}"
