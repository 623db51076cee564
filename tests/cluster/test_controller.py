"""One controller at a time, elected by a fenced ZooKeeper transaction; a
replaced controller's writes are refused."""

from __future__ import annotations

import pytest

from appliance.cluster import ControllerElection, NotControllerError, connect
from appliance.cluster.znodes import CONTROLLER_EPOCH, decode_controller_epoch
from tests.polling import wait_for

SESSION_MS = 2000


def candidates(zookeeper_connect: str, count: int) -> list[ControllerElection]:
    elections = [ControllerElection(connect(zookeeper_connect, SESSION_MS), broker_id)
                 for broker_id in range(1, count + 1)]
    for election in elections:
        election.start()
    return elections


def close(elections: list[ControllerElection]) -> None:
    for election in elections:
        election.close()
        election.client.stop()
        election.client.close()


def test_exactly_one_of_three_candidates_is_elected_at_epoch_one(zookeeper_connect):
    elections = candidates(zookeeper_connect, 3)
    try:
        wait_for(lambda: any(e.is_controller for e in elections), 10, "an election")
        winners = [e for e in elections if e.is_controller]
        assert len(winners) == 1
        assert winners[0].epoch == 1
        assert all(e.controller_id() == winners[0].broker_id for e in elections)
    finally:
        close(elections)


def test_when_the_controller_leaves_another_is_elected_with_a_higher_epoch(zookeeper_connect):
    elections = candidates(zookeeper_connect, 3)
    try:
        wait_for(lambda: any(e.is_controller for e in elections), 10, "an election")
        first = next(e for e in elections if e.is_controller)
        first.close()
        first.client.stop()  # its session ends: /controller goes with it
        rest = [e for e in elections if e is not first]
        wait_for(lambda: any(e.is_controller for e in rest), 10, "a new election")
        second = next(e for e in rest if e.is_controller)
        assert second.epoch == first.epoch + 1
        data, _ = second.client.get(CONTROLLER_EPOCH)
        assert decode_controller_epoch(data) == second.epoch
        first.client.close()
        elections = rest
    finally:
        close(elections)


def test_a_superseded_controller_can_write_nothing(zookeeper_connect):
    """A controller that missed its own replacement (paused past its session,
    or cut off) still holds its old epoch: its fenced write is refused whole."""
    elections = candidates(zookeeper_connect, 2)
    try:
        wait_for(lambda: any(e.is_controller for e in elections), 10, "an election")
        old = next(e for e in elections if e.is_controller)
        other = next(e for e in elections if e is not old)
        old.close()  # deaf from now on, as a paused controller is: it believes it still is
        old.client.delete("/controller")  # what its session's expiry does
        wait_for(lambda: other.is_controller, 10, "the other's election")
        assert old.is_controller and other.epoch == old.epoch + 1
        with pytest.raises(NotControllerError, match="superseded"):
            old.fenced(lambda t: t.create("/zombie-write", b"x"))
        assert other.client.exists("/zombie-write") is None
        assert not old.is_controller
        assert other.fenced(lambda t: t.create("/controller-write", b"x")) == ["/controller-write"]
    finally:
        close(elections)
