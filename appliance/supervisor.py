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

import orjson
import zmq

from appliance import protocol, systemd
from appliance.front_end import FrontEnd
from appliance.http_listener import HttpListener
from appliance.metadata import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS, Metadata
from appliance.metrics import ProcessProbe, RequestMetrics

log = logging.getLogger("ringlog.supervisor")

RESPAWN_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0)  # consecutive quick deaths wait longer
STOP_TIMEOUT_S = 30.0
LOOP_MS = 100


@dataclass
class _Child:
    index: int
    process: subprocess.Popen | None = None
    started: float = 0.0
    quick_deaths: int = 0
    respawn_at: float = 0.0
    restarts: int = 0


class Supervisor:
    def __init__(self, config):
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
        self._reload = False
        self._watchdog = systemd.Watchdog.from_environment()

    # --- life cycle --------------------------------------------------------------------

    def run(self) -> int:
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
        if OFFSETS_TOPIC not in self.metadata.topics:
            self.metadata.create(OFFSETS_TOPIC, int(self.config["offsets.topic.num.partitions"]),
                                 1, dict(OFFSETS_TOPIC_CONFIGS))
        self.front_end = FrontEnd(self.config, self.metadata, clients, workers,
                                  self.request_metrics)
        self.front_end.process_table = self._process_table
        self.http = HttpListener.start(self.config, self.context, self.status_endpoint,
                                       self.request_metrics, lambda: self.loop_turned)
        for child in self.children:
            self._spawn(child)
        log.info("ringlog serving on tcp://%s:%d with %d workers, data in %s",
                 host, port, self.num_workers, self.config.log_dir)
        ready_sent = False
        poller = zmq.Poller()
        poller.register(clients, zmq.POLLIN)
        poller.register(workers, zmq.POLLIN)
        while not self._stopping:
            self.loop_turned = time.monotonic()
            timeout = LOOP_MS
            deadline = self.front_end.next_deadline()
            if deadline is not None:
                timeout = max(0, min(timeout, int((deadline - time.monotonic()) * 1000) + 1))
            events = dict(poller.poll(timeout))
            if workers in events:
                self._drain(workers, self._on_worker_message)
            if clients in events:
                self._drain(clients, self.front_end.on_client_message)
            self.front_end.expire_fetches(time.monotonic())
            self.front_end.expire_members()
            self._watch_children()
            if not ready_sent and len(self.front_end.ready_workers) == self.num_workers:
                systemd.notify("READY=1", f"STATUS=serving {len(self.metadata.topics)} topics "
                               f"with {self.num_workers} workers")
                ready_sent = True
            if self._reload:
                self._reload_config()
            self._watchdog.maybe_ping()
        return self._drain_and_exit(clients, workers)

    def _drain(self, socket: zmq.Socket, handler) -> None:
        for _ in range(1000):  # bounded so that one busy socket cannot starve the other
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            handler(frames)

    def _on_stop_signal(self, *_: object) -> None:
        self._stopping = True

    def _on_hup(self, *_: object) -> None:
        self._reload = True

    def _drain_and_exit(self, clients: zmq.Socket, workers: zmq.Socket) -> int:
        """Stop taking requests, let every worker flush and close, then exit 0."""
        systemd.notify("STOPPING=1")
        if self.http is not None:
            self.http.stop()
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
        self.front_end.close()
        workers.close()
        self.context.term()
        return 0

    # --- workers ----------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        command = [sys.executable, "-m", "workers", "--index", str(child.index),
                   "--endpoint", self.worker_endpoint, "--retention-check-ms",
                   str(self.config["log.retention.check.interval.ms"])]
        child.process = subprocess.Popen(command)
        child.started = time.monotonic()

    def _watch_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                log.error("worker %d (pid %d) exited with %s; respawning", child.index,
                          process.pid, process.returncode)
                self.front_end.worker_lost(child.index)
                quick = now - child.started < 10
                child.quick_deaths = child.quick_deaths + 1 if quick else 0
                backoff = RESPAWN_BACKOFF_S[min(child.quick_deaths, len(RESPAWN_BACKOFF_S) - 1)]
                child.process = None
                child.respawn_at = now + backoff
                child.restarts += 1
            if child.process is None and now >= child.respawn_at:
                self._spawn(child)

    def _on_worker_message(self, frames: list) -> None:
        identity = frames[0].bytes
        command = frames[1].bytes
        index = int(identity.split(b"-")[1])
        if command in (b"produced", b"answered"):
            self.front_end.on_worker_answer(frames[2].bytes,
                                            orjson.loads(frames[3].bytes)["results"])
        elif command == b"positions":
            self.front_end.on_positions(orjson.loads(frames[2].bytes)["partitions"])
        elif command == b"ready":
            partitions = self.metadata.partitions_of(index)
            self.front_end.ready_workers.add(index)
            if partitions and self.front_end.send_to_worker(
                    index, self.front_end.open_message(partitions)):
                self.front_end.opening.add(index)  # not serving until it has opened them
            self.front_end.send_deletions(index)
        elif command == b"closed":
            self.front_end.on_closed(orjson.loads(frames[2].bytes)["partitions"])
        elif command == b"opened":
            self.front_end.opening.discard(index)
            for topic, partition, error in orjson.loads(frames[2].bytes)["partitions"]:
                if error:
                    log.error("worker %d could not open %s-%d: %s", index, topic, partition,
                              error)

    def _process_table(self) -> list[dict]:
        """The supervisor and each worker: pid, RSS, CPU, readiness, restarts, partitions."""
        rows = [{"process": "supervisor", "worker": None, **self._probe.stats(os.getpid()),
                 "ready": True, "restarts": 0, "partitions": []}]
        for child in self.children:
            process = child.process
            pid = process.pid if process is not None and process.returncode is None else None
            rows.append({"process": f"worker-{child.index}", "worker": child.index,
                         **self._probe.stats(pid),
                         "ready": child.index in self.front_end.ready_workers,
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
        self.config = self.front_end.config = self.config.apply_dynamic(new)
        for key, (old, value) in changes.items():
            log.info("reloaded %s: %s -> %s", key, old, value)
        for index in self.front_end.ready_workers:  # new log settings for every partition
            partitions = self.metadata.partitions_of(index)
            if partitions:
                self.front_end.send_to_worker(index, self.front_end.open_message(partitions))


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


def _name_process(title: str) -> None:
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)
