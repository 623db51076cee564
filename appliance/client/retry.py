"""Retrying a request within a deadline: the consumer's rule, shared with the
admin's group requests.

A request that fails with a retriable error (a partition or the committed
offsets still loading, a group's coordinator moving) is sent again after
RETRY_BACKOFF_S, until its deadline. Each attempt waits at most what is
left of the deadline, so the whole request keeps to it, and a caller may
bound one attempt more tightly still (a heartbeat waits no longer than the
session it keeps alive).

`kafka_name()` reads an error's Kafka name even when this client does not
know the error yet: the broker may answer with a name that shm/errors.py
has not registered (NOT_COORDINATOR while the cluster's group coordination
is being introduced), which error_for() turns into an UNKNOWN_SERVER_ERROR
carrying the name in front of its message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from shm.errors import RinglogError, UnknownServerError

T = TypeVar("T")

RETRY_BACKOFF_S = 0.1
NOT_COORDINATOR = "NOT_COORDINATOR"  # code 16, retriable in Kafka
# Errors retriable by the protocol contract, recognised by name so that a
# client without their classes still retries them.
RETRIABLE_BY_NAME = frozenset({NOT_COORDINATOR})


def kafka_name(error: RinglogError) -> str:
    """The error's Kafka name; for a name error_for() did not know, the name
    it put in front of the message."""
    if type(error) is UnknownServerError:
        head = str(error).partition(":")[0].strip()
        if head.isupper() and head.replace("_", "").isalpha():
            return head
    return error.name


def retriable(error: RinglogError) -> bool:
    """Whether the same request may succeed later unchanged."""
    return error.retriable or kafka_name(error) in RETRIABLE_BY_NAME


def retry_within(send: Callable[[int], T], timeout_ms: int,
                 attempt_timeout_ms: int | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """`send(attempt_timeout_ms)` until it succeeds, a non-retriable error, or
    `timeout_ms` pass (then the last error is raised).

    Each attempt is given what is left of the deadline, and no more than
    `attempt_timeout_ms` when that is set.
    """
    deadline = clock() + timeout_ms / 1000
    cap = attempt_timeout_ms or timeout_ms
    while True:
        remaining_ms = int((deadline - clock()) * 1000)
        try:
            return send(max(1, min(cap, remaining_ms)))
        except RinglogError as exc:
            if not retriable(exc) or clock() + RETRY_BACKOFF_S > deadline:
                raise
        sleep(RETRY_BACKOFF_S)
