"""`make cluster`: ZooKeeper and the brokers of config/cluster/ on loopback, in
the foreground, until Ctrl-C.

    python -m loadtest.cluster [--config-dir config/cluster] [--data-dir data/cluster]

The brokers are started from their properties files unchanged (what the
files say is what runs, so they double as the example an operator copies);
the launcher reads the same files only to know where to wait for each broker
and what to print. ZooKeeper is Debian's jar run by loadtest/zookeeper.py,
its data under DATA_DIR/zookeeper, on the one host:port every broker's
`zookeeper.connect` names. Each broker's stderr goes to
DATA_DIR/logs/broker-N.log (not the terminal: three brokers interleaved
there would be unreadable), ZooKeeper's to DATA_DIR/zookeeper/zookeeper.log.

Ctrl-C (or SIGTERM, SIGHUP) stops the brokers first, each draining as on
`systemctl stop`, then ZooKeeper, so that the brokers leave their sessions
while ZooKeeper still answers. Every child runs in a session of its own and
gets SIGTERM if this process dies, even by SIGKILL, so nothing is left
behind. Pressing Enter restarts whatever has stopped (a broker killed to
watch its leaderships move, or ZooKeeper), on the same addresses and data.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from appliance.client import Admin
from appliance.config import SETTINGS, ConfigError, env_var_name, load_config
from loadtest.harness import REPO, Deadline
from loadtest.zookeeper import ZooKeeperFailed, ZooKeeperServer
from shm.errors import RinglogError

CONFIG_DIR = REPO / "config" / "cluster"
DATA_DIR = Path("data") / "cluster"  # relative to the repository, as the files' log.dirs are
START_TIMEOUT_S = 60  # a broker waits up to its session timeout + 5 s for a stale registration
STOP_TIMEOUT_S = 45  # the supervisor gives its workers 30 s to close their logs
TOPIC = "greetings"


class ClusterFailed(RuntimeError):
    """A broker or ZooKeeper did not start, or the files do not make one cluster."""


@dataclass(frozen=True)
class BrokerConfig:
    """What the launcher needs to know of one broker's properties file."""

    broker_id: int
    path: Path
    bootstrap: str  # HOST:PORT of `listeners`' native tcp:// entry
    kafka: str | None  # HOST:PORT of its PLAINTEXT:// entry (Kafka clients), if any
    http: str
    log_dirs: str
    workers: int
    zookeeper_connect: str
    session_timeout_ms: int


def read_broker_configs(config_dir: Path) -> list[BrokerConfig]:
    """Every broker-*.properties in config_dir, by broker.id; ConfigError for a
    file that does not load, ClusterFailed when they do not make one cluster
    (ids or listeners shared, several ZooKeepers)."""
    brokers = []
    for path in sorted(config_dir.glob("broker-*.properties")):
        config = load_config(path, (), {})  # the file alone, as the broker will read it
        host, port = config.listener_host_port("listeners")
        kafka = config.kafka_listener()
        brokers.append(BrokerConfig(
            int(config["broker.id"]), path, f"{host}:{port}",
            f"{kafka[0]}:{kafka[1]}" if kafka else None, config["http.listener"],
            config["log.dirs"], int(config["num.workers"]), config["zookeeper.connect"],
            int(config["zookeeper.session.timeout.ms"])))
    if not brokers:
        raise ClusterFailed(f"no broker-*.properties in {config_dir}")
    brokers.sort(key=lambda broker: broker.broker_id)
    for what, values in (("broker.id", [b.broker_id for b in brokers]),
                         ("listeners", [b.bootstrap for b in brokers]),
                         ("log.dirs", [b.log_dirs for b in brokers])):
        if len(set(values)) != len(values):
            raise ClusterFailed(f"the brokers in {config_dir} share a {what}: {values}")
    connects = {b.zookeeper_connect for b in brokers}
    if len(connects) != 1 or "" in connects:
        raise ClusterFailed(f"the brokers in {config_dir} must name one ZooKeeper in "
                            f"zookeeper.connect, not {sorted(connects)}")
    return brokers


def zookeeper_address(connect: str) -> tuple[str, int]:
    """The one HOST:PORT of a `zookeeper.connect` (its chroot dropped) that the
    launcher starts a standalone ZooKeeper on."""
    servers = connect.split("/", 1)[0]
    if "," in servers:
        raise ClusterFailed(f"zookeeper.connect={connect} names several servers; the "
                            "launcher starts one standalone ZooKeeper")
    host, _, port = servers.rpartition(":")
    return host, int(port)


def bootstrap_list(brokers: Sequence[BrokerConfig]) -> str:
    """Every broker's client address, as `--bootstrap-server` and Kafka take them."""
    return ",".join(broker.bootstrap for broker in brokers)


