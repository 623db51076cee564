"""Where each partition's produce and fetch requests go: its leader's worker
door, else its leader broker's front end, else the bootstrap front end.

Metadata names each partition's leader (a broker id) and, when the broker
that answers is that leader and its worker has opened the partition, the
worker's door (`endpoint`); a broker does not know other brokers' doors. So
a client sends each partition's requests to:

1. the door metadata names, so no supervisor's loop is a hop on the way;
2. else the leader broker's front end (from `brokers`), which serves every
   partition it leads; that broker's own metadata for the topic names its
   doors, so they are asked for there at once (`ask_broker`), and produce
   and fetch go straight to the leader's worker from then on;
3. else (no leader, or one broker only, which is the one that answered)
   the bootstrap front end (None): it answers what it can, an error that
   says retry when it cannot.

A route that is not a door is asked again after ROUTE_RETRY_S. An error
that says the route is wrong (REROUTE: the leader moved, its epoch changed,
its worker restarted, the connection was lost) makes the caller forget the
topic's routes, so the next request asks metadata again.

The mapping from metadata to routes is pure (`partition_routes`,
`leader_doors`); `Routes` adds the asking and the remembering.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from appliance.client.connection import raise_for
from appliance.client.network_client import door_endpoint
from shm.errors import (
    FencedLeaderEpochError,
    LeaderNotAvailableError,
    NetworkError,
    NotLeaderOrFollowerError,
    RequestTimedOutError,
    RinglogError,
    UnknownLeaderEpochError,
    UnknownTopicOrPartitionError,
)

Endpoint = str | None  # a door or a broker's front end; None: the bootstrap front end

# Errors after which a topic's routes are asked again: its partition's leader
# is elsewhere or at another epoch, restarting, or its connection went down.
REROUTE = frozenset({NotLeaderOrFollowerError.name, LeaderNotAvailableError.name,
                     FencedLeaderEpochError.name, UnknownLeaderEpochError.name,
                     UnknownTopicOrPartitionError.name, NetworkError.name,
                     RequestTimedOutError.name})
ROUTE_RETRY_S = 1.0  # a route that is not a door (worker opening, leader's door unknown)
DOOR_ASK_TIMEOUT_MS = 2000  # asking a leader broker for its doors: a miss keeps its front end


class Route(NamedTuple):
    """One partition's route.

    `endpoint` is where its produce and fetch go (None: the bootstrap front
    end). `leader_front_end` is set when that endpoint is the leader
    broker's front end, not a door: the broker to ask for the door.
    """

    endpoint: Endpoint
    leader_front_end: str | None = None
    leader: str | None = None  # the leader broker's front end (list_offsets), None: bootstrap

    @property
    def is_door(self) -> bool:
        return self.endpoint is not None and self.leader_front_end is None


def broker_front_end(broker: dict, bootstrap: str) -> str:
    """A broker's front end (metadata's `brokers` entry) as this client dials
    it: a broker listening on every interface is reached on the host the
    client bootstrapped from."""
    host = str(broker["host"])
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address, as a ZeroMQ endpoint spells it
    endpoint = door_endpoint(f"tcp://{host}:{int(broker['port'])}", bootstrap)
    assert endpoint is not None
    return endpoint


def partition_routes(partitions: list[dict], brokers: list[dict], bootstrap: str
                     ) -> list[Route]:
    """Each partition's route from one metadata answer: its `partitions`
    entries in partition order and its live `brokers`, from `bootstrap`.

    With one live broker there is nowhere else to go than the bootstrap
    front end that answered, so a partition without a door routes there
    (None), as a single node always has.
    """
    front_ends = {b["id"]: broker_front_end(b, bootstrap) for b in brokers} \
        if len(brokers) > 1 else {}
    routes = []
    for entry in partitions:
        door = door_endpoint(entry.get("endpoint"), bootstrap)
        leader_front_end = front_ends.get(entry.get("leader", -1))
        if door is not None:
            routes.append(Route(door, None, leader_front_end))
        elif leader_front_end is not None:
            routes.append(Route(leader_front_end, leader_front_end, leader_front_end))
        else:
            routes.append(Route(None))
    return routes


def leader_doors(partitions: list[dict], leader_front_end: str) -> dict[int, str]:
    """The doors a leader broker's own metadata names (`partitions` of its
    answer for one topic), by partition: only the broker that leads a
    partition names its door, so each one named is its leader's."""
    doors = {}
    for index, entry in enumerate(partitions):
        door = door_endpoint(entry.get("endpoint"), leader_front_end)
        if door is not None:
            doors[entry.get("partition", index)] = door
    return doors


