"""Durable storage of human feedback (likes, ratings, pairs) for Plaudit, plus its export.

    store = FeedbackStore.open("sqlite:///plaudit-data/feedback.db")   # or postgresql://...
    result = store.add(NewFeedback(kind="like", prompt="...", response="...", liked=True))
    export_jsonl(store, "feedback.jsonl")                              # training's format

The HTTP route and the `plaudit feedback` commands are thin layers over this package.
It never imports training: the export writes the format training reads.

Names are imported on first use, so that building the `plaudit` command line (which
imports service.feedback.cli) does not pay for SQLAlchemy and Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.feedback.errors import (
        AmbiguousComparison,
        FeedbackConflict,
        FeedbackStoreError,
        InvalidFeedback,
        UnknownComparison,
    )
    from service.feedback.export import export_jsonl
    from service.feedback.records import (
        KINDS,
        AddResult,
        FeedbackRow,
        NewFeedback,
        ResolvedChoice,
        ScoredComparison,
    )
    from service.feedback.store import DEFAULT_COMPARISON_RETENTION, FeedbackStore

_HOMES = {
    "AmbiguousComparison": "errors",
    "FeedbackConflict": "errors",
    "FeedbackStoreError": "errors",
    "InvalidFeedback": "errors",
    "UnknownComparison": "errors",
    "export_jsonl": "export",
    "KINDS": "records",
    "AddResult": "records",
    "FeedbackRow": "records",
    "NewFeedback": "records",
    "ResolvedChoice": "records",
    "ScoredComparison": "records",
    "DEFAULT_COMPARISON_RETENTION": "store",
    "FeedbackStore": "store",
}
__all__ = [
    "AddResult",
    "AmbiguousComparison",
    "DEFAULT_COMPARISON_RETENTION",
    "FeedbackConflict",
    "FeedbackRow",
    "FeedbackStore",
    "FeedbackStoreError",
    "InvalidFeedback",
    "KINDS",
    "NewFeedback",
    "ResolvedChoice",
    "ScoredComparison",
    "UnknownComparison",
    "export_jsonl",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'service.feedback' has no attribute {name!r}")
    return getattr(importlib.import_module(f"service.feedback.{home}"), name)
