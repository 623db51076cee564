"""What this broker knows of the cluster, kept from ZooKeeper watches: the live
brokers, the controller, every topic's assignment and configs, and every
partition's state (leader, leader epoch, ISR) with its znode version.

kazoo runs watch callbacks on its own thread; the supervisor's loop owns
everything else. So the callbacks only read what the watch handed them and
queue it; the loop calls `take()` each turn, which applies the queued
events to the dictionaries below and says what changed. Nothing but the
loop reads or writes those dictionaries.

Each topic's watches belong to one generation: a topic deleted and created
again under the same name gets new watches, and the old ones stop at their
next call instead of reporting the old topic's znodes.
"""

from __future__ import annotations

import functools
import logging
import queue
from dataclasses import dataclass, field

from kazoo.client import KazooClient

from appliance.cluster.znodes import (
    BROKER_IDS,
    CONTROLLER,
    SHUTTING_DOWN,
    TOPICS,
    BrokerRegistration,
    ControllerRegistration,
    PartitionState,
    TopicAssignment,
    TopicConfig,
    broker_path,
    partition_state_path,
    topic_config_path,
    topic_path,
)

log = logging.getLogger("ringlog.cluster")

TopicPartition = tuple[str, int]


@dataclass
class Changes:
    """What one `take()` changed."""

    brokers: bool = False
    controller: bool = False
    topics_added: set[str] = field(default_factory=set)
    topics_removed: set[str] = field(default_factory=set)
    configs: set[str] = field(default_factory=set)
    states: set[TopicPartition] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.brokers or self.controller or self.topics_added or self.topics_removed
                    or self.configs or self.states)


class ClusterView:
    """The cluster as the watches last told it; read by the supervisor's loop."""

    def __init__(self, client: KazooClient):
        self.client = client
        self.brokers: dict[int, BrokerRegistration] = {}
        self.leaving: set[int] = set()  # brokers in controlled shutdown
        self.controller_id = -1
        self.assignments: dict[str, TopicAssignment] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self.states: dict[TopicPartition, tuple[PartitionState, int]] = {}  # with znode version
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        # kazoo's thread only: the generation of each watched broker and topic
        self._broker_watches: dict[int, object] = {}
        self._topic_watches: dict[str, object] = {}

    def start(self) -> None:
        self.client.ChildrenWatch(BROKER_IDS, self._on_brokers)
        self.client.ChildrenWatch(TOPICS, self._on_topics)
        self.client.DataWatch(CONTROLLER, self._on_controller)
        self.client.ChildrenWatch(SHUTTING_DOWN, lambda children: self._events.put(
            ("leaving", {int(c) for c in children if c.isdigit()})))

    # --- kazoo's thread: queue what the watches say ------------------------------------

    def _on_brokers(self, children: list[str]) -> None:
        ids = {int(c) for c in children if c.isdigit()}
        for broker_id in ids - self._broker_watches.keys():
            generation = self._broker_watches[broker_id] = object()
            self.client.DataWatch(broker_path(broker_id),
                                  functools.partial(self._on_broker, broker_id, generation))
        for broker_id in self._broker_watches.keys() - ids:
            del self._broker_watches[broker_id]
            self._events.put(("broker", broker_id, None))

    def _on_broker(self, broker_id: int, generation: object, data, _stat) -> bool:
        if self._broker_watches.get(broker_id) is not generation:
            return False
        self._events.put(("broker", broker_id, self._decode(
            lambda: BrokerRegistration.decode(broker_id, data), data)))
        return True

    def _on_controller(self, data, _stat) -> None:
        registration = self._decode(lambda: ControllerRegistration.decode(data), data)
        self._events.put(("controller", -1 if registration is None else registration.broker_id))

    def _on_topics(self, children: list[str]) -> None:
        names = set(children)
        for topic in names - self._topic_watches.keys():
            generation = self._topic_watches[topic] = object()
            self.client.DataWatch(topic_config_path(topic),
                                  functools.partial(self._on_config, topic, generation))
            self.client.DataWatch(topic_path(topic),
                                  functools.partial(self._on_assignment, topic, generation, set()))
        for topic in self._topic_watches.keys() - names:
            del self._topic_watches[topic]
            self._events.put(("topic", topic, None))

    def _on_assignment(self, topic: str, generation: object, watched: set[int], data,
                       _stat) -> bool:
        if self._topic_watches.get(topic) is not generation:
            return False
        assignment = self._decode(lambda: TopicAssignment.decode(topic, data), data)
        if assignment is None:
            return True  # deleted: the children watch reports the topic gone
        self._events.put(("topic", topic, assignment))
        for partition in range(len(assignment.replicas)):
            if partition not in watched:
                watched.add(partition)
                self.client.DataWatch(partition_state_path(topic, partition), functools.partial(
                    self._on_state, topic, partition, generation))
        return True

    def _on_config(self, topic: str, generation: object, data, _stat) -> bool:
        if self._topic_watches.get(topic) is not generation:
            return False
        config = self._decode(lambda: TopicConfig.decode(topic, data), data)
        self._events.put(("config", topic, {} if config is None else config.configs))
        return True

    def _on_state(self, topic: str, partition: int, generation: object, data, stat) -> bool:
        if self._topic_watches.get(topic) is not generation:
            return False
        state = self._decode(lambda: PartitionState.decode(topic, partition, data), data)
        if state is not None:
            self._events.put(("state", (topic, partition), state, stat.version))
        return True

    @staticmethod
    def _decode(decode, data):
        """The decoded znode, None when it does not exist or cannot be read."""
        if data is None:
            return None
        try:
            return decode()
        except ValueError as exc:
            log.error("ignoring a znode: %s", exc)
            return None

    # --- the loop's thread ---------------------------------------------------------------

    def take(self) -> Changes:
        """Apply every queued event; what changed."""
        changes = Changes()
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return changes
            self._apply(event, changes)

    def _apply(self, event: tuple, changes: Changes) -> None:
        kind = event[0]
        if kind == "broker":
            _, broker_id, registration = event
            if registration is None:
                self.brokers.pop(broker_id, None)
            else:
                self.brokers[broker_id] = registration
            changes.brokers = True
        elif kind == "leaving":
            self.leaving = event[1]
            changes.brokers = True
        elif kind == "controller":
            self.controller_id = event[1]
            changes.controller = True
        elif kind == "topic":
            _, topic, assignment = event
            if assignment is None:
                self.forget_topic(topic)
                changes.topics_removed.add(topic)
                changes.topics_added.discard(topic)
            elif self.assignments.get(topic) != assignment:
                self.assignments[topic] = assignment
                changes.topics_added.add(topic)
        elif kind == "config":
            _, topic, configs = event
            if self.configs.get(topic) != configs:
                self.configs[topic] = configs
                changes.configs.add(topic)
        elif kind == "state":
            _, key, state, version = event
            if key[0] in self.assignments:
                self.set_state(key, state, version)
                changes.states.add(key)

    def set_state(self, key: TopicPartition, state: PartitionState, version: int) -> None:
        """A state this broker wrote (its ISR change) or a watch reported;
        never an older version over a newer one."""
        current = self.states.get(key)
        if current is None or version >= current[1]:
            self.states[key] = (state, version)

    def forget_topic(self, topic: str) -> None:
        self.assignments.pop(topic, None)
        self.configs.pop(topic, None)
        for key in [k for k in self.states if k[0] == topic]:
            del self.states[key]

    def state(self, topic: str, partition: int) -> PartitionState | None:
        found = self.states.get((topic, partition))
        return None if found is None else found[0]
