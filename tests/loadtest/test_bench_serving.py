from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from loadtest import bench_serving as bench
from loadtest.data import ItemCycle, synthetic_items
from loadtest.generator import LoadConfig, run_load_sync
from loadtest.naive_server import NaiveConfig
from loadtest.report import LatencySummary, LoadReport, summarize
from model_store.store import ModelStore
from model_store.engines.deterministic import DeterministicScorer


class RecordingScorer(DeterministicScorer):
    """The deterministic engine, noting when each lone call (`run_alone`, what the service
    gives a lone item) began."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s=delay_s)
        self.calls: list[float] = []

    def run_alone(self, batch):  # type: ignore[no-untyped-def]
        self.calls.append(time.perf_counter())
        return super().run_alone(batch)


def report(items_per_s: float, p50: float, p99: float) -> LoadReport:
    return LoadReport(
        endpoint="score", concurrency=32, items_per_request=1, rate=None,
        requests=100, ok=100, failed=0, unfinished=0, items_ok=100, elapsed_s=1.0,
        requests_per_s=items_per_s, items_per_s=items_per_s,
        latency=LatencySummary(p50_ms=p50, p95_ms=p99, p99_ms=p99, max_ms=p99, mean_ms=p50),
        errors={}, stopped_by="requests",
    )


def test_ratio_handles_missing_and_zero() -> None:
    assert bench.ratio(6.0, 3.0) == 2.0
    assert bench.ratio(None, 3.0) is None
    assert bench.ratio(1.0, 0.0) is None
    assert bench.ratio(math.nan, 1.0) is None


def test_compare_on_literal_reports() -> None:
    plaudit = {"c32_k1": report(400.0, 50.0, 80.0), bench.IDLE_SCENARIO: report(1.0, 12.0, 15.0)}
    naive = {"c32_k1": report(100.0, 200.0, 320.0), bench.IDLE_SCENARIO: report(1.0, 10.0, 11.0)}
    out = bench.compare(plaudit, naive, ceiling_items_per_s=500.0, direct_latency_ms=8.0)
    assert out["c32_k1"] == {
        "plaudit_over_naive_items_per_s": 4.0,
        "plaudit_over_ceiling": 0.8,
        "naive_over_ceiling": 0.2,
        "plaudit_p99_ms": 80.0,
        "naive_p99_ms": 320.0,
        "p99_plaudit_over_naive": 0.25,
    }
    idle = out[bench.IDLE_SCENARIO]
    assert idle["plaudit_over_direct"] == 1.5
    assert idle["plaudit_overhead_ms"] == 4.0
    assert idle["plaudit_p50_ms"] == 12.0 and idle["naive_p50_ms"] == 10.0
    assert idle["direct_single_item_ms"] == 8.0


def test_compare_with_a_skipped_scenario() -> None:
    out = bench.compare({"c32_k16": report(300.0, 1.0, 2.0)}, {"c32_k16": None}, 600.0, 5.0)
    assert out["c32_k16"]["plaudit_over_naive_items_per_s"] is None
    assert out["c32_k16"]["plaudit_over_ceiling"] == 0.5


def test_scenarios_cover_the_three_loads() -> None:
    for quick in (True, False):
        plan = {sc.name: sc for sc in bench.scenarios(quick)}
        assert (plan["c32_k1"].concurrency, plan["c32_k1"].items_per_request) == (32, 1)
        assert (plan["c32_k16"].concurrency, plan["c32_k16"].items_per_request) == (32, 16)
        idle = plan[bench.IDLE_SCENARIO]
        assert (idle.concurrency, idle.rate) == (1, 1.0)
        # A 1 req/s scenario must be allowed to last as long as its requests take.
        assert idle.duration_s > idle.requests / idle.rate


def test_format_results_prints_every_row() -> None:
    plaudit = {"c32_k1": report(400.0, 50.0, 80.0), bench.IDLE_SCENARIO: report(1.0, 12.0, 15.0)}
    naive = {"c32_k1": report(100.0, 200.0, 320.0), bench.IDLE_SCENARIO: None}
    results = {
        "ceiling": {"items_per_s_by_batch": {1: 50.0, 8: 500.0}, "best_batch_size": 8,
                    "best_workers": 2, "items_per_s_by_workers": {1: 400.0, 2: 500.0},
                    "best_items_per_s": 500.0, "direct_latency_ms": 8.0,
                    "direct_latency_back_to_back_ms": 6.5},
        "servers": {
            "plaudit": {k: v.to_json() for k, v in plaudit.items()},
            "naive": {k: (v.to_json() if v else None) for k, v in naive.items()},
        },
        "comparison": bench.compare(plaudit, naive, 500.0, 8.0),
    }
    text = bench.format_results(results)
    assert "b8: 500.0" in text and "(best b8 with 2 concurrent call(s)" in text
    assert "1 worker(s): 400.0, 2 worker(s): 500.0" in text
    assert "lone-call session" not in text  # this engine had none
    results["ceiling"] |= {"lone_session_items_per_s_by_batch": {1: 450.0, 8: 520.0}, "best_on_lone_session": True}
    text_with_lone = bench.format_results(results)
    assert "2 worker(s): 500.0, lone-call session: b1 450.0, b8 520.0)" in text_with_lone
    assert "concurrent call(s) on the lone-call session;" in text_with_lone
    assert "Plaudit/naive items/s x4," in text and "p99 Plaudit/naive 0.25" in text
    assert "Plaudit/ceiling 0.8," in text
    assert "right after this load" not in text  # not measured: no line
    results["comparison"]["c32_k1"] |= {"ceiling_after_items_per_s": 320.0, "plaudit_over_ceiling_after": 1.25}
    assert (
        "  the ceiling's best setting again, right after this load: 320.0 items/s (Plaudit/that 1.25)"
    ) in bench.format_results(results)
    assert "naive    idle_c1_1rps  (not run: no time left or server did not start)" in text
    assert "Plaudit/direct x1.5)" in text
    assert "interleaved" not in text  # not measured in this run: no line
    results["comparison"][bench.IDLE_SCENARIO]["interleaved"] = {
        "plaudit_p50_ms": 11.0, "direct_p50_ms": 10.0, "plaudit_over_direct": 1.1,
        "median_paired_ratio": 1.05, "pairs": 60, "plaudit_mean_ms": 11.5, "direct_mean_ms": 10.25,
    }
    text_interleaved = bench.format_results(results)
    assert (
        "60 pairs (p50): Plaudit 11.00 ms, direct 10.00 ms (Plaudit/direct x1.1; median of the "
        "per-pair ratios x1.05)"
    ) in text_interleaved
    assert "their means" not in text_interleaved  # the server's counters were not read: no line
    results["comparison"][bench.IDLE_SCENARIO]["interleaved"] |= {
        "server_engine_mean_ms": 9.75, "outside_engine_mean_ms": 1.75,
    }
    assert (
        "  their means: Plaudit 11.50 ms = its engine (tokenize + score, from /metrics) 9.75 ms + "
        "outside the engine 1.75 ms; direct 10.25 ms"
    ) in bench.format_results(results)
    assert "8.00 ms paced like the idle scenario, 6.50 ms back to back" in text
    assert "engine calls under this load" not in text  # not read in this run: no line
    results["comparison"]["c32_k1"]["plaudit_engine"] = {
        "items": 400.0, "batches": 200.0, "engine_ms_per_item": 4.6, "mean_batch_items": 2.0,
        "ceiling_engine_ms_per_item": 4.0, "over_ceiling": 1.15,
    }
    assert (
        "  Plaudit's engine calls under this load: 4.6 ms per item (ceiling 4.0 ms, x1.15), "
        "2.00 items per batch"
    ) in bench.format_results(results)
    assert not text.startswith("machine:")  # no record in these results: no line
    results["machine"] = {"cpu": "Test CPU", "cores": 2, "machine": "x86_64", "flags": ["avx2"], "int8_kernel": "u8u8"}
    assert bench.format_results(results).startswith("machine: Test CPU, 2 cores (avx2); 8-bit int8 weights run the slower")


def test_paced_direct_latency_calls_the_engine_on_the_idle_scenarios_schedule() -> None:
    scorer = RecordingScorer()
    calls = scorer.calls
    items = synthetic_items(4)
    assert bench.direct_latency_ms(scorer, items, interval_s=0.05) > 0
    assert len(calls) == 4  # one call per item, none repeated
    for index, at in enumerate(calls):
        assert at - calls[0] >= index * 0.05 - 1e-3
    calls.clear()
    bench.direct_latency_ms(scorer, items)
    assert len(calls) == 12  # back to back: the fastest of three per item


def test_items_per_s_calls_every_batch_once_across_the_threads() -> None:
    import threading

    calls: list[tuple[int, ...]] = []
    threads: set[int] = set()

    def call(batch: list[int]) -> None:
        calls.append(tuple(batch))
        threads.add(threading.get_ident())

    batches = [[0, 1], [2], [3, 4, 5], [6]]
    assert bench.items_per_s(call, batches, threads=2) > 0
    assert sorted(calls) == sorted(map(tuple, batches)) and 1 <= len(threads) <= 2


def test_a_fast_engine_is_timed_over_repeated_passes_after_a_warm_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU scores a data set in a tenth of a second: one pass, cold, is too little to time."""
    scorer = DeterministicScorer()
    encoded = scorer.encode(synthetic_items(40))
    sizes: list[int] = []
    real_run = scorer.run
    monkeypatch.setattr(scorer, "run", lambda batch: sizes.append(len(batch)) or real_run(batch))
    assert bench.engine_items_per_s(scorer, encoded, 8, workers=1, min_seconds=0.2) > 0
    passes = (sum(sizes) - 8) / 40  # less the one warm-up call of one batch
    assert passes >= 2 and passes == int(passes)  # the warm pass, then whole timed passes
    sizes.clear()
    slow = DeterministicScorer(delay_s=0.02)  # 5 batches sleep 100 ms at least: one pass is enough
    real_slow_run = slow.run
    monkeypatch.setattr(slow, "run", lambda batch: sizes.append(len(batch)) or real_slow_run(batch))
    assert bench.engine_items_per_s(slow, slow.encode(synthetic_items(40)), 8, workers=1, min_seconds=0.1) > 0
    assert sum(sizes) == 8 + 40  # the warm-up call and the one timed pass