def commands_to_try(brokers: Sequence[BrokerConfig], ringlog: str,
                    pids: dict[int, int]) -> list[str]:
    """The lines printed once the cluster serves: a replicated topic's round
    trip, where its replicas are, and a broker's failure to watch."""
    victim = brokers[1] if len(brokers) > 1 else brokers[0]
    factor = min(3, len(brokers))
    session_s = victim.session_timeout_ms / 1000
    pid = pids.get(victim.broker_id, "PID")
    return [
        "In another terminal ($B names every broker; a client moves on past a dead one):",
        f"  B={bootstrap_list(brokers)}",
        f"  {ringlog} topics create {TOPIC} --partitions 3 --replication-factor {factor}"
        " --bootstrap-server $B",
        f"  printf 'alice:hello\\nbob:hi\\n' | {ringlog} produce {TOPIC} --key-separator :"
        " --bootstrap-server $B",
        f"  {ringlog} consume {TOPIC} --from-beginning --max-messages 2 --print-key"
        " --bootstrap-server $B",
        f"  {ringlog} topics describe {TOPIC} --bootstrap-server $B"
        "    # Leader, Replicas, Isr per partition",
        *([f"  kcat -b {','.join(b.kafka for b in brokers if b.kafka)} -L -t {TOPIC}"
           "    # the same, as Kafka's clients see it (PLAINTEXT listeners)"]
          if any(b.kafka for b in brokers) else []),
        f"  {ringlog} status --bootstrap-server {victim.bootstrap}"
        f"    # broker {victim.broker_id}'s role and its partitions",
        f"Kill broker {victim.broker_id} and watch its leaderships move:",
        f"  kill -9 {pid}    # new leaders after zookeeper.session.timeout.ms ({session_s:g} s)",
        f"  {ringlog} topics describe {TOPIC} --bootstrap-server $B",
        "Press Enter here to restart whatever stopped (it catches up and rejoins the Isr);"
        " Ctrl-C stops everything.",
    ]


def _settings_from_environment() -> list[str]:
    """RINGLOG_* variables naming settings: they would win over the files."""
    return [name for name in map(env_var_name, (s.name for s in SETTINGS)) if name in os.environ]


