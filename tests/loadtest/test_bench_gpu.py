"""The GPU benchmark's code, run on CPU: the deterministic engine stands in for the GPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from loadtest import bench_gpu
from loadtest.generator import LoadConfig, run_load_processes
from loadtest.report import LatencySummary, LoadReport


def report(items_per_s: float, failed: int = 0) -> LoadReport:
    return LoadReport(
        endpoint="score", concurrency=64, items_per_request=32, rate=None,
        requests=100, ok=100 - failed, failed=failed, unfinished=0, items_ok=3200, elapsed_s=1.0,
        requests_per_s=items_per_s / 32, items_per_s=items_per_s,
        latency=LatencySummary(p50_ms=5.0, p95_ms=9.0, p99_ms=10.0, max_ms=11.0, mean_ms=5.0),
        errors={"503": failed} if failed else {}, stopped_by="requests",
    )


def test_verdicts_need_both_bars_and_no_failure() -> None:
    out = bench_gpu.verdicts(
        {
            "fast": report(9000.0),  # 0.75 of 12k and above 8k
            "low_share": report(8500.0 * 0.8),  # 6.8k: below 8k
            "failed": report(9000.0, failed=1),
            "skipped": None,
        },
        ceiling_items_per_s=12000.0,
    )
    assert out["fast"]["passed"] and out["fast"]["share_of_ceiling"] == pytest.approx(0.75)
    assert not out["low_share"]["passed"]
    assert not out["failed"]["passed"]
    assert out["skipped"] == {"items_per_s": None, "share_of_ceiling": None, "passed": False}
    # Above 8k but under 60% of a 20k ceiling fails too.
    assert not bench_gpu.verdicts({"x": report(9000.0)}, 20000.0)["x"]["passed"]


def test_results_print_a_load_that_answered_nothing() -> None:
    # On a slow machine a 32-item load can end with every request still in flight: no
    # latency at all (null in the JSON). The table must still print, and say FAIL.
    silent = LoadReport(
        endpoint="score", concurrency=64, items_per_request=32, rate=None,
        requests=64, ok=0, failed=0, unfinished=64, items_ok=0, elapsed_s=30.0,
        requests_per_s=0.0, items_per_s=0.0,
        latency=LatencySummary.from_seconds([]), errors={}, stopped_by="duration",
    )
    reports = {"w2_c64_k32": silent, "w2_c128_k32": report(9000.0)}
    results = {
        "ceiling": {"items_per_s_by_batch": {32: 12000.0}, "best_batch_size": 32, "best_workers": 2, "best_items_per_s": 12000.0},
        "servers": {"plaudit": {name: r.to_json() for name, r in reports.items()}},
        "verdicts": bench_gpu.verdicts(reports, 12000.0),
    }
    lines = bench_gpu.format_results(json.loads(json.dumps(results))).splitlines()
    silent_line = next(line for line in lines if line.startswith("w2_c64_k32"))
    assert silent_line.split() == ["w2_c64_k32", "0", "0.00", "-", "-", "0", "0", "FAIL"]
    answered = next(line for line in lines if line.startswith("w2_c128_k32"))
    assert answered.split() == ["w2_c128_k32", "9000", "0.75", "5.0", "10.0", "100", "0", "PASS"]


def test_speedups_are_each_size_best_load_over_the_one_worker_baseline() -> None:
    by_size = {
        6: {"w6_c64_k32": report(18000.0), "w6_c128_k32": report(24000.0), "w6_c256_k32": None},
        1: {"w1_c128_k32": report(8000.0)},
    }
    assert bench_gpu.speedups(by_size) == {6: pytest.approx(3.0)}
    assert bench_gpu.speedups({6: {"w6_c64_k32": report(18000.0)}}) == {}  # no baseline, no ratio
    assert bench_gpu.speedups({6: by_size[6], 1: {"w1_c128_k32": None}}) == {}  # the baseline never ran


def test_worker_counts_parse_in_order() -> None:
    assert bench_gpu.parse_workers("6,1") == (6, 1)
    for bad in ("six", "0,1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="--workers"):
            bench_gpu.parse_workers(bad)


def test_load_processes_must_be_at_least_one() -> None:  # the split and merge: the end-to-end test below
    with pytest.raises(ValueError, match="processes must be at least 1"):
        run_load_processes(LoadConfig(), [], 0)


def test_bench_gpu_runs_end_to_end_on_the_deterministic_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "gpu.json"
    saved: list[dict] = []  # what a run cut short would have left in the file, step by step
    real_save = bench_gpu.save_partial

    def record(path: str | None, partial: dict) -> None:
        real_save(path, partial)
        saved.append(json.loads(Path(str(path)).read_text()))

    monkeypatch.setattr(bench_gpu, "save_partial", record)
    argv = [
        "--engine", "deterministic", "--device", "cpu", "--precision", "auto", "--quick",
        "--load-processes", "2", "--workers", "2,1", "--max-items", "64", "--max-total-s", "120", "--out", str(out),
    ]
    assert bench_gpu.main(argv) == 0
    results = json.loads(out.read_text())
    assert list(results["ceiling"]["items_per_s_by_batch"]) == [str(b) for b in bench_gpu.GPU_BATCH_SIZES]
    assert results["server_settings"]["PLAUDIT_MAX_BATCH_ITEMS"] == "512"
    # Every load of the two-worker server, then the one-worker baseline's single load. (A second
    # worker that never became ready would have kept /readyz at 503 and its loads unrun.)
    plan = [*bench_gpu.scenarios(quick=True, workers=2), *bench_gpu.scenarios(quick=True, workers=1)]
    names = [sc.name for sc in plan]
    assert names == ["w2_c64_k32", "w2_c128_k32", "w2_c256_k32", "w1_c128_k32"]
    for sc in plan:
        rep = results["servers"]["plaudit"][sc.name]
        # Two generator processes, merged: every request answered once, 32 items each.
        assert (rep["requests"], rep["ok"], rep["failed"], rep["items_ok"]) == (sc.requests, sc.requests, 0, 32 * sc.requests)
        verdict = results["verdicts"][sc.name]
        share = rep["items_per_s"] / results["ceiling"]["best_items_per_s"]
        assert verdict["share_of_ceiling"] == pytest.approx(share)  # the bar itself: test_verdicts_*
    text = capsys.readouterr().out
    assert "engine ceiling (items/s)  b32:" in text and "verdict" in text
    best = {w: max(results["servers"]["plaudit"][n]["items_per_s"] for n in names if n.startswith(f"w{w}_")) for w in (1, 2)}
    assert results["speedup_over_one_worker"] == {"2": pytest.approx(best[2] / best[1])}
    assert "2 workers: x" in text
    # The ceiling was saved before any load, then each load as it finished; the end overwrote them.
    assert [sorted(snapshot["loads"]) for snapshot in saved] == [sorted(names[:k]) for k in range(len(names) + 1)]
    assert all(snap["partial"] and snap["ceiling"] == results["ceiling"] for snap in saved)
    assert saved[-1]["loads"][names[0]]["ok"] == results["servers"]["plaudit"][names[0]]["ok"]
    assert "partial" not in results
    assert text.index("engine ceiling") < text.index(f"{names[0]}: ") < text.index("verdict")


def test_bench_gpu_needs_a_store_for_model_engines(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_gpu.main(["--engine", "torch"]) == 2
    assert "--store and --model are required" in capsys.readouterr().err
