"""The A/B of one setting: alternating order, the summary's arithmetic, and a real run of real
servers on the deterministic engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.bench_setting import Round, main, order_of, setting_env, summary


def test_the_order_flips_every_round() -> None:
    assert [order_of(["a", "b", "c"], i) for i in range(3)] == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"]]


def test_summary_means_ratios_and_rounds_ahead() -> None:
    rounds = [
        Round("false", 100.0, 500.0, 0), Round("true", 120.0, 400.0, 0),
        Round("true", 90.0, 450.0, 1), Round("false", 110.0, 520.0, 0),
        Round("false", 90.0, 510.0, 0), Round("true", 99.0, 430.0, 0),
    ]
    result = summary(["false", "true"], rounds)
    assert result["false"]["items_per_s"] == [100.0, 110.0, 90.0]
    assert result["false"]["mean_items_per_s"] == pytest.approx(100.0)
    assert result["true"]["mean_items_per_s"] == pytest.approx(103.0)
    assert result["true"]["ratio_to_first"] == pytest.approx(1.03)
    assert result["true"]["rounds_ahead_of_first"] == 2  # 120 > 100, 90 < 110, 99 > 90
    assert result["true"]["failed"] == 1
    assert result["true"]["p99_ms"] == [400.0, 450.0, 430.0]


def test_the_setting_and_the_flags_reach_the_server_as_variables() -> None:
    env = setting_env({"PATH": "/bin", "PLAUDIT_MAX_WAIT_MS": "3"}, "SCORE_LANE", "false", 8123, {"MODEL": "m"})
    assert env["PLAUDIT_SCORE_LANE"] == "false"
    assert env["PLAUDIT_MODEL"] == "m"
    assert env["PLAUDIT_PORT"] == "8123"
    assert env["PLAUDIT_MAX_WAIT_MS"] == "3"  # other settings pass through to every server
    assert env["PATH"] == "/bin"


def test_a_real_ab_on_the_deterministic_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Requests of 2 items against max_items_per_request 1 and 4: every request fails with the
    first value and none with the second, so each server really ran with its own value."""
    out = tmp_path / "ab.json"
    code = main(
        [
            "--setting", "plaudit_max_items_per_request", "--values", "1,4", "--rounds", "2",
            "--engine", "deterministic", "--concurrency", "4", "--requests", "40", "--warm-up", "4",
            "--items-per-request", "2", "--out", str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.count("round ") == 4
    assert "4 was ahead of 1 in 2 of 2 rounds" in printed
    result = json.loads(out.read_text())
    assert result["setting"] == "MAX_ITEMS_PER_REQUEST"
    refused, served = result["summary"]["1"], result["summary"]["4"]
    assert refused["failed"] == 2 * 40 and refused["items_per_s"] == [0.0, 0.0]
    assert served["failed"] == 0 and len(served["items_per_s"]) == 2 and all(x > 0 for x in served["items_per_s"])


def test_an_unknown_setting_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--setting", "SCORE_LAEN", "--values", "false,true", "--engine", "deterministic"]) == 2
    assert "'SCORE_LAEN' is not a Plaudit setting" in capsys.readouterr().err


@pytest.mark.parametrize("values", ["true", "true,true", ""])
def test_fewer_than_two_different_values_are_refused(values: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--setting", "SCORE_LANE", "--values", values, "--engine", "deterministic"]) == 2
    assert "--values needs at least two different values" in capsys.readouterr().err
