"""Build the FastAPI app: `create_app(settings)`, or `uvicorn --factory service.app:create_app`.

The lifespan starts loading the model in the background and yields at once, so the
server answers /healthz (and a 503 /readyz) while a large model loads and warms up.
When loading finishes, the batcher starts and the model is published in the holder;
if it fails, /readyz says why. Shutdown stops the batcher and closes the scorer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE

from model_store.errors import StoreError
from service.activity import RequestActivity
from service.auth import RouteGuards, load_api_keys, require_probe_access, require_scope
from service.batching import Batcher
from service.deps import AppState
from service.errors import install_error_handlers
from service.feedback_state import open_feedback_store
from service.lifecycle import ModelSwapper
from service.memory_trim import make_trimmer
from service.metrics import ServiceMetrics
from service.middleware import RequestContextMiddleware
from service.model import LoadedModel, ModelHolder
from service.model_loading import ModelLoadError, batch_limits, load_model, log_precision_note, stored_model_problem
from service.model_watch import StoreFollower, follows_store
from service.routes import feedback, lifecycle, models, ops, scoring
from service.score_lane import SCORE_PATH, ScoreLane
from service.settings import MULTIPROC_DIR_ENV, REPLACEMENT_WORKER_ENV, Settings, describe_settings_error, unknown_variables
from service.workers import WorkerGroup

log = logging.getLogger("plaudit.service")

# Configuration mistakes whose message says everything (a missing model, a bad option).
_USER_ERRORS = (StoreError, ModelLoadError, ValueError)
# Errors whose text clients may read in 503s and on /readyz (open by default): Plaudit's own,
# and file errors (a path, as StoreError gives). An engine's RuntimeError or an ImportError
# speaks of its internals, so it is named by type only; the log has it in full.
_DESCRIBED_ERRORS = (*_USER_ERRORS, OSError)


def load_failure_reason(exc: BaseException) -> str:
    """Why the model failed to load, as clients may read it."""
    if isinstance(exc, _DESCRIBED_ERRORS) and str(exc):
        return str(exc)
    return f"unexpected {type(exc).__name__}; see the server log"


async def load_and_publish(settings: Settings, metrics: ServiceMetrics, holder: ModelHolder) -> None:
    """Load and warm up the model off the event loop, start its batcher, publish it."""
    try:
        scorer, info = await asyncio.to_thread(load_model, settings)
    except Exception as exc:
        reason = load_failure_reason(exc)
        log.error(
            "could not load model %r with engine %s: %s",
            settings.model,
            settings.engine,
            reason,
            exc_info=None if isinstance(exc, _USER_ERRORS) else exc,
        )
        holder.mark_failed(reason)
        return
    batcher = Batcher(scorer, batch_limits(settings, info), metrics)
    batcher.start()
    holder.set(LoadedModel(info=info, scorer=scorer, batcher=batcher))
    metrics.set_model(info.name, info.version)
    log.info(
        "serving %s:%s (engine %s, %s, %s; %d engine worker(s) x %d thread(s), batches of at most %d%s)",
        info.name, info.version, info.engine, info.device, info.precision,
        info.engine_workers, info.threads_per_call, info.max_batch_items,
        f"; a lone item on an idle engine gets {info.lone_call_threads} threads" if info.lone_call_threads else "",
    )
    log_precision_note(info)


def _served_status(holder: ModelHolder) -> Callable[[], tuple[bool, str | None]]:
    """What this worker publishes to its group: ready, and NAME:VERSION of what it serves."""

    def status() -> tuple[bool, str | None]:
        model = holder.current
        return holder.ready, f"{model.name}:{model.version}" if model is not None else None

    return status


def _lifespan(
    settings: Settings, metrics: ServiceMetrics, activity: RequestActivity
) -> Callable[[FastAPI], AbstractAsyncContextManager[AppState]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        holder = ModelHolder()
        background: list[asyncio.Task[None]] = []

        def start(work: Coroutine[Any, Any, None], name: str) -> None:
            background.append(asyncio.create_task(work, name=name))

        start(load_and_publish(settings, metrics, holder), "plaudit-model-load")
        loading = background[-1]
        swapper = ModelSwapper(settings, metrics, holder)
        shared = metrics.shared_directory  # set exactly when the server runs several workers
        workers = WorkerGroup(shared, settings.workers) if shared is not None else None
        if workers is not None:
            start(workers.keep_published(_served_status(holder)), "plaudit-worker-status")
        if follows_store(settings):
            start(StoreFollower(settings, holder, swapper).run(), "plaudit-store-follower")
        if settings.memory_trim and (trimmer := make_trimmer(activity)) is not None:
            holder.when_set(trimmer.model_served)
            start(trimmer.run(), "plaudit-memory-trim")
        api_keys = load_api_keys(settings)
        feedback_store = await open_feedback_store(settings)  # never raises; 503s say why
        try:
            if os.environ.get(REPLACEMENT_WORKER_ENV) == "1":
                # A worker started in place of one that died: the others serve meanwhile, and
                # uvicorn listens once startup ends, so this one takes connections only when its
                # model is served (answering 503 to its share of them meanwhile helped no one).
                # If the load fails, it does not start at all: the supervisor tries again later.
                await asyncio.shield(loading)
                if not holder.ready:
                    raise RuntimeError(f"this replacement worker's model did not load: {holder.why_not_ready()}")
            yield AppState(
                settings=settings,
                metrics=metrics,
                holder=holder,
                swapper=swapper,
                workers=workers,
                feedback=feedback_store,
                api_keys=api_keys,
            )
        finally:
            for task in background:
                task.cancel()
            # return_exceptions: a task that had died of an error must not skip the closing below.
            for task, outcome in zip(background, await asyncio.gather(*background, return_exceptions=True)):
                if isinstance(outcome, Exception):
                    log.error("background task %s had failed", task.get_name(), exc_info=outcome)
            await swapper.aclose()
            await holder.close()
            await feedback_store.close()

    return lifespan


def _route(router: APIRouter, path: str, method: str) -> APIRoute:
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path and method in route.methods:
            return route
    raise LookupError(f"no {method} {path} route in {router.prefix}")


def settings_from_environment() -> Settings:
    """Settings() for `uvicorn --factory service.app:create_app`: a bad PLAUDIT_* value ends the
    process with the one-line message `plaudit serve` prints, not a traceback from the factory.

    The exit status is uvicorn's STARTUP_FAILURE: under `uvicorn --workers N` the supervisor then
    stops instead of starting a new worker that would fail the same way, forever."""
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"plaudit: {describe_settings_error(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from None
    # As `plaudit serve` does: a model that is not there, or that this engine cannot run, stops
    # the start (uvicorn --workers included) instead of a server answering 503 for good. The
    # checksums are left to the load itself, which verifies them.
    problem = stored_model_problem(settings, verify=False)
    if problem:
        print(f"plaudit: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE)
    return settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own metrics registry; Settings() (from PLAUDIT_* env) if none given."""
    settings = settings if settings is not None else settings_from_environment()
    for line in unknown_variables(os.environ):
        log.warning(line)
    # Settings made sure the variable is set when there are several workers.
    metrics = ServiceMetrics(Path(os.environ[MULTIPROC_DIR_ENV]) if settings.workers > 1 else None)
    activity = RequestActivity()  # kept by the middleware, read by the memory trimmer
    app = FastAPI(
        title="Plaudit scoring service",
        summary="Reward-model scores for (prompt, response) pairs, batched across requests.",
        version="0.1.0",
        lifespan=_lifespan(settings, metrics, activity),
        # "/v1/score/" is a 404 in the error shape, not a 307 to a Location built from the
        # client's own Host header that a POSTing client may not follow.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    guards = RouteGuards()  # recorded too, so that a bad body is answered 401/403 first
    guards.include(app, scoring.router, require_scope("score"))
    guards.include(app, models.router, require_scope("score"))
    guards.include(app, feedback.router)  # its routes need feedback or admin
    guards.include(app, lifecycle.router)
    guards.include(app, ops.router, require_probe_access)
    routers = (scoring.router, models.router, feedback.router, lifecycle.router, ops.router)
    app.state.route_guards = guards
    if settings.score_lane:
        # Inside RequestContextMiddleware, which gives it the request id, body limit and metrics.
        app.add_middleware(ScoreLane, route=_route(scoring.router, SCORE_PATH, "POST"))
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        access_log=settings.access_log,
        max_concurrent_requests=settings.max_concurrent_requests,
        max_inflight_body_bytes=settings.max_inflight_body_bytes,
        body_timeout_s=settings.request_timeout_s,  # a body later than the request's deadline is of no use
        # What a request's endpoint label is matched against when the router named no route:
        # FastAPI's own pages (/docs, /openapi.json...), and every route for a request refused
        # before routing (413, 429).
        label_routes=[
            *(route for route in app.routes if isinstance(getattr(route, "path", None), str)),
            *(route for router in routers for route in router.routes),
        ],
        activity=activity,
    )
    if settings.cors_origins:
        # Outermost, so that every answer a browser may read (413, 500 too) carries the headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Idempotent-Replayed"],
        )
    return app
