"""The one interface that both serves requests and runs evaluation.

A scorer turns (prompt, response) pairs into scalar rewards in two steps, so that a
batcher can overlap them: `encode` (tokenize or featurize, CPU-bound, per item) and
`run` (one engine call for a whole batch of encoded items). `score` does both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class TextPair:
    """One item to score: the response is judged in the context of the prompt."""

    prompt: str
    response: str


def invalid_unicode_reason(text: str) -> str | None:
    """Why `text` is not valid Unicode, or None if it is. JSON's "\\ud800" escapes decode to
    lone surrogates, which neither UTF-8 nor any tokenizer takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode: a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start}"
    return None


@dataclass(frozen=True, slots=True)
class Encoded:
    """One item after `Scorer.encode`.

    `n_tokens` is what the batcher sorts and budgets by; `payload` is engine-specific
    (token ids for transformers, a feature vector for the linear model).
    """

    n_tokens: int
    payload: Any = field(repr=False)


class ScoringError(RuntimeError):
    """The engine failed, or returned a result that does not match its input."""


@runtime_checkable
class Scorer(Protocol):
    """A loaded reward model."""

    name: str
    version: str

    def encode(self, pairs: Sequence[TextPair]) -> list[Encoded]: ...

    def run(self, batch: Sequence[Encoded]) -> np.ndarray: ...

    def run_alone(self, batch: Sequence[Encoded]) -> np.ndarray: ...

    def score(self, pairs: Sequence[TextPair]) -> np.ndarray: ...

    def warmup(self) -> None: ...

    def close(self) -> None: ...


WARMUP_PAIR = TextPair("Hello, how are you?", "I am fine, thank you.")


class BaseScorer:
    """Shared behaviour: `score` = `run(encode(...))`, with the output checked."""

    name: str = "unnamed"
    version: str = "0"

    def encode(self, pairs: Sequence[TextPair]) -> list[Encoded]:
        raise NotImplementedError

    def _run(self, batch: Sequence[Encoded]) -> np.ndarray:
        raise NotImplementedError

    def run(self, batch: Sequence[Encoded]) -> np.ndarray:
        return self._checked(batch, self._run)

    def run_alone(self, batch: Sequence[Encoded]) -> np.ndarray:
        """`run` for a call made while no other call runs. Engines that can give such a
        call more threads do; it scores the same as `run`."""
        return self._checked(batch, self._run_alone)

    def _run_alone(self, batch: Sequence[Encoded]) -> np.ndarray:
        return self._run(batch)

    def _checked(self, batch: Sequence[Encoded], run: Callable[[Sequence[Encoded]], np.ndarray]) -> np.ndarray:
        if not batch:
            return np.zeros(0, dtype=np.float32)
        out = np.asarray(run(batch), dtype=np.float32).reshape(-1)
        if out.shape[0] != len(batch):
            raise ScoringError(
                f"engine returned {out.shape[0]} scores for a batch of {len(batch)} items"
            )
        if not np.all(np.isfinite(out)):
            raise ScoringError("engine returned a non-finite score")
        return out

    def score(self, pairs: Sequence[TextPair], batch_size: int = 32) -> np.ndarray:
        """Score many pairs, in length-sorted batches (what the service does too)."""
        encoded = self.encode(pairs)
        order = sorted(range(len(encoded)), key=lambda i: encoded[i].n_tokens)
        out = np.zeros(len(encoded), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.run([encoded[i] for i in idx])
        return out

    def warmup(self) -> None:
        self.score([WARMUP_PAIR])

    def close(self) -> None:
        return None
