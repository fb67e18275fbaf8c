"""A/B of one server setting: the same closed-loop load against Plaudit served with each value.

    python -m loadtest.bench_setting --setting SCORE_LANE --values false,true --rounds 6 \\
        --store bench-out/store --model hh-transformer --data ../shared/data/hh-harmless/pairs.jsonl

Each round starts a fresh server per value (`PLAUDIT_<SETTING>=<value>`, everything else from
the environment and the flags), sends the warm-up requests, then times the load, and stops it.
The order of the values flips every round. On these shared 2-core machines speed drifts by a
third over minutes (loadtest/RESULTS.md, session 18), so one run per value says little; what
compares fairly is values measured minutes apart, alternately, many times: the report gives
each value's mean, every round's figure, and in how many rounds it beat the first value.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from loadtest.bench_serving import APP_FACTORY, ServerProcess, free_port, offline_with_this_checkout
from loadtest.data import DataError, ItemCycle, load_items, synthetic_items
from loadtest.generator import LoadConfig, run_load_sync
from loadtest.report import summarize, write_json
from model_store.scoring import TextPair
from service.settings import Settings

READY_LIMIT_S = 300.0  # loading and warming up a model from the store


@dataclass(frozen=True, slots=True)
class Round:
    value: str
    items_per_s: float
    p99_ms: float | None
    failed: int


def setting_env(base: dict[str, str], setting: str, value: str, port: int, serve: dict[str, str]) -> dict[str, str]:
    """`base` with the store, model and other flags as PLAUDIT_* variables, and the setting."""
    env = dict(base)
    env.update({f"PLAUDIT_{name}": v for name, v in serve.items()})
    env[f"PLAUDIT_{setting}"] = value
    env.update(PLAUDIT_HOST="127.0.0.1", PLAUDIT_PORT=str(port))
    return offline_with_this_checkout(env)


def order_of(values: Sequence[str], round_index: int) -> list[str]:
    """The given order in even rounds, reversed in odd ones: neither value always goes first."""
    return list(values) if round_index % 2 == 0 else list(reversed(values))


def one_round(
    setting: str, value: str, serve: dict[str, str], items: list[TextPair], load: LoadConfig, warm_up: int
) -> Round:
    port = free_port()
    env = setting_env(dict(os.environ), setting, value, port, serve)
    with ServerProcess(APP_FACTORY, env, port) as server:
        server.wait_ready(READY_LIMIT_S)
        cycle = ItemCycle(items)
        if warm_up:
            run_load_sync(replace(load, url=server.url, requests=warm_up), cycle)
        report = summarize(run_load_sync(replace(load, url=server.url), cycle))
    return Round(value=value, items_per_s=report.items_per_s, p99_ms=report.latency.p99_ms, failed=report.failed)


def summary(values: Sequence[str], rounds: Sequence[Round]) -> dict[str, Any]:
    """Per value: its rounds' items/s, their mean, the ratio of that mean to the first value's,
    and in how many rounds it beat the first value measured in the same round."""
    by_value = {v: [r.items_per_s for r in rounds if r.value == v] for v in values}
    baseline = by_value[values[0]]
    base_mean = statistics.mean(baseline) if baseline else 0.0
    out: dict[str, Any] = {}
    for value in values:
        figures = by_value[value]
        mean = statistics.mean(figures) if figures else 0.0
        out[value] = {
            "items_per_s": figures,
            "mean_items_per_s": mean,
            "ratio_to_first": mean / base_mean if base_mean > 0 else None,
            "rounds_ahead_of_first": sum(f > b for f, b in zip(figures, baseline, strict=False)),
            "p99_ms": [r.p99_ms for r in rounds if r.value == value],
            "failed": sum(r.failed for r in rounds if r.value == value),
        }
    return out


def format_summary(setting: str, values: Sequence[str], result: dict[str, Any]) -> str:
    first = values[0]
    lines = [f"{'PLAUDIT_' + setting:<28} {'mean items/s':>12} {'vs ' + first:>10}   rounds (items/s)"]
    for value in values:
        row = result[value]
        ratio = row["ratio_to_first"]
        versus = "" if value == first else f"x{ratio:.3f}" if ratio is not None else "-"
        lines.append(
            f"{value:<28} {row['mean_items_per_s']:>12.1f} {versus:>10}   "
            + ", ".join(f"{x:.1f}" for x in row["items_per_s"])
        )
    for value in values[1:]:
        n = len(result[value]["items_per_s"])
        lines.append(f"{value} was ahead of {first} in {result[value]['rounds_ahead_of_first']} of {n} rounds")
    failed = {v: result[v]["failed"] for v in values if result[v]["failed"]}
    if failed:
        lines.append(f"failed requests: {failed}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_setting", description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", required=True, help="a Settings field, e.g. SCORE_LANE or PREFETCH_BATCHES")
    p.add_argument("--values", required=True, help="comma-separated values; the first is the baseline")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--store", help="PLAUDIT_STORE_DIR")
    p.add_argument("--model", help="PLAUDIT_MODEL")
    p.add_argument("--engine", help="PLAUDIT_ENGINE")
    p.add_argument("--data", help="JSONL items (HH pairs...); built-in synthetic items if omitted")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--items-per-request", type=int, default=1)
    p.add_argument("--warm-up", type=int, default=300, help="untimed requests before each timed load")
    p.add_argument("--duration-s", type=float, default=120.0, help="time cap of each timed load")
    p.add_argument("--out", help="write the rounds and the summary as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setting = args.setting.upper().removeprefix("PLAUDIT_")
    if setting.lower() not in Settings.model_fields:
        # Settings ignores unknown PLAUDIT_* variables, so a misspelt name would compare a server
        # with itself.
        print(f"--setting {args.setting!r} is not a Plaudit setting (see the README's Settings table)", file=sys.stderr)
        return 2
    values = [v.strip() for v in args.values.split(",") if v.strip()]
    if len(values) < 2 or len(set(values)) != len(values):
        print("--values needs at least two different values, e.g. --values false,true", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    try:
        items = load_items(args.data) if args.data else synthetic_items()
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serve = {k: v for k, v in (("STORE_DIR", args.store), ("MODEL", args.model), ("ENGINE", args.engine)) if v}
    load = LoadConfig(
        concurrency=args.concurrency,
        requests=args.requests,
        items_per_request=args.items_per_request,
        duration_s=args.duration_s,
    )
    rounds: list[Round] = []
    for index in range(args.rounds):
        for value in order_of(values, index):
            result = one_round(setting, value, serve, items, load, args.warm_up)
            rounds.append(result)
            print(f"round {index + 1} PLAUDIT_{setting}={value}: {result.items_per_s:.1f} items/s", flush=True)
    result = summary(values, rounds)
    print(format_summary(setting, values, result))
    if args.out:
        write_json(args.out, {"setting": setting, "values": values, "load": vars(args), "summary": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
