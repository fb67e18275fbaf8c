"""Duplicates, contradictions and Krippendorff's alpha, against hand-computed values."""

from __future__ import annotations

import pytest

from training.data.examples import Example, LikeExample, PairExample, RatingExample
from training.data.quality import (
    check_quality,
    find_contradictions,
    find_duplicates,
    krippendorff_alpha,
    measure_agreement,
)


def pair(
    prompt: str, chosen: str, rejected: str, annotator: str | None = None, origin: str = "", margin: float = 0.0
) -> PairExample:
    return PairExample(prompt, chosen, rejected, margin, annotator, origin)


def rating(prompt: str, response: str, value: float, annotator: str | None = None, origin: str = "") -> RatingExample:
    return RatingExample(prompt, response, value, 1.0, 5.0, annotator, origin)


def like(prompt: str, response: str, liked: bool, annotator: str | None = None, origin: str = "") -> LikeExample:
    return LikeExample(prompt, response, liked, annotator, origin)


def test_exact_duplicates_are_grouped_with_whitespace_normalised() -> None:
    examples: list[Example] = [
        pair("Hi?", "Hello!", "Go away.", origin="f:1"),
        pair("Hi? ", "Hello!", "Go  away.", origin="f:2"),
        pair("Hi?", "Hello!", "Go away.", annotator="ana", origin="f:3"),  # another person: not a copy
        pair("Hi?", "Hello!", "Go away.", margin=1.0, origin="f:4"),  # another margin: not a copy
        like("Hi?", "Hello!", True, origin="f:5"),
        like("Hi?", "Hello!", True, origin="f:6"),
        rating("Hi?", "Hello!", 4, origin="f:7"),
    ]
    groups = find_duplicates(examples)
    assert [(g.shape, g.origins) for g in groups] == [("pairs", ["f:1", "f:2"]), ("likes", ["f:5", "f:6"])]


def test_contradictions_by_one_annotator_or_by_unattributed_rows() -> None:
    examples: list[Example] = [
        pair("p", "a", "b", origin="f:1"),
        pair("p", "b", "a", origin="f:2"),  # swapped, both unattributed
        pair("q", "a", "b", annotator="ana", origin="f:3"),
        pair("q", "b", "a", annotator="ben", origin="f:4"),  # swapped by another person: disagreement
        like("p", "r", True, annotator="ana", origin="f:5"),
        like("p", "r", False, annotator="ana", origin="f:6"),
        rating("p", "r", 1, origin="f:7"),
        rating("p", "r", 3, origin="f:8"),  # spread 2 = half of the 1-5 scale
        rating("p", "s", 4, origin="f:9"),
        rating("p", "s", 5, origin="f:10"),  # spread 1: fine
    ]
    found = [(c.shape, c.annotator, c.origins) for c in find_contradictions(examples)]
    assert found == [
        ("pairs", None, ["f:1", "f:2"]),
        ("likes", "ana", ["f:5", "f:6"]),
        ("ratings", None, ["f:7", "f:8"]),
    ]
    details = [c.detail for c in find_contradictions(examples)]
    assert details == [
        "chosen and rejected are swapped between these rows",
        "the response is both liked and disliked",
        "ratings 1 and 3 differ by at least half the scale",
    ]


def test_alpha_on_krippendorffs_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders, 12
    # units, missing values; published nominal alpha 0.743 and interval alpha 0.849.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[v for v in unit if v is not None] for unit in zip(*coders, strict=True)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


def test_alpha_edge_cases() -> None:
    assert krippendorff_alpha([], "nominal") is None
    assert krippendorff_alpha([[1], [2]], "nominal") is None  # nothing pairable
    assert krippendorff_alpha([[1, 1], [1, 1]], "interval") is None  # no variation
    assert krippendorff_alpha([["x", "x"], ["y", "y"]]) == 1.0
    with pytest.raises(ValueError, match="metric"):
        krippendorff_alpha([[1, 2]], "ordinal")  # type: ignore[arg-type]


