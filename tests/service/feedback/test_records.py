"""What a judgement must look like before it is stored, and what counts as the same body."""

from __future__ import annotations

import math

import pytest

from service.feedback.errors import InvalidFeedback
from service.feedback.records import (
    NewFeedback,
    ScoredComparison,
    body_sha256,
    check_feedback_id,
    comparison_values,
    normalize,
)


def like(**overrides: object) -> NewFeedback:
    fields: dict[str, object] = {"kind": "like", "prompt": "Hi?", "response": "Hello!", "liked": True}
    fields.update(overrides)
    return NewFeedback(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        (NewFeedback(kind="vote", prompt="p"), "kind", "'vote' is not one of: like, rating, pair"),
        (like(prompt="  "), "prompt", "expected a non-empty string, got an empty string"),
        (like(response=None), "response", "missing: a like needs prompt, response, liked"),
        (like(liked="yes"), "liked", "expected true or false, got str"),
        (like(chosen="a"), "chosen", "does not belong to a like"),
        (NewFeedback(kind="rating", prompt="p", response="r", rating=6), "rating", "6 is outside the scale 1-5"),
        (NewFeedback(kind="rating", prompt="p", response="r", rating=True), "rating", "expected a number, got bool"),
        (NewFeedback(kind="rating", prompt="p", response="r", rating=math.nan), "rating", "expected a finite number"),
        (
            NewFeedback(kind="rating", prompt="p", response="r", rating=3, rating_min=5, rating_max=1),
            "rating_max",
            "rating_min < rating_max, got 5-1",
        ),
        (NewFeedback(kind="pair", prompt="p", chosen="a  b", rejected="a b"), "rejected", "identical to 'chosen'"),
        (NewFeedback(kind="pair", prompt="p", chosen="a", rejected="b", response="r"), "response", "does not belong"),
        (like(user=""), "user", "expected a non-empty string or null, got an empty string"),
        (like(source="x" * 201), "source", "at most 200 characters"),
        (like(metadata={"t": {1, 2}}), "metadata", "must be plain JSON"),
        (like(metadata=[1]), "metadata", "expected a JSON object, got list"),
    ],
)
def test_bad_feedback_names_the_field(item: NewFeedback, field: str, words: str) -> None:
    with pytest.raises(InvalidFeedback) as caught:
        normalize(item)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_metadata_errors_say_what_is_allowed_without_pythons_words() -> None:
    with pytest.raises(InvalidFeedback) as caught:
        normalize(like(metadata={"score": math.nan}))
    assert caught.value.field == "metadata"
    # Python's own words ("Out of range float values are not JSON compliant") stay out.
    assert caught.value.message == "must be plain JSON: objects, lists, strings, booleans, null and finite numbers"


@pytest.mark.parametrize(("feedback_id", "found"), [("", "an empty string"), ("  ", "an empty string"), (7, "int")])
def test_a_bad_feedback_id_says_what_it_got(feedback_id: object, found: str) -> None:
    with pytest.raises(InvalidFeedback) as caught:
        check_feedback_id(feedback_id)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.message) == ("feedback_id", f"expected a non-empty string, got {found}")


def test_rating_scale_defaults_to_one_to_five() -> None:
    values = normalize(NewFeedback(kind="rating", prompt="p", response="r", rating=4))
    assert (values["rating"], values["rating_min"], values["rating_max"]) == (4.0, 1.0, 5.0)


def test_same_body_same_hash_whatever_the_spelling() -> None:
    short = NewFeedback(kind="rating", prompt="p", response="r", rating=4, metadata={"b": 1, "a": [1, 2]})
    spelled_out = NewFeedback(
        kind="rating", prompt="p", response="r", rating=4.0, rating_min=1, rating_max=5.0,
        metadata={"a": (1, 2), "b": 1}, feedback_id="ignored-by-the-hash",
    )
    assert body_sha256(normalize(short)) == body_sha256(normalize(spelled_out))


@pytest.mark.parametrize("change", [{"liked": False}, {"user": "ann"}, {"metadata": {"k": 1}}, {"response": "Hello"}])
def test_any_body_change_changes_the_hash(change: dict[str, object]) -> None:
    assert body_sha256(normalize(like())) != body_sha256(normalize(like(**change)))


@pytest.mark.parametrize("bad", ["", "   ", "x" * 129, "tab\there"])
def test_feedback_id_must_be_short_printable_text(bad: str) -> None:
    with pytest.raises(InvalidFeedback, match="feedback_id"):
        check_feedback_id(bad)


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        (like(prompt="a\x00b"), "prompt", "contains a NUL character"),
        (like(response="broken \ud800 text"), "response", "unpaired surrogate (\\ud800)"),
        (like(user="ann\x00"), "user", "NUL character"),
        (like(metadata={"notes": ["ok", "bad\x00"]}), "metadata", "NUL character"),
        (like(metadata={"\udfff": 1}), "metadata", "unpaired surrogate"),
    ],
)
def test_text_no_database_can_keep_is_refused(item: NewFeedback, field: str, words: str) -> None:
    with pytest.raises(InvalidFeedback) as caught:
        normalize(item)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_comparisons_are_checked_too() -> None:
    good = ScoredComparison("req-1", "p", "a", "b", 1, -1.5, "rm", "2")
    assert comparison_values(good)["score_a"] == 1.0
    with pytest.raises(InvalidFeedback, match="response_b: contains a NUL character"):
        comparison_values(ScoredComparison("req-1", "p", "a", "b\x00", 0.0, 0.0))
    with pytest.raises(InvalidFeedback, match="request_id: expected at most 200 characters"):
        comparison_values(ScoredComparison("r" * 201, "p", "a", "b", 0.0, 0.0))
