"""GPU serving benchmark: the engine's in-process ceiling, then Plaudit over HTTP under
concurrent 32-item requests, on the same machine and the same items.

    python -m loadtest.bench_gpu --store DIR --model REF --data PAIRS.jsonl
        [--engine torch] [--device cuda] [--precision bf16] [--workers 6,1,4]
        [--load-processes 6] [--quick] [--max-total-s 420] [--out FILE]

1. Ceiling: `scorer.run` on length-sorted batches of 32 to 512 items (what a GPU wants),
   from 1 and from --engine-workers threads; the best items/s is the ceiling.
2. Plaudit (`plaudit serve --workers N`, each worker on its own socket) with GPU batching
   settings (GPU_SERVER_SETTINGS; any PLAUDIT_* variable already set wins) gets closed-loop
   loads of 32-item /v1/score requests, sent by --load-processes generator processes so that
   the generator is not what is measured. One Python process cannot feed an H200 (about
   7.9k items/s against a 38k ceiling: its event loop and the GIL are the limit), so the
   server runs several processes on the one GPU, each with its own batcher and engine.
   --workers lists the server sizes to run, in order: every load at each size above one,
   and one load (BASELINE_CONCURRENCY) for a single worker, the baseline of the same run.
3. Issue 3's bar, printed as PASS or FAIL per load: served items/s at least
   MIN_SHARE_OF_CEILING of the ceiling, and at least MIN_ITEMS_PER_S.
There is no naive server here: the GPU bar is against the engine itself.
A lent machine gives one run that its time limit may cut: the ceiling and each finished
load are printed as they come and saved to --out (with "partial": true) until the whole
run's results replace them.
On a CPU machine (--device cpu --engine onnx or deterministic) the same code runs, which is
how its tests and a dry run check it; the figures then mean nothing for the GPU bar.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from loadtest.bench_serving import (
    SERVERS,
    Budget,
    Scenario,
    engine_config,
    lacks_model,
    measure_ceiling,
    run_server,
    server_env,
)
from loadtest.data import DataError, ItemCycle, load_items, synthetic_items
from loadtest.generator import run_load_processes
from loadtest.naive_server import load_configured_scorer
from loadtest.report import LoadReport, figure, json_safe, write_json
from model_store.errors import StoreError
from service.settings import available_cores

GPU_BATCH_SIZES = (32, 64, 128, 256, 512)
MIN_SHARE_OF_CEILING = 0.6
MIN_ITEMS_PER_S = 8000.0
# Batching for a GPU: big batches (a padded token is cheap next to a kernel launch, so the
# padding cap is looser than on CPU), two engine workers so that one batch's host-side work
# (padding, copies) overlaps the other's kernels, and a queue deep enough for every item
# the load keeps in flight.
GPU_SERVER_SETTINGS = {
    "PLAUDIT_MAX_BATCH_ITEMS": "512",
    "PLAUDIT_MAX_BATCH_TOKENS": "65536",
    "PLAUDIT_MAX_PADDING_WASTE": "0.25",
    "PLAUDIT_MAX_WAIT_MS": "2",
    "PLAUDIT_MAX_QUEUE_ITEMS": "32768",
    "PLAUDIT_TOKENIZE_WORKERS": "4",
    "PLAUDIT_ENGINE_WORKERS": "2",
}
ITEMS_PER_REQUEST = 32
CONCURRENCIES = (64, 128, 256)
BASELINE_CONCURRENCY = 128  # one worker's best load in session 14 (7.9k items/s)
# Server sizes, in order: the likeliest to pass first, then the one-worker baseline (so that a
# run cut short still has its ratio), then a smaller server. On the lent H200 (16 cores),
# N independent servers, each with its own load, served 6.8k items/s for 1, 18.2k for 3,
# 20.1k for 4 and 24.3k for 5.
DEFAULT_WORKERS = (6, 1, 4)


def scenarios(quick: bool, workers: int = 1) -> list[Scenario]:
    """Closed-loop 32-item loads on a server of `workers` processes: at 64, 128 and 256
    requests in flight, or only the baseline's for one worker. Each stops at its request
    count or its duration, whichever comes first."""
    requests, duration = (200, 30.0) if quick else (12000, 30.0)
    levels = CONCURRENCIES if workers > 1 else (BASELINE_CONCURRENCY,)
    return [
        Scenario(f"w{workers}_c{c}_k{ITEMS_PER_REQUEST}", c, ITEMS_PER_REQUEST, requests=requests, duration_s=duration)
        for c in levels
    ]


def parse_workers(text: str) -> tuple[int, ...]:
    """"6,1" -> (6, 1): the server sizes to run, in order."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes counts separated by commas, e.g. 6,1; got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--workers counts must be at least 1; got {text!r}")
    return counts


