"""Bootstrap servers: a list of brokers, any live one of which answers for
the cluster; the next is asked when one does not answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.client.bootstrap import Bootstrap
from appliance.client.connection import NoReplyError, bootstrap_endpoints, parse_bootstrap
from shm.errors import RequestTimedOutError, UnknownTopicOrPartitionError


class Broker:
    """Stands in for one broker's connection: it answers, fails, or gives no reply."""

    def __init__(self, host_port: str, brokers: dict[str, Broker]):
        self.host_port, self.asked, self.closed = host_port, [], False
        self.answer: BaseException | str = "ok"
        brokers[host_port] = self

    def request(self, api, fields=None, payloads=(), timeout_ms=30_000):
        self.asked.append(api)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return SimpleNamespace(fields={"from": self.host_port})

    def close(self) -> None:
        self.closed = True


def cluster(servers) -> tuple[Bootstrap, dict[str, Broker]]:
    brokers: dict[str, Broker] = {}
    return Bootstrap(servers, lambda host_port: Broker(host_port, brokers)), brokers


def test_a_bootstrap_list_is_a_comma_string_or_a_list_each_broker_once_in_order():
    expected = ["tcp://10.0.0.1:7092", "tcp://10.0.0.2:7092", "tcp://[::1]:7093"]
    assert bootstrap_endpoints("10.0.0.1:7092, 10.0.0.2:7092,[::1]:7093") == expected
    assert bootstrap_endpoints(["10.0.0.1:7092", "10.0.0.2:7092", "[::1]:7093"]) == expected
    assert bootstrap_endpoints("10.0.0.1:7092,10.0.0.1:7092") == ["tcp://10.0.0.1:7092"]
    assert parse_bootstrap("10.0.0.2:7092,10.0.0.1:7092") == "tcp://10.0.0.2:7092"


@pytest.mark.parametrize("servers", ["127.0.0.1:7092,nohost", "127.0.0.1", ":7092", "h:port",
                                     [], ""])
def test_every_entry_must_be_host_colon_port(servers):
    with pytest.raises(ValueError, match="HOST:PORT"):
        bootstrap_endpoints(servers)


def test_one_bootstrap_server_is_one_connection_asked_every_time():
    bootstrap, brokers = cluster("127.0.0.1:7092")
    for _ in range(3):
        assert bootstrap.request("metadata").fields == {"from": "127.0.0.1:7092"}
    assert list(brokers) == ["127.0.0.1:7092"] and len(brokers["127.0.0.1:7092"].asked) == 3


def test_a_broker_that_gives_no_reply_is_passed_over_and_the_next_stays_current():
    bootstrap, brokers = cluster("h1:7092,h2:7092,h3:7092")
    bootstrap.connection("tcp://h1:7092").answer = NoReplyError("no reply")
    assert bootstrap.request("metadata").fields == {"from": "h2:7092"}
    assert bootstrap.current == "tcp://h2:7092"
    bootstrap.request("list_groups")
    assert brokers["h1:7092"].asked == ["metadata"], "the silent broker is not asked again"
    assert brokers["h2:7092"].asked == ["metadata", "list_groups"]
    assert "h3:7092" not in brokers, "a broker is dialled only when it is needed"


def test_when_no_broker_answers_the_request_times_out_after_asking_each_once():
    bootstrap, brokers = cluster(["h1:7092", "h2:7092"])
    for endpoint in bootstrap.endpoints:
        bootstrap.connection(endpoint).answer = NoReplyError("no reply")
    with pytest.raises(RequestTimedOutError):
        bootstrap.request("metadata")
    assert [len(b.asked) for b in brokers.values()] == [1, 1]


def test_a_broker_that_answers_with_an_error_is_alive_and_its_error_is_the_callers():
    bootstrap, brokers = cluster("h1:7092,h2:7092")
    bootstrap.connection("tcp://h1:7092").answer = UnknownTopicOrPartitionError("nope")
    with pytest.raises(UnknownTopicOrPartitionError):
        bootstrap.request("delete_topics")
    # the broker's own REQUEST_TIMED_OUT answer (acks=all waiting too long) is an answer too
    bootstrap.connection("tcp://h1:7092").answer = RequestTimedOutError("waited for replicas")
    with pytest.raises(RequestTimedOutError):
        bootstrap.request("produce")
    assert bootstrap.current == "tcp://h1:7092" and "h2:7092" not in brokers


def test_request_to_asks_one_named_broker_only_and_close_closes_every_connection():
    bootstrap, brokers = cluster("h1:7092,h2:7092")
    assert bootstrap.request_to("tcp://h9:7092", "metadata").fields == {"from": "h9:7092"}
    bootstrap.connection("tcp://h9:7092").answer = NoReplyError("no reply")
    with pytest.raises(NoReplyError):
        bootstrap.request_to("tcp://h9:7092", "metadata")
    assert bootstrap.current == "tcp://h1:7092"
    bootstrap.request("metadata")
    bootstrap.close()
    assert all(b.closed for b in brokers.values())
