"""Admin's groups in a cluster: each broker lists only the groups it
coordinates, so every live broker is asked and the listings merged; a group
is described by its coordinator."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.client import Admin
from appliance.client.admin import merge_group_listings
from appliance.client.bootstrap import Bootstrap
from appliance.client.connection import NoReplyError
from shm.errors import error_for

BROKERS = [{"id": 2, "host": "h2", "port": 7092}, {"id": 1, "host": "h1", "port": 7092}]


class Broker:
    """Stands in for one broker's connection: `groups` are the groups it coordinates."""

    def __init__(self, host_port: str, brokers: dict[str, Broker]):
        self.host_port, self.asked = host_port, []
        self.groups: list[dict] = []
        self.brokers = BROKERS
        self.coordinator = "h1:7092"
        self.fail: BaseException | None = None
        brokers[host_port] = self

    def request(self, api, fields=None, payloads=(), timeout_ms=30_000):
        self.asked.append(api)
        if self.fail is not None:
            raise self.fail
        if api == "metadata":
            return SimpleNamespace(fields={"brokers": self.brokers, "topics": []})
        if api == "list_groups":
            return SimpleNamespace(fields={"groups": self.groups})
        if api == "find_coordinator":
            host, _, port = self.coordinator.rpartition(":")
            return SimpleNamespace(fields={"broker_id": 1, "host": host, "port": int(port)})
        if api == "describe_groups":
            if self.host_port != self.coordinator:
                raise error_for("NOT_COORDINATOR", "not this broker")
            return SimpleNamespace(fields={"groups": [{"group_id": fields["groups"][0],
                                                       "from": self.host_port}]})
        raise AssertionError(api)

    def close(self) -> None:
        pass


@pytest.fixture
def admin():
    brokers: dict[str, Broker] = {}
    admin = Admin("h1:7092,h2:7092", request_timeout_ms=1000)
    admin._connection = Bootstrap("h1:7092,h2:7092", lambda hp: Broker(hp, brokers))
    for endpoint in admin._connection.endpoints:
        admin._connection.connection(endpoint)
    yield admin, brokers
    admin.close()


def test_listings_are_merged_once_per_group_and_sorted_by_id():
    first = [{"group_id": "b", "state": "Stable", "members": 2}]
    second = [{"group_id": "a", "state": "Empty"}, {"group_id": "b", "state": "Empty"}]
    assert merge_group_listings([first, second]) == [
        {"group_id": "a", "state": "Empty"}, {"group_id": "b", "state": "Stable", "members": 2}]
    assert merge_group_listings([]) == []


def test_every_live_broker_is_asked_for_the_groups_it_coordinates(admin):
    admin, brokers = admin
    brokers["h1:7092"].groups = [{"group_id": "orders", "state": "Stable"}]
    brokers["h2:7092"].groups = [{"group_id": "audit", "state": "Empty"}]
    assert [g["group_id"] for g in admin.list_groups()] == ["audit", "orders"]
    assert brokers["h1:7092"].asked == ["metadata", "list_groups"]
    assert brokers["h2:7092"].asked == ["list_groups"]


def test_a_listing_is_not_partial_a_broker_that_does_not_answer_fails_it(admin):
    admin, brokers = admin
    brokers["h2:7092"].fail = NoReplyError("no reply")
    with pytest.raises(NoReplyError):
        admin.list_groups()


def test_with_one_broker_the_bootstrap_broker_lists_the_groups(admin):
    admin, brokers = admin
    brokers["h1:7092"].brokers = [{"id": 0, "host": "elsewhere", "port": 1}]
    brokers["h1:7092"].groups = [{"group_id": "g", "state": "Empty"}]
    assert admin.list_groups() == [{"group_id": "g", "state": "Empty"}]
    assert brokers["h1:7092"].asked == ["metadata", "list_groups"]
    assert "elsewhere:1" not in brokers


def test_a_group_is_described_by_its_coordinator(admin):
    admin, brokers = admin
    brokers["h1:7092"].coordinator = brokers["h2:7092"].coordinator = "h2:7092"
    assert admin.describe_group("orders") == {"group_id": "orders", "from": "h2:7092"}
    assert brokers["h2:7092"].asked == ["describe_groups"]
