"""The pure parts of `ringlog perf`: percentiles, rates, pacing, payloads, progress."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.cli.perf_measure import (
    POOL_BYTES,
    PROGRESS_INTERVAL_S,
    STAMP,
    Progress,
    Result,
    Throttle,
    latency_summary,
    payload_pool,
    percentile,
    stamp,
    unstamp,
)


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.999) == 100
    assert percentile([7.0], 0.5) == percentile([7.0], 0.999) == 7
    assert percentile([], 0.5) == 0


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1))
def test_latency_summary_is_ordered(latencies):
    s = latency_summary(latencies)
    assert s["p50"] <= s["p95"] <= s["p99"] <= s["p999"] <= s["max"] == max(latencies)
    assert min(latencies) <= s["p50"]
    assert min(latencies) - 1e-6 <= s["avg"] <= s["max"] + 1e-6


def test_result_rates_and_json_fields():
    result = Result("produce", records=2000, bytes=200_000, seconds=0.5,
                    latencies_ms=[1.0, 2.0, 3.0, 10.0])
    out = result.to_json()
    assert out["records"] == 2000
    assert out["records_per_sec"] == 4000.0
    assert out["mb_per_sec"] == 0.4  # 10^6 bytes
    assert out["latency_ms"] == {"avg": 4.0, "p50": 2.0, "p95": 10.0, "p99": 10.0,
                                 "p999": 10.0, "max": 10.0}
    text = result.text()
    assert "\n" not in text
    assert text.startswith("2000 records sent in 0.50 s, 4000.0 records/sec (0.40 MB/sec)")


def test_a_run_of_no_duration_has_no_rate():
    result = Result("consume", 0, 0, 0.0, [])
    assert result.records_per_sec == result.mb_per_sec == 0
    assert result.to_json()["latency_ms"]["max"] == 0


def test_throttle_spaces_records_by_the_rate():
    throttle = Throttle(100, start=10.0)
    assert throttle.delay(0, now=10.0) == 0
    assert throttle.delay(50, now=10.0) == 0.5
    assert throttle.delay(50, now=10.2) == pytest.approx(0.3)  # due at 10.5
    assert throttle.delay(50, now=11.0) == 0  # behind: no wait, it catches up
    assert Throttle(-1, start=10.0).delay(10**6, now=10.0) == 0  # no cap


def test_payloads_are_letters_of_the_size_and_bounded():
    pool = payload_pool(100)
    assert len(pool) > 1 and len(set(pool)) == len(pool)
    assert all(len(v) == 100 and v.isalpha() and v.isupper() for v in pool)
    big = payload_pool(4 << 20)
    assert sum(map(len, big)) <= POOL_BYTES and len(big[0]) == 4 << 20


def test_e2e_stamp_round_trip():
    value = stamp(12345, 1_700_000_000_123_456_789, b"x" * 84)
    assert len(value) == STAMP.size + 84
    assert unstamp(value) == (12345, 1_700_000_000_123_456_789)
    assert unstamp(b"short") is None
    assert unstamp(None) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_is_a_line_per_interval():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(1000, "acknowledged", stream=out, clock=clock)
    progress.tick(10)
    assert out.getvalue() == ""  # not yet time
    clock.now += PROGRESS_INTERVAL_S
    progress.tick(510)
    clock.now += 1
    progress.tick(600)
    progress.close(1000)
    lines = out.getvalue().splitlines()
    assert lines == [f"510 of 1000 records acknowledged, 102.0 records/sec over the last "
                     f"{PROGRESS_INTERVAL_S:.1f} s"]
