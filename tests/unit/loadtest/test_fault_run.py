"""The fault runner's pure parts: the seeded plan of faults, the names errors
are recorded under, the cluster-is-whole predicate and the counts a run
reports. The run itself is tests/fault/test_cluster_faults.py."""

from __future__ import annotations

from collections import Counter

from loadtest.fault_checker import PartitionRead, check
from loadtest.fault_history import History
from loadtest.fault_run import (
    FAULT_KINDS,
    RunResult,
    acknowledged_after,
    error_name,
    faults_followed_by_acks,
    held_to_acks,
    newest_leaders,
    outside_isr,
    plan_faults,
    whole,
)
from shm.errors import NotEnoughReplicasError, RequestTimedOutError


def partition(number: int, leader: int, isr: list[int], epoch: int = 0, end: int = 5,
              high_watermark: int = 5) -> dict:
    return {"partition": number, "leader": leader, "leader_epoch": epoch, "isr": isr,
            "log_end_offset": end, "high_watermark": high_watermark}


def test_the_same_seed_plans_the_same_faults_and_another_seed_other_ones():
    assert plan_faults(50, seed=7) == plan_faults(50, seed=7)
    assert plan_faults(50, seed=7) != plan_faults(50, seed=8)


def test_every_round_of_the_plan_injects_each_kind_once():
    plan = plan_faults(3 * len(FAULT_KINDS) + 2, seed=1)
    assert len(plan) == 3 * len(FAULT_KINDS) + 2
    for start in range(0, 3 * len(FAULT_KINDS), len(FAULT_KINDS)):
        assert sorted(plan[start:start + len(FAULT_KINDS)]) == sorted(FAULT_KINDS)


def test_a_plan_draws_only_from_the_kinds_asked_for():
    assert Counter(plan_faults(4, seed=3, kinds=("kill-leader", "cut-leader"))) == {
        "kill-leader": 2, "cut-leader": 2}
    assert plan_faults(0, seed=3) == []


def test_client_errors_are_recorded_under_their_kafka_names():
    # the names fault_history.DEFINITE_ERRORS lists, not the exception classes'
    assert error_name(NotEnoughReplicasError("isr 1 < 2")) == "NOT_ENOUGH_REPLICAS"
    assert error_name(RequestTimedOutError("5 s")) == "REQUEST_TIMED_OUT"
    assert error_name(ValueError("x")) == "ValueError"


def test_acknowledgements_count_only_writes_invoked_after_the_mark():
    history = History()
    before = history.invoke("a", partition=0)
    mark = history.nemesis_stop("cut").index
    after = history.invoke("b", partition=0)
    elsewhere = history.invoke("c", partition=1)
    history.ok(before, partition=0, offset=0)
    history.ok(after, partition=0, offset=1)
    history.ok(elsewhere, partition=1, offset=0)
    assert acknowledged_after(history.entries(), mark) == 2
    assert acknowledged_after(history.entries(), mark, partition=0) == 1


def test_a_fault_counts_as_followed_by_acks_only_before_the_next_fault_begins():
    history = History()
    history.nemesis_start("kill-leader")
    history.nemesis_stop("kill-leader")
    history.ok(history.invoke("a", partition=0), partition=0, offset=0)
    history.nemesis_start("cut-leader")
    history.nemesis_stop("cut-leader")
    late = history.invoke("b", partition=0)
    history.nemesis_start("zombie-leader")
    history.ok(late, partition=0, offset=1)  # invoked in the calm, acked in the next fault
    history.nemesis_stop("zombie-leader")
    assert faults_followed_by_acks(history.entries()) == (3, 1)


def test_the_cluster_is_whole_when_every_broker_sees_one_leader_and_a_full_isr():
    view = [partition(0, 1, [1, 2, 3]), partition(1, 2, [2, 3, 1])]
    assert whole({1: view, 2: view, 3: view}, replicas=3)
    assert whole({1: view, 2: view, 3: view}, replicas=3, caught_up=True)


def test_the_cluster_is_not_whole_with_a_silent_broker_a_short_isr_or_views_that_disagree():
    view = [partition(0, 1, [1, 2, 3])]
    assert not whole({1: view, 2: view, 3: None}, replicas=3)
    assert not whole({1: [partition(0, 1, [1, 2])]}, replicas=3)
    assert not whole({1: [partition(0, -1, [1, 2, 3])]}, replicas=3)
    assert not whole({1: view, 2: [partition(0, 2, [1, 2, 3], epoch=1)]}, replicas=3)
    assert not whole({}, replicas=3)


def test_caught_up_wants_every_replica_at_its_high_watermark_and_the_same_end():
    leader = [partition(0, 1, [1, 2, 3], end=9, high_watermark=9)]
    behind = [partition(0, 1, [1, 2, 3], end=8, high_watermark=8)]
    assert whole({1: leader, 2: behind}, replicas=3)
    assert not whole({1: leader, 2: behind}, replicas=3, caught_up=True)


def test_a_zombies_stale_view_loses_to_its_successors_higher_epoch():
    zombie = [partition(0, 1, [1], epoch=3)]
    successor = [partition(0, 2, [2, 3], epoch=4)]
    assert newest_leaders({1: zombie, 2: successor, 3: None}) == {0: (2, [2, 3])}


def test_a_safe_run_succeeds_on_a_valid_report_and_an_unclean_one_only_on_loss():
    history = History()
    history.ok(history.invoke("a", partition=0), partition=0, offset=0)
    kept = check(history, {"broker-1": {0: [(0, "a")]}})
    lost = check(history, {"broker-1": {0: []}})
    assert RunResult(kept).ok and not RunResult(lost).ok
    assert RunResult(lost, unclean=True).ok and not RunResult(kept, unclean=True).ok
    assert "NOT FOUND" in RunResult(kept, unclean=True).summary()


def test_between_faults_an_isr_of_min_insync_replicas_is_enough_to_take_writes():
    view = [partition(0, 1, [1, 2])]
    assert whole({1: view, 2: view}, replicas=3, min_isr=2)
    assert not whole({1: [partition(0, 1, [1])]}, replicas=3, min_isr=2)


def test_replicas_outside_the_isr_are_not_held_to_acks_but_the_others_are():
    leaders = {0: (1, [1, 2]), 1: (2, [2, 3, 1]), 2: (-1, [3])}
    outside = outside_isr(leaders, [1, 2, 3])
    assert outside == {0: [3], 2: [1, 2, 3]}
    reads = {f"broker-{b}": {p: PartitionRead([]) for p in range(3)} for b in (1, 2, 3)}
    held = held_to_acks(reads, outside, lambda b: f"broker-{b}")
    assert {reader: sorted(partitions) for reader, partitions in held.items()} == {
        "broker-1": [0, 1], "broker-2": [0, 1], "broker-3": [1]}
