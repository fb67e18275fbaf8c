"""Bodies of the feedback routes: POST /v1/feedback in one of four shapes, and the stats.

A body is exactly one of
    like     {prompt, response, liked}
    rating   {prompt, response, rating}           (on this deployment's rating scale)
    pair     {prompt, chosen, rejected}
    choice   {request_id, choice: "a" | "b"}      (index too, for one of a comparisons list)
plus optional feedback_id (idempotency key), user, source, metadata and model. Fields of
two shapes, or a shape missing a field, are a 422 that names the fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

FeedbackShape = Literal["like", "rating", "pair", "choice"]

# The fields of each shape, and the ones that say which shape a body is.
SHAPE_FIELDS: dict[FeedbackShape, tuple[str, ...]] = {
    "like": ("prompt", "response", "liked"),
    "rating": ("prompt", "response", "rating"),
    "pair": ("prompt", "chosen", "rejected"),
    "choice": ("request_id", "choice"),
}
_OPTIONAL_SHAPE_FIELDS: dict[FeedbackShape, tuple[str, ...]] = {"choice": ("index",)}
_MARKERS: dict[FeedbackShape, tuple[str, ...]] = {
    "like": ("liked",),
    "rating": ("rating",),
    "pair": ("chosen", "rejected"),
    "choice": ("request_id", "choice", "index"),
}
_ALL_SHAPE_FIELDS = (
    "prompt",
    "response",
    "liked",
    "rating",
    "chosen",
    "rejected",
    "request_id",
    "choice",
    "index",
)
SHAPES_HELP = " | ".join(f"{{{', '.join(fields)}}}" for fields in SHAPE_FIELDS.values())


class FeedbackModelRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["hh-harmless"])
    version: str = Field(min_length=1, max_length=200, examples=["3"])


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"prompt": "Is the sun a star?", "response": "Yes, a G-type star.", "liked": True},
                {"prompt": "Is the sun a star?", "response": "Yes.", "rating": 4, "user": "ann"},
                {"prompt": "Is the sun a star?", "chosen": "Yes, a G-type star.", "rejected": "No."},
                {"request_id": "5f0c1e9a7d2b4c7e9a1b2c3d4e5f6a7b", "choice": "a", "feedback_id": "fb-1"},
            ]
        },
    )

    prompt: str | None = None
    response: str | None = None
    liked: bool | None = Field(default=None, strict=True)
    rating: float | None = Field(
        default=None, strict=True, description="On the scale of GET /v1/feedback/stats."
    )
    chosen: str | None = None
    rejected: str | None = None
    request_id: str | None = Field(default=None, description="The request_id a /v1/compare answer carried.")
    choice: Literal["a", "b"] | None = Field(default=None, description="Which response the user preferred.")
    index: int | None = Field(
        default=None, ge=0, strict=True, description="Position in that compare's comparisons list."
    )

    feedback_id: str | None = Field(
        default=None, description="Idempotency key: a retry with the same id and body stores nothing new."
    )
    user: str | None = Field(default=None, description="Who judged (exported as annotator).")
    source: str | None = Field(default=None, examples=["web-thumbs"])
    metadata: dict[str, Any] | None = Field(default=None, description="Free JSON, bounded in size.")
    model: FeedbackModelRef | None = Field(
        default=None, description="The model whose output was judged; default: the one serving now."
    )

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        self.shape  # noqa: B018  # raises ValueError naming the fields when the shape is unclear
        return self

    @property
    def shape(self) -> FeedbackShape:
        given = [name for name in _ALL_SHAPE_FIELDS if getattr(self, name) is not None]
        shapes = [shape for shape, markers in _MARKERS.items() if any(m in given for m in markers)]
        if len(shapes) > 1:
            clues = "; ".join(
                f"{', '.join(m for m in _MARKERS[shape] if m in given)} (a {shape})" for shape in shapes
            )
            raise ValueError(
                f"ambiguous feedback: fields of more than one shape: {clues}; send exactly one of {SHAPES_HELP}"
            )
        if not shapes:
            had = f" ({', '.join(given)} alone is not feedback)" if given else ""
            raise ValueError(f"no feedback given{had}: send exactly one of {SHAPES_HELP}")
        shape = shapes[0]
        allowed = SHAPE_FIELDS[shape] + _OPTIONAL_SHAPE_FIELDS.get(shape, ())
        stray = [name for name in given if name not in allowed]
        if stray:
            raise ValueError(
                f"ambiguous feedback: {', '.join(stray)} does not belong to a {shape} "
                f"{{{', '.join(SHAPE_FIELDS[shape])}}}; send exactly one of {SHAPES_HELP}"
            )
        missing = [name for name in SHAPE_FIELDS[shape] if name not in given]
        if missing:
            raise ValueError(
                f"missing {', '.join(missing)}: a {shape} is {{{', '.join(SHAPE_FIELDS[shape])}}}"
            )
        return shape


class FeedbackCreated(BaseModel):
    feedback_id: str = Field(description="The client's feedback_id, or one generated by the server.")
    kind: Literal["like", "rating", "pair"] = Field(description="How it is stored; a choice becomes a pair.")
    created_at: datetime = Field(
        description="When it was first stored (UTC); a replay shows the original time."
    )
    replayed: bool = Field(description="True when this feedback_id and body were already stored (HTTP 200).")
    request_id: str = Field(description="This request's id (X-Request-ID).")


class AgreementOut(BaseModel):
    items_judged_by_2plus_users: int
    items_all_agree: int
    share_all_agree: float | None


class LikeCounts(BaseModel):
    liked: int
    total: int


class FeedbackStatsResponse(BaseModel):
    total: int
    by_kind: dict[str, int]
    by_source: dict[str, int] = Field(description='Rows per source; "(none)" for rows without one.')
    likes: LikeCounts
    like_rate: float | None
    agreement: dict[str, AgreementOut] = Field(description="Percent agreement per kind and overall ('all').")
    rating_scale: tuple[float, float] = Field(description="This deployment's (rating_min, rating_max).")
    request_id: str
