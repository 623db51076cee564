"""The three-broker example (config/cluster/) and what `make cluster` reads
of it and prints: each file loads as the broker will load it, the three make
one cluster on their own loopback addresses, and every command printed for
the user is one the `ringlog` command line accepts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main as ringlog
from appliance.config import load_config
from loadtest.cluster import (
    CONFIG_DIR,
    ClusterFailed,
    bootstrap_list,
    commands_to_try,
    read_broker_configs,
    zookeeper_address,
)

EXAMPLE_FILES = sorted(CONFIG_DIR.iterdir())
SERVICE_FILES = [path for path in EXAMPLE_FILES if path.suffix == ".properties"]


def test_the_example_holds_three_broker_files_and_nothing_else():
    assert [path.name for path in EXAMPLE_FILES] == [
        "broker-1.properties", "broker-2.properties", "broker-3.properties"]


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda path: path.name)
def test_every_file_loads_as_ringlog_serve_would_load_it(path: Path):
    config = load_config(path, (), {})  # no environment: the file alone
    assert config["zookeeper.connect"], "a file without zookeeper.connect is a single node"


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda path: path.name)
def test_a_broker_serves_everything_on_its_own_address(path: Path):
    """One address per broker, so that a fault test or a firewall can cut a
    whole broker off: clients, replication and HTTP."""
    config = load_config(path, (), {})
    host = f"127.0.0.{10 + config['broker.id']}"
    assert config["listeners"] == f"tcp://{host}:7092,PLAINTEXT://{host}:9092"
    assert config["replication.listener"] == f"tcp://{host}:7093"
    assert config["http.listener"] == f"{host}:7094"
    assert config["log.dirs"] == f"./data/cluster/broker-{config['broker.id']}"


def test_the_three_brokers_make_one_cluster_that_survives_the_loss_of_one():
    brokers = read_broker_configs(CONFIG_DIR)
    assert [broker.broker_id for broker in brokers] == [1, 2, 3]
    assert {broker.zookeeper_connect for broker in brokers} == {"127.0.0.1:2181/ringlog"}
    for path in SERVICE_FILES:
        config = load_config(path, (), {})
        assert config["default.replication.factor"] == 3
        assert config["min.insync.replicas"] == 2  # acks=all carries on with one broker down


def test_zookeeper_is_started_where_the_brokers_look_for_it_without_the_chroot():
    assert zookeeper_address("127.0.0.1:2181/ringlog") == ("127.0.0.1", 2181)
    assert zookeeper_address("127.0.0.1:2182") == ("127.0.0.1", 2182)
    with pytest.raises(ClusterFailed, match="several servers"):
        zookeeper_address("10.0.0.1:2181,10.0.0.2:2181/ringlog")


def _write(directory: Path, name: str, *lines: str) -> None:
    (directory / name).write_text("\n".join(lines) + "\n")


def test_brokers_sharing_a_broker_id_are_refused_before_anything_starts(tmp_path: Path):
    for n, host in ((1, "127.0.0.11"), (2, "127.0.0.12")):
        _write(tmp_path, f"broker-{n}.properties", "broker.id=7",
               "zookeeper.connect=127.0.0.1:2181", f"listeners=tcp://{host}:7092",
               f"replication.listener=tcp://{host}:7093", f"http.listener={host}:7094",
               f"log.dirs=./data/b{n}")
    with pytest.raises(ClusterFailed, match=r"share a broker\.id"):
        read_broker_configs(tmp_path)


def test_a_broker_without_zookeeper_is_refused(tmp_path: Path):
    _write(tmp_path, "broker-1.properties", "broker.id=1", "log.dirs=./data/b1")
    with pytest.raises(ClusterFailed, match="one ZooKeeper"):
        read_broker_configs(tmp_path)


def _printed_commands() -> list[list[str]]:
    """Each `ringlog ...` the launcher prints, as argv with $B filled in."""
    brokers = read_broker_configs(CONFIG_DIR)
    lines = commands_to_try(brokers, ".venv/bin/ringlog", {2: 4242})
    commands = []
    for line in lines:
        line = line.split("#", 1)[0].replace("$B", bootstrap_list(brokers))
        for part in line.split("|"):
            argv = shlex.split(part)
            if argv[:1] == [".venv/bin/ringlog"]:
                commands.append(argv[1:])
    return commands


def test_the_printed_commands_use_every_broker_and_a_replicated_topic():
    commands = _printed_commands()
    every = "127.0.0.11:7092,127.0.0.12:7092,127.0.0.13:7092"
    assert [" ".join(c[:2]) for c in commands] == [
        "topics create", "produce greetings", "consume greetings", "topics describe",
        "status --bootstrap-server", "topics describe"]
    assert "--replication-factor 3" in " ".join(commands[0])
    assert all(every in c for c in commands if c[0] != "status")


@pytest.mark.parametrize("argv", _printed_commands(), ids=" ".join)
def test_every_printed_command_is_one_the_command_line_accepts(argv: list[str]):
    """Parsed by the real `ringlog` group, with --help so that nothing runs:
    a renamed command or option fails here."""
    result = CliRunner().invoke(ringlog, [*argv, "--help"])
    assert result.exit_code == 0, result.output


def test_the_kill_line_names_the_running_brokers_pid():
    brokers = read_broker_configs(CONFIG_DIR)
    lines = commands_to_try(brokers, "ringlog", {1: 11, 2: 4242, 3: 33})
    assert any(line.strip().startswith("kill -9 4242") for line in lines)
