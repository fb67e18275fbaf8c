"""Examples -> tensors, with chosen and rejected in ONE forward pass.

Rows of a batch are laid out as
    [chosen_1..chosen_P, rejected_1..rejected_P, rated_1..rated_R, liked_1..liked_L]
so the trainer slices the reward vector by position. Padding is to the longest row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model_store.tokenization import PairTokenizer, TokenizedPair, pad_batch
from training.data.examples import Example, LikeExample, PairExample, RatingExample, scored_texts


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    """An example whose texts are already tokenized (done once, before the epochs)."""

    kind: str  # "pair" | "rating" | "like"
    rows: tuple[TokenizedPair, ...]  # 2 rows for a pair (chosen, rejected), else 1
    target: float  # margin for pairs, normalized rating, 1.0/0.0 for likes

    @property
    def length(self) -> int:
        return max(len(r) for r in self.rows)


def tokenize_examples(examples: Sequence[Example], tokenizer: PairTokenizer) -> list[TokenizedExample]:
    encoded = iter(tokenizer.encode(scored_texts(examples)))
    out: list[TokenizedExample] = []
    for ex in examples:
        if isinstance(ex, PairExample):
            out.append(TokenizedExample("pair", (next(encoded), next(encoded)), float(ex.margin)))
        elif isinstance(ex, RatingExample):
            out.append(TokenizedExample("rating", (next(encoded),), float(ex.normalized)))
        elif isinstance(ex, LikeExample):
            out.append(TokenizedExample("like", (next(encoded),), 1.0 if ex.liked else 0.0))
        else:  # pragma: no cover - the loaders only produce the three shapes
            raise TypeError(f"unknown example type {type(ex).__name__}")
    return out


@dataclass(frozen=True)
class RewardBatch:
    inputs: dict[str, torch.Tensor]
    n_pairs: int
    margins: torch.Tensor  # [P]
    rating_targets: torch.Tensor  # [R]
    like_labels: torch.Tensor  # [L]

    @property
    def n_ratings(self) -> int:
        return int(self.rating_targets.shape[0])

    @property
    def n_likes(self) -> int:
        return int(self.like_labels.shape[0])


def collate(batch: Sequence[TokenizedExample], pad_id: int = 0) -> RewardBatch:
    pairs = [b for b in batch if b.kind == "pair"]
    ratings = [b for b in batch if b.kind == "rating"]
    likes = [b for b in batch if b.kind == "like"]
    rows = (
        [p.rows[0] for p in pairs]
        + [p.rows[1] for p in pairs]
        + [r.rows[0] for r in ratings]
        + [lk.rows[0] for lk in likes]
    )
    arrays = pad_batch(rows, pad_id=pad_id)
    return RewardBatch(
        inputs={k: torch.from_numpy(v) for k, v in arrays.items()},
        n_pairs=len(pairs),
        margins=torch.tensor([p.target for p in pairs], dtype=torch.float32),
        rating_targets=torch.tensor([r.target for r in ratings], dtype=torch.float32),
        like_labels=torch.tensor([lk.target for lk in likes], dtype=torch.float32),
    )


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, megabatch: int = 32
) -> list[list[int]]:
    """Indices in batches of similar length (less padding), in a seeded random order.

    Shuffle, cut into megabatches of `megabatch * batch_size`, sort each by length, split
    into batches, then shuffle the batches so an epoch does not run short-to-long.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    size = batch_size * megabatch
    batches: list[list[int]] = []
    for start in range(0, len(order), size):
        chunk = sorted(order[start : start + size].tolist(), key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]
