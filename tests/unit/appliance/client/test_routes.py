"""Routes: each partition's requests go to its leader: its worker's door from
metadata, else the leader broker's front end (whose own metadata names the
door), else the bootstrap front end."""

from __future__ import annotations

from types import SimpleNamespace

from appliance.client.routes import (
    REROUTE,
    Route,
    Routes,
    broker_front_end,
    leader_doors,
    partition_routes,
)
from shm.errors import RequestTimedOutError

FRONT_END = "tcp://127.0.0.1:7092"


class Metadata:
    """Stands in for the front end's metadata answer: counts how often it is asked."""

    def __init__(self, partitions: list[dict] | Exception):
        self.partitions, self.asked = partitions, 0

    def __call__(self, api: str, fields: dict) -> SimpleNamespace:
        assert api == "metadata"
        self.asked += 1
        if isinstance(self.partitions, Exception):
            raise self.partitions
        return SimpleNamespace(fields={"topics": [
            {"name": fields["topics"][0], "error": None, "partitions": self.partitions}]})


def test_an_unknown_topic_is_asked_once_and_each_partition_goes_to_its_door():
    metadata = Metadata([{"endpoint": "tcp://127.0.0.1:7100"}, {"endpoint": "tcp://0.0.0.0:7101"}])
    routes = Routes(FRONT_END, metadata)
    assert routes.endpoint("t", 0) == "tcp://127.0.0.1:7100"
    # a door bound to every interface is dialled on the front end's host
    assert routes.endpoint("t", 1) == "tcp://127.0.0.1:7101"
    assert routes.endpoint("t", 5) is None  # a partition metadata did not name: the front end
    assert metadata.asked == 1


def test_trouble_asking_routes_through_the_front_end_and_is_not_asked_at_once_again():
    metadata = Metadata(RequestTimedOutError("no reply"))
    routes = Routes(FRONT_END, metadata)
    assert routes.endpoint("t", 0) is None
    assert routes.endpoint("t", 0) is None
    assert metadata.asked == 1


def test_a_forgotten_topic_is_asked_again():
    metadata = Metadata([{"endpoint": "tcp://127.0.0.1:7100"}])
    routes = Routes(FRONT_END, metadata)
    routes.endpoint("t", 0)
    routes.forget("t")
    metadata.partitions = [{"endpoint": "tcp://127.0.0.1:7200"}]
    assert routes.endpoint("t", 0) == "tcp://127.0.0.1:7200"
    assert metadata.asked == 2


def test_a_partition_without_a_door_is_asked_again_later_not_on_every_request():
    metadata = Metadata([{"endpoint": None}])
    routes = Routes(FRONT_END, metadata)
    assert [routes.endpoint("t", 0) for _ in range(3)] == [None, None, None]
    assert metadata.asked == 1


# --- a cluster: each partition to its leader ----------------------------------------------

BROKERS = [{"id": 1, "host": "127.0.0.11", "port": 7092},
           {"id": 2, "host": "127.0.0.12", "port": 7092},
           {"id": 3, "host": "127.0.0.13", "port": 7092}]
BOOTSTRAP = "tcp://127.0.0.11:7092"


def test_a_door_in_metadata_is_the_route():
    partitions = [{"partition": 0, "leader": 1, "endpoint": "tcp://127.0.0.11:7100"}]
    assert partition_routes(partitions, BROKERS, BOOTSTRAP) == [
        Route("tcp://127.0.0.11:7100", leader="tcp://127.0.0.11:7092")]


def test_without_a_door_a_partition_goes_to_its_leader_brokers_front_end_to_learn_the_door():
    partitions = [{"partition": 0, "leader": 2, "endpoint": None},
                  {"partition": 1, "leader": 3}]
    assert partition_routes(partitions, BROKERS, BOOTSTRAP) == [
        Route("tcp://127.0.0.12:7092", leader_front_end="tcp://127.0.0.12:7092",
              leader="tcp://127.0.0.12:7092"),
        Route("tcp://127.0.0.13:7092", leader_front_end="tcp://127.0.0.13:7092",
              leader="tcp://127.0.0.13:7092")]


def test_no_leader_or_a_leader_not_among_the_live_brokers_goes_to_the_bootstrap_front_end():
    partitions = [{"partition": 0, "leader": -1, "endpoint": None,
                   "error": "LEADER_NOT_AVAILABLE"},
                  {"partition": 1, "leader": 7, "endpoint": None}]
    assert partition_routes(partitions, BROKERS, BOOTSTRAP) == [Route(None), Route(None)]


def test_a_single_node_without_a_door_goes_to_the_bootstrap_front_end_as_always():
    # a single node names itself as it is configured (here every interface)
    only = [{"id": 0, "host": "0.0.0.0", "port": 7092}]
    assert partition_routes([{"partition": 0, "leader": 0, "endpoint": None}], only,
                            BOOTSTRAP) == [Route(None)]