def speedups(by_size: Mapping[int, Mapping[str, LoadReport | None]]) -> dict[int, float]:
    """Per server size (its loads' reports by name): its best served items/s over the
    one-worker baseline's, same run."""
    best = {
        workers: max(report.items_per_s for report in answered)
        for workers, reports in by_size.items()
        if (answered := [r for r in reports.values() if r is not None])
    }
    baseline = best.get(1)
    if not baseline:
        return {}
    return {workers: items / baseline for workers, items in best.items() if workers != 1}


def verdicts(
    reports: Mapping[str, LoadReport | None], ceiling_items_per_s: float
) -> dict[str, dict[str, Any]]:
    """Per load: served items/s, its share of the ceiling, and whether both bars hold."""
    out: dict[str, dict[str, Any]] = {}
    for name, report in reports.items():
        if report is None:
            out[name] = {"items_per_s": None, "share_of_ceiling": None, "passed": False}
            continue
        share = report.items_per_s / ceiling_items_per_s if ceiling_items_per_s > 0 else None
        out[name] = {
            "items_per_s": report.items_per_s,
            "share_of_ceiling": share,
            "failed_requests": report.failed,
            "passed": (
                share is not None
                and share >= MIN_SHARE_OF_CEILING
                and report.items_per_s >= MIN_ITEMS_PER_S
                and report.failed == 0
            ),
        }
    return out


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    budget = Budget(args.max_total_s)
    items = load_items(args.data, limit=args.max_items) if args.data else synthetic_items(min(512, args.max_items))
    model = engine_config(args)
    scorer = load_configured_scorer(model)
    try:
        ceiling = measure_ceiling(
            scorer,
            items,
            idle_items=items[:5],
            time_limit_s=min(120.0, 0.3 * budget.left()),
            worker_counts=(1, int(GPU_SERVER_SETTINGS["PLAUDIT_ENGINE_WORKERS"])),
            batch_sizes=GPU_BATCH_SIZES,
        )
    finally:
        scorer.close()

    base = {**os.environ}
    for key, value in GPU_SERVER_SETTINGS.items():
        base.setdefault(key, value)
    item_list = list(items)
    # On a lent GPU machine this is the only run, and the device tool may cut it short: what
    # is measured so far is printed and saved as it comes, so a cut run still reports it.
    partial: dict[str, Any] = {
        "partial": True,
        "settings": vars(args),
        "server_settings": {k: base[k] for k in GPU_SERVER_SETTINGS},
        "ceiling": asdict(ceiling),
        "loads": {},
    }
    print(ceiling_line(partial["ceiling"]), flush=True)
    save_partial(args.out, partial)

    def record(sc: Scenario, done: LoadReport) -> None:
        partial["loads"][sc.name] = done.to_json()
        print(f"{sc.name}: {figure(done.items_per_s, 0)} items/s, {done.ok} ok, {done.failed} failed", flush=True)
        save_partial(args.out, partial)

    plans = {workers: scenarios(args.quick, workers) for workers in args.workers}
    by_size: dict[int, dict[str, LoadReport | None]] = {}
    errors = []
    for workers, plan in plans.items():
        sized = {**base, "PLAUDIT_WORKERS": str(workers)}
        # Each worker's host threads get its share of the cores, as the service's own default does.
        share = replace(model, intra_op_threads=max(1, args.threads // workers))
        by_size[workers], error = run_server(
            SERVERS["plaudit"],
            lambda port, env=sized, share=share: server_env(env, share, port),  # type: ignore[misc]
            ItemCycle(item_list),
            plan,
            budget,
            load=lambda config, _cycle: run_load_processes(config, item_list, args.load_processes),
            on_report=record,
            # Beside the results (the device tool brings back 8 files): one log per server size.
            log_path=Path(args.out).parent / f"server-w{workers}.log" if args.out else None,
        )
        if error is not None:
            errors.append(f"{workers} worker(s): {error}")
    reports = {name: report for sized_reports in by_size.values() for name, report in sized_reports.items()}
    return {
        "settings": vars(args),
        "server_settings": partial["server_settings"],
        "n_items": len(items),
        "scenarios": [asdict(sc) for plan in plans.values() for sc in plan],
        "ceiling": asdict(ceiling),
        "servers": {"plaudit": {n: (r.to_json() if r else None) for n, r in reports.items()}},
        "verdicts": verdicts(reports, ceiling.best_items_per_s),
        "speedup_over_one_worker": speedups(by_size),
        "server_error": "; ".join(errors) or None,
    }


def save_partial(out: str | None, partial: Mapping[str, Any]) -> None:
    """Write what is measured so far to `out`; the finished run overwrites it."""
    if out:
        write_json(out, partial)


def ceiling_line(ceiling: Mapping[str, Any]) -> str:
    sizes = ", ".join(f"b{b}: {v:.0f}" for b, v in ceiling["items_per_s_by_batch"].items())
    return (
        f"engine ceiling (items/s)  {sizes}  (best b{ceiling['best_batch_size']} with "
        f"{ceiling['best_workers']} concurrent call(s): {ceiling['best_items_per_s']:.0f})"
    )


def format_results(results: Mapping[str, Any]) -> str:
    lines = [
        ceiling_line(results["ceiling"]),
        "",
        f"{'load':<12} {'items/s':>9} {'of ceiling':>11} {'p50 ms':>8} {'p99 ms':>8} {'ok':>6} {'failed':>6}  verdict",
    ]
    for name, report in results["servers"]["plaudit"].items():
        verdict = results["verdicts"][name]
        if report is None:
            lines.append(f"{name:<12} (not run: no time left or the server did not start)  FAIL")
            continue
        latency = report["latency"]
        lines.append(
            f"{name:<12} {figure(report['items_per_s'], 0):>9} {figure(verdict['share_of_ceiling'], 2):>11} "
            f"{figure(latency['p50_ms'], 1):>8} {figure(latency['p99_ms'], 1):>8} "
            f"{report['ok']:>6} {report['failed']:>6}  {'PASS' if verdict['passed'] else 'FAIL'}"
        )
    lines.append(
        f"(bar: served items/s >= {MIN_SHARE_OF_CEILING:.0%} of the ceiling and >= {MIN_ITEMS_PER_S:,.0f}, "
        "with no failed request; wN = a server of N worker processes)"
    )
    for workers, ratio in results.get("speedup_over_one_worker", {}).items():
        lines.append(f"{workers} workers: x{ratio:.2f} the items/s of one worker (best load of each, same run)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="model store folder")
    p.add_argument("--model", help="model reference: NAME, NAME@ALIAS or NAME:VERSION")
    p.add_argument("--data", help="HH pairs or items JSONL; built-in synthetic items if omitted")
    p.add_argument("--engine", default="torch", choices=("torch", "onnx", "deterministic"))
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--precision", default="bf16", choices=("auto", "fp32", "fp16", "bf16", "int8"))
    p.add_argument(
        "--threads", type=int, default=available_cores(),
        help="CPU threads per engine call in the ceiling; each server worker gets threads / workers",
    )
    p.add_argument(
        "--workers", type=parse_workers, default=DEFAULT_WORKERS,
        help="server sizes to run, in order, e.g. 6,1,4 (server processes sharing the GPU; 1 = the baseline)",
    )
    p.add_argument("--load-processes", type=int, default=6, help="generator processes sharing the load")
    p.add_argument("--max-items", type=int, default=8192, help="distinct items to load and measure the ceiling on")
    p.add_argument("--quick", action="store_true", help="fewer requests (a dry run)")
    p.add_argument("--max-total-s", type=float, default=420.0, help="bound on the whole run")
    p.add_argument("--out", help="write the results as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.load_processes < 1:
        parser.error(f"--load-processes must be at least 1, got {args.load_processes}")
    if args.max_items < 1:
        parser.error(f"--max-items must be at least 1, got {args.max_items}")
    if not args.max_total_s > 0:
        parser.error(f"--max-total-s must be positive, got {args.max_total_s:g}")
    if lacks_model(args, "bench_gpu"):
        return 2
    try:
        results = run_benchmark(args)
    except (DataError, StoreError, ValueError, LookupError, OSError, RuntimeError) as exc:
        print(f"bench_gpu: {exc}", file=sys.stderr)
        return 1
    if args.out:  # first: on a lent GPU machine this run is the only one, and its JSON must survive
        write_json(args.out, results)
    print(format_results(json_safe(results)))  # as the JSON holds it: NaN as null
    if results["server_error"]:
        print(f"bench_gpu: the server did not start: {results['server_error']}", file=sys.stderr)
    if args.out:
        print(f"\nresults written to {args.out}")
    return 0 if results["server_error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
