"""The interpretable linear reward model: reward = features(prompt, response) @ w + b.

Features come from `model_store.features.Featurizer` (the same code the service runs).
Training is one full-batch L-BFGS fit of a convex objective from zero weights, so it is
deterministic and takes seconds; the L2 strength is picked on the validation split from
a small grid. All three shapes of feedback train at once: the objective is the sum of
the per-shape mean losses from training/losses.py, plus L2 on the weights (not the bias).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from model_store.features import HAND_FEATURES, Featurizer
from model_store.fileio import atomic_write_bytes, atomic_write_json
from model_store.scoring import TextPair
from training.data.examples import Example, LikeExample, PairExample, RatingExample, scored_texts
from training.losses import bradley_terry_loss, like_loss, rating_loss

DEFAULT_L2_GRID: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
ONNX_OPSET = 17
# IR version 8 is the one that shipped with opset 17; older runtimes refuse newer IRs.
ONNX_IR_VERSION = 8


@dataclass(frozen=True)
class LinearModel:
    """A trained linear reward model; `score` is what the exported ONNX graph computes."""

    featurizer: Featurizer
    weights: np.ndarray  # float32 [F], aligned with featurizer.feature_names
    bias: float
    l2: float
    hand_l2_factor: float = 1.0  # how many times l2 a hand-feature weight paid
    metrics: dict[str, float] = field(default_factory=dict)
    l2_search: list[dict[str, float]] = field(default_factory=list)

    def score(self, pairs: Sequence[TextPair]) -> np.ndarray:
        features = self.featurizer.transform(pairs)
        return features @ self.weights + np.float32(self.bias)


@dataclass
class _Design:
    """Featurized examples, grouped by shape, as float64 tensors."""

    pair_diff: torch.Tensor  # features(chosen) - features(rejected)
    pair_margin: torch.Tensor
    rating_x: torch.Tensor
    rating_target: torch.Tensor
    like_x: torch.Tensor
    like_target: torch.Tensor

    @property
    def n_features(self) -> int:
        return int(self.pair_diff.shape[1])


def _design(featurizer: Featurizer, examples: Sequence[Example]) -> _Design:
    pairs = [ex for ex in examples if isinstance(ex, PairExample)]
    ratings = [ex for ex in examples if isinstance(ex, RatingExample)]
    likes = [ex for ex in examples if isinstance(ex, LikeExample)]
    unknown = len(examples) - len(pairs) - len(ratings) - len(likes)
    if unknown:
        raise TypeError(f"{unknown} examples are not PairExample, RatingExample or LikeExample")

    def feats(items: list[TextPair]) -> torch.Tensor:
        return torch.from_numpy(featurizer.transform(items).astype(np.float64))

    def vec(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64)

    return _Design(
        pair_diff=feats([TextPair(ex.prompt, ex.chosen) for ex in pairs])
        - feats([TextPair(ex.prompt, ex.rejected) for ex in pairs]),
        pair_margin=vec([ex.margin for ex in pairs]),
        rating_x=feats([TextPair(ex.prompt, ex.response) for ex in ratings]),
        rating_target=vec([ex.normalized for ex in ratings]),
        like_x=feats([TextPair(ex.prompt, ex.response) for ex in likes]),
        like_target=vec([1.0 if ex.liked else 0.0 for ex in likes]),
    )


def _data_loss(d: _Design, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum of the per-shape mean losses, over the shapes present."""
    total = torch.zeros((), dtype=torch.float64)
    if len(d.pair_diff):
        # r_chosen - r_rejected = (x_chosen - x_rejected) @ w: the bias cancels, and one
        # matrix product on the precomputed difference halves the cost of each step.
        r_diff = d.pair_diff @ w
        total = total + bradley_terry_loss(r_diff, torch.zeros_like(r_diff), d.pair_margin)
    if len(d.rating_x):
        total = total + rating_loss(d.rating_x @ w + b, d.rating_target)
    if len(d.like_x):
        total = total + like_loss(d.like_x @ w + b, d.like_target)
    return total


