"""`plaudit feedback export|stats`: read the feedback database from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

DB_ENV = "PLAUDIT_FEEDBACK_DB"
DEFAULT_DB = "sqlite:///./plaudit-data/feedback.db"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # as argparse exits for a bad argument

Handler = Callable[[argparse.Namespace], int]


def register_commands(subparsers: Any) -> None:
    """Add `feedback` and its subcommands to the `plaudit` parser's subparsers."""
    parser = subparsers.add_parser("feedback", help="export and summarize the stored human feedback")
    commands = parser.add_subparsers(dest="feedback_command", metavar="COMMAND", required=True)
    db_option = argparse.ArgumentParser(add_help=False)
    db_option.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help=f"feedback database: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        f"(default: ${DB_ENV}, else {DEFAULT_DB})",
    )

    p = commands.add_parser(
        "export", parents=[db_option], help="write feedback as JSONL in training's format (likes, ratings, pairs)"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="JSONL file to write (replaced atomically)")
    p.add_argument("--since", type=_parse_since, default=None, metavar="ISO",
                   help="only feedback created at or after this time, e.g. 2025-01-31 or 2025-01-31T12:00:00Z "
                   "(no zone = UTC)")
    p.add_argument("--kind", choices=("like", "rating", "pair"), default=None, help="only this kind")
    p.set_defaults(func=_guarded(cmd_export))

    p = commands.add_parser("stats", parents=[db_option], help="counts, like rate and agreement between users")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_guarded(cmd_stats))


def db_url(args: argparse.Namespace) -> str:
    """--db, else $PLAUDIT_FEEDBACK_DB, else the default (read at call time)."""
    return str(args.db or os.environ.get(DB_ENV) or DEFAULT_DB)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.feedback import database
    from service.feedback.export import export_jsonl, out_path_problem
    from service.feedback.store import FeedbackStore

    url = db_url(args)
    parsed = database.parse_url(url)
    database_file = Path(parsed.database or "") if parsed.get_backend_name() == "sqlite" else None
    # A bad --out is a usage error, told before the database is even opened.
    problem = out_path_problem(Path(args.out), database_file)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    with FeedbackStore.open(url, create=False) as store:
        count = export_jsonl(store, args.out, since=args.since, kind=args.kind)
    print(f"wrote {count} feedback rows to {args.out}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    from service.feedback.store import FeedbackStore

    with FeedbackStore.open(db_url(args), create=False) as store:
        stats = store.stats()
        url = store.url
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(url, stats))
    return EXIT_OK


def format_stats(url: str, stats: dict[str, Any]) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in stats["by_kind"].items())
    sources = ", ".join(f"{source} {n}" for source, n in stats["by_source"].items()) or "-"
    likes = stats["likes"]
    rate = "-"
    if stats["like_rate"] is not None:
        rate = f"{100 * stats['like_rate']:.1f}% ({likes['liked']} of {likes['total']})"
    lines = [
        f"feedback in {url}: {stats['total']} rows",
        f"  by kind:    {kinds}",
        f"  by source:  {sources}",
        f"  like rate:  {rate}",
        "  agreement between users on items judged by 2+ users (all agree / items):",
    ]
    for kind, summary in stats["agreement"].items():
        items, agree, share = (
            summary["items_judged_by_2plus_users"],
            summary["items_all_agree"],
            summary["share_all_agree"],
        )
        shown = "-" if share is None else f"{100 * share:.1f}%"
        lines.append(f"    {kind:<7} {agree} / {items}  {shown}")
    return "\n".join(lines)


def _parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time; use e.g. 2025-01-31 or 2025-01-31T12:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _guarded(handler: Handler) -> Handler:
    """Turn store errors into one line on stderr and an exit code, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        from service.feedback.errors import FeedbackStoreError

        try:
            return handler(args)
        except FeedbackStoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run