def test_the_ceiling_again_runs_the_best_setting_on_the_same_items(monkeypatch: pytest.MonkeyPatch) -> None:
    items = synthetic_items(40)
    scorer = DeterministicScorer(delay_s=0.01)
    best = bench.Ceiling(
        items_per_s_by_batch={8: 100.0}, best_batch_size=8, best_workers=2, best_items_per_s=100.0,
        items_per_s_by_workers={2: 100.0}, lone_session_items_per_s_by_batch={}, best_on_lone_session=False,
        direct_latency_ms=10.0, direct_latency_back_to_back_ms=9.0,
    )
    calls: dict[str, list[int]] = {"run": [], "run_alone": []}
    for method in calls:
        real = getattr(scorer, method)
        monkeypatch.setattr(scorer, method, lambda batch, m=method, f=real: calls[m].append(len(batch)) or f(batch))
    assert bench.ceiling_again(scorer, items, best, min_timed_s=0.01) > 0
    assert calls["run_alone"] == [] and max(calls["run"]) == 8
    assert sum(calls["run"]) == 8 + 40  # the warm-up call, then one pass over the same 40 items
    calls["run"].clear()
    lone = replace(best, best_batch_size=1, best_workers=1, best_on_lone_session=True)
    assert bench.ceiling_again(scorer, items, lone, min_timed_s=0.01) > 0
    assert calls["run"] == [] and set(calls["run_alone"]) == {1}


