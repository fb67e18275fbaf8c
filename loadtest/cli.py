"""`plaudit loadtest`: send load to a running scoring service and report on it."""

from __future__ import annotations

import argparse
import json
import sys

from loadtest.data import DataError, ItemCycle, load_items, synthetic_items
from loadtest.generator import DEFAULT_URL, ENDPOINTS, LoadConfig, TargetError, run_load_sync
from loadtest.report import format_table, summarize


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def register_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "loadtest",
        help="send HTTP load to a scoring service and report throughput and latency",
        description=(
            "Send POST /v1/<endpoint> requests to a running service. Without --rate, "
            "CONCURRENCY workers each send their next request as soon as the last one is "
            "answered; with --rate, requests go out at that pace. Stops after --requests or "
            "--duration-s, whichever comes first; requests still in flight then are reported as "
            "unfinished. Exits 1 if any request failed or none was answered."
        ),
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"service base URL (default {DEFAULT_URL})")
    parser.add_argument("--endpoint", choices=ENDPOINTS, default="score", help="what to call (default %(default)s)")
    parser.add_argument("--concurrency", type=_positive_int, default=8, help="workers / max in flight (default %(default)s)")
    parser.add_argument("--requests", type=_positive_int, default=100, help="total requests to send (default %(default)s)")
    parser.add_argument(
        "--items-per-request",
        type=_positive_int,
        default=1,
        help="items per request (responses for rank; comparisons, 2 items each, for compare; default %(default)s)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="JSONL of {prompt,chosen,rejected}, HH {chosen,rejected} or {prompt,response} rows; "
        "built-in synthetic items if omitted",
    )
    parser.add_argument("--rate", type=_positive_float, default=None, help="requests/s (open loop; default: closed loop)")
    parser.add_argument("--duration-s", type=_positive_float, default=60.0, help="hard time cap in seconds (default %(default)g)")
    parser.add_argument("--timeout-s", type=_positive_float, default=30.0, help="per-request timeout in seconds (default %(default)g)")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a URL whose host is not loopback"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run_loadtest)


def run_loadtest(args: argparse.Namespace) -> int:
    try:
        config = LoadConfig(
            url=args.url,
            endpoint=args.endpoint,
            concurrency=args.concurrency,
            requests=args.requests,
            items_per_request=args.items_per_request,
            rate=args.rate,
            duration_s=args.duration_s,
            request_timeout_s=args.timeout_s,
            allow_remote=args.allow_remote,
        )
        items = load_items(args.data) if args.data else synthetic_items()
        result = run_load_sync(config, ItemCycle(items))
    except (DataError, TargetError, ValueError) as exc:
        print(f"plaudit loadtest: {exc}", file=sys.stderr)
        return 2
    report = summarize(result)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_table(report))
    if report.failed:
        print(
            f"plaudit loadtest: {report.failed} of {report.requests} requests failed "
            f"({', '.join(f'{k}: {v}' for k, v in report.errors.items())})",
            file=sys.stderr,
        )
        return 1
    if report.ok == 0:
        print(
            f"plaudit loadtest: no request was answered within --duration-s {args.duration_s:g}",
            file=sys.stderr,
        )
        return 1
    return 0
