"""Memory benchmark: a server's resident memory idle, under load and in a burst of large
requests, for the naive server and for Plaudit at several MAX_CONCURRENT_REQUESTS, in one run.

    python -m loadtest.bench_memory --store DIR --model REF [--data PATH] [--limits 512,16]
        [--burst-clients 512] [--burst-items 256] [--quick] [--out results.json]

Each server is started afresh on a free 127.0.0.1 port (as in the serving benchmark: the same
stored model, thread counts pinned) and measured in four phases:

1. idle: its resident memory (VmRSS) once ready and warmed up;
2. steady: the peak under the serving benchmark's main load, 32 clients with one item each;
3. burst: the peak while `--burst-clients` clients each send one request of `--burst-items`
   items at once (what MAX_CONCURRENT_REQUESTS is for: every body read is held in memory);
4. after: VmRSS `--settle-s` seconds after the burst ended (answered or cut at `--burst-s`) and,
   for Plaudit, its queue emptied.

Plaudit runs at each of `--limits` (MAX_CONCURRENT_REQUESTS, with the default body budget), and
at the first of them twice more: with no body budget (MAX_INFLIGHT_BODY_BYTES of 1 TiB), the
baseline for the budget's burst peak, and with its memory trim off (PLAUDIT_MEMORY_TRIM=false,
service.memory_trim), the baseline for the trim's `after` figure.

A peak is the kernel's high-water mark (VmHWM), reset before each phase through
/proc/PID/clear_refs, where that is allowed; otherwise the highest VmRSS sampled every 10 ms.
The naive server cannot drop a request whose client has gone, so after a cut burst it is still
working through it: its `after` figure is not a settled one.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest.bench_serving import (
    DRAIN_WAIT_S,
    SERVERS,
    ServerProcess,
    ServerStartError,
    engine_config,
    free_port,
    lacks_model,
    queue_drained,
    resolve_engine_layout,
    server_configs,
    server_env,
)
from loadtest.data import DataError, ItemCycle, load_items, synthetic_items
from loadtest.generator import LoadConfig, run_load_sync
from loadtest.machine import describe_machine, machine_line
from loadtest.report import summarize, write_json
from model_store.errors import StoreError
from service.memory_trim import status_kib

SAMPLE_INTERVAL_S = 0.01
UNTRIMMED = " untrimmed"  # the suffix of the row whose server runs with PLAUDIT_MEMORY_TRIM=false
UNBUDGETED = " no body budget"  # the suffix of the row whose PLAUDIT_MAX_INFLIGHT_BODY_BYTES is NO_BUDGET
NO_BUDGET = 1 << 40


def rss_mib(pid: int) -> float:
    return status_kib("VmRSS", pid) / 1024


class PeakRss:
    """The peak resident memory of `pid` over a `with` block: the kernel's own high-water
    mark when it can be reset for the block, else the highest of samples taken meanwhile."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exact = False
        self._sampled = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakRss":
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.exact = True
        except OSError:  # not this user's process, or a kernel without it
            self.exact = False
        self._sampled = rss_mib(self.pid)
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        if self.exact:
            self._sampled = max(self._sampled, status_kib("VmHWM", self.pid) / 1024)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            try:
                self._sampled = max(self._sampled, rss_mib(self.pid))
            except (OSError, LookupError):  # the process has exited
                return

    @property
    def mib(self) -> float:
        """The peak over the block (read when it ended)."""
        return self._sampled


@dataclass(frozen=True, slots=True)
class MemoryRow:
    server: str  # "naive" or "plaudit limit=N"
    idle_mib: float
    steady_peak_mib: float
    burst_peak_mib: float
    after_mib: float
    steady_items_per_s: float
    burst_outcomes: dict[str, int]  # "ok", "429", "unfinished", ...
    exact_peaks: bool