def test_measure_ceiling_tries_every_batch_size_and_worker_count() -> None:
    items = synthetic_items(40)
    ceiling = bench.measure_ceiling(
        DeterministicScorer(), items, idle_items=items[:5], time_limit_s=60.0, worker_counts=(1, 2), min_timed_s=0.01
    )
    assert list(ceiling.items_per_s_by_batch) == list(bench.BATCH_SIZES)
    assert list(ceiling.items_per_s_by_workers) == [1, 2]
    assert ceiling.best_items_per_s == max(ceiling.items_per_s_by_workers.values())
    assert ceiling.items_per_s_by_workers[ceiling.best_workers] == ceiling.best_items_per_s
    assert ceiling.items_per_s_by_batch[ceiling.best_batch_size] == ceiling.best_items_per_s
    assert ceiling.direct_latency_ms > 0


def test_server_env_sets_settings_and_threads() -> None:
    config = NaiveConfig(
        store_dir="/m", model="rm:3", engine="onnx", precision="int8", intra_op_threads=2
    )
    base = {"PATH": "/bin", "PLAUDIT_MAX_WAIT_MS": "2", "PLAUDIT_MODEL": "old"}
    env = bench.server_env(base, config, 8123)
    assert env["PLAUDIT_MODEL"] == "rm:3" and env["PLAUDIT_STORE_DIR"] == "/m"
    assert env["PLAUDIT_PRECISION"] == "int8" and env["PLAUDIT_PORT"] == "8123"
    assert env["PLAUDIT_INTRA_OP_THREADS"] == "2" and env["OMP_NUM_THREADS"] == "2"
    assert env["PLAUDIT_MAX_WAIT_MS"] == "2" and env["PATH"] == "/bin"
    assert "PLAUDIT_ENGINE_OPTIONS" not in env
    slow = NaiveConfig(engine="deterministic", engine_options={"delay_s": 0.1})
    assert json.loads(bench.server_env({}, slow, 8123)["PLAUDIT_ENGINE_OPTIONS"]) == {"delay_s": 0.1}


