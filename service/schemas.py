"""Request and response bodies (the edge only; inside, the service uses TextPair and numpy).

Every response carries `model` (what produced the numbers) and `request_id`.
Unknown fields are refused, so a typo such as "respone" is a 422, not a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, model_validator

from model_store.scoring import invalid_unicode_reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRefOut(BaseModel):
    name: str = Field(examples=["hh-harmless"])
    version: str = Field(examples=["3"])


# Every answer ends with these two fields.
ModelField = Annotated[ModelRefOut, Field(description="The model that produced the numbers.")]
RequestIdField = Annotated[
    str, Field(description="From X-Request-ID, or generated.", examples=["5f0c1e9a7d2b4c7e9a1b2c3d4e5f6a7b"])
]


def _encodable(text: str) -> str:
    reason = invalid_unicode_reason(text)
    if reason is not None:
        raise ValueError(reason)
    return text


# A text to score: any string that is valid Unicode.
Text = Annotated[str, AfterValidator(_encodable)]


# -- errors ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str = Field(examples=["items.0.response: field required"])
    request_id: RequestIdField


class ErrorResponse(BaseModel):
    """The one shape of every error answer."""

    error: ErrorDetail


_ERROR_MEANINGS = {
    401: "No API key, or an unknown one.",
    403: "The key lacks the scope this route needs.",
    404: "Not found (a model version, or the comparison a choice refers to).",
    408: "The request body did not arrive whole within REQUEST_TIMEOUT_S; the connection is closed.",
    409: "Conflicts with the current state (a feedback_id reused with another body, a swap in progress).",
    413: "Over a size limit: items per request, characters per text, or body bytes.",
    415: "The body is not sent as application/json.",
    422: "A field is missing or invalid; the message gives its path.",
    429: "The queue is full; retry after Retry-After seconds.",
    500: "Scoring failed (the engine raised); the message says where, never the engine's own text.",
    503: "No model is ready (loading, or being replaced); retry after Retry-After seconds.",
    504: "The request's deadline passed before its scores were ready.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, all in the ErrorResponse shape."""
    return {s: {"model": ErrorResponse, "description": _ERROR_MEANINGS[s]} for s in statuses}


def error_doc(description: str) -> dict[str, Any]:
    """One route's own wording for an error status, still in the ErrorResponse shape (a route's
    `responses` entry replaces its router's for the same status, schema included)."""
    return {"model": ErrorResponse, "description": description}


# -- /v1/score -----------------------------------------------------------------------------


class ScoreItem(_Strict):
    prompt: Text = Field(description="The conversation so far; may be empty.")
    response: Text = Field(description="The response to judge.")


class ScoreRequest(_Strict):
    items: list[ScoreItem] = Field(min_length=1)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "prompt": "How do I boil an egg?",
                            "response": "Put it in boiling water for 8 minutes.",
                        },
                        {"prompt": "How do I boil an egg?", "response": "No."},
                    ]
                }
            ]
        },
    )


class ScoreResponse(BaseModel):
    scores: list[float] = Field(description="One reward per item, in request order; higher is better.")
    model: ModelField
    request_id: RequestIdField


# -- /v1/compare ---------------------------------------------------------------------------


class Comparison(_Strict):
    prompt: Text
    response_a: Text
    response_b: Text


class CompareRequest(_Strict):
    """Either one comparison (prompt, response_a, response_b) or a list of them."""

    prompt: Text | None = None
    response_a: Text | None = None
    response_b: Text | None = None
    comparisons: list[Comparison] | None = Field(default=None, min_length=1)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"prompt": "Is the sun a star?", "response_a": "Yes, a G-type star.", "response_b": "No."},
                {
                    "comparisons": [
                        {"prompt": "Is the sun a star?", "response_a": "Yes.", "response_b": "No."},
                    ]
                },
            ]
        },
    )

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        single = (self.prompt, self.response_a, self.response_b)
        if self.comparisons is not None:
            if any(v is not None for v in single):
                raise ValueError("give either prompt/response_a/response_b or comparisons, not both")
        elif any(v is None for v in single):
            missing = [
                k for k, v in zip(("prompt", "response_a", "response_b"), single, strict=True) if v is None
            ]
            raise ValueError(
                f"missing {', '.join(missing)}: give prompt, response_a and response_b, or a comparisons list"
            )
        return self

    def as_comparisons(self) -> list[Comparison]:
        if self.comparisons is not None:
            return self.comparisons
        assert self.prompt is not None and self.response_a is not None and self.response_b is not None
        return [Comparison(prompt=self.prompt, response_a=self.response_a, response_b=self.response_b)]


