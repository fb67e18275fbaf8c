"""From a POST /v1/feedback body to a committed row: the rules between the edge and the store.

- metadata is bounded (max_feedback_metadata_bytes, as compact UTF-8 JSON): 413 past it;
- a rating is stored on this deployment's scale (rating_min..rating_max);
- a choice {request_id, choice, index?} becomes the pair /v1/compare scored (404 when unknown,
  422 naming index when it does not fit what the request_id scored);
- the model is the one the caller names, else the comparison's, else the one serving now;
- the store's refusals become HTTP errors: invalid 422, feedback_id reused 409; a failing
  database 503 with Retry-After (database_errors_as_503).

The store is synchronous; everything here that touches it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import TYPE_CHECKING

from service.errors import InvalidInput, PayloadTooLarge, ServiceError
from service.feedback_state import comparison_key, database_errors_as_503
from service.limits import check_text_lengths
from service.schemas_feedback import FeedbackRequest
from service.settings import Settings, env_name

if TYPE_CHECKING:
    from service.feedback import AddResult, FeedbackStore, NewFeedback
    from service.feedback.records import FeedbackRow
    from service.model import LoadedModel


class FeedbackIdConflict(ServiceError):
    status_code = 409
    code = "feedback_conflict"


class ComparisonNotFound(ServiceError):
    status_code = 404
    code = "unknown_comparison"


FEEDBACK_TEXT_FIELDS = ("prompt", "response", "chosen", "rejected")


class ComparisonAmbiguous(ServiceError):
    status_code = 409
    code = "ambiguous_comparison"


def check_metadata_size(body: FeedbackRequest, settings: Settings) -> None:
    if body.metadata is None:
        return
    # surrogatepass: a lone surrogate must reach the store's check (a 422 naming it), not crash here.
    size = len(json.dumps(body.metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    limit = settings.max_feedback_metadata_bytes
    if size > limit:
        raise PayloadTooLarge(
            f"metadata is {size} bytes as JSON, over max_feedback_metadata_bytes={limit} "
            f"({env_name('max_feedback_metadata_bytes')}); keep only what training or analysis needs"
        )


async def record_feedback(
    body: FeedbackRequest, store: FeedbackStore, serving: LoadedModel | None, settings: Settings
) -> AddResult:
    """Store `body` once per feedback_id; returns the row (the original one on a replay)."""
    from service.feedback import AmbiguousComparison, FeedbackConflict, InvalidFeedback, UnknownComparison

    check_metadata_size(body, settings)
    check_text_lengths(
        ((name, text) for name in FEEDBACK_TEXT_FIELDS if (text := getattr(body, name)) is not None), settings
    )
    try:
        with database_errors_as_503("feedback not stored"):
            return await asyncio.to_thread(_store, body, store, serving, settings)
    except InvalidFeedback as exc:
        raise InvalidInput(str(exc)) from None
    except FeedbackConflict as exc:
        raise FeedbackIdConflict(str(exc)) from None
    except UnknownComparison as exc:
        raise ComparisonNotFound(str(exc)) from None
    except AmbiguousComparison as exc:
        raise ComparisonAmbiguous(str(exc)) from None


def _store(
    body: FeedbackRequest, store: FeedbackStore, serving: LoadedModel | None, settings: Settings
) -> AddResult:
    from service.feedback import AddResult, FeedbackConflict, InvalidFeedback, UnknownComparison

    try:
        item = _new_feedback(body, store, serving, settings)
    except UnknownComparison:
        # A retried choice whose comparison has expired since: its row still stands, if the
        # retry says what the original said.
        original = store.get(body.feedback_id) if body.feedback_id is not None else None
        if original is None or original.request_id != comparison_key(body.request_id or "", body.index):
            raise
        if not _could_be_the_same_choice(body, original):
            raise FeedbackConflict(original.feedback_id, original) from None
        return AddResult(original, created=False)
    try:
        return store.add(item)
    except InvalidFeedback as exc:
        if body.shape != "choice" or exc.field not in ("prompt", "chosen", "rejected"):
            raise  # the client's own fields (user, metadata...) are named as they are
        # The fields it names (prompt, rejected...) are not the client's but the comparison's.
        raise InvalidFeedback(
            "request_id",
            f"{body.request_id!r} scored a comparison that cannot be stored as a preference pair "
            f"({exc}): a choice between two identical responses, or with no prompt, says nothing "
            "to learn from",
        ) from None
    except FeedbackConflict as conflict:
        # A retry without `model` that arrives after a model swap differs from the original only
        # in the model we filled in; the original's model stands, so it is a replay, not a conflict.
        old = conflict.existing
        model_was_ours = body.model is None and body.shape != "choice"
        if not model_was_ours or (old.model_name, old.model_version) == (item.model_name, item.model_version):
            raise
        return store.add(
            dataclasses.replace(item, model_name=old.model_name, model_version=old.model_version)
        )


def _could_be_the_same_choice(body: FeedbackRequest, original: FeedbackRow) -> bool:
    """Whether a choice whose comparison is gone matches its stored row: the same body, had it
    resolved to the stored texts. Which letter was picked can no longer be told apart."""
    from service.feedback import NewFeedback
    from service.feedback.records import body_sha256, normalize

    resolved = NewFeedback(
        kind="pair",
        prompt=original.prompt,
        chosen=original.chosen,
        rejected=original.rejected,
        request_id=original.request_id,
    )
    retried = _with_body_details(resolved, body, (original.model_name, original.model_version))
    return body_sha256(normalize(retried)) == original.body_sha256


def _new_feedback(
    body: FeedbackRequest, store: FeedbackStore, serving: LoadedModel | None, settings: Settings
) -> NewFeedback:
    from service.feedback import NewFeedback

    shape = body.shape
    model = (serving.name, serving.version) if serving is not None else (None, None)
    if shape == "choice":
        assert body.request_id is not None and body.choice is not None
        key = comparison_key(body.request_id, body.index)
        resolved = store.resolve_choice(body.request_id, body.choice, body.index)
        model = (resolved.model_name, resolved.model_version)  # what the user saw
        item = NewFeedback(
            kind="pair",
            prompt=resolved.prompt,
            chosen=resolved.chosen,
            rejected=resolved.rejected,
            request_id=key,
        )
    else:
        assert body.prompt is not None  # every other shape has one (FeedbackRequest.shape)
        if shape == "like":
            item = NewFeedback(kind="like", prompt=body.prompt, response=body.response, liked=body.liked)
        elif shape == "rating":
            item = NewFeedback(
                kind="rating",
                prompt=body.prompt,
                response=body.response,
                rating=body.rating,
                rating_min=settings.rating_min,
                rating_max=settings.rating_max,
            )
        else:
            item = NewFeedback(kind="pair", prompt=body.prompt, chosen=body.chosen, rejected=body.rejected)
    return _with_body_details(item, body, model)


def _with_body_details(item: NewFeedback, body: FeedbackRequest, model: tuple[str | None, str | None]) -> NewFeedback:
    """`item` with what the body says besides the judgement: who, where, its id, and the model
    judged (the body's own, else `model`)."""
    if body.model is not None:
        model = (body.model.name, body.model.version)
    return dataclasses.replace(
        item,
        user=body.user,
        source=body.source,
        metadata=body.metadata or {},
        feedback_id=body.feedback_id,
        model_name=model[0],
        model_version=model[1],
    )