def test_server_process_serves_the_naive_app_and_stops() -> None:
    config = NaiveConfig(engine="deterministic", intra_op_threads=1)
    port = bench.free_port()
    with bench.ServerProcess(bench.SERVERS["naive"], bench.server_env({}, config, port), port) as proc:
        proc.wait_ready(timeout_s=60)
        response = httpx.post(
            f"{proc.url}/v1/score", json={"items": [{"prompt": "p", "response": "r"}]}, trust_env=False
        )
        assert response.status_code == 200 and len(response.json()["scores"]) == 1
        assert proc.running
    assert not proc.running


def _run_naive(
    config: NaiveConfig, plan: list[bench.Scenario], n_items: int, budget_s: float = 300.0, **options: object
) -> tuple[dict[str, object], str | None]:
    """bench.run_server against a real naive server process with `config`."""
    return bench.run_server(
        bench.SERVERS["naive"],
        lambda port: bench.server_env({}, config, port),
        ItemCycle(synthetic_items(n_items)),
        plan,
        bench.Budget(budget_s),
        **options,
    )


def test_run_server_restarts_after_a_cut_scenario_and_reports_both() -> None:
    slow = NaiveConfig(engine="deterministic", engine_options={"delay_s": 0.1}, intra_op_threads=1)
    plan = [
        bench.Scenario("cut", concurrency=2, items_per_request=1, requests=100, duration_s=0.5),
        bench.Scenario("whole", concurrency=2, items_per_request=3, requests=4, duration_s=60.0),
    ]
    reports, error = _run_naive(slow, plan, n_items=10, reserve_s=0.0)
    assert error is None
    cut, whole = reports["cut"], reports["whole"]
    assert cut is not None and whole is not None
    assert (cut.stopped_by, cut.unfinished, cut.failed) == ("duration", 2, 0)
    assert (whole.stopped_by, whole.ok, whole.items_ok, whole.unfinished) == ("requests", 4, 12, 0)


def test_run_server_measures_the_http_floor_after_the_idle_scenario() -> None:
    fast = NaiveConfig(engine="deterministic", intra_op_threads=1)
    plan = [
        bench.Scenario("c2", concurrency=2, items_per_request=1, requests=4, duration_s=30.0),
        bench.Scenario(bench.IDLE_SCENARIO, concurrency=1, items_per_request=1, requests=3, duration_s=30.0, rate=20.0),
    ]
    seen: list[tuple[str, str]] = []
    floor: dict[str, float | None] = {}

    def after_idle(url: str, sc: bench.Scenario) -> None:
        seen.append((url, sc.name))
        floor["p50_ms"] = bench.http_floor_ms(url, sc.requests, 1.0 / sc.rate)

    reports, error = _run_naive(fast, plan, n_items=4, reserve_s=0.0, after_idle=after_idle)
    assert error is None and reports[bench.IDLE_SCENARIO] is not None
    assert [name for _, name in seen] == [bench.IDLE_SCENARIO]  # once, after that scenario only
    assert seen[0][0].startswith("http://127.0.0.1:")
    # A real round trip took place: positive, and well under the client's 10 s timeout.
    assert floor["p50_ms"] is not None and 0.0 < floor["p50_ms"] < 10_000.0


