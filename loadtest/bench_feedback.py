"""Feedback durability benchmark: idempotent POST /v1/feedback under load, retries and a crash.

    python -m loadtest.bench_feedback --db URL [--posts 10000] [--concurrency 32]
        [--retry-fraction 0.1] [--kill-at 0.5] [--max-total-s 600] [--keep-db] [--out FILE]

1. A fresh database: for sqlite:///PATH the file PATH, which must not exist yet; for
   postgresql://... a temporary database plaudit_bench_<uuid> created on that server.
   Either is dropped at the end (--keep-db keeps it), so runs never see each other's rows.
2. The service runs as a subprocess (uvicorn, engine deterministic: feedback never touches
   the model) on a free 127.0.0.1 port, with PLAUDIT_FEEDBACK_DB pointing at that database.
3. --posts feedback rows of every shape (likes, ratings, pairs, and A/B choices on a real
   /v1/compare), each with its own feedback_id, plus --retry-fraction re-posts of those ids
   with the same body: half sent at the same moment as the original, half a little later.
   A request that fails in transport or with 502/503/504 is retried with the same
   feedback_id, as a real client would. With --kill-at F the server gets SIGKILL once F of
   the posts have been sent, and is restarted on the same port and database while the
   clients keep retrying.
4. Checks, reading the database directly: every acknowledged (2xx) feedback_id is stored
   exactly once, with the body that was sent; no duplicate ids or bodies; no row nobody
   sent; at most one 201 per id, and every answer for an id names the stored row's time;
   GET /v1/feedback/export reproduces the stored rows, ids and bodies, in order.
Prints posts/s, latency percentiles, the counts and PASS or FAIL; exits 1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import httpx

from loadtest.bench_serving import ServerStartError
from loadtest.feedback_bench.config import VERIFY_RESERVE_S, BenchConfig, BenchError
from loadtest.feedback_bench.databases import fresh_database, read_stored_rows
from loadtest.feedback_bench.load import FeedbackLoad, ServiceUnderTest
from loadtest.feedback_bench.plan import plan_jobs, planned_posts
from loadtest.feedback_bench.verify import SHOWN_PROBLEMS, verify
from loadtest.report import LatencySummary, figure, write_json

EXPORT_PATH = "/v1/feedback/export"


def _get_json(client: httpx.Client, path: str) -> Any:
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        raise BenchError(f"GET {path} failed: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise BenchError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def _fetch_export(client: httpx.Client) -> list[dict[str, Any]]:
    with client.stream("GET", EXPORT_PATH) as response:
        if response.status_code != 200:
            raise BenchError(f"GET {EXPORT_PATH} answered {response.status_code}: {response.read()[:300]!r}")
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def run_benchmark(config: BenchConfig) -> dict[str, Any]:
    """Everything in the module docstring; returns the results (see format_results)."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    run_tag = uuid.uuid4().hex[:8]
    posts = planned_posts(config.posts, run_tag, rng)
    jobs = plan_jobs(posts, config.retry_fraction, config.concurrency, rng)
    results: dict[str, Any] = {"settings": {k: v for k, v in asdict(config).items() if k != "db_url"}}
    with fresh_database(config.db_url, keep=config.keep_db) as db:
        results["database"] = {"url": db.shown, "backend": db.backend, "name": db.name, "kept": config.keep_db}
        service = ServiceUnderTest(db.url)
        try:
            try:
                service.start()
            except ServerStartError as exc:
                raise BenchError(f"the service did not start: {exc}") from None
            with httpx.Client(base_url=service.url, timeout=60.0, trust_env=False) as client:
                served = _get_json(client, "/v1/models")["model"]
                model = (str(served["name"]), str(served["version"]))
                scale_min, scale_max = _get_json(client, "/v1/feedback/stats")["rating_scale"]
                scale = (float(scale_min), float(scale_max))
                deadline = started + config.max_total_s - VERIFY_RESERVE_S
                load = FeedbackLoad(config, jobs, service, deadline)
                asyncio.run(load.run())
                if load.aborted:
                    raise BenchError(f"{load.aborted}\n{service.log_tail()}")
                exported = _fetch_export(client)
            stored = read_stored_rows(db.url)
        finally:
            service.stop()
    check = verify(posts, load, stored, exported, scale, model)
    ok_latencies = [a.latency_s for a in load.answers if a.ok and a.latency_s is not None]
    results.update(
        served_model=f"{model[0]}:{model[1]}",
        server_starts=service.starts,
        kill=asdict(load.kill) if load.kill is not None else None,
        load_elapsed_s=load.elapsed_s,
        posts_per_s=check.counts["answered_2xx"] / load.elapsed_s if load.elapsed_s > 0 else math.nan,
        latency=asdict(LatencySummary.from_seconds(ok_latencies)),
        failed_attempts_by_reason=dict(
            sorted(sum((Counter(a.failures) for a in load.answers), Counter()).items())
        ),
        compare_failures=dict(load.compare_failures),
        counts=check.counts,
        problems=check.problems,
        passed=not check.problems,
        total_s=time.monotonic() - started,
    )
    return results


