"""Service configuration: constructor arguments, or PLAUDIT_* environment variables.

Every value is checked when `Settings` is built, and a bad one is reported with the
setting's name, its environment variable and what to put there instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PLAUDIT_"
ENGINES = ("onnx", "torch", "deterministic", "failing")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")

EngineName = Literal["onnx", "torch", "deterministic", "failing"]
DeviceName = Literal["cpu", "cuda"]
PrecisionName = Literal["auto", "fp32", "fp16", "bf16", "int8"]


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


class Settings(BaseSettings):
    """Everything the service needs to start; no instance exists until someone builds one."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # -- which model, on what ------------------------------------------------------------
    store_dir: Path = Field(default=Path("plaudit-data/models"), description="Model store root.")
    model: str = Field(default="default", description="Model reference: NAME, NAME@ALIAS or NAME:VERSION.")
    engine: EngineName = Field(default="onnx", description="onnx | torch | deterministic | failing.")
    device: DeviceName = "cpu"
    precision: PrecisionName = "auto"
    intra_op_threads: int | None = Field(default=None, description="Engine threads; None = all cores.")
    engine_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Options for the test engines, e.g. {"delay_s": 0.1} (JSON in the env var).',
    )

    # -- where to listen -----------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, description="TCP port; 0 picks a free one.")

    # -- batching ------------------------------------------------------------------------
    max_batch_items: int = 32
    max_batch_tokens: int = 16384
    max_wait_ms: float = 5.0
    max_queue_items: int = 2048
    tokenize_workers: int = 1

    # -- per-request limits --------------------------------------------------------------
    request_timeout_s: float = 30.0
    max_items_per_request: int = 512
    max_chars_per_text: int = 32000
    max_body_bytes: int = 8 * 1024 * 1024

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
        "max_batch_items",
        "max_batch_tokens",
        "max_queue_items",
        "tokenize_workers",
        "max_items_per_request",
        "max_chars_per_text",
        "max_body_bytes",
    )
    @classmethod
    def _at_least_one(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
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

    @field_validator("max_wait_ms")
    @classmethod
    def _wait(cls, value: float) -> float:
        if not 0 <= value <= 1000:
            raise ValueError(
                f"max_wait_ms={value} must be between 0 and 1000; set {env_name('max_wait_ms')} "
                "to a few milliseconds (0 = never wait for a fuller batch)"
            )
        return value

    @field_validator("request_timeout_s")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(
                f"request_timeout_s={value} must be positive; set {env_name('request_timeout_s')} "
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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_items_per_request > self.max_queue_items:
            raise ValueError(
                f"max_items_per_request={self.max_items_per_request} exceeds "
                f"max_queue_items={self.max_queue_items}, so such a request could never be "
                f"accepted; lower {env_name('max_items_per_request')} or raise "
                f"{env_name('max_queue_items')}"
            )
        if self.engine_options and self.engine not in ("deterministic", "failing"):
            raise ValueError(
                f"engine_options are for the test engines only (deterministic, failing), "
                f"not engine={self.engine}; unset {env_name('engine_options')}"
            )
        return self


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
