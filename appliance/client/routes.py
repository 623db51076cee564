"""Where each partition's requests go: its owning worker's door, or the front end.

Metadata names each partition's door (`endpoint`); a client that produces
or fetches sends each partition's requests there, so the supervisor's loop
is not a hop on the way. A partition without a door (its worker is still
opening it, or the appliance serves no doors) goes through the front end,
which serves every partition, and its route is asked again after
ROUTE_RETRY_S. An error that says the route is wrong (the owner moved,
restarted or lost its connection) makes the caller forget the topic's
routes, so the next request asks metadata again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from appliance.client.connection import raise_for
from appliance.client.network_client import door_endpoint
from shm.errors import (
    LeaderNotAvailableError,
    NetworkError,
    NotLeaderOrFollowerError,
    RequestTimedOutError,
    RinglogError,
    UnknownTopicOrPartitionError,
)

Endpoint = str | None  # a worker's door, or None for the front end

# Errors after which a topic's routes are asked again: its partition's owner
# is elsewhere, restarting, or its connection went down.
REROUTE = frozenset({NotLeaderOrFollowerError.name, LeaderNotAvailableError.name,
                     UnknownTopicOrPartitionError.name, NetworkError.name,
                     RequestTimedOutError.name})
ROUTE_RETRY_S = 1.0  # a partition without a door (its worker opening) is asked again after


class Routes:
    """Each topic's partition endpoints, learnt from metadata.

    `request(api, fields)` is the caller's request to the front end (a
    Response, or a RinglogError raised); the metadata request goes through
    it on the caller's thread, only when a route is unknown or due to be
    asked again.
    """

    def __init__(self, front_end: str, request: Callable[[str, dict], Any]):
        self._front_end = front_end
        self._request = request
        # topic -> each partition's endpoint, and when a route missing from it is asked again
        self._routes: dict[str, tuple[list[Endpoint], float]] = {}

    def learn(self, topic: str, partitions: list[dict]) -> None:
        """Remember each partition's endpoint from a metadata entry's partitions."""
        endpoints = [door_endpoint(p.get("endpoint"), self._front_end) for p in partitions]
        retry_at = time.monotonic() + ROUTE_RETRY_S if None in endpoints else float("inf")
        self._routes[topic] = (endpoints, retry_at)

    def endpoint(self, topic: str, partition: int) -> Endpoint:
        """Where a partition's requests go: its door, else (None) the front end.

        Any trouble asking metadata routes through the front end, which
        serves every partition, until ROUTE_RETRY_S have passed.
        """
        known = self._routes.get(topic)
        if known is None or time.monotonic() >= known[1]:
            try:
                entry = self._request("metadata", {"topics": [topic]}).fields["topics"][0]
                raise_for(entry)
                partitions = entry["partitions"]
            except RinglogError:
                self._routes[topic] = ([], time.monotonic() + ROUTE_RETRY_S)
                return None
            self.learn(topic, partitions)
            known = self._routes[topic]
        endpoints = known[0]
        return endpoints[partition] if partition < len(endpoints) else None

    def forget(self, topic: str) -> None:
        """The topic's routes are stale: ask metadata again on the next request."""
        self._routes.pop(topic, None)
