"""A short Jepsen-style run against ZooKeeper and three real brokers, with
real kill -9, real iptables partitions and a real ZooKeeper restart
(loadtest/fault_run.py): every acknowledged write survives at its offset,
once, on every replica, and the cluster takes writes again after each fault.

And the proof that the checker can see loss: a replica that fell out of the
ISR, left alone and elected by unclean election, loses the writes the other
two acknowledged; the same faults with unclean election off lose nothing.

These need root, iptables and Debian's zookeeper (.ci/system-packages). The
long run, with hundreds of faults, is `python -m loadtest.fault_run` and its
result is in docs/reliability.md.
"""

from __future__ import annotations

from collections import Counter

from loadtest.fault_history import NemesisEvent
from loadtest.fault_run import STALE_LEADER, run

SAFETY_FAULTS = ("kill-leader", "cut-leader", "zombie-leader", "restart-zookeeper")


def stop_details(result, kind: str) -> list[str]:
    return [e.detail for e in result.history.nemesis_events()
            if isinstance(e, NemesisEvent) and e.type == "stop" and e.name == kind]


def test_killed_cut_and_zombie_leaders_and_a_zookeeper_restart_lose_no_acknowledged_write(
        tmp_path):
    result = run(tmp_path, faults=len(SAFETY_FAULTS), kinds=SAFETY_FAULTS, seconds=150,
                 seed=1, interval_s=1)

    assert result.faults == Counter(SAFETY_FAULTS)  # each fault injected, once
    assert result.report.ok, result.summary()
    assert result.faults_followed_by_acks == result.faults_healed == len(SAFETY_FAULTS), (
        result.summary())  # writes acknowledged again after every fault
    assert result.not_recovered == 0, result.summary()
    assert result.report.acknowledged >= 1000, result.summary()
    assert set(result.broker_exit_codes.values()) == {0}, result.summary()


def test_unclean_election_of_a_stale_replica_loses_acknowledged_writes_and_the_checker_sees_it(
        tmp_path):
    result = run(tmp_path, faults=0, unclean=True, seconds=120, seed=2, interval_s=1)

    assert stop_details(result, STALE_LEADER)[0].endswith("elected uncleanly"), result.summary()
    assert result.report.lost.count > 0, result.summary()
    assert result.ok  # with --unclean, the run succeeds by finding the loss


def test_the_same_faults_without_unclean_election_leave_the_partition_leaderless_and_lose_nothing(
        tmp_path):
    result = run(tmp_path, faults=0, stale_leader=True, seconds=120, seed=2, interval_s=1)

    assert "no leader while" in stop_details(result, STALE_LEADER)[0], result.summary()
    assert result.report.ok, result.summary()
    assert result.faults_followed_by_acks == 1, result.summary()
