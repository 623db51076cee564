"""The fault checker's verdicts on hand-built histories: it passes a clean run
and catches each kind of broken promise, and only those."""

from __future__ import annotations

import pytest

from loadtest.fault_checker import PartitionRead, check
from loadtest.fault_history import History


def acked_run(writes: int, partition: int = 0, process: str = "p0") -> History:
    """`writes` values w-0, w-1, ... acknowledged in order at offsets 0, 1, ..."""
    history = History()
    for n in range(writes):
        op = history.invoke(f"w-{n}", process=process, partition=partition)
        history.ok(op, partition=partition, offset=n)
    return history


def log_of(*values: str) -> list[tuple[int, str]]:
    return list(enumerate(values))


def three_replicas(records: list[tuple[int, str]]) -> dict[str, dict[int, list]]:
    return {name: {0: list(records)} for name in ("broker-1", "broker-2", "broker-3")}


def test_a_clean_run_read_identically_everywhere_is_valid():
    report = check(acked_run(4), {**three_replicas(log_of("w-0", "w-1", "w-2", "w-3")),
                                  "consumer": {0: log_of("w-0", "w-1", "w-2", "w-3")}})
    assert report.ok
    assert report.acknowledged == 4
    assert (report.lost.count, report.duplicated.count, report.divergent.count,
            report.phantom.count, report.order_violations.count) == (0, 0, 0, 0, 0)
    assert report.readers == ("broker-1", "broker-2", "broker-3", "consumer")
    assert report.summary().startswith("valid: 4 acknowledged")


def test_an_acked_write_missing_from_one_replica_is_lost():
    reads = three_replicas(log_of("w-0", "w-1", "w-2"))
    reads["broker-3"] = {0: log_of("w-0", "w-1")}  # truncated below an ack
    report = check(acked_run(3), reads)
    assert not report.ok
    assert report.lost.count == 1
    assert "w-2 acked at 0/2, missing in broker-3" in report.lost.examples[0]
    assert "INVALID" in report.summary() and "1 lost" in report.summary()


def test_an_acked_write_at_another_offset_is_lost_even_though_it_is_present():
    history = acked_run(2)
    report = check(history, {"consumer": {0: [(0, "w-0"), (1, "other"), (2, "w-1")]}})
    assert not report.ok
    assert report.lost.count == 1
    assert "w-1 acked at 0/1, at 0/2 in consumer" in report.lost.examples[0]


def test_a_lost_write_is_counted_once_however_many_replicas_lost_it():
    report = check(acked_run(2), three_replicas(log_of("w-0")))
    assert report.lost.count == 1


def test_a_value_read_twice_in_one_read_is_duplicated():
    history = acked_run(2)
    report = check(history, {"consumer": {0: log_of("w-0", "w-1", "w-1")}})
    assert not report.ok
    assert report.duplicated.count == 1
    assert report.lost.count == 0  # w-1 is at its acked offset too
    assert "w-1 read more than once: consumer at 0/1, 0/2" in report.duplicated.examples[0]


def test_a_value_in_two_partitions_of_one_read_is_duplicated():
    history = acked_run(1)
    report = check(history, {"consumer": {0: log_of("w-0"), 1: log_of("w-0")}})
    assert report.duplicated.count == 1
    assert not report.ok


def test_one_value_per_replica_is_not_a_duplicate():
    report = check(acked_run(1), three_replicas(log_of("w-0")))
    assert report.duplicated.count == 0


def test_an_offset_holding_different_values_on_two_replicas_is_divergent():
    history = History()
    op = history.invoke("w-0", process="p0", partition=0)
    history.ok(op, partition=0, offset=0)
    history.info(history.invoke("w-1", process="p1", partition=0), "REQUEST_TIMED_OUT")
    history.info(history.invoke("w-2", process="p2", partition=0), "REQUEST_TIMED_OUT")
    report = check(history, {"broker-1": {0: log_of("w-0", "w-1")},
                             "broker-2": {0: log_of("w-0", "w-2")}})
    assert not report.ok
    assert report.divergent.count == 1
    assert report.divergent.examples[0] == "0/1 holds w-1 in broker-1, w-2 in broker-2"
    assert report.lost.count == 0 and report.phantom.count == 0


def test_divergence_above_a_replicas_high_watermark_is_not_counted():
    history = acked_run(1)
    history.info(history.invoke("w-1", process="p1", partition=0), "REQUEST_TIMED_OUT")
    history.info(history.invoke("w-2", process="p2", partition=0), "REQUEST_TIMED_OUT")
    leader = PartitionRead(log_of("w-0", "w-1"), high_watermark=2)
    # an old leader's unacknowledged tail, above its watermark: truncation removes it
    deposed = PartitionRead(log_of("w-0", "w-2"), high_watermark=1)
    report = check(history, {"broker-1": {0: leader}, "broker-2": {0: deposed}})
    assert report.divergent.count == 0
    assert report.ok


def test_divergence_below_both_high_watermarks_is_counted():
    history = acked_run(1)
    history.info(history.invoke("w-1", process="p1", partition=0), "REQUEST_TIMED_OUT")
    history.info(history.invoke("w-2", process="p2", partition=0), "REQUEST_TIMED_OUT")
    report = check(history, {
        "broker-1": {0: PartitionRead(log_of("w-0", "w-1"), high_watermark=2)},
        "broker-2": {0: PartitionRead(log_of("w-0", "w-2"), high_watermark=2)}})
    assert report.divergent.count == 1
    assert not report.ok