def test_interleaved_idle_probe_alternates_served_requests_and_direct_calls() -> None:
    # The direct scorer sleeps 150 ms a call and the server 50 ms a batch. Only lower bounds
    # are asserted (no speed check): a direct figure under 150 ms would be a served one.
    scorer = RecordingScorer(delay_s=0.15)
    calls = scorer.calls
    slow = NaiveConfig(engine="deterministic", engine_options={"delay_s": 0.05}, intra_op_threads=1)
    port = bench.free_port()
    env = bench.server_env({}, slow, port)
    with bench.ServerProcess(bench.SERVERS["plaudit"], env, port) as proc:
        proc.wait_ready(timeout_s=60)
        started = time.perf_counter()
        both = bench.interleaved_idle_ms(proc.url, scorer, synthetic_items(4), interval_s=0.4)
    assert both is not None and both["pairs"] == 4
    assert both["plaudit_p50_ms"] >= 50.0 and both["direct_p50_ms"] >= 150.0
    assert both["plaudit_over_direct"] == both["plaudit_p50_ms"] / both["direct_p50_ms"]
    assert both["plaudit_mean_ms"] >= 50.0 and both["direct_mean_ms"] >= 150.0
    assert len(calls) == 4  # one direct call per item
    # Items 0 and 2 go to the server first (direct at half the interval), 1 and 3 direct first.
    offsets = [at - started for at in calls]
    for index, offset in enumerate(offsets):
        expected = (index + (0.5 if index % 2 == 0 else 0.0)) * 0.4
        assert offset >= expected - 1e-3


def test_interleaved_idle_probe_reports_a_server_that_refuses() -> None:
    config = NaiveConfig(engine="deterministic", intra_op_threads=1)
    port = bench.free_port()
    env = {**bench.server_env({}, config, port), "PLAUDIT_MAX_CHARS_PER_TEXT": "1"}
    with bench.ServerProcess(bench.SERVERS["plaudit"], env, port) as proc:
        proc.wait_ready(timeout_s=60)
        assert bench.interleaved_idle_ms(proc.url, DeterministicScorer(), synthetic_items(2), 0.01) is None


def test_run_server_reports_a_server_that_cannot_start() -> None:
    config = NaiveConfig(engine="onnx")  # no store: the naive app refuses to start
    plan = bench.scenarios(quick=True)
    reports, error = _run_naive(config, plan, n_items=4, budget_s=120.0)
    assert error is not None and "exited with code" in error and "PLAUDIT_STORE_DIR" in error
    assert reports == {sc.name: None for sc in plan}


def test_main_skips_what_its_time_bound_leaves_no_room_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    argv = ["--engine", "deterministic", "--quick", "--max-total-s", "11", "--out", str(out)]
    assert bench.main(argv) == 0
    results = json.loads(out.read_text())
    assert set(results["ceiling"]["items_per_s_by_batch"]) == {str(b) for b in bench.BATCH_SIZES}
    # Less than the 10 s kept in reserve + 3 s: no server starts, no scenario runs.
    assert results["servers"] == {
        server: {sc.name: None for sc in bench.scenarios(quick=True)} for server in bench.SERVERS
    }
    assert results["comparison"]["c32_k1"]["plaudit_over_naive_items_per_s"] is None
    assert results["server_errors"] == {}
    assert "(not run: no time left or server did not start)" in capsys.readouterr().out


