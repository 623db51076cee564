"""What `ringlog topics describe` and `ringlog status` print of a cluster:
Leader, Replicas and Isr per partition as kafka-topics --describe does, the
broker's role, and each partition's role on it. The Admin is stood in for,
so these read the display alone."""

from __future__ import annotations

import contextlib
import importlib

import pytest
from click.testing import CliRunner

from appliance.cli import ringlog

# the modules, not the commands of the same names that appliance.cli exports
status_module = importlib.import_module("appliance.cli.status")
topics_module = importlib.import_module("appliance.cli.topics")


class Answers:
    """Stands in for Admin: what the broker answered."""

    def __init__(self, topic: dict | None = None, state: dict | None = None):
        self.topic, self.state = topic, state

    def describe_topic(self, name: str) -> dict:
        return self.topic

    def status(self, details: bool = False) -> dict:
        return self.state


def run(monkeypatch: pytest.MonkeyPatch, module, answers: Answers, *args: str) -> list[list[str]]:
    monkeypatch.setattr(module, "open_admin",
                        lambda *_: contextlib.nullcontext(answers))
    result = CliRunner().invoke(ringlog, list(args))
    assert result.exit_code == 0, result.output
    return [line.split() for line in result.output.splitlines()]


def partition(number: int, **fields) -> dict:
    return {"partition": number, "owner_worker": 0, "log_start_offset": 0,
            "log_end_offset": 5, "high_watermark": 4, "size_bytes": 100, **fields}


def test_topics_describe_prints_leader_replicas_and_isr_after_the_partition(monkeypatch):
    answers = Answers(topic={"name": "t", "replication_factor": 3, "configs": {}, "partitions": [
        partition(0, leader=1, leader_epoch=4, replicas=[1, 2, 3], isr=[1, 3]),
        partition(1, leader=-1, leader_epoch=2, replicas=[2, 3, 1], isr=[2],
                  error="LEADER_NOT_AVAILABLE")]})
    header, columns, *rows = run(monkeypatch, topics_module, answers, "topics", "describe", "t")
    assert header[:6] == ["Topic:", "t", "Partitions:", "2", "ReplicationFactor:", "3"]
    assert columns[:4] == ["PARTITION", "LEADER", "REPLICAS", "ISR"]
    assert rows[0][:8] == ["0", "1", "1,2,3", "1,3", "0", "0", "5", "4"]
    assert rows[1][:4] == ["1", "none", "2,3,1", "2"] and rows[1][-1] == "LEADER_NOT_AVAILABLE"


def test_topics_describe_shows_dashes_where_the_broker_names_no_replicas(monkeypatch):
    answers = Answers(topic={"name": "t", "partitions": [partition(0)]})
    _, _, row = run(monkeypatch, topics_module, answers, "topics", "describe", "t")
    assert row[:5] == ["0", "-", "-", "-", "0"]


STATE = {"serving": True, "workers": [0], "topics": 1, "groups": [],
         "processes": [{"process": "supervisor", "pid": 1}]}


@pytest.mark.parametrize(("cluster", "shown"), [
    ({"broker_id": 1, "broker_epoch": 7, "controller": True, "controller_id": 1,
      "controller_epoch": 3}, "Cluster: broker 1, controller"),
    ({"broker_id": 2, "broker_epoch": 9, "controller": False, "controller_id": 1,
      "controller_epoch": 3}, "Cluster: broker 2")])
def test_status_names_the_brokers_role_in_its_cluster(monkeypatch, cluster, shown):
    first = run(monkeypatch, status_module, Answers(state={**STATE, "cluster": cluster}),
                "status")[0]
    assert " ".join(first).endswith(shown)


def test_status_of_a_single_node_has_no_cluster_and_no_role_columns(monkeypatch):
    lines = run(monkeypatch, status_module, Answers(state={
        **STATE, "cluster": None, "partitions": [{**partition(0), "topic": "t"}]}), "status")
    assert "Cluster:" not in lines[0]
    columns = next(line for line in lines if line and line[0] == "TOPIC")
    assert columns[:4] == ["TOPIC", "PARTITION", "OWNER", "WORKER"]
    assert not any("ROLE" in line for line in lines)


def test_status_shows_each_partitions_role_leader_and_isr_on_a_clusters_broker(monkeypatch):
    lines = run(monkeypatch, status_module, Answers(state={**STATE, "partitions": [
        {**partition(0), "topic": "t", "role": "leader", "leader": 2, "isr": [2, 3]},
        {**partition(1), "topic": "t", "role": "follower", "leader": 3, "isr": [3, 2]},
        {**partition(2), "topic": "t", "role": "offline", "leader": -1, "isr": [1]}]}), "status")
    start = next(i for i, line in enumerate(lines) if line and line[0] == "TOPIC")
    assert lines[start][-3:] == ["ROLE", "LEADER", "ISR"]
    assert [line[-3:] for line in lines[start + 1:start + 4]] == [
        ["leader", "2", "2,3"], ["follower", "3", "3,2"], ["offline", "-1", "1"]]