def test_a_failed_write_that_is_read_is_a_phantom():
    history = acked_run(1)
    failed = history.invoke("w-1", process="p0", partition=0)
    history.complete_with_error(failed, "NOT_ENOUGH_REPLICAS")  # definite: nothing appended
    report = check(history, {"consumer": {0: log_of("w-0", "w-1")}})
    assert not report.ok
    assert report.failed == 1
    assert report.phantom.count == 1
    assert report.phantom.examples[0] == (
        "w-1 failed (NOT_ENOUGH_REPLICAS) but is read: consumer at 0/1")


def test_a_failed_write_nobody_reads_is_fine():
    history = acked_run(1)
    history.fail(history.invoke("w-1", process="p0", partition=0), "LEADER_NOT_AVAILABLE")
    assert check(history, {"consumer": {0: log_of("w-0")}}).ok


def test_acked_offsets_going_backwards_for_one_producer_are_an_order_violation():
    history = History()
    for value, offset in (("w-0", 0), ("w-1", 2), ("w-2", 1)):
        history.ok(history.invoke(value, process="p0", partition=0), partition=0,
                   offset=offset)
    report = check(history, {"consumer": {0: log_of("w-0", "w-2", "w-1")}})
    assert not report.ok
    assert report.order_violations.count == 1
    assert report.order_violations.examples[0] == (
        "p0 wrote w-1 then w-2 to partition 0, acked at offsets 2 then 1")
    assert report.lost.count == 0


def test_order_is_per_producer_and_per_partition():
    history = History()
    # two producers interleave; one producer alternates partitions
    history.ok(history.invoke("a-0", process="a", partition=0), partition=0, offset=1)
    history.ok(history.invoke("b-0", process="b", partition=0), partition=0, offset=0)
    history.ok(history.invoke("a-1", process="a", partition=1), partition=1, offset=0)
    history.ok(history.invoke("a-2", process="a", partition=0), partition=0, offset=2)
    report = check(history, {"consumer": {0: log_of("b-0", "a-0", "a-2"),
                                          1: log_of("a-1")}})
    assert report.order_violations.count == 0
    assert report.ok


def test_order_follows_invocation_not_completion():
    history = History()
    first = history.invoke("w-0", process="p0", partition=0)
    second = history.invoke("w-1", process="p0", partition=0)  # pipelined
    history.ok(second, partition=0, offset=0)  # acked first, but at the lower offset
    history.ok(first, partition=0, offset=1)
    report = check(history, {"consumer": {0: log_of("w-1", "w-0")}})
    assert report.order_violations.count == 1


@pytest.mark.parametrize("visible", [True, False], ids=["present", "absent"])
def test_an_indeterminate_write_may_or_may_not_appear(visible: bool):
    history = acked_run(1)
    history.complete_with_error(history.invoke("w-1", process="p0", partition=0),
                                "NOT_ENOUGH_REPLICAS_AFTER_APPEND")
    history.info(history.invoke("w-2", process="p0", partition=0), "connection lost")
    records = log_of("w-0", "w-1", "w-2") if visible else log_of("w-0")
    report = check(history, three_replicas(records))
    assert report.ok
    assert report.indeterminate == 2
    assert report.recovered == (2 if visible else 0)


def test_an_invocation_never_completed_counts_as_indeterminate():
    history = acked_run(1)
    history.invoke("w-1", process="p0", partition=0)  # the run ended while it was in flight
    report = check(history, {"consumer": {0: log_of("w-0", "w-1")}})
    assert report.ok
    assert (report.indeterminate, report.recovered) == (1, 1)


def test_a_partition_a_reader_did_not_read_is_not_held_against_it():
    history = acked_run(1, partition=0)
    history.ok(history.invoke("x-0", process="p1", partition=1), partition=1, offset=0)
    report = check(history, {"broker-1": {0: log_of("w-0")},   # hosts partition 0 only
                             "broker-2": {1: log_of("x-0")},   # hosts partition 1 only
                             "consumer": {0: log_of("w-0"), 1: log_of("x-0")}})
    assert report.ok


def test_values_no_operation_wrote_are_reported_but_do_not_fail_the_run():
    report = check(acked_run(1), {"consumer": {0: [(0, "w-0"), (1, "warm-up")]}})
    assert report.ok
    assert report.foreign.count == 1 and report.foreign.examples == ["warm-up"]


def test_each_kind_keeps_only_the_first_few_examples_but_counts_all():
    report = check(acked_run(20), {"consumer": {0: []}})
    assert report.lost.count == 20
    assert len(report.lost.examples) == 5
    assert report.lost.examples[0].startswith("w-0 acked at 0/0")


def test_a_history_writing_one_value_twice_is_refused():
    history = History()
    history.invoke("w-0", process="p0", partition=0)
    history.invoke("w-0", process="p1", partition=0)
    with pytest.raises(ValueError, match="written twice"):
        check(history, {})


def test_the_checker_takes_a_loaded_record_as_well_as_a_live_history(tmp_path):
    history = acked_run(3)
    history.dump(tmp_path / "run.jsonl")
    entries = History.load(tmp_path / "run.jsonl").entries()
    assert check(entries, {"consumer": {0: log_of("w-0", "w-1", "w-2")}}).ok
