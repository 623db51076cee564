"""The one percentile every tool reports: nearest rank, exact on small samples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.harness import TAIL_PERCENTILES, BenchTimeout, Deadline, latency_summary, percentile

HUNDRED = [float(v) for v in range(1, 101)]


def test_the_nearest_rank_of_one_to_a_hundred_is_the_percent_itself():
    assert percentile(HUNDRED, 0.50) == 50
    assert percentile(HUNDRED, 0.95) == 95
    assert percentile(HUNDRED, 0.99) == 99
    assert percentile(HUNDRED, 0.07) == 7  # 0.07 * 100 is 7.000000000000001 in floats
    assert percentile(HUNDRED, 0.999) == 100  # rank 99.9 rounds up


def test_small_samples_take_the_sample_at_rank_ceil_q_n():
    five = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(five, 0.2) == 10  # rank 1
    assert percentile(five, 0.21) == 20  # rank 1.05 -> 2
    assert percentile(five, 0.5) == 30  # rank 2.5 -> 3: the median, not 25 or 35
    assert percentile(five, 0.99) == 50
    assert percentile([1.0, 2.0], 0.5) == 1  # no interpolation to 1.5


def test_q_0_is_the_minimum_and_q_1_the_maximum():
    assert percentile(HUNDRED, 0) == 1
    assert percentile(HUNDRED, 1) == 100
    assert percentile([3.0, 9.0], 0.0) == 3
    assert percentile([3.0, 9.0], 1.0) == 9


def test_one_sample_is_every_percentile():
    for q in (0, 0.5, 0.99, 0.999, 1):
        assert percentile([7.0], q) == 7


def test_no_samples_give_zero_so_that_the_json_stays_json():
    assert percentile([], 0.5) == 0.0
    assert percentile([], 0) == percentile([], 1) == 0.0
    assert set(latency_summary([]).values()) == {0.0}


def test_a_percent_instead_of_a_fraction_is_refused():
    with pytest.raises(ValueError, match=r"pass 0\.99 for p99"):
        percentile(HUNDRED, 99)
    with pytest.raises(ValueError):
        percentile(HUNDRED, -0.1)


def test_the_summary_names_what_it_is_asked_for():
    assert latency_summary([4.0, 1.0, 3.0, 2.0]) == {
        "avg": 2.5, "p50": 2.0, "p95": 4.0, "p99": 4.0, "p999": 4.0, "max": 4.0}
    assert list(latency_summary(HUNDRED, TAIL_PERCENTILES)) == [
        "avg", "p50", "p99", "p99.9", "max"]


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1),
       st.floats(min_value=0, max_value=1))
def test_the_percentile_is_a_sample_with_at_least_q_of_them_at_or_below_it(values, q):
    ordered = sorted(values)
    p = percentile(ordered, q)
    assert p in ordered
    assert sum(v <= p for v in ordered) >= q * len(ordered) - 1e-9
    assert sum(v < p for v in ordered) < max(1, q * len(ordered)) + 1e-9


def test_a_deadline_names_the_work_and_what_was_left_when_it_passes():
    deadline = Deadline("W1 (linger 5 ms)", -1)  # already past
    assert deadline.expired
    with pytest.raises(BenchTimeout, match=r"W1 \(linger 5 ms\) did not finish within -1 s "
                       r"\(--timeout\) \(3 of 8 partitions not serving\); aborting"):
        deadline.check("3 of 8 partitions not serving")
    assert Deadline("W2", 60).remaining() > 59