def test_pair_agreement_uses_the_winner_in_canonical_order() -> None:
    # Three items, each by ana and ben. Labels (0 = the alphabetically first text won):
    # [0, 0], [0, 1], [1, 1]. Coincidences: o00 = 2, o01 = o10 = 1, o11 = 2; n0 = n1 = 3,
    # n = 6. D_o = 2/6, D_e = 2*3*3 / (6*5) = 0.6, alpha = 1 - (1/3)/0.6 = 4/9.
    examples: list[Example] = [
        pair("p1", "a1", "b1", "ana", "f:1"),
        pair("p1", "a1", "b1", "ben", "f:2"),
        pair("p2", "a2", "b2", "ana", "f:3"),
        pair("p2", "b2", "a2", "ben", "f:4"),
        pair("p3", "b3", "a3", "ana", "f:5"),
        pair("p3", "b3", "a3", "ben", "f:6"),
        pair("p4", "a4", "b4", None, "f:7"),  # no annotator: not counted
        pair("p5", "a5", "b5", "ana", "f:8"),  # one annotator only: not counted
    ]
    agreement = measure_agreement(examples)["pairs"]
    assert agreement.alpha == pytest.approx(4 / 9)
    assert (agreement.metric, agreement.items, agreement.annotators, agreement.labels) == ("nominal", 3, 2, 6)
    (item,) = agreement.low_agreement
    assert (item.prompt, item.responses, item.labels, item.origins) == (
        "p2",
        ["a2", "b2"],
        {"ana": 0, "ben": 1},
        ["f:3", "f:4"],
    )


def test_ratings_on_different_scales_are_compared_as_training_sees_them() -> None:
    """A 4 of 1-5 and an 8 of 1-10 say about the same; a 4 of 1-5 and a 4 of 1-10 do not."""
    def on(scale_max: float, value: float, origin: str, annotator: str | None = None) -> RatingExample:
        return RatingExample("p", "r", value, 1.0, scale_max, annotator, origin)

    close = [on(5, 4, "f:1"), on(9, 7, "f:2")]  # both 0.5 on [-1, 1]
    assert find_contradictions(close) == []
    assert [g.origins for g in find_duplicates(close)] == [["f:1", "f:2"]]
    apart = [on(5, 4, "f:3"), on(9, 2, "f:4")]  # 0.5 and -0.75: over half the scale apart
    (found,) = find_contradictions(apart)
    assert found.detail == "ratings 2 (of 1-9) and 4 (of 1-5) differ by at least half the scale"
    assert find_duplicates([on(5, 4, "f:5"), on(9, 4, "f:6")]) == []  # the same number, not the same rating
    # Two people agreeing across scales is agreement, not a low-agreement item.
    agreeing = [on(5, 4, "f:7", "ana"), on(9, 7, "f:8", "ben"), on(5, 2, "f:9", "ana"), on(9, 3, "f:10", "ben")]
    measured = measure_agreement([*agreeing, RatingExample("q", "s", 1, 1.0, 5.0, "ana"), RatingExample("q", "s", 5, 1.0, 5.0, "ben")])
    (low,) = measured["ratings"].low_agreement  # only the 1 against 5 on item q
    assert low.labels == {"ana": 1, "ben": 5}


def test_rating_agreement_is_interval_alpha() -> None:
    # Units [1, 2] and [4, 5]: D_o = (2 + 2) / 4 = 1; D_e = 2 * (1+9+16+4+9+1) / (4*3) = 20/3;
    # alpha = 1 - 3/20 = 0.85.
    examples: list[Example] = [
        rating("p", "r", 1, "ana", "f:1"),
        rating("p", "r", 2, "ben", "f:2"),
        rating("q", "s", 4, "ana", "f:3"),
        rating("q", "s", 5, "ben", "f:4"),
        rating("q", "t", 1, "ana", "f:5"),
        rating("q", "t", 3, "ben", "f:6"),
        rating("q", "t", 5, "ben", "f:7"),  # ben's second rating of the item: only his first counts
    ]
    only_first_two = measure_agreement(examples[:4])["ratings"]
    assert only_first_two.alpha == pytest.approx(0.85)
    assert only_first_two.low_agreement == []
    full = measure_agreement(examples)["ratings"]
    assert full.labels == 6
    (item,) = full.low_agreement  # 1 vs 3: half the scale apart
    assert item.labels == {"ana": 1, "ben": 3}
    assert item.origins == ["f:5", "f:6", "f:7"]


def test_like_agreement_and_report_for_every_shape() -> None:
    examples: list[Example] = [
        like("p", "r", True, "ana", "f:1"),
        like("p", "r", True, "ben", "f:2"),
        like("p", "s", False, "ana", "f:3"),
        like("p", "s", True, "ben", "f:4"),
    ]
    report = check_quality(examples)
    assert set(report.agreement) == {"pairs", "ratings", "likes"}
    assert report.agreement["pairs"].items == 0 and report.agreement["pairs"].alpha is None
    likes = report.agreement["likes"]
    # Units [T, T], [F, T]: D_o = 2/4; counts T=3, F=1: D_e = 2*3 / 12; alpha = 1 - 0.5/0.5 = 0.
    assert likes.alpha == pytest.approx(0.0)
    assert [i.labels for i in likes.low_agreement] == [{"ana": False, "ben": True}]
    assert report.duplicates == [] and report.contradictions == []
