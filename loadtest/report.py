"""Summaries of a load run: throughput, latency percentiles, errors, as a table or JSON.

Latency percentiles are over successful requests only: a fast 429 or an abandoned
request would otherwise pull the numbers in either direction. Throughput counts only
successful requests and their items, over the run's wall time. Requests abandoned at the
time cap are "unfinished", counted apart from failures (the server refused nothing).
"""

from __future__ import annotations

import json
import os
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest.generator import UNFINISHED, LoadResult

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks.

    Matches numpy's default ("linear") method; NaN for an empty sequence.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True, slots=True)
class LatencySummary:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def from_seconds(cls, latencies_s: Sequence[float]) -> "LatencySummary":
        ms = [s * 1000.0 for s in latencies_s]
        mean = sum(ms) / len(ms) if ms else math.nan
        return cls(
            p50_ms=percentile(ms, 50),
            p95_ms=percentile(ms, 95),
            p99_ms=percentile(ms, 99),
            max_ms=max(ms) if ms else math.nan,
            mean_ms=mean,
        )


@dataclass(frozen=True, slots=True)
class LoadReport:
    endpoint: str
    concurrency: int
    items_per_request: int
    rate: float | None
    requests: int  # sent: ok + failed + unfinished
    ok: int
    failed: int  # an error status, a transport error or an incomplete answer
    unfinished: int  # still in flight when the time cap stopped the run
    items_ok: int
    elapsed_s: float
    requests_per_s: float
    items_per_s: float
    latency: LatencySummary
    errors: dict[str, int]  # failures by outcome, e.g. {"503": 2, "timeout": 1}
    stopped_by: str
    # Sent a second time after their kept-alive connection was closed or reset under them (each
    # is counted once, by its final outcome): a server that crashed mid-request shows here.
    resent: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; NaN (no successful request) becomes null."""
        return json_safe(asdict(self))


def write_json(path: str | Path, results: Any) -> None:
    """Write benchmark results as strict JSON (NaN and infinities become null), whole or not at
    all: a run killed mid-write (a lent machine's time limit) leaves the previous file."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n")
    os.replace(partial, target)


def json_safe(value: Any) -> Any:
    """`value` with every NaN replaced by None, so json.dumps writes standard JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def summarize(result: LoadResult) -> LoadReport:
    ok_records = [r for r in result.records if r.ok]
    unfinished = sum(1 for r in result.records if r.outcome == UNFINISHED)
    errors = Counter(r.outcome for r in result.records if not r.ok and r.outcome != UNFINISHED)
    items_ok = sum(r.n_items for r in ok_records)
    elapsed = result.elapsed_s
    return LoadReport(
        endpoint=result.config.endpoint,
        concurrency=result.config.concurrency,
        items_per_request=result.config.items_per_request,
        rate=result.config.rate,
        requests=len(result.records),
        ok=len(ok_records),
        failed=sum(errors.values()),
        unfinished=unfinished,
        items_ok=items_ok,
        elapsed_s=elapsed,
        requests_per_s=len(ok_records) / elapsed if elapsed > 0 else math.nan,
        items_per_s=items_ok / elapsed if elapsed > 0 else math.nan,
        latency=LatencySummary.from_seconds([r.latency_s for r in ok_records]),
        errors=dict(sorted(errors.items())),
        stopped_by=result.stopped_by,
        resent=result.resent,
    )


def figure(value: float | None, digits: int = 1) -> str:
    """A figure for a benchmark's printed table: "-" where there is none (None, or NaN when
    no request succeeded)."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def per_request(report: LoadReport) -> str:
    """What one request carries, in the unit items/s counts: a comparison scores two items."""
    k = report.items_per_request
    if report.endpoint == "compare":
        return f"{k} comparison{'s' if k != 1 else ''}/request ({2 * k} items scored)"
    return f"{k} items/request"


def format_table(report: LoadReport) -> str:
    mode = f"open loop {report.rate:g} req/s" if report.rate else "closed loop"
    lat = report.latency
    rows = [
        ("endpoint", f"/v1/{report.endpoint}"),
        ("load", f"{mode}, concurrency {report.concurrency}, {per_request(report)}"),
        (
            "requests",
            f"{report.requests} ({report.ok} ok, {report.failed} failed"
            + (f", {report.unfinished} unfinished at the time cap)" if report.unfinished else ")"),
        ),
        ("elapsed", f"{figure(report.elapsed_s, 2)} s (stopped by {report.stopped_by})"),
        ("throughput", f"{figure(report.requests_per_s)} req/s, {figure(report.items_per_s)} items/s"),
        (
            "latency ms",
            f"p50 {figure(lat.p50_ms)}  p95 {figure(lat.p95_ms)}  p99 {figure(lat.p99_ms)}  "
            f"max {figure(lat.max_ms)}",
        ),
    ]
    if report.errors:
        rows.append(("errors", ", ".join(f"{k}: {v}" for k, v in report.errors.items())))
    if report.resent:
        rows.append(("resent", f"{report.resent} (their kept-alive connection was closed or reset under them)"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