def measure_server(
    name: str, factory: str, env: dict[str, str], port: int, items: ItemCycle, args: argparse.Namespace
) -> MemoryRow:
    with ServerProcess(factory, env, port) as server:
        server.wait_ready(timeout_s=180.0)
        pid = server.pid
        warm = LoadConfig(url=server.url, concurrency=4, requests=16, items_per_request=4, duration_s=30.0)
        run_load_sync(warm, items)
        time.sleep(1.0)
        idle = rss_mib(pid)

        steady = LoadConfig(
            url=server.url, concurrency=32, requests=args.steady_requests, items_per_request=1, duration_s=args.steady_s
        )
        with PeakRss(pid) as steady_peak:
            steady_report = summarize(run_load_sync(steady, items))

        burst = LoadConfig(
            url=server.url,
            concurrency=args.burst_clients,
            requests=args.burst_clients,
            items_per_request=args.burst_items,
            duration_s=args.burst_s,
            request_timeout_s=args.burst_s,
        )
        with PeakRss(pid) as burst_peak:
            burst_report = summarize(run_load_sync(burst, items))
        # Plaudit may still be scoring what it accepted, or noticing the cut clients gone: the
        # settling starts once its queue is empty (the naive server has no queue to watch).
        queue_drained(server.url, DRAIN_WAIT_S)
        time.sleep(args.settle_s)
        after = rss_mib(pid)

    outcomes = {"ok": burst_report.ok, **burst_report.errors}
    if burst_report.unfinished:
        outcomes["unfinished"] = burst_report.unfinished
    row = MemoryRow(
        server=name,
        idle_mib=idle,
        steady_peak_mib=steady_peak.mib,
        burst_peak_mib=burst_peak.mib,
        after_mib=after,
        steady_items_per_s=steady_report.items_per_s,
        burst_outcomes=outcomes,
        exact_peaks=steady_peak.exact and burst_peak.exact,
    )
    print(f"  {format_row(row)}", flush=True)
    return row


def format_row(row: MemoryRow) -> str:
    outcomes = " ".join(f"{k}={v}" for k, v in row.burst_outcomes.items())
    return (
        f"{row.server:<34} {row.idle_mib:8.0f} {row.steady_peak_mib:12.0f} {row.burst_peak_mib:12.0f} "
        f"{row.after_mib:9.0f} {row.steady_items_per_s:10.1f}   {outcomes}"
    )


HEADER = f"{'server':<34} {'idle MiB':>8} {'steady peak':>12} {'burst peak':>12} {'after MiB':>9} {'items/s':>10}   burst answers"


def _with_baselines(rows: Sequence[MemoryRow], suffix: str) -> list[tuple[MemoryRow, MemoryRow]]:
    """(row, its baseline) for each baseline row named `row.server + suffix`."""
    by_name = {row.server: row for row in rows}
    return [
        (by_name[row.server.removesuffix(suffix)], row)
        for row in rows
        if row.server.endswith(suffix) and row.server.removesuffix(suffix) in by_name
    ]


def format_results(results: dict[str, Any]) -> str:
    rows = [MemoryRow(**row) for row in results["rows"]]
    lines = [
        results["machine_line"],
        f"burst: {results['burst_clients']} clients x {results['burst_items']} items at once "
        f"(cut at {results['burst_s']:g} s); steady: c=32 k=1",
        HEADER,
        *(format_row(row) for row in rows),
    ]
    naive = next((row for row in rows if row.server == "naive"), None)
    if naive is not None:
        for row in rows:
            if row is naive or row.server.endswith((UNTRIMMED, UNBUDGETED)):
                continue
            lines.append(
                f"{row.server} / naive: idle x{row.idle_mib / naive.idle_mib:.2f}, "
                f"steady peak x{row.steady_peak_mib / naive.steady_peak_mib:.2f}, "
                f"burst peak x{row.burst_peak_mib / naive.burst_peak_mib:.2f}"
            )
    for row, baseline in _with_baselines(rows, UNBUDGETED):
        lines.append(
            f"{row.server}, burst peak: {row.burst_peak_mib:.0f} MiB with the body budget, "
            f"{baseline.burst_peak_mib:.0f} without (x{row.burst_peak_mib / baseline.burst_peak_mib:.2f})"
        )
    for row, baseline in _with_baselines(rows, UNTRIMMED):
        lines.append(
            f"{row.server}, {results['settle_s']:g} s after the burst: {row.after_mib:.0f} MiB with the "
            f"memory trim, {baseline.after_mib:.0f} without (x{row.after_mib / baseline.after_mib:.2f})"
        )
    if not all(row.exact_peaks for row in rows):
        lines.append("peaks are sampled every 10 ms (VmHWM could not be reset): a short spike may be missed")
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    resolve_engine_layout(args)
    configs = server_configs(args, engine_config(args))
    items = ItemCycle(load_items(args.data) if args.data else synthetic_items())
    machine = describe_machine()
    print(machine_line(machine), flush=True)
    print(HEADER, flush=True)
    rows = []
    plan: list[tuple[str, str, dict[str, str]]] = [("naive", "naive", {})]
    for limit in args.limits:
        plan.append(
            (
                f"plaudit limit={limit}",
                "plaudit",
                {"PLAUDIT_ENGINE_WORKERS": str(args.engine_workers), "PLAUDIT_MAX_CONCURRENT_REQUESTS": str(limit)},
            )
        )
    # The first limit with no body budget (the burst's every body read at once), then with
    # the memory trim off: the baselines for its burst peak and its `after` figure.
    plan.append(
        (
            f"plaudit limit={args.limits[0]}{UNBUDGETED}",
            "plaudit",
            {**plan[1][2], "PLAUDIT_MAX_INFLIGHT_BODY_BYTES": str(NO_BUDGET)},
        )
    )
    plan.append(
        (
            f"plaudit limit={args.limits[0]}{UNTRIMMED}",
            "plaudit",
            {**plan[1][2], "PLAUDIT_MEMORY_TRIM": "false"},
        )
    )
    for name, kind, extra in plan:
        port = free_port()
        env = server_env({**os.environ, "PLAUDIT_FEEDBACK_ENABLED": "false", **extra}, configs[kind], port)
        rows.append(measure_server(name, SERVERS[kind], env, port, items, args))
    return {
        "machine": machine,
        "machine_line": machine_line(machine),
        "model": args.model,
        "precision": args.precision,
        "naive_precision": args.naive_precision or args.precision,
        "burst_clients": args.burst_clients,
        "burst_items": args.burst_items,
        "burst_s": args.burst_s,
        "steady_requests": args.steady_requests,
        "settle_s": args.settle_s,
        "rows": [asdict(row) for row in rows],
    }


