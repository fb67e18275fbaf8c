"""The feedback store's values: what goes in, what comes out, and how a body is checked.

Plain frozen dataclasses, so the HTTP layer (pydantic at the edge) and the CLI share one
vocabulary without the store depending on either. `normalize` is the single place that
decides whether a judgement is well formed: everything it accepts can be exported and
loaded by training (non-empty texts, a rating inside its scale, two different replies).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from service.feedback.errors import InvalidFeedback

Kind = Literal["like", "rating", "pair"]
KINDS: tuple[Kind, ...] = ("like", "rating", "pair")
DEFAULT_RATING_SCALE = (1.0, 5.0)
MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 200

# The fields that make up a body: everything the client sent except its idempotency key.
BODY_FIELDS = (
    "kind",
    "prompt",
    "response",
    "liked",
    "rating",
    "rating_min",
    "rating_max",
    "chosen",
    "rejected",
    "user",
    "source",
    "metadata",
    "model_name",
    "model_version",
    "request_id",
)
_FIELDS_OF_KIND: dict[str, frozenset[str]] = {
    "like": frozenset({"response", "liked"}),
    "rating": frozenset({"response", "rating", "rating_min", "rating_max"}),
    "pair": frozenset({"chosen", "rejected"}),
}
_LABELS = ("user", "source", "model_name", "model_version", "request_id")


@dataclass(frozen=True, slots=True)
class NewFeedback:
    """One judgement to store. Which fields are needed depends on `kind`:

    like {prompt, response, liked}; rating {prompt, response, rating, optional
    rating_min/rating_max (default 1-5)}; pair {prompt, chosen, rejected}.
    `feedback_id` is the client's idempotency key; None makes the store generate one.
    """

    kind: str
    prompt: str
    response: str | None = None
    liked: bool | None = None
    rating: float | None = None
    rating_min: float | None = None
    rating_max: float | None = None
    chosen: str | None = None
    rejected: str | None = None
    user: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    model_name: str | None = None
    model_version: str | None = None
    request_id: str | None = None
    feedback_id: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One stored judgement, as read back (created_at is timezone-aware UTC)."""

    id: int
    feedback_id: str
    body_sha256: str
    kind: str
    prompt: str
    response: str | None
    liked: bool | None
    rating: float | None
    rating_min: float | None
    rating_max: float | None
    chosen: str | None
    rejected: str | None
    user: str | None
    source: str | None
    metadata: dict[str, Any]
    model_name: str | None
    model_version: str | None
    request_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AddResult:
    """`created` is False when the same feedback_id and body were already stored: `row` is then
    the original row, and nothing new was written."""

    row: FeedbackRow
    created: bool


@dataclass(frozen=True, slots=True)
class ScoredComparison:
    """What /v1/compare scored, remembered so a later {request_id, choice} can be resolved."""

    request_id: str
    prompt: str
    response_a: str
    response_b: str
    score_a: float
    score_b: float
    model_name: str | None = None
    model_version: str | None = None


class ResolvedChoice(NamedTuple):
    """A choice between the two replies of a remembered comparison, as a pair."""

    prompt: str
    chosen: str
    rejected: str
    model_name: str | None
    model_version: str | None


def normalize(item: NewFeedback) -> dict[str, Any]:
    """The body's column values, checked; raises InvalidFeedback naming the first bad field."""
    kind = item.kind
    if kind not in KINDS:
        raise InvalidFeedback("kind", f"{kind!r} is not one of: {', '.join(KINDS)}")
    values: dict[str, Any] = {name: None for name in BODY_FIELDS}
    values["kind"] = kind
    values["prompt"] = _text("prompt", item.prompt)
    shaped = ("response", "liked", "rating", "rating_min", "rating_max", "chosen", "rejected")
    stray = [name for name in shaped if getattr(item, name) is not None and name not in _FIELDS_OF_KIND[kind]]
    if stray:
        raise InvalidFeedback(stray[0], f"does not belong to a {kind}; a {kind} has {_shape(kind)}")
    if kind in ("like", "rating"):
        values["response"] = _text("response", item.response, kind)
    if kind == "like":
        if not isinstance(item.liked, bool):
            raise InvalidFeedback("liked", f"expected true or false, got {_type_name(item.liked)}")
        values["liked"] = item.liked
    elif kind == "rating":
        values.update(_rating(item))
    else:
        chosen = _text("chosen", item.chosen, kind)
        rejected = _text("rejected", item.rejected, kind)
        if " ".join(chosen.split()) == " ".join(rejected.split()):
            raise InvalidFeedback("rejected", "is identical to 'chosen': a pair needs two different responses")
        values["chosen"], values["rejected"] = chosen, rejected
    for name in _LABELS:
        values[name] = _label(name, getattr(item, name))
    values["metadata"] = _metadata(item.metadata)
    return values


# One of a /v1/compare `comparisons` list is remembered as <request_id>#<index>.
LIST_KEY_SEPARATOR = "#"


def comparison_key(request_id: str, index: int | None) -> str:
    """The id a comparison is remembered under: the request id for a single comparison,
    `<request_id>#<index>` for one of a `comparisons` list. Internal: callers name the
    request id and the index, never this key."""
    return request_id if index is None else f"{request_id}{LIST_KEY_SEPARATOR}{index}"


