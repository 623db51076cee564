"""Routes: each partition's door from metadata, the front end when none is known."""

from __future__ import annotations

from types import SimpleNamespace

from appliance.client.routes import Routes
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
