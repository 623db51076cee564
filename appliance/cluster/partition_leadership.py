"""Topics in ZooKeeper, and the controller's duty to keep every partition's
leader and ISR right as brokers come and go.

Any broker creates a topic by writing its assignment (`create_topic`), and
adds partitions by rewriting it (CreatePartitions). The controller watches
the registered brokers, the topics and each topic's assignment (Kafka's
PartitionModificationsHandler); on any change it goes over every partition
(`reconcile`, at most one waiting at a time): a partition without a state znode
gets its initial state, and one whose leader or ISR members are no longer
live gets the next state of `partition_state_machine`. Each write is
fenced by the controller epoch and conditional on the state znode's version
as read, so neither a replaced controller nor a leader's concurrent ISR
change is overwritten. A full pass per change is simple and, at the
hundreds of partitions a small cluster holds, a few hundred ZooKeeper reads.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError

from appliance.cluster.controller import ControllerElection, NotControllerError
from appliance.cluster.partition_state_machine import initial_state, next_state
from appliance.cluster.znodes import (
    BROKER_IDS,
    NO_LEADER,
    SHUTTING_DOWN,
    TOPICS,
    PartitionState,
    TopicAssignment,
    partition_state_path,
    topic_path,
)
from shm.errors import TopicAlreadyExistsError

log = logging.getLogger("ringlog.cluster")


def create_topic(client: KazooClient, assignment: TopicAssignment) -> None:
    """Write a new topic's assignment; the controller then gives each of its
    partitions a leader."""
    try:
        client.create(topic_path(assignment.topic), assignment.encode(), makepath=True)
    except NodeExistsError:
        raise TopicAlreadyExistsError(f"topic {assignment.topic!r} already exists") from None


def read_assignment(client: KazooClient, topic: str) -> TopicAssignment | None:
    try:
        data, _ = client.get(topic_path(topic))
    except NoNodeError:
        return None
    return TopicAssignment.decode(topic, data)


def read_state(client: KazooClient, topic: str, partition: int
               ) -> tuple[PartitionState, int] | None:
    """The partition's state and its znode version, or None before it has one."""
    try:
        data, stat = client.get(partition_state_path(topic, partition))
    except NoNodeError:
        return None
    return PartitionState.decode(topic, partition, data), stat.version


class PartitionLeadership:
    """While this broker is the controller, keeps partition states in line
    with the live brokers. `unclean(topic)` says whether a topic allows
    unclean leader election."""

    def __init__(self, election: ControllerElection,
                 unclean: Callable[[str], bool] = lambda topic: False):
        self.election = election
        self.client = election.client
        self.unclean = unclean
        self._lock = threading.Lock()
        self._watching_epoch = -1
        self._due_lock = threading.Lock()
        self._due = False  # a reconcile is spawned and has not begun yet
        self._assignments_watched: set[str] = set()  # topics whose assignment is watched
        election.on_elected = self.on_elected

    def on_elected(self, epoch: int) -> None:
        """Start watching brokers and topics for this controller epoch."""
        self._watching_epoch = epoch
        self._assignments_watched = set()
        self.client.ChildrenWatch(BROKER_IDS, lambda _: self._changed(epoch))
        self.client.ChildrenWatch(TOPICS, functools.partial(self._topics_listed, epoch))
        self.client.ChildrenWatch(SHUTTING_DOWN, lambda _: self._changed(epoch))

    def _topics_listed(self, epoch: int, topics: list[str]) -> bool:
        """Topics came or went; watch each new one's assignment too: added
        partitions change a topic's data, not the list of topics."""
        if not self._changed(epoch):
            return False
        for topic in set(topics) - self._assignments_watched:
            self._assignments_watched.add(topic)
            self.client.DataWatch(topic_path(topic),
                                  functools.partial(self._assignment_changed, epoch, topic))
        return True

    def _assignment_changed(self, epoch: int, topic: str, data, _stat) -> bool:
        if data is None:  # deleted: a topic made again under the name is watched anew
            self._assignments_watched.discard(topic)
            return False
        return self._changed(epoch)

    def _changed(self, epoch: int) -> bool:
        """A watch fired: reconcile on kazoo's handler (once for any number of
        watches firing before it begins), or stop watching once this broker
        is no longer the controller of that epoch."""
        if self.election.epoch != epoch or self._watching_epoch != epoch:
            return False
        with self._due_lock:
            if self._due:
                return True
            self._due = True
        self.client.handler.spawn(self._reconcile_due)
        return True

    def _reconcile_due(self) -> None:
        with self._due_lock:
            self._due = False
        self.reconcile()

    def reconcile(self) -> int:
        """One pass over every partition; the number of states written."""
        with self._lock:
            if not self.election.is_controller:
                return 0
            written = 0
            try:
                live = {int(b) for b in self.client.get_children(BROKER_IDS)}
                leaving = {int(b) for b in self.client.get_children(SHUTTING_DOWN)}
                for topic in self.client.get_children(TOPICS):
                    assignment = read_assignment(self.client, topic)
                    if assignment is None:
                        continue  # deleted between the listing and the read
                    for partition, replicas in enumerate(assignment.replicas):
                        written += self._reconcile_partition(topic, partition, replicas, live,
                                                             leaving)
            except NotControllerError:
                log.warning("stopped reconciling: a newer controller exists")
            except KazooException as exc:  # the session went: a new controller will do it
                log.warning("stopped reconciling: %s", type(exc).__name__)
            return written

    def _reconcile_partition(self, topic: str, partition: int, replicas: tuple[int, ...],
                             live: set[int], leaving: set[int] = frozenset()) -> int:
        """Write the partition's next state. Brokers in controlled shutdown
        (`leaving`) count as gone: their leaderships move to another in-sync
        replica and they leave the ISRs, except where no other in-sync
        replica is live: that leader stays until it is really gone."""
        epoch = self.election.epoch
        path = partition_state_path(topic, partition)
        current = read_state(self.client, topic, partition)
        if current is None:
            self.client.ensure_path(path.rsplit("/", 1)[0])
            state = initial_state(replicas, live, epoch)
            results = self.election.fenced(lambda t: t.create(path, state.encode()))
        else:
            state, version = current
            changed = next_state(replicas, state, live - leaving, epoch, self.unclean(topic))
            if changed is not None and changed.leader == NO_LEADER and state.leader in leaving \
                    and state.leader in live:
                changed = None  # nowhere to move it: it stays until the broker is gone
            if changed is None:
                return 0
            state = changed
            results = self.election.fenced(
                lambda t: t.set_data(path, changed.encode(), version=version))
        if isinstance(results[0], Exception):
            # Another writer (the leader changing its ISR) got there first:
            # the watch that follows its write brings us back with fresh state.
            log.info("partition %s-%d state not written (%s); reconciling again", topic,
                     partition, type(results[0]).__name__)
            self.client.handler.spawn(self.reconcile)
            return 0
        log.info("partition %s-%d: leader %d, leader epoch %d, isr %s", topic, partition,
                 state.leader, state.leader_epoch, list(state.isr))
        return 1