def list_index(key: str, request_id: str) -> int | None:
    """The index in `request_id`'s `comparisons` list that `key` is remembered under, or None
    when `key` is not the key of one (see comparison_key)."""
    prefix = request_id + LIST_KEY_SEPARATOR
    suffix = key[len(prefix):]
    if not key.startswith(prefix) or not (suffix.isascii() and suffix.isdigit()) or str(int(suffix)) != suffix:
        return None
    return int(suffix)


def comparison_values(comparison: ScoredComparison) -> dict[str, Any]:
    """The scored_comparisons column values (without created_at), checked."""
    request_id = _label("request_id", comparison.request_id)
    if request_id is None:
        raise InvalidFeedback("request_id", "expected a non-empty string, got null")
    return {
        "request_id": request_id,
        "prompt": storable_text("prompt", comparison.prompt),
        "response_a": storable_text("response_a", comparison.response_a),
        "response_b": storable_text("response_b", comparison.response_b),
        "score_a": _number("score_a", comparison.score_a),
        "score_b": _number("score_b", comparison.score_b),
        "model_name": _label("model_name", comparison.model_name),
        "model_version": _label("model_version", comparison.model_version),
    }


def check_feedback_id(feedback_id: str) -> str:
    if not isinstance(feedback_id, str):
        raise InvalidFeedback("feedback_id", f"expected a non-empty string, got {_type_name(feedback_id)}")
    if not feedback_id.strip():
        raise InvalidFeedback("feedback_id", "expected a non-empty string, got an empty string")
    return check_printable_id("feedback_id", feedback_id, MAX_ID_CHARS)


def check_printable_id(name: str, value: str, max_chars: int) -> str:
    """An id as stored and looked up: at most `max_chars`, all printable (a lone surrogate,
    which no database driver can send, is not)."""
    if len(value) > max_chars or not value.isprintable():
        raise InvalidFeedback(name, f"expected at most {max_chars} printable characters")
    return value


def body_sha256(values: dict[str, Any]) -> str:
    """Hash of the canonical JSON of a normalized body (sorted keys, floats for numbers)."""
    body = {name: values[name] for name in BODY_FIELDS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _rating(item: NewFeedback) -> dict[str, float]:
    rating = _number("rating", item.rating)
    low = DEFAULT_RATING_SCALE[0] if item.rating_min is None else _number("rating_min", item.rating_min)
    high = DEFAULT_RATING_SCALE[1] if item.rating_max is None else _number("rating_max", item.rating_max)
    if not low < high:
        raise InvalidFeedback("rating_max", f"the scale needs rating_min < rating_max, got {low:g}-{high:g}")
    if not low <= rating <= high:
        raise InvalidFeedback("rating", f"{rating:g} is outside the scale {low:g}-{high:g}")
    return {"rating": rating, "rating_min": low, "rating_max": high}


def _text(name: str, value: object, kind: str | None = None) -> str:
    if value is None and kind is not None:
        raise InvalidFeedback(name, f"missing: a {kind} needs {_shape(kind)}")
    if not isinstance(value, str) or not value.strip():
        found = "an empty string" if isinstance(value, str) else _type_name(value)
        raise InvalidFeedback(name, f"expected a non-empty string, got {found}")
    return storable_text(name, value)


def storable_text(name: str, value: str) -> str:
    """`value`, if every database can keep it: PostgreSQL refuses NUL characters, and no
    driver can encode an unpaired surrogate (which JSON's \\ud800 escapes can produce)."""
    if "\x00" in value:
        raise InvalidFeedback(name, "contains a NUL character (\\u0000), which cannot be stored; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidFeedback(
            name, f"contains an unpaired surrogate (\\u{ord(value[exc.start]):04x}), which is not valid Unicode text"
        ) from None
    return value


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFeedback(name, f"expected a number, got {_type_name(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidFeedback(name, f"expected a finite number, got {number}")
    return number


def _label(name: str, value: object) -> str | None:
    # Empty labels are refused rather than stored: training reads an empty annotator as an error.
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        found = "an empty string" if isinstance(value, str) else _type_name(value)
        raise InvalidFeedback(name, f"expected a non-empty string or null, got {found}")
    if len(value) > MAX_LABEL_CHARS:
        raise InvalidFeedback(name, f"expected at most {MAX_LABEL_CHARS} characters, got {len(value)}")
    return storable_text(name, value)


def _metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidFeedback("metadata", f"expected a JSON object, got {_type_name(value)}")
    try:
        # A round trip gives exactly what the database will hand back (tuples -> lists, ...).
        loaded: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise InvalidFeedback(
            "metadata", "must be plain JSON: objects, lists, strings, booleans, null and finite numbers"
        ) from None
    for text in _strings(loaded):
        storable_text("metadata", text)
    return loaded


def _strings(value: object) -> Iterator[str]:
    """Every key and string value inside a JSON document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _shape(kind: str) -> str:
    return {
        "like": "prompt, response, liked",
        "rating": "prompt, response, rating (and optional rating_min, rating_max)",
        "pair": "prompt, chosen, rejected",
    }[kind]


def _type_name(value: object) -> str:
    names = {type(None): "null", bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)
