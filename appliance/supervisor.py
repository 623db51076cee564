"""The supervisor: starts the partition workers, keeps them alive, runs the front end.

One process, one loop: it polls the clients' ROUTER and the workers' ROUTER,
respawns a dead worker (with backoff; the worker recovers its partitions from
disk), expires long polls, and speaks sd_notify when systemd started it.
SIGTERM drains: stop taking requests, let the workers flush and close their
logs, exit 0. SIGHUP reloads the configuration's dynamic settings.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import zmq

from appliance import protocol, systemd
from appliance.broker import Broker, ClientReply, PartitionReaders
from appliance.config import KAFKA_SCHEME, ServerConfig
from appliance.http_listener import HttpListener
from appliance.kafka import KafkaClient, KafkaDoor
from appliance.kafka.listener import KafkaListener
from appliance.metadata import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS, Metadata
from appliance.metrics import ProcessProbe, RequestMetrics
from appliance.native import decode_request, encode_reply
from shm.allocator import keep_freed_memory
from workers import protocol as worker_protocol
from workers.replicas import WILDCARD_HOSTS
from workers.sockets import poll_timeout_ms, repoll

log = logging.getLogger("ringlog.supervisor")

RESPAWN_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0)  # consecutive quick deaths wait longer
STOP_TIMEOUT_S = 30.0
# SIGTERM with controlled.shutdown.enable: how long leaderships may take to move
# away before the broker stops anyway (Kafka: 3 retries of 5 s).
CONTROLLED_SHUTDOWN_S = 15.0
LOOP_MS = 100
CLUSTER_POLL_MS = 20  # how soon ZooKeeper's news (queued by kazoo's thread) is applied


@dataclass
class _Child:
    index: int
    process: subprocess.Popen | None = None
    started: float = 0.0
    quick_deaths: int = 0
    respawn_at: float = 0.0
    restarts: int = 0
    door_port: int = 0  # its client door's, kept so that a respawn binds it again
    replication_port: int = 0  # its replication ROUTER's (cluster mode), kept the same way


class Supervisor:
    """The process tree and the loop: it owns every socket and drains the
    broker core's outbox after each call into it."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.num_workers = int(config["num.workers"])
        self.metadata = Metadata(config.log_dir, self.num_workers)
        self.context = zmq.Context()
        self.worker_endpoint = f"ipc://@ringlog-{os.getpid()}-{id(self):x}-workers"
        self.children = [_Child(i) for i in range(self.num_workers)]
        # `status` requests from the HTTP listener's thread reach the front end here.
        self.status_endpoint = f"inproc://ringlog-{id(self):x}-status"
        self.request_metrics = RequestMetrics(protocol.SCHEMAS)
        self.http: HttpListener | None = None
        self.loop_turned = time.monotonic()  # read by /healthz: the loop is alive
        self._probe = ProcessProbe()
        self._stopping = False
        self._moving_until: float | None = None  # controlled shutdown: leaderships moving
        self._reload = False
        self._watchdog = systemd.Watchdog.from_environment()
        self.cluster = None  # a ClusterMember when zookeeper.connect is set
        self.roles = None  # its ReplicaRoles: what each hosted partition's worker does
        self.kafka: KafkaListener | None = None  # the PLAINTEXT listener, if configured

    # --- life cycle --------------------------------------------------------------------

    def run(self) -> int:
        keep_freed_memory()  # requests and fetch replies come and go a MiB a time
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        _name_process("ringlog: supervisor")
        raise_open_file_limit()
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        workers = self.context.socket(zmq.ROUTER)
        workers.setsockopt(zmq.ROUTER_MANDATORY, 1)
        workers.setsockopt(zmq.LINGER, 0)
        workers.bind(self.worker_endpoint)
        clients = self.context.socket(zmq.ROUTER)
        clients.setsockopt(zmq.LINGER, 0)
        clients.setsockopt(zmq.ROUTER_MANDATORY, 1)
        host, port = self.config.listener_host_port("listeners")
        try:
            clients.bind(f"tcp://{host}:{port}")
        except zmq.ZMQError as exc:  # not an OSError: say it as the HTTP listener does
            raise OSError(f"listeners=tcp://{host}:{port}: {os.strerror(exc.errno)}; choose a free "
                          "HOST:PORT for listeners") from None
        clients.bind(self.status_endpoint)
        self.kafka = self._kafka_listener()
        if OFFSETS_TOPIC not in self.metadata.topics and not self.config["zookeeper.connect"]:
            # (a cluster creates it in ZooKeeper, replicated, at the first coordinator lookup)
            self.metadata.create(OFFSETS_TOPIC, int(self.config["offsets.topic.num.partitions"]),
                                 1, dict(OFFSETS_TOPIC_CONFIGS))
        self.clients, self.workers = clients, workers
        if self.config["zookeeper.connect"]:
            from appliance.cluster.cluster_member import ClusterMember  # kazoo: clusters only

            # Every listener is bound before the first connection leaves from the
            # broker's address: an ephemeral port the kernel hands that connection
            # (ZooKeeper's, bound to the replication host) could otherwise be the
            # configured port, and a broker that failed after registering would
            # hold its broker.id in ZooKeeper for a session timeout.
            replication = self._bind_replication_listener()
            self.cluster = ClusterMember.join(
                self.config, self.kafka.door.advertised if self.kafka is not None else None)
        self.broker = Broker(self.config, self.metadata, PartitionReaders(self.metadata),
                             self.request_metrics, self._process_table)
        if self.cluster is not None:
            self.roles = self._replica_roles(replication)
        self.http = HttpListener.start(self.config, self.context, self.status_endpoint,
                                       self.request_metrics, lambda: self.loop_turned)
        for child in self.children:
            self._spawn(child)
        log.info("ringlog serving on tcp://%s:%d%s with %d workers, data in %s",
                 host, port, "" if self.kafka is None else
                 f" and PLAINTEXT://{self.config.kafka_listener()[0]}:{self.kafka.port}",
                 self.num_workers, self.config.log_dir)
        ready_sent = False
        poller = zmq.Poller()
        poller.register(clients, zmq.POLLIN)
        poller.register(workers, zmq.POLLIN)
        polled: list[zmq.Socket] = []  # the replica roles' sockets (cluster mode)
        while not self._stopping or self._moving_leaderships():
            self.loop_turned = time.monotonic()
            timeout = poll_timeout_ms([self.broker.next_deadline()], LOOP_MS)
            if self.roles is not None:
                polled = repoll(poller, polled, self.roles.sockets)
                timeout = min(timeout, CLUSTER_POLL_MS)
            if self.kafka is not None:
                self.kafka.sync(poller)
            events = dict(poller.poll(timeout))
            if workers in events:
                self._drain(workers, self._on_worker_message)
            if clients in events:
                self._drain(clients, self._on_client_message)
            if self.kafka is not None:
                self.kafka.on_events(events, self._on_kafka_request, poller)
                self._send_outbox()
            if self.roles is not None:
                self._cluster_turn(polled, events)
            self.broker.expire(time.monotonic())
            self._watch_children()
            self._send_outbox()
            if not ready_sent and len(self.broker.calls.ready) == self.num_workers:
                systemd.notify("READY=1", f"STATUS=serving {len(self.metadata.topics)} topics "
                               f"with {self.num_workers} workers")
                ready_sent = True
            if self._reload:
                self._reload_config()
            self._watchdog.maybe_ping()
        return self._drain_and_exit(clients, workers)

    def _cluster_turn(self, polled: list[zmq.Socket], events: dict) -> None:
        """Replication's share of the loop's turn: answers from other brokers,
        then what ZooKeeper said. A bug here is logged with its traceback and
        costs what this turn would have applied, not the broker."""
        assert self.roles is not None
        try:
            for socket in polled:
                if socket in events:
                    self.roles.on_readable(socket)
            self.roles.poll()
        except Exception:
            log.exception("cluster state not applied this turn")

    def _drain(self, socket: zmq.Socket, handler) -> None:
        for _ in range(1000):  # bounded so that one busy socket cannot starve the other
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            handler(frames)

    def _on_stop_signal(self, *_: object) -> None:
        self._stopping = True

    def _moving_leaderships(self) -> bool:
        """SIGTERM in a cluster with controlled.shutdown.enable: keep serving
        while the controller moves this broker's leaderships away (bounded by
        CONTROLLED_SHUTDOWN_S), so producers move on without a session
        timeout's wait; then stop."""
        if self.cluster is None or self.roles is None or \
                not self.config["controlled.shutdown.enable"]:
            return False
        now = time.monotonic()
        if self._moving_until is None:
            if not self.cluster.begin_controlled_shutdown():
                return False
            self._moving_until = now + CONTROLLED_SHUTDOWN_S
            log.info("controlled shutdown: moving %d leaderships away",
                     self.roles.movable_leaderships())
        left = self.roles.movable_leaderships()
        if left and now < self._moving_until:
            return True
        if left:
            log.warning("controlled shutdown: %d leaderships did not move in %.0f s; "
                        "stopping anyway", left, CONTROLLED_SHUTDOWN_S)
        return False

    def _on_hup(self, *_: object) -> None:
        self._reload = True

    def _drain_and_exit(self, clients: zmq.Socket, workers: zmq.Socket) -> int:
        """Stop taking requests, let every worker flush and close, then exit 0."""
        systemd.notify("STOPPING=1")
        if self.roles is not None:
            self.roles.close()
        if self.cluster is not None:
            self.cluster.leave()
        if self.http is not None:
            self.http.stop()
        if self.kafka is not None:
            self.kafka.close()
        clients.close()
        for child in self.children:
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in time; killing it", child.index)
                child.process.kill()
                child.process.wait()
        self.broker.close()
        workers.close()
        self.context.term()
        return 0

    # --- workers ----------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        host, _ = self.config.listener_host_port("listeners")
        command = [sys.executable, "-m", "workers", "--index", str(child.index),
                   "--endpoint", self.worker_endpoint, "--retention-check-ms",
                   str(self.config["log.retention.check.interval.ms"]),
                   "--door-host", host, "--door-port", str(child.door_port)]
        if self.cluster is not None:
            replication_host, _ = self.config.listener_host_port("replication.listener")
            command += ["--replica-id", str(self.config["broker.id"]),
                        "--replication-host", replication_host,
                        "--replication-port", str(child.replication_port),
                        "--replica-lag-time-max-ms", str(self.config["replica.lag.time.max.ms"]),
                        "--replica-fetch-wait-max-ms",
                        str(self.config["replica.fetch.wait.max.ms"]),
                        "--replica-fetch-max-bytes", str(self.config["replica.fetch.max.bytes"])]
        child.process = subprocess.Popen(command)
        child.started = time.monotonic()

    def _watch_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                log.error("worker %d (pid %d) exited with %s; respawning", child.index,
                          process.pid, process.returncode)
                self.broker.worker_lost(child.index)
                if self.roles is not None:
                    self.roles.worker_lost(child.index)
                quick = now - child.started < 10
                child.quick_deaths = child.quick_deaths + 1 if quick else 0
                backoff = RESPAWN_BACKOFF_S[min(child.quick_deaths, len(RESPAWN_BACKOFF_S) - 1)]
                child.process = None
                child.respawn_at = now + backoff
                child.restarts += 1
            if child.process is None and now >= child.respawn_at:
                self._spawn(child)

    # --- the broker core's calls and events ------------------------------------------

    def _on_client_message(self, frames: list) -> None:
        identity = frames[0].bytes
        try:
            client, request = decode_request(identity, frames[1:])
        except protocol.ProtocolError as exc:
            log.info("bad request from %s: %s", identity.hex(), exc)
            self.request_metrics.error("", exc.error.name)
            self._send_to_client(identity, exc.reply)
            return
        self.broker.handle(client, request)
        self._send_outbox()

    def _on_kafka_request(self, client: KafkaClient, request) -> None:
        self.broker.handle(client, request)

    def _kafka_listener(self) -> KafkaListener | None:
        """Bind the PLAINTEXT listener, if listeners names one; what it
        advertises is known once it is bound (port 0: the kernel's pick)."""
        address = self.config.kafka_listener()
        if address is None:
            return None
        host, port = address
        listener = KafkaListener(host, port, KafkaDoor(self.config, (host, port)),
                                 int(self.config["socket.request.max.bytes"]))
        listener.door.advertised = self.config.advertised(KAFKA_SCHEME, (host, listener.port))
        return listener

    def _on_worker_message(self, frames: list) -> None:
        try:
            worker = worker_protocol.worker_index(frames[0].bytes)
            message = worker_protocol.parse(frames[1:])
        except ValueError as exc:  # not a worker of ours (the ipc socket is local, not private)
            log.warning("dropped a message on the workers' socket: %s", exc)
            return
        if isinstance(message, worker_protocol.Ready) and 0 <= worker < len(self.children):
            self.children[worker].door_port = _port_of(message.door)
            self.children[worker].replication_port = _port_of(message.replication)
        if isinstance(message, worker_protocol.IsrChange):
            if self.roles is not None:
                self.roles.isr_change(message)
        elif isinstance(message, worker_protocol.FollowerLag):
            if self.roles is not None:
                self.roles.follower_lag.update(((t, p), lag) for t, p, lag in message.partitions)
        else:
            self.broker.on_worker_message(worker, message)
        if isinstance(message, worker_protocol.Ready) and self.roles is not None:
            self.roles.worker_ready(worker, message.replication)  # after its Open
        self._send_outbox()

    def _send_outbox(self) -> None:
        """Send what the core left; what cannot be sent to a worker goes back to it
        (which may leave more: error replies)."""
        while events := self.broker.drain():
            for event in events:
                if isinstance(event, ClientReply):
                    client = event.client
                    if isinstance(client, KafkaClient):
                        if self.kafka is not None:
                            self.kafka.reply(client, event.reply)
                        continue
                    self._send_to_client(client.identity, encode_reply(client, event.reply))
                elif not self._send_to_worker(event.worker, event.message):
                    self.broker.undeliverable(event.worker, event.message)

    def _send_to_client(self, identity: bytes, frames: list) -> None:
        try:
            # Never block: a client that does not read its replies must cost
            # only its own replies, not the loop every other client needs.
            self.clients.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # gone, or not reading: nothing to answer
            log.debug("reply to %s dropped: %s", identity.hex(), exc)

    def _send_to_worker(self, worker: int, message: worker_protocol.ToWorker) -> bool:
        try:
            self.workers.send_multipart([worker_protocol.worker_identity(worker),
                                         *message.encode()], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:  # restarting or overwhelmed: the core answers retriably
            return False
        return True

    def _bind_replication_listener(self) -> zmq.Socket:
        """The ROUTER followers fetch from, on replication.listener."""
        host, port = self.config.listener_host_port("replication.listener")
        listener = self.context.socket(zmq.ROUTER)
        listener.setsockopt(zmq.LINGER, 0)
        try:
            listener.bind(f"tcp://{host}:{port}")
        except zmq.ZMQError as exc:
            listener.close()
            raise OSError(f"replication.listener=tcp://{host}:{port}: {os.strerror(exc.errno)}; "
                          "choose a free HOST:PORT for replication.listener") from None
        return listener

    def _replica_roles(self, listener: zmq.Socket):
        """Cluster mode: serve followers on the bound replication `listener`,
        take topics and roles from ZooKeeper, and let the core ask who leads what."""
        from appliance.cluster.producer_ids import ProducerIdBlocks
        from appliance.cluster.replica_roles import ReplicaRoles

        host, _ = self.config.listener_host_port("replication.listener")
        defaults = self.config.topic_defaults()

        def min_insync_replicas(topic: str) -> int:
            configs = self.metadata.topics[topic].configs if topic in self.metadata.topics else {}
            return int(configs.get("min.insync.replicas", defaults["min.insync.replicas"]))

        assert self.cluster is not None
        roles = ReplicaRoles(self.cluster.membership.client, int(self.config["broker.id"]),
                             self.metadata, self.broker.outbox.to_worker, min_insync_replicas,
                             listener, self.context, None if host in WILDCARD_HOSTS else host)
        topics = self.broker.topics
        topics.cluster = roles
        roles.on_topics_changed = topics.cluster_changed
        self.broker.readers.leads = roles.leads
        offsets_topic = (OFFSETS_TOPIC, int(self.config["offsets.topic.num.partitions"]),
                         int(self.config["offsets.topic.replication.factor"]),
                         dict(OFFSETS_TOPIC_CONFIGS))
        committed = self.broker.committed
        self.broker.coordinator_of = lambda group: roles.coordinator(
            group, committed.partition_for, offsets_topic)
        committed.leadership = lambda partition: roles.led_epoch(OFFSETS_TOPIC, partition)
        self.broker.producer_ids = ProducerIdBlocks(self.cluster.membership.client,
                                                    int(self.config["broker.id"])).next_id
        self.broker.status.cluster = roles
        member = self.cluster
        self.broker.status.cluster_role = lambda: {
            **member.status(), "controller_id": roles.view.controller_id,
            "isr_shrinks": roles.isr_shrinks, "isr_expands": roles.isr_expands}
        roles.start()
        return roles

    def _process_table(self) -> list[dict]:
        """The supervisor and each worker: pid, RSS, CPU, readiness, restarts, partitions."""
        rows = [{"process": "supervisor", "worker": None, **self._probe.stats(os.getpid()),
                 "ready": True, "restarts": 0, "partitions": []}]
        for child in self.children:
            process = child.process
            pid = process.pid if process is not None and process.returncode is None else None
            rows.append({"process": worker_protocol.worker_name(child.index),
                         "worker": child.index, **self._probe.stats(pid),
                         "ready": child.index in self.broker.calls.ready,
                         "restarts": child.restarts,
                         "partitions": [list(tp) for tp in
                                        self.metadata.partitions_of(child.index)]})
        self._probe.forget(row["pid"] for row in rows if row["pid"] is not None)
        return rows

    # --- configuration ----------------------------------------------------------------

    def _reload_config(self) -> None:
        """SIGHUP: take the dynamic settings; say which static ones need a restart."""
        from appliance.config import ConfigError

        self._reload = False
        try:
            new = self.config.reload()
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        for key in self.config.static_changes(new):
            log.warning("%s changed; it takes effect after a restart", key)
        changes = self.config.dynamic_changes(new)
        if not changes:
            return
        self.config = self.config.apply_dynamic(new)
        for key, (old, value) in changes.items():
            log.info("reloaded %s: %s -> %s", key, old, value)
        self.broker.reconfigure(self.config)
        self._send_outbox()


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit, for this process and the
    workers it starts (they inherit it); return the new soft limit.

    Every partition costs descriptors (a worker: its lock and active .log; the
    front end's maps hold none), and the usual soft default (1024) stops a
    few hundred partitions short, while the hard limit is what the operator
    granted (LimitNOFILE= in the unit), as Kafka's operators raise nofile.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit above fs.nr_open
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def _port_of(endpoint: str) -> int:
    """The port of tcp://HOST:PORT (0 if there is none)."""
    _, _, port = endpoint.rpartition(":")
    return int(port) if port.isdigit() else 0


def _name_process(title: str) -> None:
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)
