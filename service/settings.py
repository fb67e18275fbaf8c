"""Service configuration: constructor arguments, or PLAUDIT_* environment variables.

Every value is checked when `Settings` is built, and a bad one is reported with the
setting's name, its environment variable and what to put there instead.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model_store.loading import check_engine_precision
from service.api_keys import ApiKeyError, ScopeName, merge_keys, parse_key_mapping, read_key_file
from service.memory_trim import IDLE_S, MIN_GROWTH_MIB

ENV_PREFIX = "PLAUDIT_"
ENGINES = ("onnx", "torch", "deterministic", "failing")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")

EngineName = Literal["onnx", "torch", "deterministic", "failing"]
DeviceName = Literal["cpu", "cuda"]
PrecisionName = Literal["auto", "fp32", "fp16", "bf16", "int8"]


# Settings that must lie in [low, high], with what to set instead when one does not.
_BOUNDED: dict[str, tuple[float, float, str]] = {
    "max_wait_ms": (0, 1000, "to a few milliseconds (0 = never wait for a fuller batch)"),
    "max_padding_waste": (
        0, 100, "to the padding a batch may carry as a fraction of its real tokens, e.g. 0.1"
    ),
    "prefetch_batches": (0, 16, "to 1 (a batch ready beside the engine) or 0 (none)"),
}


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


# The directory that prometheus_client's multiprocess mode writes to; the workers of one
# server also publish their readiness there (service.workers).
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set by the supervisor in a worker it starts in place of one that died (service.supervisor):
# not a setting, so not PLAUDIT_-prefixed.
REPLACEMENT_WORKER_ENV = "_PLAUDIT_REPLACEMENT_WORKER"
# How often each of several workers checks the store for a moved alias, when not set.
DEFAULT_MULTI_WORKER_POLL_S = 2.0

# Batch caps when max_batch_items is left to engine_layout (see there for the measurements).
DEFAULT_MAX_BATCH_ITEMS = 8
SINGLE_THREAD_MAX_BATCH_ITEMS = 2


@dataclass(frozen=True, slots=True)
class EngineLayout:
    """Batches the engine runs at once, the intra-op threads of each call, the most items
    one call takes, and the threads of a call that has the engine to itself."""

    workers: int
    threads_per_call: int
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    lone_call_threads: int | None = None  # threads of a lone item on an idle engine, if it gets its own


class Settings(BaseSettings):
    """Everything the service needs to start; no instance exists until someone builds one."""

    # hide_input_in_errors: a refused value may be an API key or a database password.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # -- which model, on what ------------------------------------------------------------
    store_dir: Path = Field(default=Path("plaudit-data/models"), description="Model store root.")
    model: str = Field(default="default", description="Model reference: NAME, NAME@ALIAS or NAME:VERSION.")
    engine: EngineName = Field(default="onnx", description="onnx | torch | deterministic | failing.")
    device: DeviceName = "cpu"
    precision: PrecisionName = "auto"
    intra_op_threads: int | None = Field(default=None, description="Threads per engine call; None = auto (see engine_layout).")
    intra_op_spinning: bool = Field(
        default=False,
        description="ONNX Runtime threads busy-wait between parallel sections: lower latency "
        "when idle, less throughput under load on small machines.",
    )
    # NoDecode: these arrive from the environment as text, decoded by _json_setting below, so a
    # value that is not JSON is reported like any other bad value (pydantic-settings would
    # raise its own SettingsError, a traceback naming no fix).
    engine_options: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict,
        description='Options for the test engines, e.g. {"delay_s": 0.1} (JSON in the env var).',
    )

    # -- where to listen -----------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, description="TCP port; 0 picks a free one.")
    workers: int = Field(
        default=1,
        description="Server processes sharing the port, each with its own batcher and engine "
        "(service.supervisor). More than one needs PROMETHEUS_MULTIPROC_DIR, which `plaudit serve "
        "--workers` sets.",
    )
    model_poll_s: float | None = Field(
        default=None,
        description="Seconds between checks of the store for a new version of the configured "
        "model (an alias moved), which is then swapped in; 0 = never. None = auto: 0 with one "
        "worker, 2 with several (how a promote reaches every worker).",
    )

    # -- batching ------------------------------------------------------------------------
    max_batch_items: int | None = Field(
        default=None,
        description="Most items per engine call; None = auto (see engine_layout): 2 for "
        "single-threaded calls on the ONNX CPU engine, else 8.",
    )
    max_batch_tokens: int = 2048
    max_padding_waste: float = Field(
        default=0.1,
        description="Padding a batch may carry, as a fraction of its real tokens (0.1 = 10%); "
        "items that would pad more go in a later batch.",
    )
    max_wait_ms: float = 5.0
    max_queue_items: int = 2048
    max_concurrent_requests: int = Field(
        default=512,
        description="Requests being handled at once (probes and /metrics aside); past it a request "
        "gets 429 before its body is read, so a burst of large bodies cannot take the memory.",
    )
    max_inflight_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        description="Bytes of request bodies being handled at once (by their Content-Length; one "
        "without it counts as max_body_bytes); past it a request gets 429 before its body is "
        "read, unless nothing else is in flight. Bounds a burst's memory by size rather than by "
        "count: each body byte took about 5 bytes of memory while read and parsed.",
    )
    tokenize_workers: int = 1
    engine_workers: int | None = Field(
        default=None,
        description="Batches the engine runs at once, each on intra_op_threads threads; None = "
        "auto (see engine_layout): one per core on the ONNX CPU engine, else 1.",
    )
    prefetch_batches: int = Field(
        default=1,
        description="Batches formed ahead and handed to the engine beyond one per engine worker, so "
        "a worker that finishes starts the next at once instead of waiting for the event loop; "
        "0 = form a batch only when a worker is free.",
    )
    access_log: bool = Field(
        default=False,
        description="Log one line per request (logger plaudit.access): client, method, path, "
        "status, milliseconds and request id.",
    )
    score_lane: bool = Field(
        default=True,
        description="Well-formed POST /v1/score requests skip FastAPI's request handling "
        "(service.score_lane): the route's answers, byte for byte, for less event-loop CPU per "
        "request; false = every request through FastAPI.",
    )
    memory_trim: bool = Field(
        default=True,
        description=f"Once requests pause for {IDLE_S:g} s after memory grew by {MIN_GROWTH_MIB:g} MiB "
        "or more while serving (a burst of large bodies), collect garbage and hand freed memory "
        "back to the system (glibc's malloc_trim; service.memory_trim); false = the process "
        "keeps its peak.",
    )

    # -- per-request limits --------------------------------------------------------------
    request_timeout_s: float = 30.0
    max_items_per_request: int = 512
    max_chars_per_text: int = 32000
    max_body_bytes: int = 8 * 1024 * 1024

    # -- feedback ------------------------------------------------------------------------
    data_dir: Path = Field(default=Path("plaudit-data"), description="Home of the default feedback database.")
    feedback_enabled: bool = Field(
        default=True, description="False: no feedback store, /v1/feedback* answer 503."
    )
    feedback_db: str | None = Field(
        default=None,
        repr=False,  # a PostgreSQL URL may carry a password
        description="sqlite:///PATH or postgresql://USER@HOST/DB; None = sqlite:///<data_dir>/feedback.db.",
    )
    comparison_retention_hours: float = Field(
        default=168.0, description="How long /v1/compare results stay resolvable by {request_id, choice}."
    )
    rating_min: float = Field(default=1.0, description="Bottom of this deployment's rating scale.")
    rating_max: float = Field(default=5.0, description="Top of this deployment's rating scale.")
    max_feedback_metadata_bytes: int = Field(
        default=16 * 1024, description="Largest metadata object (as JSON)."
    )

    # -- security ------------------------------------------------------------------------
    api_keys: Annotated[dict[SecretStr, frozenset[ScopeName]], NoDecode] = Field(
        default_factory=dict,
        description='{"KEY": ["score", "feedback", "admin"]} (JSON in the env var); none = auth off.',
    )
    api_keys_file: Path | None = Field(default=None, description="File of `KEY scope,scope` lines.")
    open_probes: bool = Field(
        default=True, description="False: /healthz, /readyz, /metrics need a valid key."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Browser origins allowed to call the API: a JSON list, e.g. ["https://app.example"], '
        "or the origins separated by commas.",
    )
    _key_scopes: dict[str, frozenset[ScopeName]] = PrivateAttr(default_factory=dict)

    def engine_layout(self, precision: str) -> EngineLayout:
        """How many batches run at once, and on how many threads each, for the precision the
        model resolved to. What the operator set wins; the rest follows from the cores (this
        worker's share of them, when the server runs several).

        Left to itself, the ONNX CPU engine gets one single-threaded worker per core, in fp32
        and int8 alike: with two threads per call every small graph node is a hand-off between
        threads. On 2 vCPUs at c=32, int8 served 46.1 items/s this way against 34.5 with one
        2-thread worker; fp32 served 54.8 against 45.7 (p99 926 ms against 1,387), and 99.3
        against 85.2 on a faster machine (README, serving).

        In fp32 a lone item on an idle engine runs on every core instead (`lone_call_threads`,
        a second session): one thread would leave the other cores idle and take longer (one
        item per call, one call at a time: 29.3 items/s on one thread, 50.5 on the 2-thread
        session; bench_serving's ceiling). int8 keeps one thread for it: its many small nodes
        gain less from a second thread, and on an AVX2 machine an idle int8 request took 27 ms
        on one thread against 34 on two.

        Single-threaded calls also get small batches: in-process, on two machines, one
        item per call was int8's fastest setting and every bigger batch slower, even length-
        sorted (b1 147 items/s against b8 117 on an Intel Xeon). Served at c=32 there, a cap
        of 2 matched a cap of 1 (117-127 items/s each, three runs) and beat 8 (96-106); on an
        AMD EPYC it served 76.2 items/s against 67.8 for 1 and 77.9 for 8. Everything else keeps 8:
        on 2 cores batches of 8 beat 32, even length-sorted (bench_serving's ceiling).
        """
        cores = max(1, available_cores() // self.workers)  # each worker process gets its share
        onnx_cpu = self.engine == "onnx" and self.device == "cpu" and precision in ("fp32", "int8")
        if onnx_cpu and self.engine_workers is None and self.intra_op_threads is None:
            workers, threads = cores, 1
        else:
            workers = self.engine_workers or 1
            threads = self.intra_op_threads or max(1, cores // workers)
        batch = self.max_batch_items or (
            SINGLE_THREAD_MAX_BATCH_ITEMS if onnx_cpu and threads == 1 else DEFAULT_MAX_BATCH_ITEMS
        )
        lone = cores if onnx_cpu and precision == "fp32" and threads < cores else None
        return EngineLayout(workers=workers, threads_per_call=threads, max_batch_items=batch, lone_call_threads=lone)

    @field_validator("engine", "device", "precision", mode="before")
    @classmethod
    def _known_choice(cls, value: Any, info: ValidationInfo) -> Any:
        field = str(info.field_name)
        choices = {"engine": ENGINES, "device": DEVICES, "precision": PRECISIONS}[field]
        normalized = value.strip().lower() if isinstance(value, str) else value
        if normalized not in choices:
            raise ValueError(
                f"{field}={value!r} is not supported; set {env_name(field)} "
                f"(or --{field}) to one of: {', '.join(choices)}"
            )
        return normalized

    @field_validator("model")
    @classmethod
    def _non_empty_ref(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                f"model is empty; set {env_name('model')} (or --model) to NAME, NAME@ALIAS or NAME:VERSION"
            )
        return value.strip()

    @field_validator(
        "workers",
        "max_batch_items",
        "max_batch_tokens",
        "max_queue_items",
        "max_concurrent_requests",
        "max_inflight_body_bytes",
        "tokenize_workers",
        "engine_workers",
        "max_items_per_request",
        "max_chars_per_text",
        "max_body_bytes",
    )
    @classmethod
    def _at_least_one(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value < 1:
            field = str(info.field_name)
            raise ValueError(
                f"{field}={value} must be at least 1; set {env_name(field)} to a positive integer"
            )
        return value

    @field_validator("intra_op_threads")
    @classmethod
    def _threads(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(
                f"intra_op_threads={value} must be at least 1; leave {env_name('intra_op_threads')} "
                "unset to use every core"
            )
        return value

    @field_validator(*_BOUNDED)
    @classmethod
    def _within_bounds(cls, value: float, info: ValidationInfo) -> float:
        field = str(info.field_name)
        low, high, advice = _BOUNDED[field]
        if not low <= value <= high:
            raise ValueError(f"{field}={value} must be between {low} and {high}; set {env_name(field)} {advice}")
        return value

    @field_validator("request_timeout_s")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value < math.inf:  # also refuses NaN, which every comparison lets through
            raise ValueError(
                f"request_timeout_s={value} must be positive and finite; set {env_name('request_timeout_s')} "
                "to the seconds a request may wait, e.g. 30"
            )
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(
                f"port={value} is not a TCP port; set {env_name('port')} (or --port) to 1-65535, "
                "or 0 for any free port"
            )
        return value

    @field_validator("model_poll_s")
    @classmethod
    def _poll(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value < math.inf:
            raise ValueError(
                f"model_poll_s={value} must be 0 (never) or a positive number of seconds; set "
                f"{env_name('model_poll_s')} to e.g. 2, or leave it unset"
            )
        return value

    @property
    def model_poll_interval_s(self) -> float:
        """Seconds between store checks for a moved alias; 0 = never (see model_poll_s)."""
        if self.model_poll_s is not None:
            return self.model_poll_s
        return DEFAULT_MULTI_WORKER_POLL_S if self.workers > 1 else 0.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_items_per_request > self.max_queue_items:
            raise ValueError(
                f"max_items_per_request={self.max_items_per_request} exceeds "
                f"max_queue_items={self.max_queue_items}, so such a request could never be "
                f"accepted; lower {env_name('max_items_per_request')} or raise "
                f"{env_name('max_queue_items')}"
            )
        try:
            check_engine_precision(self.engine, self.precision)
        except ValueError as exc:
            raise ValueError(f"{exc} (set {env_name('engine')} and {env_name('precision')})") from None
        if self.workers > 1:
            if self.model_poll_s == 0:
                raise ValueError(
                    f"model_poll_s=0 with workers={self.workers} would leave the other workers on the "
                    f"old model after a promote or reload; leave {env_name('model_poll_s')} unset "
                    "or set it to a few seconds"
                )
            if not os.environ.get(MULTIPROC_DIR_ENV):
                raise ValueError(
                    f"workers={self.workers} needs {MULTIPROC_DIR_ENV} (an empty directory the workers "
                    f"share for metrics and readiness); run `plaudit serve --workers {self.workers}`, "
                    f"which sets it, or set it before starting uvicorn"
                )
        if self.engine_options and self.engine not in ("deterministic", "failing"):
            raise ValueError(
                f"engine_options are for the test engines only (deterministic, failing), "
                f"not engine={self.engine}; unset {env_name('engine_options')}"
            )
        return self

    # -- feedback and security (checked here so that `plaudit serve` fails fast, in one line) --

    @field_validator("engine_options", mode="before")
    @classmethod
    def _engine_options(cls, value: Any) -> Any:
        decoded = _json_setting("engine_options", value, '{"delay_s": 0.1}')
        return {} if decoded is None else decoded  # JSON null: the default, as before NoDecode

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: Any) -> Any:
        # Not echoed on a JSON error: the text holds keys.
        value = _json_setting("api_keys", value, '{"KEY": ["score"]}', echo=False)
        # Checked before pydantic sees it: its own messages would put the key in the error location.
        if isinstance(value, dict):
            keys = {k.get_secret_value() if isinstance(k, SecretStr) else k: v for k, v in value.items()}
            try:
                return parse_key_mapping(keys, env_name("api_keys"))
            except ApiKeyError as exc:
                raise ValueError(str(exc)) from None
        if value is None:
            return {}
        raise ValueError(f'api_keys must be a JSON object {{"KEY": ["score"]}}; fix {env_name("api_keys")}')

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() != "null" and not value.lstrip().startswith("["):
            # The form CORS settings usually take elsewhere: origins separated by commas ("" none).
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        decoded = _json_setting("cors_origins", value, '["https://app.example"]')
        return [] if decoded is None else decoded  # JSON null: the default, as before NoDecode

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, _, host = origin.partition("://")
            if origin == "*":
                continue
            if scheme not in ("http", "https") or not host or "/" in host:
                raise ValueError(
                    f"cors_origins entry {origin!r} is not an origin; set {env_name('cors_origins')} to origins "
                    "scheme://host[:port] without a path or trailing slash, separated by commas or as a JSON "
                    'list, e.g. https://app.example or ["https://app.example"]'
                )
        return value

    @model_validator(mode="after")
    def _feedback_url_form(self) -> Self:
        # The URL's form is checked here, so a wrong one stops the server at start; a database
        # that does not answer is a runtime condition (scoring goes on, /v1/feedback says 503).
        # With feedback off the URL is never used, so it is not judged either.
        url = self.feedback_url() if self.feedback_db is not None else None
        if url is not None:
            from service.feedback.database import parse_url
            from service.feedback.errors import FeedbackStoreError

            try:
                parse_url(url)
            except FeedbackStoreError as exc:
                raise ValueError(f"{exc}; fix {env_name('feedback_db')}") from None
        return self

    @field_validator("comparison_retention_hours")
    @classmethod
    def _retention(cls, value: float) -> float:
        if not 0 < value < float("inf"):
            raise ValueError(
                f"comparison_retention_hours={value} must be positive; set "
                f"{env_name('comparison_retention_hours')} to the hours a comparison stays resolvable, e.g. 168"
            )
        return value

    @field_validator("max_feedback_metadata_bytes")
    @classmethod
    def _metadata_limit(cls, value: int) -> int:
        if value < 2:  # "{}" must fit
            raise ValueError(
                f"max_feedback_metadata_bytes={value} is too small; set "
                f"{env_name('max_feedback_metadata_bytes')} to a few kilobytes, e.g. 16384"
            )
        return value

    @model_validator(mode="after")
    def _feedback_and_keys(self) -> Self:
        if not (
            math.isfinite(self.rating_min)
            and math.isfinite(self.rating_max)
            and self.rating_min < self.rating_max
        ):
            raise ValueError(
                f"rating scale {self.rating_min:g}-{self.rating_max:g} is empty; set {env_name('rating_min')} "
                f"below {env_name('rating_max')}, e.g. 1 and 5"
            )
        keys = {key.get_secret_value(): scopes for key, scopes in self.api_keys.items()}
        if self.api_keys_file is not None:
            try:
                keys = merge_keys(keys, read_key_file(self.api_keys_file), self.api_keys_file)
            except ApiKeyError as exc:
                raise ValueError(str(exc)) from None
        self._key_scopes = keys
        return self

    def feedback_url(self) -> str | None:
        """The feedback database URL, or None when the store is disabled."""
        if not self.feedback_enabled:
            return None
        if self.feedback_db is not None and self.feedback_db.strip():
            return self.feedback_db.strip()
        return f"sqlite:///{(self.data_dir / 'feedback.db').absolute()}"

    def api_key_scopes(self) -> dict[str, frozenset[ScopeName]]:
        """Every configured key (PLAUDIT_API_KEYS and api_keys_file) with its scopes; empty = auth off."""
        return dict(self._key_scopes)


# PLAUDIT_* variables that other parts of the project read (the benchmarks' naive server, the
# tests' PostgreSQL), not the service.
OTHER_VARIABLES = frozenset({"PLAUDIT_NAIVE_ONNX_OPTIONS", "PLAUDIT_TEST_POSTGRES_URL"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line for each PLAUDIT_* variable that names no setting, with the nearest name.

    Settings ignores such variables (pydantic-settings reads only its own fields), so a typo
    like PLAUDIT_MODLE would otherwise leave the default in force without a word."""
    fields = sorted(field.upper() for field in Settings.model_fields)
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.removeprefix(ENV_PREFIX) in fields or upper in OTHER_VARIABLES:
            continue
        # Matched without the prefix, which every name shares and would make anything look close.
        nearest = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), fields, n=1)
        hint = f"; did you mean {ENV_PREFIX}{nearest[0]}?" if nearest else "; see the Settings table in the README"
        lines.append(f"{name} is not a Plaudit setting and is ignored{hint}")
    return lines


def _json_setting(field: str, value: Any, example: str, *, echo: bool = True) -> Any:
    """`value` decoded from JSON where it is text (as every environment variable is)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        shown = f" {value[:60]!r}" if echo else ""
        raise ValueError(
            f"{env_name(field)}{shown} is not valid JSON ({exc.msg} at character {exc.pos}); "
            f"set it to JSON such as {example}"
        ) from None


def describe_settings_error(error: ValidationError) -> str:
    """One line per problem, naming the setting: what the CLI prints instead of a traceback."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "settings"
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "value_error":
            lines.append(message)
        else:
            lines.append(f"{field}: {message} (setting {env_name(field.split('.')[0])})")
    return "; ".join(lines)