def _pair_accuracy(d: _Design, w: np.ndarray) -> float | None:
    """Share of pairs where chosen out-scores rejected; a tie counts as half."""
    if not len(d.pair_diff):
        return None
    diff = d.pair_diff.numpy() @ w
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def _hand_factor(featurizer: Featurizer, hand_l2_factor: float | None) -> float:
    """How many times the L2 strength a hand-feature weight pays.

    A hand feature is dense and standardised (mean square 1), while a TF-IDF column is
    mostly zero (rows have unit norm, so a column's mean square is about 1/n_terms).
    Under one L2 strength the dense features would soak up the fit (and on HH they
    generalise worse), so by default their weights pay n_terms times more: in effect
    every column is regularised on the same scale.
    """
    if hand_l2_factor is not None:
        return float(hand_l2_factor)
    return float(max(1, featurizer.n_features - len(HAND_FEATURES)))


def _fit(
    d: _Design,
    l2: torch.Tensor,
    max_iter: int,
    start: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise data loss + sum(l2 * w^2) by full-batch L-BFGS, from `start` or from zero."""
    if start is None:
        w = torch.zeros(d.n_features, dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    else:
        w = start[0].clone().requires_grad_(True)
        b = start[1].clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _data_loss(d, w, b) + (l2 * w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


def train_linear(
    train: Sequence[Example],
    val: Sequence[Example],
    *,
    max_terms: int = 2000,
    l2: float | Sequence[float] = DEFAULT_L2_GRID,
    hand_l2_factor: float | None = None,
    max_iter: int = 200,
    seed: int = 0,
) -> LinearModel:
    """Fit the featurizer on `train`, then the weights; choose `l2` on `val` if it is a grid.

    With several `l2` values and a non-empty `val`, the one with the lowest validation
    loss wins (ties go to the stronger penalty); without `val` the grid's median is used.
    Hand-feature weights pay `hand_l2_factor` times the L2 of a TF-IDF weight (default:
    the vocabulary size; see `_hand_factor`). `max_iter` bounds the L-BFGS iterations
    of each fit. `seed` is accepted so that all trainers share a signature, but nothing
    here is random: the objective is convex, the batch is full and the start is zero,
    so every seed gives the same model.
    """
    if not train:
        raise ValueError("train_linear needs at least one training example")
    grid = [float(l2)] if isinstance(l2, (int, float)) else [float(x) for x in l2]
    if not grid or any(x < 0 for x in grid):
        raise ValueError(f"l2 must be one value >= 0 or a non-empty grid of them, got {l2!r}")
    if hand_l2_factor is not None and hand_l2_factor < 0:
        raise ValueError(f"hand_l2_factor must be >= 0, got {hand_l2_factor}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not val:
        grid = [sorted(grid)[len(grid) // 2]]

    featurizer = Featurizer.fit(scored_texts(train), max_terms=max_terms)
    d_train = _design(featurizer, train)
    d_val = _design(featurizer, val) if val else None
    hand_factor = _hand_factor(featurizer, hand_l2_factor)
    penalty = torch.ones(featurizer.n_features, dtype=torch.float64)
    penalty[: len(HAND_FEATURES)] = hand_factor

    search: list[dict[str, float]] = []
    best: tuple[float, float, torch.Tensor, torch.Tensor] | None = None
    start: tuple[torch.Tensor, torch.Tensor] | None = None
    # Strongest penalty first: a tie in validation loss keeps the simpler model, and each
    # fit starts from the previous (more regularised) solution, which is close to it.
    for strength in sorted(grid, reverse=True):
        w, b = _fit(d_train, strength * penalty, max_iter, start)
        start = (w, b)
        row: dict[str, float] = {
            "l2": strength,
            "train_loss": float(_data_loss(d_train, w, b)),
        }
        if d_val is not None:
            row["val_loss"] = float(_data_loss(d_val, w, b))
            acc = _pair_accuracy(d_val, w.numpy())
            if acc is not None:
                row["val_pair_accuracy"] = acc
        search.append(row)
        key = row.get("val_loss", row["train_loss"])
        if best is None or key < best[0]:
            best = (key, strength, w, b)
    assert best is not None
    _, chosen_l2, w, b = best

    weights = w.numpy().astype(np.float32)
    metrics: dict[str, float] = {"train_loss": float(_data_loss(d_train, w, b))}
    if (acc := _pair_accuracy(d_train, w.numpy())) is not None:
        metrics["train_pair_accuracy"] = acc
    if d_val is not None:
        metrics["val_loss"] = float(_data_loss(d_val, w, b))
        if (acc := _pair_accuracy(d_val, w.numpy())) is not None:
            metrics["val_pair_accuracy"] = acc
    return LinearModel(
        featurizer=featurizer,
        weights=weights,
        bias=float(b),
        l2=chosen_l2,
        hand_l2_factor=hand_factor,
        metrics=metrics,
        l2_search=search,
    )


def pair_accuracy(model: LinearModel, pairs: Sequence[PairExample]) -> float:
    """Share of pairs the model ranks as the annotator did (ties count half)."""
    if not pairs:
        raise ValueError("pair_accuracy needs at least one pair")
    chosen = model.score([TextPair(p.prompt, p.chosen) for p in pairs])
    rejected = model.score([TextPair(p.prompt, p.rejected) for p in pairs])
    diff = chosen - rejected
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


# -- export ---------------------------------------------------------------------------


def linear_onnx_model(model: LinearModel) -> onnx.ModelProto:
    """features float32 [N, F] -> scores float32 [N] = features @ w + b."""
    n_features = model.featurizer.n_features
    if model.weights.shape != (n_features,):
        raise ValueError(
            f"model has {model.weights.shape} weights but its featurizer makes {n_features} features"
        )
    weights = numpy_helper.from_array(model.weights.astype(np.float32), name="weights")
    bias = numpy_helper.from_array(np.asarray(model.bias, dtype=np.float32), name="bias")
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["features", "weights"], ["raw_scores"]),
            helper.make_node("Add", ["raw_scores", "bias"], ["scores"]),
        ],
        name="plaudit_linear_reward",
        inputs=[helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n_features])],
        outputs=[helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N"])],
        initializer=[weights, bias],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="plaudit.training.linear",
    )
    proto.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_linear(model: LinearModel, out_dir: Path) -> None:
    """Write out_dir/model.onnx and out_dir/featurizer.json (what LinearOnnxScorer loads)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "model.onnx", linear_onnx_model(model).SerializeToString())
    atomic_write_json(out_dir / "featurizer.json", model.featurizer.to_config())