class CompareResult(BaseModel):
    p_a_preferred: float = Field(description="sigmoid(score_a - score_b): P(a is preferred to b).")
    score_a: float
    score_b: float


class CompareResponse(CompareResult):
    model: ModelField
    request_id: RequestIdField


class CompareBatchResponse(BaseModel):
    results: list[CompareResult]
    model: ModelField
    request_id: RequestIdField


# -- /v1/rank ------------------------------------------------------------------------------


class RankRequest(_Strict):
    prompt: Text
    responses: list[Text] = Field(min_length=1)
    top_n: StrictInt | None = Field(default=None, ge=1, description="Return only the best N.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prompt": "Name a prime number.",
                    "responses": ["7", "Seven is prime because its only divisors are 1 and 7.", "Eight."],
                    "top_n": 2,
                }
            ]
        },
    )


class RankedResponse(BaseModel):
    index: int = Field(description="Position in the request's responses list.")
    score: float


class RankResponse(BaseModel):
    results: list[RankedResponse] = Field(description="Best first.")
    model: ModelField
    request_id: RequestIdField


# -- /v1/models and ops ----------------------------------------------------------------------


class ModelsResponse(BaseModel):
    model: ModelField
    engine: str = Field(examples=["onnx"])
    device: str = Field(examples=["cpu"])
    precision: str = Field(examples=["fp32"])
    max_length: int | None = Field(examples=[512])
    aliases: list[str] = Field(
        description=(
            "Store aliases pointing at the served version now, read from the store on each call: "
            "after a `plaudit models promote` or `rollback` this shows whether the server still "
            "serves what the alias names."
        ),
        examples=[["production"]],
    )
    engine_workers: int = Field(description="Batches the engine runs at once.", examples=[1])
    threads_per_call: int = Field(description="Intra-op threads of each engine call.", examples=[2])
    max_batch_items: int = Field(description="Most items one engine call takes.", examples=[8])
    lone_call_threads: int | None = Field(
        description="Intra-op threads of a lone item scored while the engine is idle; "
        "null when it runs like any other call.",
        examples=[2],
    )
    request_id: RequestIdField


class HealthResponse(BaseModel):
    status: str = Field(examples=["alive"])
    model: ModelRefOut | None = Field(default=None, description="None while no model is loaded.")
    request_id: RequestIdField


class WorkersOut(BaseModel):
    ready: int = Field(description="Worker processes ready now.", examples=[4])
    expected: int = Field(description="Worker processes the server runs (Settings.workers).", examples=[4])


class ReadyResponse(BaseModel):
    status: str = Field(examples=["ready"])
    model: ModelField
    workers: WorkersOut | None = Field(
        default=None, description="Present when the server runs several worker processes; all are ready."
    )
    request_id: RequestIdField


# -- model lifecycle (admin) ---------------------------------------------------------------


def _version_number(value: Any) -> Any:
    """2 or "2" (the form every answer gives a version in); not true, 2.0 or "two"."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


class PromoteRequest(_Strict):
    version: Annotated[int, BeforeValidator(_version_number)] = Field(
        ge=1, strict=True, description='The stored version to promote: 2, or "2" as answers give it.', examples=[2]
    )
    alias: str = Field(default="production", description="The alias to point at it.", examples=["production"])


class PromotedOut(BaseModel):
    name: str
    version: str
    alias: str


class SwapResponse(BaseModel):
    old: ModelRefOut | None = Field(description="What was served before; None if nothing was.")
    new: ModelRefOut = Field(description="What is served now.")
    swapped: bool = Field(description="False when the configured model already named the served version.")
    # A promote may move an alias the service does not follow (another model's): old, new and
    # swapped are then unchanged, and this is what says the store was changed.
    promoted: PromotedOut | None = Field(
        default=None, description="For a promote: the alias now pointing at the version (None for a reload)."
    )
    request_id: RequestIdField