def test_main_needs_a_store_for_model_engines(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--engine", "onnx"]) == 2
    assert "--store and --model are required" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_measure_ceiling_on_a_stored_onnx_model(trained_store: Path, precision: str) -> None:
    from loadtest.naive_server import load_configured_scorer

    config = NaiveConfig(
        store_dir=str(trained_store),
        model="tiny@production",
        precision=precision,
        intra_op_threads=1,
        onnx_options="plaudit",
        lone_call_threads=2,
    )
    scorer = load_configured_scorer(config)
    try:
        items = synthetic_items(24)
        ceiling = bench.measure_ceiling(
            scorer, items, idle_items=items[:3], time_limit_s=60.0, worker_counts=(1, 2), min_timed_s=0.01
        )
    finally:
        scorer.close()
    assert list(ceiling.items_per_s_by_batch) == list(bench.BATCH_SIZES)
    assert ceiling.best_items_per_s > 0 and ceiling.direct_latency_ms > 0
    # The lone-call session is measured too, and the best is the best of every layout.
    assert list(ceiling.lone_session_items_per_s_by_batch) == list(bench.BATCH_SIZES)
    every = [*ceiling.items_per_s_by_workers.values(), *ceiling.lone_session_items_per_s_by_batch.values()]
    assert ceiling.best_items_per_s == max(every)
    best_table = ceiling.lone_session_items_per_s_by_batch if ceiling.best_on_lone_session else None
    assert best_table is None or best_table == ceiling.items_per_s_by_batch


@pytest.mark.parametrize(("flags", "naive"), [([], "int8"), (["--naive-precision", "fp32"], "fp32")])
def test_the_naive_server_takes_its_own_precision_when_given(flags: list[str], naive: str) -> None:
    args = bench.build_parser().parse_args(["--store", "/m", "--model", "rm", "--precision", "int8", *flags])
    configs = bench.server_configs(args, bench.engine_config(args))
    assert configs["plaudit"].precision == "int8" and configs["naive"].precision == naive
    env = bench.server_env({}, configs["naive"], 8000)
    assert env["PLAUDIT_PRECISION"] == naive and env["PLAUDIT_MODEL"] == "rm"


def test_the_engine_layout_defaults_to_what_the_service_would_choose(trained_store: Path) -> None:
    from service.settings import Settings, available_cores

    cores = available_cores()
    stored = ModelStore(trained_store).resolve("tiny").metadata["default_precision"]
    args = bench.build_parser().parse_args(["--store", str(trained_store), "--model", "tiny"])
    bench.resolve_engine_layout(args)
    expected = Settings().engine_layout(stored)
    assert (args.engine_workers, args.threads) == (expected.workers, expected.threads_per_call)
    assert args.lone_call_threads == expected.lone_call_threads
    assert bench.engine_config(args).lone_call_threads == expected.lone_call_threads  # the ceiling's scorer

    for precision in ("int8", "fp32"):
        args = bench.build_parser().parse_args(["--store", str(trained_store), "--model", "tiny", "--precision", precision])
        bench.resolve_engine_layout(args)
        lone = cores if cores > 1 and precision == "fp32" else None
        assert (args.engine_workers, args.threads, args.lone_call_threads) == (cores, 1, lone)
    # Flags on the command line win.
    args = bench.build_parser().parse_args(
        ["--store", str(trained_store), "--model", "tiny", "--precision", "int8", "--threads", "2", "--engine-workers", "3"]
    )
    bench.resolve_engine_layout(args)
    assert (args.engine_workers, args.threads) == (3, 2)
    # The deterministic engine needs no store.
    args = bench.build_parser().parse_args(["--engine", "deterministic"])
    bench.resolve_engine_layout(args)
    assert (args.engine_workers, args.threads) == (1, cores)


def test_engine_use_is_the_difference_of_two_counter_readings() -> None:
    before = {"engine_s": 10.0, "items": 100.0, "batches": 60.0}
    after = {"engine_s": 17.5, "items": 250.0, "batches": 135.0}
    # 7.5 s over 150 items in 75 batches
    assert bench.engine_use(before, after) == {
        "items": 150.0, "batches": 75.0, "engine_ms_per_item": 50.0, "mean_batch_items": 2.0
    }
    assert bench.engine_use(None, after) is None
    assert bench.engine_use(before, None) is None
    assert bench.engine_use(after, after) is None  # no batch in between


def test_idle_split_takes_the_engine_work_per_request_out_of_the_served_mean() -> None:
    before = {"engine_s": 1.0, "tokenize_s": 0.5, "items": 10.0, "batches": 10.0}
    after = {"engine_s": 1.9, "tokenize_s": 0.53, "items": 40.0, "batches": 40.0}
    # (0.9 s scoring + 0.03 s tokenizing) over 30 requests = 31 ms each; 35 ms served
    split = bench.idle_split(before, after, served_mean_ms=35.0)
    assert split is not None
    assert split["server_engine_mean_ms"] == pytest.approx(31.0)
    assert split["outside_engine_mean_ms"] == pytest.approx(4.0)
    assert bench.idle_split(None, after, 35.0) is None
    assert bench.idle_split(before, None, 35.0) is None
    assert bench.idle_split(after, after, 35.0) is None  # no request in between


def test_ceiling_engine_time_per_item_counts_the_calls_that_ran_at_once() -> None:
    two_calls = bench.Ceiling(
        items_per_s_by_batch={1: 40.0}, best_batch_size=1, best_workers=2, best_items_per_s=40.0,
        items_per_s_by_workers={1: 21.0, 2: 40.0}, lone_session_items_per_s_by_batch={},
        best_on_lone_session=False, direct_latency_ms=30.0, direct_latency_back_to_back_ms=25.0,
    )
    assert bench.ceiling_engine_ms_per_item(two_calls) == 50.0  # 2 calls / 40 items/s
    # measure_ceiling gives best_workers 1 when the lone-call session (one call at a time) wins
    lone = replace(two_calls, best_workers=1, best_on_lone_session=True, lone_session_items_per_s_by_batch={1: 40.0})
    assert bench.ceiling_engine_ms_per_item(lone) == 25.0  # one call at a time


def test_engine_counters_move_by_what_a_real_plaudit_server_scored() -> None:
    # The deterministic engine sleeps 50 ms a batch: engine time has that lower bound (no
    # speed check), and the counters count exactly the items sent.
    slow = NaiveConfig(engine="deterministic", engine_options={"delay_s": 0.05}, intra_op_threads=1)
    port = bench.free_port()
    with bench.ServerProcess(bench.SERVERS["plaudit"], bench.server_env({}, slow, port), port) as proc:
        proc.wait_ready(timeout_s=60)
        before = bench.engine_counters(proc.url)
        items = [{"prompt": "p", "response": f"r{i}"} for i in range(3)]
        for _ in range(2):
            response = httpx.post(f"{proc.url}/v1/score", json={"items": items}, trust_env=False)
            assert response.status_code == 200
        use = bench.engine_use(before, bench.engine_counters(proc.url))
        # Lone items (the idle path) are counted too, with their tokenizing.
        before_lone = bench.engine_counters(proc.url)
        for i in range(2):
            response = httpx.post(f"{proc.url}/v1/score", json={"items": items[i : i + 1]}, trust_env=False)
            assert response.status_code == 200
        split = bench.idle_split(before_lone, bench.engine_counters(proc.url), served_mean_ms=1000.0)
    assert use is not None and use["items"] == 6.0
    assert 1.0 <= use["batches"] <= 6.0
    assert use["engine_ms_per_item"] * use["items"] >= 50.0 * use["batches"] - 1.0
    assert split is not None and split["server_engine_mean_ms"] >= 50.0
    assert split["outside_engine_mean_ms"] == pytest.approx(1000.0 - split["server_engine_mean_ms"])


def test_engine_counters_are_none_for_a_server_without_plaudit_metrics() -> None:
    config = NaiveConfig(engine="deterministic", intra_op_threads=1)
    port = bench.free_port()
    with bench.ServerProcess(bench.SERVERS["naive"], bench.server_env({}, config, port), port) as proc:
        proc.wait_ready(timeout_s=60)
        assert bench.engine_counters(proc.url) is None


def test_run_server_reads_counters_right_around_each_scenario_load() -> None:
    fast = NaiveConfig(engine="deterministic", intra_op_threads=1)
    plan = [
        bench.Scenario("a", concurrency=1, items_per_request=1, requests=2, duration_s=30.0),
        bench.Scenario("b", concurrency=1, items_per_request=1, requests=2, duration_s=30.0),
    ]
    seen: list[tuple[str, str]] = []
    reports, error = _run_naive(
        fast, plan, n_items=4, reserve_s=0.0,
        before_load=lambda url, sc: seen.append(("before", sc.name)),
        after_load=lambda url, sc: seen.append(("after", sc.name)),
        on_report=lambda sc, report: seen.append(("report", f"{sc.name}:{report.ok}")),
    )
    assert error is None and all(reports.values())
    assert seen == [
        ("before", "a"), ("after", "a"), ("report", "a:2"), ("before", "b"), ("after", "b"), ("report", "b:2")
    ]


def test_a_server_whose_model_failed_to_load_is_given_up_at_once_and_its_log_kept(
    tmp_path: Path, linear_store: Path
) -> None:
    """On a lent GPU a server that cannot get ready must not take the whole readiness wait."""
    # A model the store has, whose file fails its checksum when loaded (a missing model stops
    # the server at start instead: the test below).
    store = tmp_path / "store"
    shutil.copytree(linear_store, store)
    (ModelStore(store).get("lin", 1).path / "model.onnx").write_bytes(b"damaged")
    port = bench.free_port()
    env = {
        **os.environ,
        "PLAUDIT_ENGINE": "onnx",
        "PLAUDIT_STORE_DIR": str(store),
        "PLAUDIT_MODEL": "lin",
        "PLAUDIT_FEEDBACK_ENABLED": "false",
        "PLAUDIT_PORT": str(port),
    }
    log = tmp_path / "server.log"
    log.write_bytes(b"an earlier server's lines\n")
    with bench.ServerProcess(bench.SERVERS["plaudit"], env, port, log_path=log) as proc:
        with pytest.raises(bench.ServerStartError, match="cannot get ready: the model failed to load"):
            proc.wait_ready(timeout_s=600)  # raised as soon as /readyz says so, not after 600 s
        assert "an earlier server's lines" not in proc.log_tail()  # its own lines only
    kept = log.read_text()
    assert kept.startswith("an earlier server's lines\n") and "could not load model" in kept


def test_a_server_whose_model_is_not_in_the_store_ends_at_start_with_its_line(tmp_path: Path) -> None:
    port = bench.free_port()
    env = {
        **os.environ,
        "PLAUDIT_ENGINE": "onnx",
        "PLAUDIT_STORE_DIR": str(tmp_path / "no-store"),
        "PLAUDIT_FEEDBACK_ENABLED": "false",
        "PLAUDIT_PORT": str(port),
    }
    with bench.ServerProcess(bench.SERVERS["plaudit"], env, port) as proc:
        with pytest.raises(bench.ServerStartError, match="exited with code 3 before it was ready") as refused:
            proc.wait_ready(timeout_s=600)
    assert "model store" in str(refused.value) and "no-store does not exist" in str(refused.value)


def test_after_a_cut_load_plaudits_queue_is_seen_to_drain_and_the_naive_servers_is_not_seen() -> None:
    slow = NaiveConfig(engine="deterministic", engine_options={"delay_s": 0.2}, intra_op_threads=1)
    port = bench.free_port()
    with bench.ServerProcess(bench.SERVERS["plaudit"], bench.server_env({}, slow, port), port) as proc:
        proc.wait_ready(timeout_s=60)
        config = LoadConfig(url=proc.url, concurrency=8, requests=100, items_per_request=2, duration_s=0.3)
        assert summarize(run_load_sync(config, ItemCycle(synthetic_items(10)))).stopped_by == "duration"
        assert bench.queue_drained(proc.url, timeout_s=30.0)  # the gone clients' items were dropped
        depth = httpx.get(f"{proc.url}/metrics", trust_env=False).text
        assert "plaudit_queue_depth 0.0" in depth
    port = bench.free_port()
    with bench.ServerProcess(bench.SERVERS["naive"], bench.server_env({}, slow, port), port) as naive:
        naive.wait_ready(timeout_s=60)
        assert not bench.queue_drained(naive.url, timeout_s=1.0)  # no queue to see: restart it instead