def format_results(results: Mapping[str, Any]) -> str:
    c = results["counts"]
    s = results["settings"]
    lat = results["latency"]
    lines = [
        f"feedback benchmark on {results['database']['url']} ({results['database']['backend']}, fresh), "
        f"served model {results['served_model']}",
        f"plan          {c['planned_posts']} posts (likes, ratings, pairs, A/B choices) + "
        f"{c['planned_copies'] - c['planned_posts']} re-posts of the same ids and bodies "
        f"({c['concurrent_reposts']} concurrent with the original, {c['later_reposts']} later), "
        f"concurrency {s['concurrency']}",
    ]
    kill = results.get("kill")
    if kill is not None:
        lines.append(
            f"kill          SIGKILL after {kill['after_posts']} posts sent, {kill['in_flight']} requests in "
            f"flight; restarted on the same port and database, ready {figure(kill['down_s'], 2)} s after the kill"
        )
    failed = ", ".join(f"{k} {v}" for k, v in results["failed_attempts_by_reason"].items()) or "none"
    lines += [
        f"answers       {c['answered_2xx']} acknowledged ({c['created_201']} x 201 created, "
        f"{c['replayed_200']} x 200 replayed), {c['not_acknowledged']} not acknowledged; "
        f"{c['acknowledged_ids']} distinct ids, {c['acknowledged_only_by_replay']} acknowledged only by a replay",
        f"concurrency   {c['concurrent_reposts_overlapping']} of {c['concurrent_reposts']} concurrent re-posts "
        f"were in flight together with their original",
        f"retries       {c['retried_attempts']} attempts failed and were retried ({failed}); "
        f"{c['attempts']} attempts in all",
        f"throughput    {figure(results['posts_per_s'])} acknowledged posts/s "
        f"over {figure(results['load_elapsed_s'], 2)} s",
        f"latency ms    p50 {figure(lat['p50_ms'])}  p95 {figure(lat['p95_ms'])}  p99 {figure(lat['p99_ms'])}  "
        f"max {figure(lat['max_ms'])}  (acknowledged attempts)",
        f"store         {c['stored_rows']} rows; {c['duplicate_ids']} duplicate ids, {c['duplicate_bodies']} "
        f"duplicate bodies, {c['body_mismatches']} bodies differing from what was sent, "
        f"{c['stored_unacknowledged']} stored but never acknowledged",
        f"export        {c['export_lines']} lines, {c['export_mismatches']} differing from the stored rows",
    ]
    for problem in results["problems"][:SHOWN_PROBLEMS]:
        lines.append(f"  problem: {problem}")
    if len(results["problems"]) > SHOWN_PROBLEMS:
        lines.append(f"  ... {len(results['problems']) - SHOWN_PROBLEMS} more problems")
    lines.append("PASS" if results["passed"] else "FAIL")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_feedback", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", required=True, metavar="URL",
                   help="sqlite:///PATH (a file that does not exist yet) or postgresql://USER@HOST:PORT/DB "
                   "(a temporary database is created there)")
    p.add_argument("--posts", type=int, default=10_000, help="distinct feedback rows to post (default 10000)")
    p.add_argument("--concurrency", type=int, default=32, help="clients posting at once (default 32)")
    p.add_argument("--retry-fraction", type=float, default=0.1,
                   help="re-posts of already posted ids with the same body, as a fraction of --posts (default 0.1)")
    p.add_argument("--kill-at", type=float, default=None, metavar="F",
                   help="SIGKILL the server once this fraction of the posts is sent, then restart it")
    p.add_argument("--max-total-s", type=float, default=600.0, help="bound on the whole run (default 600)")
    p.add_argument("--keep-db", action="store_true", help="keep the database afterwards (for inspection)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE", help="write the results as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = BenchConfig(
            db_url=args.db,
            posts=args.posts,
            concurrency=args.concurrency,
            retry_fraction=args.retry_fraction,
            kill_at=args.kill_at,
            max_total_s=args.max_total_s,
            keep_db=args.keep_db,
            seed=args.seed,
        )
    except ValueError as exc:
        name, _, rest = str(exc).partition(" ")  # "kill_at must be ..." -> "--kill-at must be ..."
        parser.error(f"--{name.replace('_', '-')} {rest}")
    try:
        results = run_benchmark(config)
    except BenchError as exc:
        print(f"bench_feedback: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.out:
        write_json(args.out, results)
        print(f"results written to {args.out}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
