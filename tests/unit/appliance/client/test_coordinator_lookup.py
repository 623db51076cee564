"""A group's requests go to its coordinator: found with find_coordinator
through the bootstrap brokers, kept with its connection, and found again
after NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or no reply; a broker from
before find_coordinator is a single node, which coordinates every group."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.client.bootstrap import Bootstrap
from appliance.client.connection import NoReplyError
from appliance.client.coordinator_lookup import (
    CoordinatorLookup,
    coordinator_front_end,
    must_find_again,
)
from appliance.client.retry import retry_within
from shm.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    IllegalGenerationError,
    NetworkError,
    RequestTimedOutError,
    UnknownServerError,
    UnsupportedVersionError,
    error_for,
)


class Broker:
    """Stands in for one broker's connection. `coordinator` is what it answers
    find_coordinator (a host:port, or an error); `answers` are raised or
    returned in turn for other requests, then "ok"."""

    def __init__(self, host_port: str, brokers: dict[str, Broker]):
        self.host_port, self.asked = host_port, []
        self.coordinator: str | BaseException = host_port
        self.answers: list[BaseException] = []
        brokers[host_port] = self

    def request(self, api, fields=None, payloads=(), timeout_ms=30_000):
        self.asked.append(api)
        if api == "find_coordinator":
            if isinstance(self.coordinator, BaseException):
                raise self.coordinator
            host, _, port = self.coordinator.rpartition(":")
            return SimpleNamespace(fields={"broker_id": 1, "host": host, "port": int(port)})
        if self.answers:
            raise self.answers.pop(0)
        return SimpleNamespace(fields={"from": self.host_port})

    def close(self) -> None:
        pass


def cluster(servers: str) -> tuple[CoordinatorLookup, dict[str, Broker]]:
    brokers: dict[str, Broker] = {}
    bootstrap = Bootstrap(servers, lambda host_port: Broker(host_port, brokers))
    for endpoint in bootstrap.endpoints:
        bootstrap.connection(endpoint)
    return CoordinatorLookup(bootstrap, "g"), brokers


def test_the_coordinator_is_found_once_and_every_group_request_goes_to_it():
    lookup, brokers = cluster("h1:7092,h2:7092")
    brokers["h1:7092"].coordinator = "h2:7092"
    for api in ("join_group", "heartbeat", "offset_commit"):
        assert lookup.request(api, {"group_id": "g"}, 1000).fields == {"from": "h2:7092"}
    assert brokers["h1:7092"].asked == ["find_coordinator"]
    assert brokers["h2:7092"].asked == ["join_group", "heartbeat", "offset_commit"]
    assert lookup.coordinator == "tcp://h2:7092"


def test_a_broker_without_find_coordinator_is_a_single_node_and_coordinates_the_group():
    lookup, brokers = cluster("h1:7092")
    brokers["h1:7092"].coordinator = UnsupportedVersionError("unknown api 'find_coordinator'")
    assert lookup.request("join_group", {}, 1000).fields == {"from": "h1:7092"}
    assert brokers["h1:7092"].asked == ["find_coordinator", "join_group"]


def test_the_single_node_fallback_is_the_bootstrap_broker_that_answered():
    lookup, brokers = cluster("h1:7092,h2:7092")
    brokers["h1:7092"].coordinator = NoReplyError("down")
    brokers["h2:7092"].coordinator = UnsupportedVersionError("unknown api")
    assert lookup.find(1000) == "tcp://h2:7092"


@pytest.mark.parametrize("error", [
    error_for("NOT_COORDINATOR", "the coordinator moved"),
    UnknownServerError("NOT_COORDINATOR: before this client registered the error"),
    CoordinatorNotAvailableError("its offsets partition has no leader"),
    NoReplyError("no reply in time"),
    NetworkError("connection lost"),
])
def test_a_coordinator_that_moved_is_unavailable_or_silent_is_found_again(error):
    lookup, brokers = cluster("h1:7092,h2:7092,h3:7092")
    brokers["h1:7092"].coordinator = "h2:7092"
    lookup.request("heartbeat", {}, 1000)
    brokers["h2:7092"].answers = [error]
    brokers["h1:7092"].coordinator = "h3:7092"  # the group's offsets partition has a new leader
    with pytest.raises(type(error)):
        lookup.request("heartbeat", {}, 1000)
    assert lookup.coordinator is None
    assert lookup.request("heartbeat", {}, 1000).fields == {"from": "h3:7092"}


@pytest.mark.parametrize("error", [
    CoordinatorLoadInProgressError("the right broker, still loading"),
    RequestTimedOutError("the broker's own answer: it is alive"),
    IllegalGenerationError("the group's answer, not the broker's"),
])
def test_errors_from_the_right_coordinator_keep_it(error):
    assert not must_find_again(error)
    lookup, brokers = cluster("h1:7092")
    brokers["h1:7092"].answers = [error]
    with pytest.raises(type(error)):
        lookup.request("offset_commit", {}, 1000)
    assert lookup.coordinator == "tcp://h1:7092"


def test_while_no_coordinator_is_available_the_lookup_is_retried_until_one_is():
    lookup, brokers = cluster("h1:7092,h2:7092")
    broker = brokers["h1:7092"]
    broker.coordinator = CoordinatorNotAvailableError("offsets topic being created")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            broker.coordinator = "h2:7092"

    response = retry_within(lambda ms: lookup.request("join_group", {}, ms), 30_000,
                            sleep=sleep)
    assert response.fields == {"from": "h2:7092"}
    assert broker.asked == ["find_coordinator"] * 3


def test_a_retried_request_after_not_coordinator_reaches_the_new_coordinator():
    lookup, brokers = cluster("h1:7092,h2:7092,h3:7092")
    brokers["h1:7092"].coordinator = "h2:7092"
    lookup.request("join_group", {}, 1000)
    brokers["h2:7092"].answers = [error_for("NOT_COORDINATOR", "moved")]
    brokers["h1:7092"].coordinator = "h3:7092"
    response = retry_within(lambda ms: lookup.request("offset_commit", {}, ms), 30_000,
                            sleep=lambda _s: None)
    assert response.fields == {"from": "h3:7092"}
    assert brokers["h3:7092"].asked == ["offset_commit"]


def test_a_coordinator_listening_on_every_interface_is_dialled_on_the_bootstrap_host():
    found = {"broker_id": 2, "host": "0.0.0.0", "port": 7099}
    assert coordinator_front_end(found, "tcp://10.0.0.5:7092") == "tcp://10.0.0.5:7099"
    found = {"broker_id": 2, "host": "10.0.0.7", "port": 7092}
    assert coordinator_front_end(found, "tcp://10.0.0.5:7092") == "tcp://10.0.0.7:7092"
    found = {"broker_id": 2, "host": "::1", "port": 7092}
    assert coordinator_front_end(found, "tcp://10.0.0.5:7092") == "tcp://[::1]:7092"
