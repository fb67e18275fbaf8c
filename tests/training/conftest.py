"""Fixtures of the training CLI's tests: a real feedback database to give as --data."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.feedback import FeedbackStore, NewFeedback


def make_feedback_db(path: Path) -> str:
    """A SQLite feedback database at `path` holding two pairs, a like and a rating; its URL."""
    url = f"sqlite:///{path}"
    with FeedbackStore.open(url) as store:
        store.add(NewFeedback(kind="pair", prompt="Name a prime.", chosen="Seven.", rejected="Nine."))
        store.add(NewFeedback(kind="pair", prompt="Capital of Peru?", chosen="Lima.", rejected="I'd rather not say."))
        store.add(NewFeedback(kind="like", prompt="Boil an egg?", response="Nine minutes.", liked=True))
        store.add(NewFeedback(kind="rating", prompt="Boil an egg?", response="They cannot be boiled.", rating=1))
    return url


@pytest.fixture
def feedback_db(tmp_path: Path) -> str:
    """A SQLite feedback database holding two pairs, a like and a rating."""
    return make_feedback_db(tmp_path / "feedback" / "fb.db")
