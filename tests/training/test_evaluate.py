"""Rating metrics from `evaluate`, through a real selectable engine (the deterministic scorer)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from model_store.engines.deterministic import DeterministicScorer
from model_store.scoring import TextPair
from training.data.examples import LikeExample, RatingExample
from training.evaluate import evaluate, headline, pairwise_accuracy, roc_auc

RESPONSES = ["yes", "no thanks", "a longer reply here", "ok", "maybe later on", "sure thing", "never"]


def test_ratings_metrics_equal_a_hand_computation() -> None:
    scorer = DeterministicScorer()
    ratings = [RatingExample("p", r, rating=float(k % 5 + 1)) for k, r in enumerate(RESPONSES)]
    report = evaluate(scorer, ratings)["ratings"]
    raw = scorer.score([TextPair("p", r) for r in RESPONSES]).astype(np.float64)
    predicted = (raw + 1.0) * 2.0 + 1.0  # [-1, 1] back onto the 1-5 scale
    true = np.array([e.rating for e in ratings])
    sse, sst = ((predicted - true) ** 2).sum(), ((true - true.mean()) ** 2).sum()
    assert report["mse"] == pytest.approx(sse / len(true))
    assert report["mae"] == pytest.approx(np.abs(predicted - true).mean())
    assert report["r2"] == pytest.approx(1.0 - sse / sst)


def test_r2_of_equal_ratings_is_undefined_not_a_huge_negative_number() -> None:
    # 3.3 seven times: the float mean is not exactly 3.3, so a `variance > 0` test passed
    # and R² came out near -5e28.
    ratings = [RatingExample("p", r, rating=3.3) for r in RESPONSES]
    full = evaluate(DeterministicScorer(), ratings)
    report = full["ratings"]
    assert report["r2"] is None  # undefined: None (null in JSON), not NaN
    assert math.isfinite(report["mse"]) and math.isfinite(report["mae"])
    assert full["warnings"] == [
        "ratings R² is undefined: all 7 ratings are 3.3, so there is no variance to explain (it needs ratings that differ)"
    ]
    json.dumps(full, allow_nan=False)  # standard JSON


def test_auc_of_likes_all_of_one_value_is_undefined_and_the_report_says_why() -> None:
    likes = [LikeExample("p", r, liked=True) for r in RESPONSES]
    report = evaluate(DeterministicScorer(), likes)
    assert report["likes"]["auc"] is None and report["likes"]["like_rate"] == 1.0
    assert report["warnings"] == ["likes AUC is undefined: all 7 likes are liked=true (it needs likes of both values)"]
    assert headline(report) == {"like_auc": None}
    json.dumps(report, allow_nan=False)


def test_a_report_whose_metrics_are_all_defined_has_no_warnings() -> None:
    likes = [LikeExample("p", r, liked=k % 2 == 0) for k, r in enumerate(RESPONSES)]
    ratings = [RatingExample("p", r, rating=float(k % 5 + 1)) for k, r in enumerate(RESPONSES)]
    report = evaluate(DeterministicScorer(), [*likes, *ratings])
    assert "warnings" not in report
    assert isinstance(report["likes"]["auc"], float) and isinstance(report["ratings"]["r2"], float)


def test_pairwise_accuracy_and_auc_of_nothing_are_none() -> None:
    assert pairwise_accuracy(np.zeros(0)) is None
    assert roc_auc(np.array([0.1, 0.2]), np.array([0, 0])) is None
    assert roc_auc(np.array([0.1, 0.2]), np.array([0, 1])) == 1.0