# -- explanation ----------------------------------------------------------------------


def weights_table(model: LinearModel) -> list[dict[str, float | str]]:
    """Every feature with its weight, largest magnitude first (ties by name)."""
    rows = zip(model.featurizer.feature_names, model.weights.tolist(), strict=True)
    return [
        {"name": name, "weight": float(weight)}
        for name, weight in sorted(rows, key=lambda r: (-abs(r[1]), r[0]))
    ]


def explain(model: LinearModel, top: int = 15) -> str:
    """A plain-text account of what the model rewards and penalises."""
    n_hand = len(HAND_FEATURES)
    table = weights_table(model)
    hand = [r for r in table if r["name"] in HAND_FEATURES]
    terms = [r for r in table if r["name"] not in HAND_FEATURES]
    up = [r for r in terms if float(r["weight"]) > 0][:top]
    down = [r for r in terms if float(r["weight"]) < 0][:top]
    width = max((len(str(r["name"])) for r in hand + up + down), default=10)

    def lines(rows: list[dict[str, float | str]]) -> list[str]:
        if not rows:
            return ["  (none)"]
        return [f"  {str(r['name']):<{width}}  {float(r['weight']):+.3f}" for r in rows]

    header = [
        f"Linear reward model: {len(table)} features ({n_hand} hand-written, "
        f"{len(terms)} TF-IDF terms), L2 {model.l2:g}, bias {model.bias:+.3f}.",
    ]
    if model.hand_l2_factor != 1.0:
        header.append(
            f"Hand-written weights paid {model.hand_l2_factor:g}x the L2 of a term weight, "
            "so they carry only what the words do not."
        )
    if "val_pair_accuracy" in model.metrics:
        header.append(f"Validation pair accuracy: {model.metrics['val_pair_accuracy']:.3f}.")
    return "\n".join(
        header
        + ["", "Hand-written features (weight per standard deviation of the feature):"]
        + lines(hand)
        + ["", f"Response terms that raise the reward (top {top}):"]
        + lines(up)
        + ["", f"Response terms that lower the reward (top {top}):"]
        + lines(down)
    )

