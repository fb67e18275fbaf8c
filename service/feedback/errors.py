"""What the feedback store refuses, each with a message a caller can show as is.

The HTTP layer maps them: InvalidFeedback -> 422, FeedbackConflict -> 409,
UnknownComparison -> 404 (or 422), FeedbackStoreError (setup, connection) -> 500/503.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.feedback.records import FeedbackRow


class FeedbackStoreError(Exception):
    """Base class: the store cannot do what was asked (bad URL, database unreachable, ...)."""


class InvalidFeedback(FeedbackStoreError, ValueError):
    """A judgement that does not have the fields its kind needs; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class FeedbackConflict(FeedbackStoreError):
    """The feedback_id is already stored with a different body (HTTP 409)."""

    def __init__(self, feedback_id: str, existing: FeedbackRow) -> None:
        super().__init__(
            f"feedback_id {feedback_id!r} was already used for different feedback "
            f"(stored {existing.created_at.isoformat()}); send a new feedback_id for new feedback, "
            "or resend the exact same body to retry"
        )
        self.feedback_id = feedback_id
        self.existing = existing


class AmbiguousComparison(FeedbackStoreError, LookupError):
    """A choice names a request_id that two /v1/compare calls with different texts both used."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was used by more than one /v1/compare with different texts, "
            "so a choice on it cannot tell which comparison it means; send the full pair "
            "{prompt, chosen, rejected} instead, and a fresh X-Request-ID with each /v1/compare"
        )
        self.request_id = request_id


class UnknownComparison(FeedbackStoreError, LookupError):
    """A choice names a /v1/compare request_id (and index) that was never stored or has expired."""

    def __init__(self, request_id: str, index: int | None = None, kept_in_list: str | None = None) -> None:
        """`kept_in_list`: the request_id's comparisons list is kept, these items of it ("0-1"),
        but not item `index`."""
        if kept_in_list is not None:
            why = (
                f"request_id {request_id!r} keeps comparisons {kept_in_list} of its list, not {index} "
                "(past the list's end, or it could not be stored)"
            )
        else:
            which = f"request_id {request_id!r}" + ("" if index is None else f" index {index}")
            why = (
                f"unknown or expired {which}: no /v1/compare result with this id is "
                "kept (it was never scored here, or is older than the retention)"
            )
        super().__init__(f"{why}; send the full pair {{prompt, chosen, rejected}} instead")
        self.request_id = request_id
        self.index = index
