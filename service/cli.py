"""`plaudit serve`: run the scoring service under uvicorn."""

from __future__ import annotations

import argparse
import errno
import logging.config
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.settings import (
    DEVICES,
    ENGINES,
    PRECISIONS,
    Settings,
    describe_settings_error,
    env_name,
)
from service.workers import provide_shared_directory

SHUTDOWN_MARGIN_S = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"


def register_commands(subparsers: Any) -> None:
    """Add `serve` to the `plaudit` command (subparsers from argparse add_subparsers)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the scoring service",
        description=(
            "Serve a model from the store over HTTP. Options not given fall back to "
            "PLAUDIT_* environment variables, then to the defaults."
        ),
    )
    parser.add_argument("--store", dest="store_dir", type=Path, help="model store directory")
    parser.add_argument("--model", help="NAME, NAME@ALIAS or NAME:VERSION (default: default)")
    parser.add_argument("--engine", choices=ENGINES, help="engine that runs the model (default: onnx)")
    parser.add_argument("--device", choices=DEVICES, help="cpu or cuda (default: cpu)")
    parser.add_argument("--precision", choices=PRECISIONS, help="numeric precision (default: auto)")
    parser.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: 8000)")
    parser.add_argument(
        "--workers", type=int,
        help="server processes sharing the port, each with its own model, batcher and engine; "
        "what lets one GPU serve more than one Python process can feed it (default: 1)",
    )
    parser.add_argument(
        "--model-poll-s", type=float,
        help="seconds between checks of the store for a moved alias, which is then swapped in; "
        "0 = never (default: 0 with one worker, 2 with several)",
    )
    parser.add_argument(
        "--max-batch-items", type=int,
        help="most items per engine call (default: 2 on the onnx CPU engine, else 8)",
    )
    parser.add_argument(
        "--max-padding-waste", type=float,
        help="padding a batch may carry, as a fraction of its real tokens (default: 0.1)",
    )
    parser.add_argument("--max-wait-ms", type=float, help="longest wait for a fuller batch (default: 5)")
    parser.add_argument(
        "--threads", dest="intra_op_threads", type=int,
        help="threads per engine call (default: 1 on the onnx CPU engine, where in fp32 a lone item on an idle engine gets all cores; else all cores / engine workers)",
    )
    parser.add_argument(
        "--engine-workers", type=int, help="batches run at once (default: one per core on the onnx CPU engine, else 1)"
    )
    parser.add_argument(
        "--feedback-db",
        help="feedback database: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: sqlite:///plaudit-data/feedback.db)",
    )
    parser.add_argument(
        "--access-log", action="store_true", default=None,
        help="log every request with its status, milliseconds and request id (default: PLAUDIT_ACCESS_LOG, else off)",
    )
    parser.set_defaults(func=serve)


_SETTING_ARGS = (
    "store_dir",
    "model",
    "engine",
    "device",
    "precision",
    "host",
    "port",
    "workers",
    "model_poll_s",
    "max_batch_items",
    "max_padding_waste",
    "max_wait_ms",
    "intra_op_threads",
    "engine_workers",
    "feedback_db",
    "access_log",
)


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus Plaudit's own loggers (with the process id, which tells workers
    apart). uvicorn applies it in every worker, where a basicConfig made here would not reach."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {key: dict(value) if isinstance(value, dict) else value for key, value in LOGGING_CONFIG.items()}
    config["formatters"] = {**config["formatters"], "plaudit": {"format": LOG_FORMAT}}
    # uvicorn's own lines (start, stop) get a time too, as Plaudit's have.
    config["formatters"]["default"] = {**config["formatters"]["default"], "fmt": "%(asctime)s %(levelprefix)s %(message)s"}
    config["handlers"] = {
        **config["handlers"],
        "plaudit": {"class": "logging.StreamHandler", "formatter": "plaudit", "stream": "ext://sys.stderr"},
    }
    config["root"] = {"handlers": ["plaudit"], "level": "INFO"}
    config["loggers"] = {**config["loggers"], **QUIET_LOGGERS}
    return config


# Libraries whose INFO lines bury the server's own: Alembic logs its dialect and DDL mode each
# time the feedback database is opened (9-13 lines per start), whether or not it migrates.
QUIET_LOGGERS = {"alembic": {"level": "WARNING"}}


def share_with_workers(overrides: dict[str, Any]) -> Path | None:
    """Put what several workers need in the environment they inherit: every option given on
    the command line as its PLAUDIT_* variable (each worker builds its own Settings), and a
    fresh shared directory for metrics and readiness unless one is named already.

    Returns the directory if it was made here (to remove at exit)."""
    for name, value in overrides.items():
        os.environ[env_name(name)] = str(value)
    return provide_shared_directory(os.environ)


def _wants_workers(overrides: dict[str, Any]) -> bool:
    """Several workers, from --workers or PLAUDIT_WORKERS (a bad value is Settings' to report)."""
    try:
        return int(overrides.get("workers", os.environ.get(env_name("workers"), 1))) > 1
    except ValueError:
        return False


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings `plaudit serve`'s flags set; the rest come from PLAUDIT_* variables."""
    return {name: getattr(args, name) for name in _SETTING_ARGS if getattr(args, name, None) is not None}


def listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, checked before minutes of loading (or
    training, for `plaudit up`) rather than after; None if it can. Another server could
    still take the port in between: then uvicorn's own error says so."""
    from service.supervisor import probe_port

    try:
        probe_port(host, port)
    except OSError as exc:
        return cannot_listen(host, port, exc)
    return None


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    """What binding host:port failed with, and how to fix it."""
    if exc.errno == errno.EADDRINUSE:
        fix = "stop what is using it, or choose another port with --port or PLAUDIT_PORT"
    else:  # not this machine's address, or not an address at all
        fix = "give an address of this machine with --host or PLAUDIT_HOST (0.0.0.0: all of them)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}; {fix}"


def serve(args: argparse.Namespace) -> int:
    overrides = settings_overrides(args)
    made = share_with_workers(overrides) if _wants_workers(overrides) else None
    try:
        return _serve(args, overrides)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _serve(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"plaudit serve: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    # Fail now, with one line, on the commonest mistake (a wrong store or model name), and on
    # what the version cannot run, rather than serving 503s after a background load fails.
    from service.model_loading import stored_model_problem

    problem = stored_model_problem(settings)
    if problem:
        print(f"plaudit serve: {problem}", file=sys.stderr)
        return 2

    problem = listen_problem(settings.host, settings.port)
    if problem:
        print(f"plaudit serve: {problem}", file=sys.stderr)
        return 2

    import uvicorn

    from service.app import create_app

    options: dict[str, Any] = dict(
        log_config=log_config(),
        log_level="info",
        access_log=False,  # the app logs requests itself, with their request ids (PLAUDIT_ACCESS_LOG)
        # On SIGTERM uvicorn waits for open connections, with no limit by default: one client
        # stalled mid-body held a stop until it gave up. Every accepted request ends by its
        # deadline, so past that (and a margin to write the answers) the rest are cut.
        timeout_graceful_shutdown=settings.request_timeout_s + SHUTDOWN_MARGIN_S,
    )
    if settings.workers > 1:
        return _serve_workers(settings, options)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, **options)
    return 0


def _serve_workers(settings: Settings, options: dict[str, Any]) -> int:
    """Several workers; each imports the app factory and builds Settings from the environment."""
    import uvicorn

    from service.supervisor import APP_FACTORY, Supervisor, balances_connections

    if not balances_connections():
        uvicorn.run(APP_FACTORY, factory=True, workers=settings.workers, host=settings.host, port=settings.port, **options)
        return 0
    logging.config.dictConfig(options["log_config"])  # the supervisor's own lines
    try:
        supervisor = Supervisor(
            settings.workers, settings.host, settings.port, options, request_timeout_s=settings.request_timeout_s
        )
    except OSError as exc:
        print(f"plaudit serve: {cannot_listen(settings.host, settings.port, exc)}", file=sys.stderr)
        return 2
    supervisor.run()
    return 0
