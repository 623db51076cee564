"""This broker's replicas in a cluster: which partitions it hosts, which it
leads and which it follows, told to their workers as ZooKeeper's state moves.

The supervisor's loop owns this object (none of it runs on kazoo's thread):

- Topics come from ZooKeeper (ClusterView): the local metadata adopts each
  one, with this broker's workers owning only the partitions it holds a
  replica of (the others' owner is -1, NOT_LEADER_OR_FOLLOWER here), and
  those workers open them.
- Each hosted partition's state decides its worker's role: Lead (this broker
  is the leader: epoch, replicas, ISR, min.insync.replicas) or Follow (the
  leader's worker replication ROUTER, located by asking the leader broker's
  `replication.listener`, REPLICA_LOCATE). Nothing is sent twice for the
  same state, and everything again to a worker that restarted.
- A leader's IsrChange is written to the state znode conditionally on the
  version this broker last saw, from kazoo's async API so the loop never
  waits on ZooKeeper; the worker then gets Lead with ZooKeeper's ISR,
  which confirms or overrules the change.
- Admin requests write ZooKeeper directly (create, delete, alter topics,
  add partitions). A topic whose assignment grew (CreatePartitions) is
  adopted again: the local metadata adds the new partitions, this broker's
  workers open those it hosts, and the controller elects their leaders.

Topics that exist only in the local metadata (`__consumer_offsets`, until it
is replicated) are led by this broker alone at leader epoch 0.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError

from appliance.cluster.cluster_view import Changes, ClusterView
from appliance.cluster.replica_assignment import assign_replicas
from appliance.cluster.znodes import (
    NO_LEADER,
    PartitionState,
    TopicAssignment,
    TopicConfig,
    partition_state_path,
    topic_config_path,
    topic_path,
)
from appliance.metadata import Metadata, merge_topic_configs
from shm.errors import (
    CoordinatorNotAvailableError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    TopicAlreadyExistsError,
    UnknownServerError,
    UnknownTopicOrPartitionError,
)
from workers import protocol as wp
from workers.replication_protocol import (
    LOCATE,
    LOCATED,
    ReplicationProtocolError,
    encode_locate,
    encode_located,
    parse_locate,
    parse_located,
)

log = logging.getLogger("ringlog.cluster")

TopicPartition = tuple[str, int]
LOCATE_RETRY_S = 0.1  # a leader that could not say where it serves a partition (it may not
# have heard of its leadership yet: ZooKeeper tells brokers one by one) is asked again


class ReplicaRoles:
    """Hosted partitions' roles, from ZooKeeper to the workers."""

    def __init__(self, client: KazooClient, broker_id: int, metadata: Metadata,
                 to_worker: Callable[[int, wp.ToWorker], None],
                 min_insync_replicas: Callable[[str], int], listener: zmq.Socket,
                 context: zmq.Context, source_host: str | None):
        self.client = client
        self.broker_id = broker_id
        self.metadata = metadata
        self.to_worker = to_worker
        self.min_insync_replicas = min_insync_replicas
        self.listener = listener  # the ROUTER on replication.listener
        self.context = context
        self.source_host = source_host  # every socket to another broker leaves from our address
        self.view = ClusterView(client)
        self.replication_doors: dict[int, str] = {}  # worker -> its replication ROUTER
        self.ready: set[int] = set()  # workers that opened their partitions
        self._sent: dict[TopicPartition, tuple] = {}  # the last role told each partition's worker
        self._locating: dict[TopicPartition, tuple[int, int, float]] = {}  # leader, epoch, ask at
        # leader broker -> (its replication.listener, our DEALER to it)
        self._dealers: dict[int, tuple[str, zmq.Socket]] = {}
        self._writes: queue.SimpleQueue = queue.SimpleQueue()  # ISR writes' results
        self.isr_shrinks = 0  # ISR changes this broker wrote as a leader (for /metrics)
        self.isr_expands = 0
        self.follower_lag: dict[TopicPartition, int] = {}  # from the workers' FollowerLag
        self.on_topics_changed: Callable[[set[str], set[str], set[str]], None] = \
            lambda added, removed, reconfigured: None

    def start(self) -> None:
        self.view.start()

    # --- the loop's turn ---------------------------------------------------------------

    @property
    def sockets(self) -> list[zmq.Socket]:
        return [self.listener, *(dealer for _, dealer in self._dealers.values())]

    def poll(self) -> None:
        """Apply what ZooKeeper said and what the ISR writes answered; ask
        again where the due partitions' leaders serve them."""
        changes = self.view.take()
        if changes:
            self._apply(changes)
        self._take_writes()
        self._locate_due()

    def _apply(self, changes: Changes) -> None:
        for topic in changes.topics_removed:
            self._sent = {k: v for k, v in self._sent.items() if k[0] != topic}
            self._locating = {k: v for k, v in self._locating.items() if k[0] != topic}
        added = {t for t in changes.topics_added if self._adopt(t)}
        self.on_topics_changed(added, changes.topics_removed,
                               {t for t in changes.configs - added if t in self.metadata.topics})
        keys = set(changes.states)
        for topic in added | changes.configs:
            if topic in self.metadata.topics:  # configs may come before the assignment
                keys |= {(topic, p) for p in range(self.metadata.topics[topic].partitions)}
        if changes.brokers:  # a leader's listener may have moved, or gone
            keys |= set(self._locating)
        self._tell(keys)

    def _adopt(self, topic: str) -> bool:
        """The local metadata takes a topic from ZooKeeper, or the partitions
        added to it; whether it is new or grew here."""
        assignment = self.view.assignments.get(topic)
        if assignment is None:
            return False
        hosted = [self.broker_id in replicas for replicas in assignment.replicas]
        known = self.metadata.topics.get(topic)
        if known is not None:
            if len(hosted) <= known.partitions:
                return False
            self.metadata.add_partitions(topic, len(hosted), hosted[known.partitions:])
            return True
        self.metadata.adopt(topic, hosted, len(assignment.replicas[0]),
                            self.view.configs.get(topic, {}))
        return True

    # --- roles -----------------------------------------------------------------------

    def leader(self, topic: str, partition: int) -> tuple[int, int, list[int], list[int]]:
        """(leader, leader epoch, replicas, isr) as this broker knows them; a
        local-only topic is led here alone."""
        if topic not in self.view.assignments:
            return self.broker_id, 0, [self.broker_id], [self.broker_id]
        replicas = list(self.view.assignments[topic].replicas[partition])
        state = self.view.state(topic, partition)
        if state is None:
            return NO_LEADER, -1, replicas, []
        return state.leader, state.leader_epoch, replicas, list(state.isr)

    def leads(self, topic: str, partition: int) -> bool:
        return self.led_epoch(topic, partition) is not None

    def led_epoch(self, topic: str, partition: int) -> int | None:
        """The leader epoch at which this broker leads the partition, None if it does not."""
        leader, epoch, _, _ = self.leader(topic, partition)
        return epoch if leader == self.broker_id else None

    def movable_leaderships(self) -> int:
        """Partitions this broker leads that another live in-sync replica, not
        shutting down itself, could lead: what a controlled shutdown waits to
        see moved (brokers stopping together do not wait for each other)."""
        return sum(1 for state, _ in self.view.states.values()
                   if state.leader == self.broker_id and any(
                       b != self.broker_id and b in self.view.brokers
                       and b not in self.view.leaving for b in state.isr))

    def worker_ready(self, worker: int, replication_door: str) -> None:
        """A worker (re)started and was told to open its partitions: tell it
        every role again."""
        self.replication_doors[worker] = replication_door
        self.ready.add(worker)
        keys = set(self.metadata.partitions_of(worker))
        for key in keys:
            self._sent.pop(key, None)
        self._tell(keys)

    def worker_lost(self, worker: int) -> None:
        self.ready.discard(worker)
        self.replication_doors.pop(worker, None)

    def _tell(self, keys: set[TopicPartition]) -> None:
        leads: dict[int, list[wp.PartitionLeader]] = {}
        follows: dict[int, list[wp.PartitionFollower]] = {}
        for topic, partition in sorted(keys):
            owner = self._owner(topic, partition)
            if owner is None or owner not in self.ready:
                continue
            leader, epoch, replicas, isr = self.leader(topic, partition)
            if leader == self.broker_id:
                role = ("lead", epoch, tuple(isr))
                message = wp.PartitionLeader(topic, partition, epoch, replicas, isr,
                                             self.min_insync_replicas(topic))
                if self._sent.get((topic, partition)) != role:
                    self._sent[(topic, partition)] = role
                    self._locating.pop((topic, partition), None)
                    leads.setdefault(owner, []).append(message)
            elif leader == NO_LEADER or leader not in self.view.brokers:
                self._follow(owner, topic, partition, epoch, "", follows)
            elif not self._following(topic, partition, epoch):
                # Stop leading or fetching from an old leader at once; fetch
                # from the new one once its broker says where (_located).
                self._follow(owner, topic, partition, epoch, "", follows)
                asked = self._locating.get((topic, partition))
                if asked is None or asked[:2] != (leader, epoch):
                    self._locating[(topic, partition)] = (leader, epoch, 0.0)
        for owner, entries in leads.items():
            self.to_worker(owner, wp.Lead(entries))
        for owner, entries in follows.items():
            self.to_worker(owner, wp.Follow(entries))

    def _following(self, topic: str, partition: int, epoch: int) -> bool:
        """Whether the worker was told where to fetch the partition at this epoch."""
        sent = self._sent.get((topic, partition))
        return sent is not None and sent[:2] == ("follow", epoch) and bool(sent[2])

    def _follow(self, owner: int, topic: str, partition: int, epoch: int, endpoint: str,
                follows: dict[int, list[wp.PartitionFollower]]) -> None:
        role = ("follow", epoch, endpoint)
        if self._sent.get((topic, partition)) != role:
            self._sent[(topic, partition)] = role
            follows.setdefault(owner, []).append(
                wp.PartitionFollower(topic, partition, epoch, endpoint))

    def _owner(self, topic: str, partition: int) -> int | None:
        found = self.metadata.topics.get(topic)
        if found is None or partition >= len(found.owners) or found.owners[partition] < 0:
            return None
        return found.owners[partition]

    # --- locating a leader's worker ----------------------------------------------------

    def _locate_due(self) -> None:
        now = time.monotonic()
        due: dict[int, list[TopicPartition]] = {}
        for key, (leader, epoch, ask_at) in self._locating.items():
            if ask_at <= now:
                due.setdefault(leader, []).append(key)
                self._locating[key] = (leader, epoch, now + LOCATE_RETRY_S)
        for leader, keys in due.items():
            dealer = self._dealer(leader)
            if dealer is not None:
                with contextlib.suppress(zmq.ZMQError):  # not connected: asked again later
                    dealer.send_multipart(encode_locate(keys), zmq.NOBLOCK)

    def _dealer(self, broker_id: int) -> zmq.Socket | None:
        """The DEALER to a broker's replication.listener, made again if it moved."""
        registration = self.view.brokers.get(broker_id)
        if registration is None:
            return None
        endpoint = registration.replication_endpoint
        known = self._dealers.get(broker_id)
        if known is not None and known[0] == endpoint:
            return known[1]
        if known is not None:
            known[1].close(0)
        dealer = self.context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        if self.source_host:
            dealer.connect(f"tcp://{self.source_host}:0;{endpoint.removeprefix('tcp://')}")
        else:
            dealer.connect(endpoint)
        self._dealers[broker_id] = (endpoint, dealer)
        return dealer

    def on_readable(self, socket: zmq.Socket) -> None:
        for _ in range(1000):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if socket is self.listener:
                    self._answer_locate(frames[0], frames[1:])
                else:
                    self._located(parse_located(frames))
            except ReplicationProtocolError as exc:
                log.info("dropped a replication message: %s", exc)

    def _answer_locate(self, identity: bytes, frames: list) -> None:
        """Another broker asks where we serve partitions' replication."""
        if frames and frames[0] == LOCATED:
            return
        if not frames or frames[0] != LOCATE:
            raise ReplicationProtocolError("expected replica_locate")
        answers = []
        for topic, partition in parse_locate(frames):
            endpoint, epoch = "", -1
            if self._hosted(topic, partition):
                leader, epoch, _, _ = self.leader(topic, partition)
                owner = self._owner(topic, partition)
                if leader == self.broker_id and owner in self.ready:
                    endpoint = self.replication_doors.get(owner, "")
            answers.append((topic, partition, epoch, endpoint))
        with contextlib.suppress(zmq.ZMQError):  # gone: it asks again
            self.listener.send_multipart([identity, *encode_located(answers)], zmq.NOBLOCK)

    def _hosted(self, topic: str, partition: int) -> bool:
        return topic in self.view.assignments and \
            partition < len(self.view.assignments[topic].replicas)

    def _located(self, answers: list[tuple[str, int, int, str]]) -> None:
        follows: dict[int, list[wp.PartitionFollower]] = {}
        for topic, partition, epoch, endpoint in answers:
            key = (topic, partition)
            asked = self._locating.get(key)
            if asked is None or not endpoint or asked[1] != epoch:
                continue  # not asked, not served yet, or another leadership: asked again
            owner = self._owner(topic, partition)
            if owner is None or owner not in self.ready:
                continue
            del self._locating[key]
            self._follow(owner, topic, partition, epoch, endpoint, follows)
        for owner, entries in follows.items():
            self.to_worker(owner, wp.Follow(entries))

    # --- ISR changes -------------------------------------------------------------------

    def isr_change(self, change: wp.IsrChange) -> None:
        """A leader worker wants ISRs written: each conditionally on the
        version we last saw, and only while we still lead at its epoch."""
        for topic, partition, epoch, isr in change.partitions:
            key = (topic, partition)
            found = self.view.states.get(key)
            if found is None or found[0].leader != self.broker_id or \
                    found[0].leader_epoch != epoch:
                self._sent.pop(key, None)  # tell the worker what is true instead
                self._tell({key})
                continue
            state, version = found
            new = PartitionState(state.leader, epoch, tuple(isr), state.controller_epoch)
            result = self.client.set_async(partition_state_path(topic, partition),
                                           new.encode(), version=version)
            result.rawlink(lambda done, key=key, old=state, new=new: self._writes.put(
                (key, old, new, done)))

    def _take_writes(self) -> None:
        while True:
            try:
                key, old, new, done = self._writes.get_nowait()
            except queue.Empty:
                return
            try:
                stat = done.get(timeout=0)
            except Exception as exc:  # BadVersion, a lost connection: ZooKeeper's state holds
                log.info("ISR of %s-%d not written (%s)", *key, type(exc).__name__)
            else:
                log.info("partition %s-%d: isr %s at leader epoch %d", *key, list(new.isr),
                         new.leader_epoch)
                if len(new.isr) < len(old.isr):
                    self.isr_shrinks += 1
                elif len(new.isr) > len(old.isr):
                    self.isr_expands += 1
                self.view.set_state(key, new, stat.version)
            self._sent.pop(key, None)
            self._tell({key})

    # --- admin: topics in ZooKeeper -----------------------------------------------------

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     configs: dict[str, str]) -> None:
        """Write the topic's configs and assignment in one transaction; the
        controller then elects its leaders. The local metadata takes it now."""
        live = sorted(self.view.brokers)
        if not 1 <= replication_factor <= len(live):
            raise InvalidReplicationFactorError(
                f"replication factor {replication_factor} needs between 1 and {len(live)} "
                f"live brokers; {len(live)} are registered ({live})")
        replicas = assign_replicas(live, partitions, replication_factor,
                                   start=random.randrange(len(live)))
        assignment = TopicAssignment(name, replicas)
        try:
            transaction = self.client.transaction()
            if self.client.exists(topic_config_path(name)):
                transaction.set_data(topic_config_path(name), TopicConfig(name, configs).encode())
            else:
                transaction.create(topic_config_path(name), TopicConfig(name, configs).encode())
            transaction.create(topic_path(name), assignment.encode())
            results = transaction.commit()
        except KazooException as exc:
            raise UnknownServerError(f"ZooKeeper did not take topic {name!r}: "
                                     f"{type(exc).__name__}; retry") from None
        if any(isinstance(r, NodeExistsError) for r in results):
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        if any(isinstance(r, Exception) for r in results):
            raise UnknownServerError(f"ZooKeeper did not take topic {name!r}: {results}; retry")
        self.view.assignments[name] = assignment
        self.view.configs[name] = dict(configs)
        self._apply(Changes(topics_added={name}))

    def create_partitions(self, name: str, partitions: int, validate_only: bool) -> None:
        """Grow the topic's assignment to `partitions` in ZooKeeper, as Kafka's
        AdminZkClient.addPartitions: the new partitions' replicas go on from
        the existing assignment (same replication factor, same start), the
        write is conditional on the version read (a concurrent change fails
        it), and the controller then gives each new partition its state."""
        try:
            data, stat = self.client.get(topic_path(name))
        except NoNodeError:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist") from None
        except KazooException as exc:
            raise UnknownServerError(f"ZooKeeper did not answer for topic {name!r}: "
                                     f"{type(exc).__name__}; retry") from None
        current = TopicAssignment.decode(name, data)
        if partitions <= len(current.replicas):
            raise InvalidPartitionsError(
                f"topic {name!r} has {len(current.replicas)} partitions; the new count must "
                f"be larger, not {partitions}")
        live = sorted(self.view.brokers)
        replication_factor = len(current.replicas[0])
        if replication_factor > len(live):
            raise InvalidReplicationFactorError(
                f"topic {name!r} has replication factor {replication_factor} and only "
                f"{len(live)} brokers are live ({live})")
        first = current.replicas[0][0]
        start = live.index(first) if first in live else random.randrange(len(live))
        added = assign_replicas(live, partitions - len(current.replicas), replication_factor,
                                start=start, first_partition=len(current.replicas))
        if validate_only:
            return
        assignment = TopicAssignment(name, current.replicas + added)
        try:
            self.client.set(topic_path(name), assignment.encode(), version=stat.version)
        except BadVersionError:
            raise UnknownServerError(f"topic {name!r} changed while its partitions were "
                                     "being added; retry") from None
        except KazooException as exc:
            raise UnknownServerError(f"ZooKeeper did not take the partitions of {name!r}: "
                                     f"{type(exc).__name__}; retry") from None
        self.view.assignments[name] = assignment
        self._apply(Changes(topics_added={name}))

    def delete_topic(self, name: str) -> None:
        """Remove the topic's znodes; every broker (this one too) then removes
        its replicas when its watch reports the topic gone."""
        if name not in self.view.assignments:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        try:
            self.client.delete(topic_path(name), recursive=True)
            self.client.delete(topic_config_path(name))
        except NoNodeError:
            pass
        except KazooException as exc:
            raise UnknownServerError(f"ZooKeeper did not delete topic {name!r}: "
                                     f"{type(exc).__name__}; retry") from None

    def alter_configs(self, name: str, configs: dict[str, str], replace: bool = False,
                      deleted: Iterable[str] = ()) -> dict[str, str]:
        """Merge `configs` into the topic's (`replace`: they are all of them
        now; `deleted` go back to their defaults)."""
        if name not in self.view.assignments:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        merged = merge_topic_configs(self.view.configs.get(name, {}), configs, replace, deleted)
        try:
            self.client.set(topic_config_path(name), TopicConfig(name, merged).encode())
        except NoNodeError:
            self.client.create(topic_config_path(name), TopicConfig(name, merged).encode())
        except KazooException as exc:
            raise UnknownServerError(f"ZooKeeper did not take the configs of {name!r}: "
                                     f"{type(exc).__name__}; retry") from None
        return merged

    def coordinator(self, group: str, partition_for: Callable[[str], int],
                    offsets_topic: tuple[str, int, int, dict[str, str]]
                    ) -> tuple[int, str, int, tuple[str, int] | None]:
        """(broker id, host, port, Kafka host and port) of the group's coordinator: the leader of
        its partition of the offsets topic, which is created in ZooKeeper at
        the first lookup once enough brokers are live (Kafka's rule)."""
        name, partitions, replication_factor, configs = offsets_topic
        if name not in self.view.assignments:
            if len(self.view.brokers) < replication_factor:
                raise CoordinatorNotAvailableError(
                    f"{name} needs offsets.topic.replication.factor={replication_factor} live "
                    f"brokers and {len(self.view.brokers)} are; start more brokers or lower it")
            with contextlib.suppress(TopicAlreadyExistsError):  # another broker was first
                self.create_topic(name, partitions, replication_factor, configs)
        leader = self.leader(name, partition_for(group))[0]
        registration = self.view.brokers.get(leader)
        if registration is None:
            raise CoordinatorNotAvailableError(
                f"group {group!r}'s offsets partition has no leader now; retry")
        return leader, *registration.client_host_port, registration.kafka_host_port

    def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": sorted(self.view.brokers), "controller_id": self.view.controller_id}

    def close(self) -> None:
        for _, dealer in self._dealers.values():
            dealer.close(0)
        self._dealers.clear()
        self.listener.close(0)
