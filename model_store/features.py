"""Featurize (prompt, response) pairs for the interpretable linear reward model.

The same code runs when the model is trained (training/linear.py) and when it is served
(model_store/linear_scorer.py), so it is pure numpy + stdlib. Everything that fixes the
features -- lexicons, vocabulary, idf, standardisation -- lives in a JSON-able config that
is saved next to the model; a model therefore never depends on the lexicons in this file
as they happen to be when it is loaded.

A row is `[hand features (standardised) | TF-IDF of the response (l2-normalised)]`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from model_store.scoring import TextPair

CONFIG_KIND = "plaudit-linear-featurizer"
CONFIG_VERSION = 1

# Hand features, in row order. Readable names, because they are what `explain` prints.
HAND_FEATURES: tuple[str, ...] = (
    "log chars",
    "log words",
    "log length ratio (response/prompt)",
    "refusal phrases",
    "apology words",
    "question marks",
    "exclamation marks",
    "positive words per word",
    "negative words per word",
    "prompt word overlap (Jaccard)",
    "second-person words",
    "has list",
    "has number",
)

DEFAULT_LEXICONS: dict[str, list[str]] = {
    "refusal": [
        "i can't", "i cannot", "i can not", "i won't", "i will not", "as an ai",
        "i'm not able", "i am not able", "i'm unable", "i am unable", "i'm not going to",
        "i am not going to", "i refuse", "i shouldn't", "i'd rather not",
        "i don't feel comfortable", "i'm not comfortable", "not appropriate",
    ],
    "apology": ["sorry", "apologize", "apologise", "apologies", "apology", "regret"],
    "positive": [
        "good", "great", "happy", "glad", "love", "nice", "helpful", "excellent",
        "wonderful", "thanks", "thank", "welcome", "best", "enjoy", "safe", "kind", "fun",
        "beautiful", "perfect", "awesome", "healthy", "respect", "care", "support",
    ],
    "negative": [
        "bad", "hate", "terrible", "awful", "wrong", "illegal", "dangerous", "harm",
        "hurt", "kill", "stupid", "violent", "violence", "crime", "steal", "die", "dead",
        "worst", "angry", "sad", "racist", "evil", "abuse", "attack", "weapon", "drugs",
    ],
    "second_person": [
        "you", "your", "yours", "yourself", "yourselves", "you're", "you've", "you'll",
        "you'd",
    ],
}

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# TF-IDF terms: runs of two or more word characters (the scikit-learn convention), so
# "i" and "a" are dropped and an apostrophe splits ("don't" -> "don"). On HH this beat
# keeping the hand features' tokens as terms by about a point of pair accuracy.
_TERM = re.compile(r"\b\w\w+\b")
_LIST_LINE = re.compile(r"(?m)^\s*(?:[-*\u2022]|\d+[.)])\s+\S")
_DIGIT = re.compile(r"[0-9]")
# A std this small means the feature was constant in training; dividing by it would
# blow up any later deviation, so such a feature is only centred.
_MIN_STD = 1e-6


def normalize_text(text: str) -> str:
    """Lowercase, with typographic apostrophes made plain so "can’t" == "can't"."""
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def words(text: str) -> list[str]:
    """The word tokens every feature (and the TF-IDF vocabulary) is built from."""
    return _WORD.findall(normalize_text(text))


def terms(text: str) -> list[str]:
    """The TF-IDF terms of a text: its unigrams and bigrams ("w1 w2")."""
    tokens = _TERM.findall(normalize_text(text))
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def _phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str]:
    # Longest first so that alternatives sharing a prefix are matched whole.
    alternatives = sorted((re.escape(normalize_text(p)) for p in phrases), key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9'])(?:" + "|".join(alternatives) + r")(?![a-z0-9'])")


class _Lexicons:
    """Compiled form of the lexicon part of a config."""

    def __init__(self, lexicons: Mapping[str, Sequence[str]]) -> None:
        self.refusal = _phrase_pattern(lexicons["refusal"])
        self.apology = frozenset(normalize_text(w) for w in lexicons["apology"])
        self.positive = frozenset(normalize_text(w) for w in lexicons["positive"])
        self.negative = frozenset(normalize_text(w) for w in lexicons["negative"])
        self.second_person = frozenset(normalize_text(w) for w in lexicons["second_person"])

    def raw_hand_features(self, pair: TextPair) -> list[float]:
        """The hand features of one pair before standardisation, in HAND_FEATURES order."""
        response = pair.response
        tokens = words(response)
        prompt_tokens = words(pair.prompt)
        n_words = len(tokens)
        per_word = 1.0 / n_words if n_words else 0.0
        resp_set, prompt_set = set(tokens), set(prompt_tokens)
        union = resp_set | prompt_set
        return [
            math.log1p(len(response)),
            math.log1p(n_words),
            math.log1p(len(response)) - math.log1p(len(pair.prompt)),
            float(len(self.refusal.findall(normalize_text(response)))),
            float(sum(t in self.apology for t in tokens)),
            float(response.count("?")),
            float(response.count("!")),
            sum(t in self.positive for t in tokens) * per_word,
            sum(t in self.negative for t in tokens) * per_word,
            len(resp_set & prompt_set) / len(union) if union else 0.0,
            float(sum(t in self.second_person for t in tokens)),
            1.0 if _LIST_LINE.search(response) else 0.0,
            1.0 if _DIGIT.search(response) else 0.0,
        ]


class Featurizer:
    """Maps pairs to float32 rows `[N, len(feature_names)]`; built by `fit` or `from_config`."""

    def __init__(
        self,
        *,
        lexicons: Mapping[str, Sequence[str]],
        hand_mean: Sequence[float],
        hand_std: Sequence[float],
        vocabulary: Sequence[str],
        idf: Sequence[float],
    ) -> None:
        n_hand = len(HAND_FEATURES)
        if len(hand_mean) != n_hand or len(hand_std) != n_hand:
            raise ValueError(
                f"featurizer config: hand_mean/hand_std need {n_hand} values each, "
                f"got {len(hand_mean)} and {len(hand_std)}"
            )
        if len(vocabulary) != len(idf):
            raise ValueError(
                f"featurizer config: vocabulary has {len(vocabulary)} terms but idf has "
                f"{len(idf)} values"
            )
        missing = [k for k in DEFAULT_LEXICONS if k not in lexicons]
        if missing:
            raise ValueError(f"featurizer config: lexicons lacks {', '.join(missing)}")
        self._lexicon_lists = {k: list(lexicons[k]) for k in DEFAULT_LEXICONS}
        self._lexicons = _Lexicons(self._lexicon_lists)
        self._hand_mean = np.asarray(hand_mean, dtype=np.float64)
        self._hand_std = np.asarray(hand_std, dtype=np.float64)
        self._vocabulary = list(vocabulary)
        self._index = {term: i for i, term in enumerate(self._vocabulary)}
        if len(self._index) != len(self._vocabulary):
            raise ValueError("featurizer config: vocabulary has duplicate terms")
        self._idf = np.asarray(idf, dtype=np.float64)

    # -- construction -----------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        pairs: Sequence[TextPair],
        *,
        max_terms: int = 2000,
        min_df: int = 2,
        lexicons: Mapping[str, Sequence[str]] | None = None,
    ) -> "Featurizer":
        """Fit standardisation and the TF-IDF vocabulary on training pairs.

        The vocabulary is the `max_terms` response uni/bigrams with the highest document
        frequency (ties broken alphabetically, so fitting is deterministic), each seen in
        at least `min_df` responses.
        """
        if not pairs:
            raise ValueError("cannot fit a featurizer on zero pairs")
        if max_terms < 0:
            raise ValueError(f"max_terms must be >= 0, got {max_terms}")
        lex = {k: list(v) for k, v in (lexicons or DEFAULT_LEXICONS).items()}
        compiled = _Lexicons(lex)
        raw = np.asarray([compiled.raw_hand_features(p) for p in pairs], dtype=np.float64)
        mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        std = np.where(std < _MIN_STD, 1.0, std)

        df: Counter[str] = Counter()
        for p in pairs:
            df.update(set(terms(p.response)))
        kept = sorted((t for t, c in df.items() if c >= min_df), key=lambda t: (-df[t], t))
        vocabulary = kept[:max_terms]
        n_docs = len(pairs)
        # Smoothed idf, as if one extra document contained every term once.
        idf = [math.log((1 + n_docs) / (1 + df[t])) + 1.0 for t in vocabulary]
        return cls(
            lexicons=lex,
            hand_mean=mean.tolist(),
            hand_std=std.tolist(),
            vocabulary=vocabulary,
            idf=idf,
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": CONFIG_KIND,
            "version": CONFIG_VERSION,
            "hand_features": list(HAND_FEATURES),
            "lexicons": {k: list(v) for k, v in self._lexicon_lists.items()},
            "hand_mean": self._hand_mean.tolist(),
            "hand_std": self._hand_std.tolist(),
            "vocabulary": list(self._vocabulary),
            "idf": self._idf.tolist(),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Featurizer":
        if config.get("kind") != CONFIG_KIND:
            raise ValueError(
                f"featurizer config: kind is {config.get('kind')!r}, expected {CONFIG_KIND!r}"
            )
        if config.get("version") != CONFIG_VERSION:
            raise ValueError(
                f"featurizer config: version {config.get('version')!r} is not supported "
                f"by this code (it reads version {CONFIG_VERSION})"
            )
        if list(config.get("hand_features", [])) != list(HAND_FEATURES):
            raise ValueError(
                "featurizer config: hand_features differ from the ones this code computes "
                f"({', '.join(HAND_FEATURES)})"
            )
        for key in ("lexicons", "hand_mean", "hand_std", "vocabulary", "idf"):
            if key not in config:
                raise ValueError(f"featurizer config: missing field {key!r}")
        return cls(
            lexicons=config["lexicons"],
            hand_mean=config["hand_mean"],
            hand_std=config["hand_std"],
            vocabulary=config["vocabulary"],
            idf=config["idf"],
        )

    # -- use --------------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        return len(HAND_FEATURES) + len(self._vocabulary)

    @property
    def feature_names(self) -> list[str]:
        return list(HAND_FEATURES) + [f"tfidf:'{t}'" for t in self._vocabulary]

    def raw_hand_features(self, pairs: Sequence[TextPair]) -> np.ndarray:
        """Hand features before standardisation, float64 [N, len(HAND_FEATURES)]."""
        rows = [self._lexicons.raw_hand_features(p) for p in pairs]
        return np.asarray(rows, dtype=np.float64).reshape(len(pairs), len(HAND_FEATURES))

    def transform(self, pairs: Sequence[TextPair]) -> np.ndarray:
        n_hand = len(HAND_FEATURES)
        out = np.zeros((len(pairs), self.n_features), dtype=np.float64)
        if not pairs:
            return out.astype(np.float32)
        out[:, :n_hand] = (self.raw_hand_features(pairs) - self._hand_mean) / self._hand_std
        for row, pair in enumerate(pairs):
            counts = Counter(
                self._index[t] for t in terms(pair.response) if t in self._index
            )
            if not counts:
                continue
            cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            values = (1.0 + np.log(tf)) * self._idf[cols]  # sublinear tf
            out[row, n_hand + cols] = values / np.linalg.norm(values)
        return out.astype(np.float32)
