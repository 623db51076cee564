"""Retrying within a deadline: retriable errors are sent again after a back-off
until the deadline, each attempt given what is left of it; errors known only
by name (NOT_COORDINATOR before this client registers it) count as the
contract says."""

from __future__ import annotations

import pytest

from appliance.client.retry import RETRY_BACKOFF_S, kafka_name, retriable, retry_within
from shm.errors import (
    CoordinatorLoadInProgressError,
    IllegalGenerationError,
    RequestTimedOutError,
    UnknownServerError,
    error_for,
)


class Clock:
    """A clock that moves only when the code under test sleeps or an attempt waits."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def attempts(clock: Clock, failures: list[Exception], wait_s: float = 0.0):
    """A send that fails with each of `failures` in turn, then answers; it
    records the timeout each attempt was given."""
    given: list[int] = []

    def send(attempt_ms: int) -> str:
        given.append(attempt_ms)
        clock.now += wait_s
        if failures:
            raise failures.pop(0)
        return "answer"

    return send, given


def test_a_retriable_error_is_sent_again_after_the_back_off():
    clock = Clock()
    send, given = attempts(clock, [CoordinatorLoadInProgressError("loading")] * 2)
    assert retry_within(send, 30_000, clock=clock, sleep=clock.sleep) == "answer"
    assert len(given) == 3
    assert clock.now == pytest.approx(100 + 2 * RETRY_BACKOFF_S)


def test_a_non_retriable_error_is_raised_at_once():
    clock = Clock()
    send, given = attempts(clock, [IllegalGenerationError("stale")])
    with pytest.raises(IllegalGenerationError):
        retry_within(send, 30_000, clock=clock, sleep=clock.sleep)
    assert len(given) == 1


def test_the_last_error_is_raised_when_the_deadline_has_no_room_for_another_attempt():
    clock = Clock()
    send, given = attempts(clock, [RequestTimedOutError("no reply")] * 10, wait_s=0.45)
    with pytest.raises(RequestTimedOutError):
        retry_within(send, 1_000, clock=clock, sleep=clock.sleep)
    assert len(given) == 2  # 0.45 + 0.1 + 0.45 s: no room for the back-off


def test_each_attempt_is_given_what_is_left_of_the_deadline_and_no_more_than_its_cap():
    clock = Clock()
    send, given = attempts(clock, [RequestTimedOutError("no reply")] * 2, wait_s=4.0)
    retry_within(send, 10_000, attempt_timeout_ms=4_000, clock=clock, sleep=clock.sleep)
    assert given[:2] == [4_000, 4_000]
    assert 1_700 <= given[2] <= 1_800  # 10 s - 2 x (4 s + 0.1 s) left


def test_an_error_this_client_does_not_know_is_read_by_the_name_the_broker_gave():
    unknown = error_for("SOME_FUTURE_ERROR", "the broker said so")
    assert type(unknown) is UnknownServerError
    assert kafka_name(unknown) == "SOME_FUTURE_ERROR"
    assert kafka_name(UnknownServerError("a bug: it broke")) == "UNKNOWN_SERVER_ERROR"
    assert kafka_name(IllegalGenerationError("stale")) == "ILLEGAL_GENERATION"


def test_not_coordinator_is_retriable_whether_or_not_this_client_registered_it():
    assert retriable(UnknownServerError("NOT_COORDINATOR: ask the leader of partition 7"))
    assert retriable(error_for("NOT_COORDINATOR", "moved"))
    assert not retriable(UnknownServerError("UNKNOWN_SERVER_ERROR: a bug"))
    assert not retriable(UnknownServerError("SOME_FUTURE_ERROR: who knows"))