def _limits(text: str) -> list[int]:
    try:
        limits = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limits takes whole numbers separated by commas, got {text!r}") from None
    if not limits or min(limits) < 1:
        raise argparse.ArgumentTypeError(f"--limits takes numbers of at least 1, got {text!r}")
    return limits


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.bench_memory",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--store", help="model store folder (PLAUDIT_STORE_DIR)")
    p.add_argument("--model", help="model reference: NAME, NAME@ALIAS or NAME:VERSION")
    p.add_argument("--data", help="JSONL items to send; built-in synthetic items if omitted")
    p.add_argument("--engine", default="onnx", choices=("onnx", "torch", "deterministic"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16", "int8"))
    p.add_argument("--naive-precision", default=None, choices=("auto", "fp32", "fp16", "bf16", "int8"),
                   help="the naive server's precision (default: --precision)")
    p.add_argument("--threads", type=int, default=None, help="threads per engine call (default: the service's layout)")
    p.add_argument("--engine-workers", type=int, default=None, help="Plaudit's engine_workers (default: the service's layout)")
    p.add_argument("--limits", type=_limits, default=[512, 16], help="Plaudit's MAX_CONCURRENT_REQUESTS, one server each")
    p.add_argument("--burst-clients", type=int, default=512, help="requests sent at once in the burst")
    p.add_argument("--burst-items", type=int, default=256, help="items per burst request")
    p.add_argument("--burst-s", type=float, default=20.0, help="the burst is cut after this long")
    p.add_argument("--steady-requests", type=int, default=640, help="requests of the c=32 k=1 load")
    p.add_argument("--steady-s", type=float, default=30.0, help="the c=32 load is cut after this long")
    p.add_argument("--settle-s", type=float, default=10.0, help="wait after the burst before reading `after`")
    p.add_argument("--quick", action="store_true", help="a small run that checks the path, not the figures")
    p.add_argument("--out", help="write the results as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.burst_clients, args.burst_items, args.burst_s = 32, 16, 5.0
        args.steady_requests, args.steady_s, args.settle_s = 64, 10.0, 1.0
    for name in ("burst_clients", "burst_items", "steady_requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not sys.platform.startswith("linux"):
        print("bench_memory: reads /proc, so it runs on Linux only", file=sys.stderr)
        return 2
    if lacks_model(args, "bench_memory"):
        return 2
    try:
        results = run_benchmark(args)
    except (DataError, StoreError, ServerStartError, ValueError, LookupError, OSError) as exc:
        print(f"bench_memory: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_results(results))
    if args.out:
        write_json(args.out, results)
        print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