@dataclass
class _TopicRoutes:
    routes: list[Route]
    retry_at: float  # monotonic: when routes that are not doors are asked again
    doors_asked: bool = False  # the leader brokers were asked for their doors


class Routes:
    """Each topic's partition routes, learnt from metadata.

    `request(api, fields)` is the caller's request to the bootstrap front
    end (a Response, or a RinglogError raised); `ask_broker(endpoint, api,
    fields, timeout_ms)` asks one broker's front end, for a leader's doors
    (None: doors are learnt only from the bootstrap's metadata). Both are
    called on the caller's thread, only when a route is unknown or due to
    be asked again.
    """

    def __init__(self, front_end: str, request: Callable[[str, dict], Any],
                 ask_broker: Callable[[str, str, dict, int], Any] | None = None):
        self._front_end = front_end
        self._request = request
        self.ask_broker = ask_broker
        self._routes: dict[str, _TopicRoutes] = {}

    def learn(self, topic: str, partitions: list[dict], brokers: list[dict] = ()) -> None:
        """Remember each partition's route from a metadata entry's partitions
        and the answer's brokers; leaders' doors are asked on first use."""
        routes = partition_routes(partitions, list(brokers), self._front_end)
        all_doors = all(route.is_door for route in routes)
        retry_at = float("inf") if all_doors else time.monotonic() + ROUTE_RETRY_S
        self._routes[topic] = _TopicRoutes(routes, retry_at, doors_asked=all_doors)

    def endpoint(self, topic: str, partition: int) -> Endpoint:
        """Where a partition's requests go: a door or a leader's front end, else
        (None) the bootstrap front end.

        Any trouble asking metadata routes through the bootstrap front end,
        which answers what it can, until ROUTE_RETRY_S have passed.
        """
        known = self._routes.get(topic)
        if known is None or time.monotonic() >= known.retry_at:
            try:
                response = self._request("metadata", {"topics": [topic]})
                entry = response.fields["topics"][0]
                raise_for(entry)
            except RinglogError:
                self._routes[topic] = _TopicRoutes([], time.monotonic() + ROUTE_RETRY_S, True)
                return None
            self.learn(topic, entry["partitions"], response.fields.get("brokers") or [])
            known = self._routes[topic]
        if not known.doors_asked:
            self._ask_doors(topic, known)
        routes = known.routes
        return routes[partition].endpoint if partition < len(routes) else None

    def _ask_doors(self, topic: str, known: _TopicRoutes) -> None:
        """Ask each leader broker routed to by its front end for its doors in
        `topic`, and route its partitions there; a broker that does not answer
        keeps its front end, asked again with the other routes later."""
        known.doors_asked = True
        if self.ask_broker is None:
            return
        for front_end in sorted({r.leader_front_end for r in known.routes if r.leader_front_end}):
            try:
                response = self.ask_broker(front_end, "metadata",
                                           {"topics": [topic], "allow_auto_create": False},
                                           DOOR_ASK_TIMEOUT_MS)
                entry = response.fields["topics"][0]
                raise_for(entry)
            except RinglogError:
                continue
            for partition, door in leader_doors(entry["partitions"], front_end).items():
                if partition < len(known.routes) and \
                        known.routes[partition].leader_front_end == front_end:
                    known.routes[partition] = Route(door, None, front_end)
        if all(route.is_door for route in known.routes):
            known.retry_at = float("inf")

    def leader(self, topic: str, partition: int) -> str | None:
        """The partition's leader broker's front end, for the requests only a
        leader answers that no door serves (list_offsets); None: bootstrap."""
        self.endpoint(topic, partition)  # learn the routes if they are not known
        known = self._routes.get(topic)
        if known is None or partition >= len(known.routes):
            return None
        return known.routes[partition].leader

    def forget(self, topic: str) -> None:
        """The topic's routes are stale: ask metadata again on the next request."""
        self._routes.pop(topic, None)
