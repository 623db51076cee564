"""Where a consumer group's requests go: the broker that coordinates the
group, as Kafka clients find it with FindCoordinator.

In a cluster each group's coordinator is the leader of the group's
`__consumer_offsets` partition, so only that broker answers the group's
join_group, heartbeat, leave_group, offset_commit, offset_fetch and
describe_groups; any other answers NOT_COORDINATOR. The coordinator is
asked of the bootstrap brokers (`find_coordinator`, which any live broker
answers), kept, and its connection kept, until it says it is not the
coordinator any more, that none is available, or stops answering
(`must_find_again`): then it is forgotten, and the next request (the
caller's retry) finds it again. A group whose coordinator moved rebalances
there, as in Kafka: its new coordinator does not know the member, which
joins again.

A broker from before find_coordinator answers it UNSUPPORTED_VERSION. Such
a broker is a single node, the coordinator of every group, so its group
requests go to the bootstrap broker that answered, as they always did.
"""

from __future__ import annotations

import time
from typing import Any

from appliance import protocol
from appliance.client.bootstrap import Bootstrap
from appliance.client.connection import NoReplyError
from appliance.client.retry import NOT_COORDINATOR, kafka_name
from appliance.client.routes import broker_front_end
from shm.errors import (
    CoordinatorNotAvailableError,
    NetworkError,
    RinglogError,
    UnsupportedVersionError,
)

# Errors after which the group's coordinator is looked up again: the broker
# asked is not (or no longer) the coordinator, none is known yet, or the
# broker gave no reply in time (down, cut off) or its connection was lost.
FIND_AGAIN_NAMES = frozenset({NOT_COORDINATOR, CoordinatorNotAvailableError.name,
                              NetworkError.name})


def must_find_again(error: RinglogError) -> bool:
    """Whether a group request's error means its coordinator must be found again.

    A broker's own REQUEST_TIMED_OUT answer is not among them (the broker
    is alive and coordinates the group), nor COORDINATOR_LOAD_IN_PROGRESS
    (the right broker, still reading the group's offsets): only the
    client's NoReplyError, no reply at all, is.
    """
    return isinstance(error, NoReplyError) or kafka_name(error) in FIND_AGAIN_NAMES


def coordinator_front_end(found: dict[str, Any], bootstrap: str) -> str:
    """The front end a find_coordinator answer names, as this client dials it
    (a coordinator listening on every interface is reached on the host the
    client bootstrapped from)."""
    return broker_front_end({"host": found["host"], "port": found["port"]}, bootstrap)


class CoordinatorLookup:
    """One group's coordinator: found on first use, kept until it fails.

    `request()` is one attempt; the caller retries it (retry.retry_within),
    and a retry after an error that `must_find_again` finds the coordinator
    anew.
    """

    def __init__(self, bootstrap: Bootstrap, group_id: str):
        self.group_id = group_id
        self._bootstrap = bootstrap
        self._coordinator: str | None = None  # its front end, tcp://HOST:PORT; None: unknown

    @property
    def coordinator(self) -> str | None:
        """The coordinator's front end as last found, or None when it is to be found."""
        return self._coordinator

    def find(self, timeout_ms: int) -> str:
        """Ask the bootstrap brokers for the group's coordinator and keep it.

        COORDINATOR_NOT_AVAILABLE (the offsets topic is being created, or
        the group's partition has no leader) is raised, to be retried.
        """
        try:
            response = self._bootstrap.request("find_coordinator", {"group_id": self.group_id},
                                               timeout_ms=timeout_ms)
        except UnsupportedVersionError:
            # A single node from before find_coordinator coordinates every group.
            self._coordinator = self._bootstrap.current
        else:
            self._coordinator = coordinator_front_end(response.fields, self._bootstrap.current)
        return self._coordinator

    def mark_unknown(self) -> None:
        """Forget the coordinator: the next request finds it again."""
        self._coordinator = None

    def request(self, api: str, fields: dict[str, Any], timeout_ms: int) -> protocol.Response:
        """Send one group request to the coordinator (found first if unknown)
        and wait for its reply; the lookup and the request together wait up
        to `timeout_ms`."""
        deadline = time.monotonic() + timeout_ms / 1000
        try:
            coordinator = self._coordinator or self.find(timeout_ms)
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            return self._bootstrap.request_to(coordinator, api, fields, timeout_ms=left_ms)
        except RinglogError as exc:
            if must_find_again(exc):
                self.mark_unknown()
            raise
