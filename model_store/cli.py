"""`plaudit models ...`: inspect and manage the versioned model store."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_store.errors import ChecksumError, DamagedVersionError, StoreError, UnreadableAliasesError
from model_store.fileio import dumps_json
from model_store.references import DEFAULT_ALIAS, parse_ref
from model_store.store import ModelStore, ModelVersion, aliases_pointing_at

# The same variable `plaudit serve` reads (service setting store_dir), so one export
# points every command at the same store.
STORE_ENV = "PLAUDIT_STORE_DIR"
DEFAULT_STORE = Path("plaudit-data") / "models"
EXIT_OK = 0
EXIT_DAMAGED = 1  # the store's content or the filesystem is at fault
EXIT_USAGE = 2  # the user asked for something that does not exist or is not allowed
_HEADLINE_METRICS = 3
UNREADABLE_ALIASES = "(unreadable)"  # `models list`, for a model whose aliases.json is damaged

Handler = Callable[[argparse.Namespace], int]


def register_commands(subparsers: Any) -> None:
    """Add `models` and its subcommands to the `plaudit` parser's subparsers."""
    models = subparsers.add_parser(
        "models", help="list, inspect, promote, roll back and delete stored model versions"
    )
    commands = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    store_option = argparse.ArgumentParser(add_help=False)
    store_option.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"model store directory (default: ${STORE_ENV}, else ./{DEFAULT_STORE})",
    )

    p = commands.add_parser("list", parents=[store_option], help="list models and versions")
    p.add_argument("name", nargs="?", help="only this model")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_guarded(cmd_list))

    p = commands.add_parser("show", parents=[store_option], help="show one version's metadata")
    p.add_argument("ref", metavar="REF", help="NAME, NAME@ALIAS or NAME:VERSION")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_guarded(cmd_show))

    p = commands.add_parser(
        "verify", parents=[store_option], help="check a version's files against their sha256"
    )
    p.add_argument("ref", metavar="REF", help="NAME, NAME@ALIAS or NAME:VERSION")
    p.set_defaults(func=_guarded(cmd_verify))

    p = commands.add_parser("promote", parents=[store_option], help="point an alias at a version")
    p.add_argument("ref", metavar="REF", help="the version to promote, e.g. NAME:3 or NAME@staging")
    p.add_argument("--to", dest="alias", default=DEFAULT_ALIAS, help="alias (default: %(default)s)")
    p.set_defaults(func=_guarded(cmd_promote))

    p = commands.add_parser(
        "rollback", parents=[store_option], help="point an alias back at its previous version"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--alias", default=DEFAULT_ALIAS, help="alias (default: %(default)s)")
    p.set_defaults(func=_guarded(cmd_rollback))

    p = commands.add_parser("delete", parents=[store_option], help="delete one version")
    p.add_argument("ref", metavar="REF", help="NAME:VERSION (an exact version)")
    p.add_argument(
        "--force",
        action="store_true",
        help="delete even if an alias points at it (drops the alias)",
    )
    p.set_defaults(func=_guarded(cmd_delete))


def default_store_dir() -> Path:
    """$PLAUDIT_STORE_DIR, else ./plaudit-data/models (read at call time)."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def store_from_args(args: argparse.Namespace) -> ModelStore:
    """--store, else default_store_dir()."""
    return ModelStore(args.store if args.store is not None else default_store_dir())


def cmd_list(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    store.check_exists()
    names = [args.name] if args.name else store.names()
    # Aliases None: the model's aliases.json is unreadable, so they are not known.
    entries: list[tuple[ModelVersion, list[str] | None]] = []
    damaged: list[str] = []  # one unreadable version or aliases file must not hide the others
    for name in names:
        aliases: dict[str, int] | None
        try:
            aliases = store.aliases(name)
        except UnreadableAliasesError as exc:
            aliases = None
            damaged.append(str(exc))
        for number in store.version_numbers(name):
            try:
                mv = store.get(name, number)
            except DamagedVersionError as exc:
                damaged.append(f"{exc}; delete it with plaudit models delete or restore the file")
                continue
            entries.append((mv, None if aliases is None else aliases_pointing_at(aliases, mv.version)))
    for problem in damaged:
        _fail(problem, EXIT_DAMAGED)
    code = EXIT_DAMAGED if damaged else EXIT_OK
    if args.json:
        rows = [
            {
                "name": mv.name,
                "version": mv.version,
                "created_at": mv.metadata.get("created_at"),
                "aliases": version_aliases,
                "metrics": _headline_metrics(mv),
                "path": str(mv.path),
            }
            for mv, version_aliases in entries
        ]
        print(dumps_json(rows))
        return code
    if not entries:
        print(f"no models in {store.root}")
        return code
    table = [["NAME", "VERSION", "CREATED", "ALIASES", "METRICS"]]
    for mv, version_aliases in entries:
        metrics = _headline_metrics(mv).items()
        table.append(
            [
                mv.name,
                str(mv.version),
                str(mv.metadata.get("created_at") or "-"),
                UNREADABLE_ALIASES if version_aliases is None else ",".join(version_aliases) or "-",
                " ".join(f"{k}={_format_number(v)}" for k, v in metrics) or "-",
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return code


def cmd_show(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    mv = store.resolve(args.ref)
    aliases = store.aliases_of(mv.name, mv.version)
    if args.json:
        payload = {"ref": mv.ref, "path": str(mv.path), "aliases": aliases, "metadata": mv.metadata}
        print(dumps_json(payload))
        return EXIT_OK
    print(f"ref: {mv.ref}")
    print(f"path: {mv.path}")
    print(f"aliases: {', '.join(aliases) or '-'}")
    for key, value in mv.metadata.items():
        if key in ("files", "name", "version"):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        print(f"{key}: {text}")
    print("files:")
    for relpath, digest in sorted(mv.files.items()):
        print(f"  {relpath}  sha256:{digest}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    mv = store.resolve(args.ref)
    store.verify(mv)
    print(f"{mv.ref}: {len(mv.files)} files OK")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    mv = store.resolve(args.ref)
    previous = store.aliases(mv.name).get(args.alias)
    store.promote(mv.name, mv.version, alias=args.alias)
    was = f" (was {mv.name}:{previous})" if previous is not None else ""
    print(f"{mv.name}@{args.alias} -> {mv.ref}{was}")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    previous = store.aliases(args.name).get(args.alias)
    mv = store.rollback(args.name, alias=args.alias)
    was = f" (was {mv.name}:{previous})" if previous is not None else ""
    print(f"{mv.name}@{args.alias} -> {mv.ref}{was}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    ref = parse_ref(args.ref)
    if ref.version is None:
        raise StoreError(
            f"delete needs an exact version, e.g. {ref.name}:3; "
            f"see `plaudit models list {ref.name}`"
        )
    store = store_from_args(args)
    dropped = store.aliases_of(ref.name, ref.version)
    store.delete(ref.name, ref.version, force=args.force)
    note = f" and dropped alias {', '.join(dropped)}" if dropped else ""
    print(f"deleted {ref}{note}")
    return EXIT_OK


def _guarded(handler: Handler) -> Handler:
    """Turn store errors into one line on stderr and an exit code, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (ChecksumError, DamagedVersionError, UnreadableAliasesError) as exc:
            return _fail(str(exc), EXIT_DAMAGED)
        except StoreError as exc:
            return _fail(str(exc), EXIT_USAGE)
        except BrokenPipeError:
            raise  # stdout's reader left: plaudit.cli.main's to handle, not a store error
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            return _fail(f"{exc.strerror or exc}{where}", EXIT_DAMAGED)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _fail(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _headline_metrics(mv: ModelVersion) -> dict[str, float | None]:
    """The first few top-level metrics; None (null, shown n/a) where the metric is undefined."""
    metrics = mv.metadata.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    numeric: dict[str, float | None] = {}
    for k, v in metrics.items():
        if v is None:
            numeric[k] = None
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                numeric[k] = float(v) if math.isfinite(v) else None
            except OverflowError:  # an integer past float's range: not a headline figure
                continue
    return dict(list(numeric.items())[:_HEADLINE_METRICS])


def _format_number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
