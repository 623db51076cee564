"""The core bench runs and says what it measured."""

from loadtest import core_bench


def test_a_short_run_reports_a_cost_per_request(capsys):
    assert core_bench.main(["--requests", "50"]) == 0
    assert "us per request (50 requests)" in capsys.readouterr().out
