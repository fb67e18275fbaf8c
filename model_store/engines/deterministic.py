"""Two real, selectable engines with no weights, for running the service without a model.

`DeterministicScorer` scores a pair with a fixed formula of its words (length, overlap
with the prompt, a few keyword weights), so every process, batch size and batch order
gives the same score for the same text. `FailingScorer` tokenizes and warms up but fails
every batch, to exercise the service's error paths.

Both accept options that a test or a demo can set from the outside (service setting
`engine_options`): `delay_s` sleeps in every batch (a slow engine) and `warmup_delay_s`
sleeps in warmup (a slow model load).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_store.engines import TEST_ENGINES
from model_store.scoring import BaseScorer, Encoded, ScoringError, TextPair

# Added to the whitespace word count, as a tokenizer adds [CLS] and two [SEP].
SPECIAL_TOKENS = 3
DEFAULT_MAX_LENGTH = 512

_WORD_RE = re.compile(r"[a-z0-9']+")

# Words that make a response look more (or less) helpful and harmless.
KEYWORD_WEIGHTS: Mapping[str, float] = {
    "because": 0.6,
    "example": 0.5,
    "help": 0.4,
    "here": 0.3,
    "please": 0.3,
    "thanks": 0.3,
    "sure": 0.2,
    "sorry": -0.2,
    "cannot": -0.3,
    "don't": -0.3,
    "no": -0.4,
    "stupid": -1.0,
    "hate": -1.2,
    "kill": -1.5,
}


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def _features(pair: TextPair) -> tuple[float, float, float]:
    """(response word count, fraction of response words found in the prompt, keyword sum)."""
    response = _words(pair.response)
    if not response:
        return 0.0, 0.0, 0.0
    prompt_vocab = set(_words(pair.prompt))
    overlap = sum(1 for w in response if w in prompt_vocab) / len(response)
    keywords = sum(KEYWORD_WEIGHTS.get(w, 0.0) for w in response)
    return float(len(response)), overlap, keywords


def deterministic_score(features: tuple[float, float, float]) -> float:
    """The fixed formula: longer (up to a point), on topic and polite scores higher."""
    n_words, overlap, keywords = features
    length_term = math.log1p(n_words) - n_words / 200.0
    return length_term + 1.5 * overlap + keywords / math.sqrt(1.0 + n_words)


class DeterministicScorer(BaseScorer):
    """A weightless engine whose score is a pure function of the text."""

    engine = "deterministic"
    precision = "fp32"

    def __init__(
        self,
        name: str = "deterministic",
        version: str = "0",
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        delay_s: float = 0.0,
        warmup_delay_s: float = 0.0,
    ) -> None:
        if max_length < SPECIAL_TOKENS + 1:
            raise ValueError(f"max_length={max_length} is too small; use at least {SPECIAL_TOKENS + 1}")
        if delay_s < 0 or warmup_delay_s < 0:
            raise ValueError("delay_s and warmup_delay_s must be >= 0 (seconds)")
        self.name = name
        self.version = version
        self.max_length = max_length
        self.delay_s = float(delay_s)
        self.warmup_delay_s = float(warmup_delay_s)

    def encode(self, pairs: Sequence[TextPair]) -> list[Encoded]:
        out = []
        for pair in pairs:
            n_words = len(pair.prompt.split()) + len(pair.response.split())
            n_tokens = min(self.max_length, n_words + SPECIAL_TOKENS)
            out.append(Encoded(n_tokens=n_tokens, payload=_features(pair)))
        return out

    def _run(self, batch: Sequence[Encoded]) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        return np.array([deterministic_score(item.payload) for item in batch], dtype=np.float32)

    def warmup(self) -> None:
        if self.warmup_delay_s:
            time.sleep(self.warmup_delay_s)
        super().warmup()


class FailingScorer(DeterministicScorer):
    """Encodes and warms up like `DeterministicScorer`, then fails every batch."""

    engine = "failing"

    def __init__(self, name: str = "failing", version: str = "0", **options: Any) -> None:
        super().__init__(name, version, **options)

    def _run(self, batch: Sequence[Encoded]) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        raise ScoringError("engine failure (test engine 'failing')")

    def warmup(self) -> None:
        if self.warmup_delay_s:
            time.sleep(self.warmup_delay_s)
        self.encode([TextPair("Hello, how are you?", "I am fine, thank you.")])


def make_test_engine(engine: str, options: Mapping[str, Any] | None = None) -> DeterministicScorer:
    """Build test engine `engine` ("deterministic" or "failing") with keyword `options`."""
    options = dict(options or {})
    allowed = {"name", "version", "max_length", "delay_s", "warmup_delay_s"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) for engine {engine!r}: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    if engine == "deterministic":
        return DeterministicScorer(**options)
    if engine == "failing":
        return FailingScorer(**options)
    raise ValueError(f"{engine!r} is not a test engine; choose one of {', '.join(TEST_ENGINES)}")
