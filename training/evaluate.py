"""Evaluate any Scorer (the same code the service runs) on pairs, ratings and likes.

A metric the data cannot define (AUC of likes that are all one value, R² of equal ratings) is
None, never NaN: reports end up in JSON (`--json`, metadata.json), where NaN is not valid.
The report's `warnings` say which metric is undefined and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_store.scoring import Scorer, TextPair
from training.data.examples import Example, LikeExample, PairExample, RatingExample
from training.data.report import all_of

LENGTH_BUCKETS = ((0, 50), (50, 150), (150, 300), (300, None))  # response words


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def pairwise_accuracy(diff: np.ndarray) -> float | None:
    """Share of pairs where chosen scored higher; a tie counts as half right; None without pairs."""
    if diff.size == 0:
        return None
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def expected_calibration_error(p_chosen: np.ndarray, n_bins: int = 10) -> tuple[float, list[dict[str, float]]]:
    """ECE of P(chosen preferred) = sigmoid(r_c - r_r), as a binary classifier.

    Confidence is max(p, 1 - p) and a prediction is right when p > 0.5; bins cover
    confidence [0.5, 1]. Returns the ECE and the per-bin table for a reliability diagram.
    """
    conf = np.maximum(p_chosen, 1.0 - p_chosen)
    correct = (p_chosen > 0.5).astype(np.float64) + 0.5 * (p_chosen == 0.5)
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if not mask.any():
            continue
        acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
        ece += mask.mean() * abs(acc - mean_conf)
        table.append({"lo": float(lo), "hi": float(hi), "n": int(mask.sum()), "accuracy": acc, "confidence": mean_conf})
    return float(ece), table


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mann-Whitney AUC with ties counted half; None (undefined) when only one class is present."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if pos.size == 0 or neg.size == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    values = np.concatenate([pos, neg])[order]
    ranks = np.empty(values.size)
    i = 0
    while i < values.size:  # average ranks over ties
        j = i
        while j + 1 < values.size and values[j + 1] == values[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_of = np.empty(values.size)
    rank_of[order] = ranks
    pos_rank_sum = rank_of[: pos.size].sum()
    return float((pos_rank_sum - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


def _words(text: str) -> int:
    return len(text.split())


def _pair_report(diff: np.ndarray, pairs: Sequence[PairExample]) -> dict[str, Any]:
    p_chosen = sigmoid(diff)
    ece, bins = expected_calibration_error(p_chosen)
    by_length: dict[str, dict[str, float]] = {}
    mean_words = np.array([(_words(p.chosen) + _words(p.rejected)) / 2 for p in pairs])
    for lo, hi in LENGTH_BUCKETS:
        mask = (mean_words >= lo) & ((mean_words < hi) if hi is not None else True)
        if mask.any():
            key = f"{lo}-{hi}" if hi is not None else f"{lo}+"
            by_length[key] = {"n": int(mask.sum()), "accuracy": pairwise_accuracy(diff[mask])}
    chosen_shorter = np.array([len(p.chosen) < len(p.rejected) for p in pairs])
    chosen_longer = np.array([len(p.chosen) > len(p.rejected) for p in pairs])
    bias = {}
    for key, mask in (("chosen_shorter", chosen_shorter), ("chosen_longer", chosen_longer)):
        bias[key] = {"n": int(mask.sum()), "accuracy": pairwise_accuracy(diff[mask]) if mask.any() else None}
    return {
        "n": int(diff.size),
        "accuracy": pairwise_accuracy(diff),
        "ece": ece,
        "mean_margin": float(diff.mean()),
        "accuracy_by_length": by_length,
        "length_bias": bias,
        "reliability": bins,
    }


def evaluate(scorer: Scorer, examples: Sequence[Example], plots_dir: Path | None = None) -> dict[str, Any]:
    """Score every text once through `scorer` and compute the metrics of each shape present."""
    pairs = [e for e in examples if isinstance(e, PairExample)]
    ratings = [e for e in examples if isinstance(e, RatingExample)]
    likes = [e for e in examples if isinstance(e, LikeExample)]
    texts = [TextPair(p.prompt, p.chosen) for p in pairs] + [TextPair(p.prompt, p.rejected) for p in pairs]
    texts += [TextPair(e.prompt, e.response) for e in [*ratings, *likes]]
    scores = scorer.score(texts) if texts else np.zeros(0, dtype=np.float32)
    n_p, n_r = len(pairs), len(ratings)
    report: dict[str, Any] = {"model": {"name": scorer.name, "version": scorer.version}, "n_examples": len(examples)}
    warnings: list[str] = []
    if pairs:
        chosen, rejected = scores[:n_p].astype(np.float64), scores[n_p : 2 * n_p].astype(np.float64)
        report["pairs"] = _pair_report(chosen - rejected, pairs)
        if plots_dir is not None:
            from training.plots import save_pair_plots

            report["plots"] = save_pair_plots(chosen, rejected, report["pairs"]["reliability"], plots_dir)
    if ratings:
        r = scores[2 * n_p : 2 * n_p + n_r].astype(np.float64)
        half = np.array([(e.scale_max - e.scale_min) / 2 for e in ratings])
        pred = (r + 1.0) * half + np.array([e.scale_min for e in ratings])
        true = np.array([e.rating for e in ratings], dtype=np.float64)
        err = pred - true
        var = float(((true - true.mean()) ** 2).sum())
        # Equal ratings leave no variance to explain: R² is undefined. Test the spread, not
        # `var > 0`: the mean of equal floats is not always exact (3.3 x 7 gives var ~1e-30).
        constant = n_r == 0 or float(np.ptp(true)) == 0.0
        report["ratings"] = {
            "n": n_r,
            "mse": float((err**2).mean()),
            "mae": float(np.abs(err).mean()),
            "r2": None if constant else float(1.0 - (err**2).sum() / var),
        }
        if constant:
            warnings.append(
                f"ratings R² is undefined: {all_of(n_r, 'rating')} {true[0]:g}, "
                "so there is no variance to explain (it needs ratings that differ)"
            )
    if likes:
        s = scores[2 * n_p + n_r :].astype(np.float64)
        y = np.array([1 if e.liked else 0 for e in likes])
        report["likes"] = {
            "n": len(likes),
            "auc": roc_auc(s, y),
            "accuracy": float(np.mean((s > 0) == (y == 1))),
            "like_rate": float(y.mean()),
        }
        if report["likes"]["auc"] is None:
            warnings.append(
                f"likes AUC is undefined: {all_of(len(likes), 'like')} liked={str(bool(y[0])).lower()} "
                "(it needs likes of both values)"
            )
    if warnings:
        report["warnings"] = warnings
    return report


def headline(report: dict[str, Any]) -> dict[str, float | None]:
    """The few numbers worth a column in `plaudit models list` (None where undefined)."""
    out: dict[str, float | None] = {}
    if "pairs" in report:
        out["pairwise_accuracy"] = report["pairs"]["accuracy"]
        out["ece"] = report["pairs"]["ece"]
    if "likes" in report:
        out["like_auc"] = report["likes"]["auc"]
    if "ratings" in report:
        out["rating_mae"] = report["ratings"]["mae"]
    return out
