"""Rating metrics from `evaluate`, through a real selectable engine (the deterministic scorer)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_store.engines.deterministic import DeterministicScorer
from model_store.scoring import TextPair
from training.data.examples import RatingExample
from training.evaluate import evaluate

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
    report = evaluate(DeterministicScorer(), ratings)["ratings"]
    assert math.isnan(report["r2"])
    assert math.isfinite(report["mse"]) and math.isfinite(report["mae"])