class Broker:
    """One broker's `ringlog serve --config FILE`, restartable."""

    def __init__(self, config: BrokerConfig, log_path: Path):
        self.config = config
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.reported = False  # its exit has been told

    def start(self) -> None:
        from workers.__main__ import die_with_parent

        environment = {k: v for k, v in os.environ.items()
                       if k not in _settings_from_environment()}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "appliance", "serve", "--config", str(self.config.path)],
                cwd=REPO, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, start_new_session=True, preexec_fn=die_with_parent)
        self.reported = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_description(self) -> str:
        assert self.process is not None
        code = self.process.returncode
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"

    def failure_line(self) -> str:
        """After an exit with an error, the last line it logged (a traceback's
        exception): the first thing to know, the log has the rest."""
        if self.process is None or not self.process.returncode or self.process.returncode < 0:
            return ""
        return f" ({_shown(self.log_path)} ends: {self.log_tail(1)})"

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_until_serving(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until its status answers with every worker up."""
        deadline = Deadline(f"broker {self.config.broker_id}'s start", timeout_s)
        with Admin(self.config.bootstrap, request_timeout_ms=500) as admin:
            while not deadline.expired:
                if not self.running:
                    raise ClusterFailed(f"broker {self.config.broker_id} "
                                        f"{self.exit_description()}:\n{self.log_tail()}")
                with contextlib.suppress(RinglogError):
                    if len(admin.status().get("workers", ())) >= self.config.workers:
                        return
                time.sleep(0.1)
        raise ClusterFailed(f"broker {self.config.broker_id} was not serving after "
                            f"{timeout_s} s:\n{self.log_tail()}")

    def terminate(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout_s: float) -> str:
        """Its exit once stopped; its whole process group is killed past timeout_s."""
        if self.process is None:
            return "not started"
        try:
            self.process.wait(max(0.1, timeout_s))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            return "killed after the stop timeout"
        return self.exit_description()


def wait_for_members(brokers: Sequence[Broker], timeout_s: float = START_TIMEOUT_S) -> int:
    """Until the cluster's metadata lists every broker; the controller's id."""
    deadline = Deadline("the cluster's forming", timeout_s)
    wanted = {broker.config.broker_id for broker in brokers}
    with Admin(bootstrap_list([b.config for b in brokers]), request_timeout_ms=1000) as admin:
        while not deadline.expired:
            with contextlib.suppress(RinglogError):
                cluster = admin.describe_cluster()
                registered = {broker["id"] for broker in cluster["brokers"]}
                if registered >= wanted and cluster["controller_id"] >= 0:
                    return int(cluster["controller_id"])
            time.sleep(0.2)
    raise ClusterFailed(f"the brokers did not all register within {timeout_s} s")


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _shown(path: Path | str) -> str:
    """A path as the user would type it from the repository."""
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(REPO))
    return str(path)


class Cluster:
    """ZooKeeper and the brokers, started and stopped as one."""

    def __init__(self, configs: Sequence[BrokerConfig], data_dir: Path, out: TextIO):
        self.configs = configs
        self.data_dir = data_dir
        self.out = out
        self.zookeeper: ZooKeeperServer | None = None
        self.brokers: list[Broker] = []
        self.zookeeper_reported = False  # its exit has been told

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def start(self) -> None:
        host, port = zookeeper_address(self.configs[0].zookeeper_connect)
        self.zookeeper = ZooKeeperServer(REPO / self.data_dir / "zookeeper", host=host,
                                         port=port, durable=True)
        self.zookeeper.wait_until_serving()
        self.say(f"ZooKeeper serving on {host}:{port} (pid {self.zookeeper.process.pid}, "
                 f"log {_shown(self.zookeeper.log_path)})")
        logs = REPO / self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for config in self.configs:
            broker = Broker(config, logs / f"broker-{config.broker_id}.log")
            self.brokers.append(broker)
            broker.start()
        for broker in self.brokers:
            broker.wait_until_serving()
            assert broker.process is not None
            self.say(f"broker {broker.config.broker_id} serving on {broker.config.bootstrap} "
                     f"(pid {broker.process.pid}, http {broker.config.http}, data "
                     f"{broker.config.log_dirs}, log {_shown(broker.log_path)})")
        controller = wait_for_members(self.brokers)
        self.say(f"all {len(self.brokers)} brokers registered; the controller is broker "
                 f"{controller}")

    def pids(self) -> dict[int, int]:
        return {b.config.broker_id: b.process.pid for b in self.brokers if b.process}

    def report_exits(self) -> None:
        """Say once of each child that stopped behind the launcher's back."""
        for broker in self.brokers:
            if not broker.running and not broker.reported:
                broker.reported = True
                self.say(f"broker {broker.config.broker_id} {broker.exit_description()}"
                         f"{broker.failure_line()}; press Enter to restart it")
        if self._zookeeper_exited() and not self.zookeeper_reported:
            self.zookeeper_reported = True
            assert self.zookeeper is not None and self.zookeeper.process is not None
            self.say(f"ZooKeeper exited with {self.zookeeper.process.returncode}; "
                     "press Enter to restart it")

    def _zookeeper_exited(self) -> bool:
        process = self.zookeeper.process if self.zookeeper is not None else None
        return process is not None and process.poll() is not None

    def restart_stopped(self) -> None:
        if self._zookeeper_exited():
            assert self.zookeeper is not None
            self.zookeeper.start()
            self.zookeeper.wait_until_serving()
            self.zookeeper_reported = False
            self.say(f"ZooKeeper restarted (pid {self.zookeeper.process.pid})")
        for broker in self.brokers:
            if not broker.running:
                broker.start()
                try:
                    broker.wait_until_serving()
                except ClusterFailed as exc:
                    self.say(f"restart failed: {exc}")
                    continue
                assert broker.process is not None
                self.say(f"broker {broker.config.broker_id} restarted (pid {broker.process.pid})")

    def stop(self) -> None:
        """Brokers first (all at once, each drains), then ZooKeeper."""
        running = [broker for broker in self.brokers if broker.running]
        if running:
            self.say("stopping brokers " + ", ".join(str(b.config.broker_id) for b in running))
        for broker in running:
            broker.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for broker in running:
            self.say(f"broker {broker.config.broker_id} "
                     f"{broker.wait_stopped(deadline - time.monotonic())}")
        if self.zookeeper is not None:
            self.zookeeper.stop()
            self.say("ZooKeeper stopped")


def watch(cluster: Cluster, stdin: TextIO) -> None:
    """Until interrupted: report children that stop, restart them on Enter."""
    reading = stdin is not None and not stdin.closed
    while True:
        cluster.report_exits()
        if not reading:
            time.sleep(0.5)
            continue
        ready, _, _ = select.select([stdin], [], [], 0.5)
        if ready:
            if not stdin.readline():  # end of input: only Ctrl-C or a signal stops us now
                reading = False
                continue
            cluster.restart_stopped()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.cluster", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR,
                        help="where broker-*.properties are (default: config/cluster)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="ZooKeeper's data and the brokers' logs, relative to the "
                             "repository (default: data/cluster; log.dirs is the files')")
    args = parser.parse_args(argv)
    try:
        configs = read_broker_configs(args.config_dir)
    except (ConfigError, ClusterFailed) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 2
    for name in _settings_from_environment():
        print(f"cluster: ignoring {name} from the environment: the files decide",
              file=sys.stderr)
    cluster = Cluster(configs, args.data_dir, sys.stdout)
    # A shell starting us in the background ignores SIGINT for us; Ctrl-C and
    # kill -INT must stop the cluster all the same.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    code = 0
    try:
        cluster.start()
        ringlog = _shown(Path(sys.executable).parent / "ringlog")
        cluster.say()
        for line in commands_to_try(configs, ringlog, cluster.pids()):
            cluster.say(line)
        watch(cluster, sys.stdin)
    except KeyboardInterrupt:
        cluster.say()
    except (ClusterFailed, ZooKeeperFailed, OSError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not cut the stop short and leave children behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        cluster.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
