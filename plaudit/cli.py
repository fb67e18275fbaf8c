"""The `plaudit` command: one argparse tree, each package contributes its own commands.

`plaudit up` is the main job: train the default model on the bundled sample data if the
store has none, then serve it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from model_store.cli import DEFAULT_STORE, STORE_ENV, default_store_dir
from plaudit import __version__

SAMPLE_FILES = ("pairs.jsonl", "ratings.csv", "likes.jsonl")


def sample_data_paths() -> list[str]:
    """The sample data shipped inside the `training` package."""
    root = resources.files("training") / "sample_data"
    return [str(root / name) for name in SAMPLE_FILES]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plaudit", description="Train, version and serve reward models.")
    parser.add_argument("--version", action="version", version=f"plaudit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="train the default model if the store has none, then serve it")
    up.add_argument("--store", default=str(default_store_dir()), metavar="DIR", help=f"model store (default: ${STORE_ENV}, else ./{DEFAULT_STORE})")
    up.add_argument("--name", default="default", help="model to serve, trained first if the store has none (default %(default)s)")
    up.add_argument("--epochs", type=int, default=3, help="epochs for the first training run (default %(default)s)")
    # Unset, these fall back to PLAUDIT_HOST / PLAUDIT_PORT, then 127.0.0.1:8000, as for `serve`.
    up.add_argument("--host", default=None, help="address to listen on (default: PLAUDIT_HOST, else 127.0.0.1)")
    up.add_argument("--port", type=int, default=None, help="TCP port (default: PLAUDIT_PORT, else 8000)")
    up.add_argument("--train-only", action="store_true", help="stop after making sure a model exists")
    up.set_defaults(func=cmd_up)

    from model_store.cli import register_commands as store_commands
    from training.cli import register_commands as training_commands

    training_commands(sub)
    store_commands(sub)
    for module in ("service.cli", "service.feedback.cli", "loadtest.cli"):
        try:
            __import__(module)
        except ImportError:  # pragma: no cover - not every install carries every part
            continue
        sys.modules[module].register_commands(sub)
    return parser


def up_train_argv(args: argparse.Namespace) -> list[str]:
    """The `plaudit train` command line `plaudit up` runs when the store has no model."""
    return [
        "train", "--store", str(args.store), "--name", args.name, "--epochs", str(args.epochs),
        "--promote", "production",
        # int8 too: it becomes the served default only if it passes the export's agreement gate.
        "--quantize",
    ] + [x for path in sample_data_paths() for x in ("--data", path)]


def cmd_up(args: argparse.Namespace) -> int:
    from model_store.store import ModelStore

    serve_args = build_parser().parse_args(up_serve_argv(args))
    if not args.train_only:
        problem = serving_problem(serve_args)
        if problem:  # found now, not after minutes of training
            print(f"plaudit up: {problem}", file=sys.stderr)
            return 2
    store = ModelStore(args.store)
    if args.name not in store.names() or not store.list(args.name):
        from training.cli import check_train_args, cmd_train

        train_args = build_parser().parse_args(up_train_argv(args))
        refused = check_train_args(train_args)  # a bad --epochs or --name: said before announcing training
        if refused is not None:
            return refused
        print(f"no model '{args.name}' in {args.store}: training the default model on the sample data")
        code = cmd_train(train_args)
        if code:
            return code
    if args.train_only:
        return 0
    return int(serve_args.func(serve_args))


def serving_problem(serve_args: argparse.Namespace) -> str | None:
    """What would stop `plaudit up`'s serve step (`serve_args`) before any model is involved:
    a bad PLAUDIT_* setting, or an address it cannot listen on."""
    from pydantic import ValidationError

    from service.cli import listen_problem, settings_overrides
    from service.settings import Settings, describe_settings_error

    try:
        settings = Settings(**settings_overrides(serve_args))
    except ValidationError as exc:
        return describe_settings_error(exc)
    return listen_problem(settings.host, settings.port)


def up_serve_argv(args: argparse.Namespace) -> list[str]:
    """The `plaudit serve` command line `plaudit up` ends with; --host and --port only where
    given, so that PLAUDIT_HOST and PLAUDIT_PORT apply otherwise."""
    argv = ["serve", "--store", str(args.store), "--model", args.name]
    if args.host is not None:
        argv += ["--host", args.host]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    return argv


DATABASE_URL_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg", "postgres")


def is_database_url(source: str) -> bool:
    return source.startswith(tuple(f"{scheme}://" for scheme in DATABASE_URL_SCHEMES))


def database_key(source: str) -> str:
    """What tells two spellings of one feedback database apart from two databases: the URL as
    service.feedback reads it (`sqlite://` and `sqlite+pysqlite://` alike; no password), a
    SQLite file by its real path. Raises FeedbackStoreError for a URL that names no database."""
    from service.feedback.database import describe, parse_url

    url = parse_url(source)
    if url.get_backend_name() == "sqlite" and url.database:
        url = url.set(database=os.path.realpath(url.database))
    return describe(url)


def repeated_database_problem(sources: list[str]) -> str | None:
    """`plaudit train` refuses a data file given twice (training.pipeline.check_distinct_data);
    a feedback database given twice is refused here, before its exports (two temporary files,
    which that check cannot tell to be one database) are made and trained on twice."""
    from sqlalchemy.engine import make_url

    def shown(source: str) -> str:  # as given, less any password
        return make_url(source.strip()).render_as_string(hide_password=True)

    seen: dict[str, str] = {}
    for source in sources:
        if not is_database_url(source):
            continue
        key = database_key(source)
        if key in seen:
            first = seen[key]
            spelled = f"{shown(first)!r} and {shown(source)!r}" if first != source else f"{shown(source)!r} twice"
            return (
                f"--data names the same feedback database {spelled}: its rows would be trained on twice; "
                "give each database once"
            )
        seen[key] = source
    return None


def export_database_sources(sources: list[str], workdir: Path, purpose: str = "training") -> list[str]:
    """Replace feedback-database URLs in `--data` by JSONL exports of them (training reads files).

    This lives in the dispatcher because `training` does not depend on `service`.
    """
    out: list[str] = []
    done: dict[str, str] = {}  # a database given twice (eval, data check) is read once, used twice, as a file would be
    for i, source in enumerate(sources):
        if not is_database_url(source):
            out.append(source)
            continue
        from service.feedback import FeedbackStore, FeedbackStoreError, export_jsonl

        key = database_key(source)
        if key in done:
            out.append(done[key])
            continue
        target = workdir / f"feedback-{i}.jsonl"
        with FeedbackStore.open(source, create=False, url_from="the --data URL") as store:
            rows = export_jsonl(store, target)
            shown = store.url
        if rows == 0:
            # Said here, naming the URL: training would refuse the empty export by its temp file's name.
            raise FeedbackStoreError(
                f"{shown} holds no feedback yet: collect some through `plaudit serve` first, or drop this --data"
            )
        print(f"exported {rows} feedback rows from {shown} for {purpose}")
        out.append(str(target))
        done[key] = str(target)
    return out


class DataSources(NamedTuple):
    attr: str  # the parsed argument that lists the command's data files
    purpose: str  # what the feedback is exported for, in the note saying so
    # The command's own checks of everything but its data (training.cli), run before any
    # export: says what is wrong and returns the exit code, or None. The command runs them too.
    check: Callable[[argparse.Namespace], int | None] | None = None


def data_sources(args: argparse.Namespace) -> DataSources | None:
    """Where a command that reads data files (and so feedback database URLs too) keeps them."""
    # training is imported for its own commands only: `plaudit serve` must not load it.
    if args.command == "train":
        from training.cli import check_train_args

        return DataSources("data", "training", check_train_args)
    if args.command == "eval":
        from training.cli import check_eval_args

        return DataSources("data", "evaluation", check_eval_args)
    if args.command == "data" and getattr(args, "data_command", None) == "check":
        return DataSources("paths", "checking")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM as Ctrl-C: a `plaudit up` or `train` stopped by either still removes its
    # temporary folders (nothing reaches the store before a run has succeeded). `serve`
    # installs uvicorn's own handlers over this one.
    in_main_thread = threading.current_thread() is threading.main_thread()  # (tests call main in threads)
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return _interrupted()
    except ImportError as exc:
        # Interrupted while a C extension initialised (onnxruntime, torch): Python reports an
        # ImportError caused by the KeyboardInterrupt.
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            return _interrupted()
        raise
    except BrokenPipeError:
        # Whoever read stdout has gone (`plaudit models list | head -3`): nothing went wrong
        # here. Python would report the pipe again when it flushes stdout at exit, so stdout
        # is pointed at /dev/null first; the exit code is the one Python gives EPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _interrupted() -> int:
    print("\ninterrupted: stopped; nothing unfinished was written to the store", file=sys.stderr)
    return 130


# Top-level modules of the `train` extra: a command that needs one in an install without
# it (the serving image) gets one line saying what to install, not an import traceback.
TRAIN_EXTRA_MODULES = frozenset({"torch", "transformers", "onnx", "onnxscript", "matplotlib"})


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        print(
            f"error: plaudit {args.command} needs the train extra ({exc.name} is not installed): "
            "pip install torch==2.13.0 (a CPU build; or the build for your GPU), then pip install 'plaudit[train]'",
            file=sys.stderr,
        )
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # httpx logs every request at INFO: a line per request under `plaudit loadtest`,
        # and CPU taken from the server it measures on the same machine. Alembic logs its
        # dialect each time a feedback database is opened (`plaudit feedback`, `train --data sqlite://`).
        for name in ("httpx", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    sources = data_sources(args)
    if sources is not None and any(is_database_url(d) for d in getattr(args, sources.attr)):
        from service.feedback import FeedbackStoreError

        given = list(getattr(args, sources.attr))
        # A mistake in the command is refused before any database is read (exported).
        try:
            repeated = repeated_database_problem(given) if args.command == "train" else None
        except FeedbackStoreError as exc:  # a URL that names no database: said as the export would
            print(f"error: cannot read feedback from the database: {exc}", file=sys.stderr)
            return 2
        if repeated is not None:
            print(f"error: {repeated}", file=sys.stderr)
            return 2
        code = sources.check(args) if sources.check is not None else None
        if code is not None:
            return code
        with tempfile.TemporaryDirectory(prefix="plaudit-feedback-") as workdir:
            try:
                # The note goes to stdout only beside train's text report: eval and data check,
                # and train with --json, may write JSON there.
                note_to_stdout = args.command == "train" and not getattr(args, "json", False)
                with contextlib.redirect_stdout(sys.stdout if note_to_stdout else sys.stderr):
                    exported = export_database_sources(given, Path(workdir), sources.purpose)
                setattr(args, sources.attr, exported)
                # What a report may call the exports instead of their temporary files (no password).
                from service.feedback.database import describe, parse_url

                args.data_source_names = {
                    new: describe(parse_url(old)) for new, old in zip(exported, given) if new != old
                }
            except FeedbackStoreError as exc:  # says what is wrong with the URL or database
                print(f"error: cannot read feedback from the database: {exc}", file=sys.stderr)
                return 2
            return int(args.func(args))
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