def test_a_broker_on_every_interface_is_dialled_on_the_bootstrap_host():
    assert broker_front_end({"id": 1, "host": "0.0.0.0", "port": 7192},
                            "tcp://10.1.2.3:7092") == "tcp://10.1.2.3:7192"
    assert broker_front_end({"id": 1, "host": "::1", "port": 7092},
                            BOOTSTRAP) == "tcp://[::1]:7092"


def test_a_leader_brokers_own_metadata_names_the_doors_of_what_it_leads():
    answer = [{"partition": 0, "leader": 2, "endpoint": "tcp://0.0.0.0:7100"},
              {"partition": 1, "leader": 3, "endpoint": None},
              {"partition": 2, "leader": 2, "endpoint": "tcp://127.0.0.12:7101"}]
    # a door on every interface is on the leader's host, not the bootstrap's
    assert leader_doors(answer, "tcp://127.0.0.12:7092") == {
        0: "tcp://127.0.0.12:7100", 2: "tcp://127.0.0.12:7101"}


def test_the_errors_that_say_the_leader_is_elsewhere_forget_the_routes():
    assert {"NOT_LEADER_OR_FOLLOWER", "LEADER_NOT_AVAILABLE", "FENCED_LEADER_EPOCH",
            "UNKNOWN_LEADER_EPOCH", "NETWORK_EXCEPTION"} <= REROUTE
    assert "NOT_ENOUGH_REPLICAS" not in REROUTE, "the leader is right; it lacks followers"


class Cluster:
    """Metadata as three brokers answer it: the bootstrap names leaders but
    not their doors; each leader names its own doors."""

    def __init__(self, leaders: list[int]):
        self.leaders, self.asked, self.down = leaders, [], set()

    def partitions(self, answering: int | None) -> list[dict]:
        return [{"partition": p, "leader": leader, "endpoint":
                 f"tcp://127.0.0.1{leader}:{7100 + p}" if leader == answering else None}
                for p, leader in enumerate(self.leaders)]

    def bootstrap(self, api: str, fields: dict) -> SimpleNamespace:
        self.asked.append("bootstrap")
        return SimpleNamespace(fields={"brokers": BROKERS, "topics": [
            {"name": fields["topics"][0], "error": None, "partitions": self.partitions(None)}]})

    def broker(self, endpoint: str, api: str, fields: dict, timeout_ms: int) -> SimpleNamespace:
        assert api == "metadata" and fields["allow_auto_create"] is False
        broker_id = int(endpoint.split(":")[1][-1])
        self.asked.append(broker_id)
        if broker_id in self.down:
            raise RequestTimedOutError("no reply")
        partitions = self.partitions(broker_id)
        return SimpleNamespace(fields={"brokers": BROKERS, "topics": [
            {"name": fields["topics"][0], "error": None, "partitions": partitions}]})


def test_routes_ask_each_leader_broker_once_for_its_doors_and_use_them():
    cluster = Cluster(leaders=[1, 2, 2, 3])
    routes = Routes(BOOTSTRAP, cluster.bootstrap, cluster.broker)
    assert [routes.endpoint("t", p) for p in range(4)] == [
        "tcp://127.0.0.11:7100", "tcp://127.0.0.12:7101", "tcp://127.0.0.12:7102",
        "tcp://127.0.0.13:7103"]
    assert cluster.asked == ["bootstrap", 1, 2, 3]
    assert routes.endpoint("t", 0) == "tcp://127.0.0.11:7100" and len(cluster.asked) == 4


def test_a_leader_broker_that_does_not_answer_keeps_its_front_end_until_asked_again():
    cluster = Cluster(leaders=[1, 2])
    cluster.down = {2}
    routes = Routes(BOOTSTRAP, cluster.bootstrap, cluster.broker)
    assert [routes.endpoint("t", p) for p in range(2)] == [
        "tcp://127.0.0.11:7100", "tcp://127.0.0.12:7092"]
    assert routes.endpoint("t", 1) == "tcp://127.0.0.12:7092"
    assert cluster.asked == ["bootstrap", 1, 2], "asked again only after ROUTE_RETRY_S"


def test_a_new_leader_is_found_after_the_routes_are_forgotten():
    cluster = Cluster(leaders=[1])
    routes = Routes(BOOTSTRAP, cluster.bootstrap, cluster.broker)
    assert routes.endpoint("t", 0) == "tcp://127.0.0.11:7100"
    cluster.leaders = [3]  # broker 1 lost: the controller elected broker 3
    routes.forget("t")  # the caller was answered NOT_LEADER_OR_FOLLOWER, or lost broker 1
    assert routes.endpoint("t", 0) == "tcp://127.0.0.13:7100"


def test_routes_learnt_from_the_producers_metadata_ask_the_leaders_doors_on_first_use():
    cluster = Cluster(leaders=[2])
    routes = Routes(BOOTSTRAP, cluster.bootstrap, cluster.broker)
    routes.learn("t", cluster.partitions(None), BROKERS)
    assert routes.endpoint("t", 0) == "tcp://127.0.0.12:7100"
    assert cluster.asked == [2]
