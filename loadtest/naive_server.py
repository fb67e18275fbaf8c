"""The baseline the service is measured against: the same model behind FastAPI, no batching.

Each POST /v1/score runs `scorer.score(items)` directly in a worker thread (a plain
`def` endpoint), which is how a reward model is usually first put behind HTTP. The
request and response JSON match the service's /v1/score, so one load generator drives both.

It loads the same stored model file and tokenizer as the service. By default it opens the
ONNX file as a first deployment would, `onnxruntime.InferenceSession(path)` with ORT's
default session options, because the issue counts Plaudit's engine tuning as part of what
the service adds. PLAUDIT_NAIVE_ONNX_OPTIONS=plaudit gives it Plaudit's tuned session
options instead, which isolates what batching and the serving path add on their own. Either
way its sessions ask for exact int8 products (model_store.int8_products.exact_integer_products),
a correctness setting: without it an int8 file would score differently on CPUs without VNNI.

Run it with `uvicorn --factory loadtest.naive_server:create_naive_app`; settings come from
the arguments or, when left out, from the same PLAUDIT_* variables the service reads.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from model_store.scoring import Scorer, ScoringError, TextPair

DEFAULT_MAX_ITEMS_PER_REQUEST = 512  # the service's default for the same setting
ONNX_OPTION_CHOICES = ("ort-defaults", "plaudit")


class NaiveConfigError(ValueError):
    """The naive server is missing a setting or has a bad one; the message names the variable."""


@dataclass(frozen=True, slots=True)
class NaiveConfig:
    """The subset of the service's settings that the baseline uses, with the same names."""

    store_dir: str | None = None
    model: str | None = None
    engine: str = "onnx"
    device: str = "cpu"
    precision: str = "auto"
    intra_op_threads: int | None = None
    intra_op_spinning: bool = False  # for Plaudit's tuned options (the ceiling); ORT's defaults spin anyway
    lone_call_threads: int | None = None  # Plaudit's engine only (the ceiling): its lone-call session
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    max_items_per_request: int = DEFAULT_MAX_ITEMS_PER_REQUEST
    onnx_options: str = "ort-defaults"  # one of ONNX_OPTION_CHOICES

    def __post_init__(self) -> None:
        if self.onnx_options not in ONNX_OPTION_CHOICES:
            raise NaiveConfigError(
                f"PLAUDIT_NAIVE_ONNX_OPTIONS={self.onnx_options!r}: use one of {', '.join(ONNX_OPTION_CHOICES)}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "NaiveConfig":
        def get(name: str) -> str | None:
            value = environ.get(f"PLAUDIT_{name}")
            return value if value else None

        def get_int(name: str) -> int | None:
            text = get(name)
            if text is None:
                return None
            try:
                return int(text)
            except ValueError:
                raise NaiveConfigError(f"PLAUDIT_{name}={text!r} is not a whole number") from None

        spinning_text = (get("INTRA_OP_SPINNING") or "false").strip().lower()
        if spinning_text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise NaiveConfigError(f"PLAUDIT_INTRA_OP_SPINNING={spinning_text!r}: use true or false")
        options_text = get("ENGINE_OPTIONS")
        try:
            options = json.loads(options_text) if options_text else {}
        except json.JSONDecodeError as exc:
            raise NaiveConfigError(f"PLAUDIT_ENGINE_OPTIONS is not valid JSON: {exc.msg}") from None
        if not isinstance(options, dict):
            raise NaiveConfigError('PLAUDIT_ENGINE_OPTIONS must be a JSON object, e.g. {"delay_s": 0.1}')
        return cls(
            store_dir=get("STORE_DIR"),
            model=get("MODEL"),
            engine=(get("ENGINE") or "onnx").strip().lower(),
            device=get("DEVICE") or "cpu",
            precision=get("PRECISION") or "auto",
            intra_op_threads=get_int("INTRA_OP_THREADS"),
            intra_op_spinning=spinning_text in ("true", "1", "yes", "on"),
            engine_options=options,
            max_items_per_request=get_int("MAX_ITEMS_PER_REQUEST") or DEFAULT_MAX_ITEMS_PER_REQUEST,
            onnx_options=(get("NAIVE_ONNX_OPTIONS") or "ort-defaults").strip().lower(),
        )


def load_configured_scorer(config: NaiveConfig) -> Scorer:
    """Load the model as the service does: a test engine directly, else store -> verify -> load."""
    from model_store.engines import TEST_ENGINES

    if config.engine in TEST_ENGINES:
        from model_store.engines.deterministic import make_test_engine

        return make_test_engine(config.engine, config.engine_options)
    if not config.store_dir or not config.model:
        raise NaiveConfigError(
            f"engine {config.engine!r} needs a stored model: set PLAUDIT_STORE_DIR and "
            "PLAUDIT_MODEL (or pass store_dir and model_ref)"
        )
    from model_store.loading import load_scorer
    from model_store.store import ModelStore

    store = ModelStore(config.store_dir)
    version = store.resolve(config.model)
    store.verify(version)
    onnx_options = None
    if config.onnx_options == "ort-defaults":
        import onnxruntime as ort

        onnx_options = ort.SessionOptions()
        if config.intra_op_threads:
            onnx_options.intra_op_num_threads = config.intra_op_threads
    return load_scorer(
        version,
        engine=config.engine,
        device=config.device,
        precision=config.precision,
        intra_op_threads=config.intra_op_threads,
        intra_op_spinning=config.intra_op_spinning,
        onnx_options=onnx_options,
        lone_call_threads=config.lone_call_threads if onnx_options is None else None,
    )


class ItemIn(BaseModel):
    prompt: str
    response: str


class ScoreRequest(BaseModel):
    items: Annotated[list[ItemIn], Field(min_length=1)]


class ModelInfo(BaseModel):
    name: str
    version: str


class ScoreResponse(BaseModel):
    scores: list[float]
    model: ModelInfo
    request_id: str


def create_naive_app(
    store_dir: str | None = None,
    model_ref: str | None = None,
    engine: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    intra_op_threads: int | None = None,
    engine_options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    """Build the baseline app; arguments left as None come from PLAUDIT_* variables."""
    base = NaiveConfig.from_env(os.environ if environ is None else environ)
    arguments = {
        "store_dir": store_dir,
        "model": model_ref,
        "engine": engine,
        "device": device,
        "precision": precision,
        "intra_op_threads": intra_op_threads,
        "engine_options": engine_options,
    }
    # Everything not given as an argument, every field added later included, comes from `base`.
    config = replace(base, **{k: v for k, v in arguments.items() if v is not None})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        scorer = load_configured_scorer(config)
        scorer.warmup()
        try:
            yield {"scorer": scorer}
        finally:
            scorer.close()

    app = FastAPI(title="Plaudit naive baseline", lifespan=lifespan)
    app.state.config = config

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        # Serving starts only after the lifespan loaded the model, so reaching here means ready.
        return {"status": "ready"}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # A plain `def` endpoint: FastAPI runs it in its thread pool, one scorer call per request.
    @app.post("/v1/score", response_model=ScoreResponse)
    def score(body: ScoreRequest, request: Request) -> ScoreResponse:
        if len(body.items) > config.max_items_per_request:
            raise HTTPException(
                status_code=422,
                detail=f"{len(body.items)} items in one request; the limit is "
                f"{config.max_items_per_request} (PLAUDIT_MAX_ITEMS_PER_REQUEST)",
            )
        scorer: Scorer = request.state.scorer
        pairs = [TextPair(it.prompt, it.response) for it in body.items]
        try:
            scores = scorer.score(pairs)
        except ScoringError:
            raise HTTPException(status_code=500, detail="scoring failed") from None
        return ScoreResponse(
            scores=[float(s) for s in scores],
            model=ModelInfo(name=scorer.name, version=str(scorer.version)),
            request_id=uuid.uuid4().hex,
        )

    return app
