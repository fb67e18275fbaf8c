"""The linear model's featurizer: exact hand features, TF-IDF, and a config that round-trips."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from model_store.features import HAND_FEATURES, Featurizer, terms, words
from model_store.scoring import TextPair

N_HAND = len(HAND_FEATURES)

CORPUS = [
    TextPair("How do I bake bread?", "Mix flour, water, salt and yeast, then bake it for 40 minutes."),
    TextPair("How do I bake bread?", "I'm sorry, but I can't help with that."),
    TextPair("What is a good first pet?", "A goldfish is a good first pet! You feed it once a day."),
    TextPair("What is a good first pet?", "As an AI, I cannot recommend pets. Sorry!"),
    TextPair("Any tips for sleeping better?", "Steps:\n1. Keep a fixed bedtime.\n2. Avoid screens late.\n- Keep the room cool."),
    TextPair("Any tips for sleeping better?", "Why do you want to sleep? That is a strange question."),
]


def _hand(featurizer: Featurizer, prompt: str, response: str) -> list[float]:
    return featurizer.raw_hand_features([TextPair(prompt, response)])[0].tolist()


@pytest.fixture(scope="module")
def featurizer() -> Featurizer:
    return Featurizer.fit(CORPUS, max_terms=50)


def test_hand_features_of_a_refusal_have_exact_values(featurizer: Featurizer) -> None:
    prompt = "Can you help me bake bread?"  # 27 characters, 6 words
    # 60 characters; the curly apostrophe must count like a plain one.
    response = "Sorry, I can\u2019t help you. As an AI, I cannot bake! Good luck?"
    assert words(response) == [
        "sorry", "i", "can't", "help", "you", "as", "an", "ai", "i", "cannot", "bake", "good", "luck",
    ]
    expected = {
        "log chars": math.log1p(60),
        "log words": math.log1p(13),
        "log length ratio (response/prompt)": math.log1p(60) - math.log1p(27),
        "refusal phrases": 3.0,  # "i can't", "as an ai", "i cannot"
        "apology words": 1.0,  # "sorry"
        "question marks": 1.0,
        "exclamation marks": 1.0,
        "positive words per word": 1 / 13,  # "good"
        "negative words per word": 0.0,
        # {help, you, bake} shared; 12 distinct response words + {can, me, bread} = 15
        "prompt word overlap (Jaccard)": 3 / 15,
        "second-person words": 1.0,
        "has list": 0.0,
        "has number": 0.0,
    }
    got = dict(zip(HAND_FEATURES, _hand(featurizer, prompt, response), strict=True))
    assert got == pytest.approx(expected, abs=1e-12)


def test_hand_features_see_lists_numbers_and_whole_phrases_only(featurizer: Featurizer) -> None:
    got = dict(
        zip(
            HAND_FEATURES,
            _hand(featurizer, "Recipe?", "As an aide I say:\n1. Mix 2 cups\n- bake it. You're welcome, you!"),
            strict=True,
        )
    )
    assert got["refusal phrases"] == 0.0  # "as an aide" is not "as an ai"
    assert got["has list"] == 1.0
    assert got["has number"] == 1.0
    assert got["second-person words"] == 2.0  # "you're", "you"
    assert got["positive words per word"] == pytest.approx(1 / 14)  # "welcome" of 14 words

    assert dict(zip(HAND_FEATURES, _hand(featurizer, "Recipe?", "Numbers like 3.5 inline"), strict=True))[
        "has list"
    ] == 0.0


def test_empty_response_gives_finite_features(featurizer: Featurizer) -> None:
    got = dict(zip(HAND_FEATURES, _hand(featurizer, "Hello there", ""), strict=True))
    assert got["log chars"] == 0.0
    assert got["log length ratio (response/prompt)"] == pytest.approx(-math.log1p(11))
    assert got["prompt word overlap (Jaccard)"] == 0.0
    assert got["positive words per word"] == 0.0
    row = featurizer.transform([TextPair("Hello there", "")])
    assert np.all(np.isfinite(row))
    assert np.all(row[0, N_HAND:] == 0.0)  # no terms, so no TF-IDF mass


def test_hand_features_are_standardised_with_the_fitted_statistics(featurizer: Featurizer) -> None:
    raw = featurizer.raw_hand_features(CORPUS)
    config = featurizer.to_config()
    np.testing.assert_allclose(config["hand_mean"], raw.mean(axis=0), atol=1e-12)
    std = raw.std(axis=0)
    np.testing.assert_allclose(config["hand_std"], np.where(std < 1e-6, 1.0, std), atol=1e-12)
    standardised = featurizer.transform(CORPUS)[:, :N_HAND]
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-6)
    expected = (raw - np.asarray(config["hand_mean"])) / np.asarray(config["hand_std"])
    np.testing.assert_allclose(standardised, expected, atol=1e-6)


def test_tfidf_vocabulary_idf_and_rows_follow_the_definition() -> None:
    docs = ["red apple", "red apple red", "green apple", "blue sky", "I am a fan"]
    featurizer = Featurizer.fit([TextPair("q", d) for d in docs], max_terms=2)
    # document frequencies: apple 3, red 2, "red apple" 2, everything else 1 (min_df 2);
    # the top 2 by frequency, ties alphabetical. One-letter words ("i", "a") are never terms.
    assert featurizer.to_config()["vocabulary"] == ["apple", "red"]
    assert featurizer.feature_names[N_HAND:] == ["tfidf:'apple'", "tfidf:'red'"]
    idf_apple = math.log(6 / 4) + 1
    idf_red = math.log(6 / 3) + 1
    assert featurizer.to_config()["idf"] == pytest.approx([idf_apple, idf_red])

    row = featurizer.transform([TextPair("q", "red apple red")])[0, N_HAND:]
    apple, red = 1.0 * idf_apple, (1 + math.log(2)) * idf_red  # sublinear tf
    norm = math.hypot(apple, red)
    np.testing.assert_allclose(row, [apple / norm, red / norm], atol=1e-6)
    assert terms("Don\u2019t stop, I said") == ["don", "stop", "said", "don stop", "stop said"]


def test_config_round_trip_gives_identical_features(featurizer: Featurizer) -> None:
    config = json.loads(json.dumps(featurizer.to_config()))
    restored = Featurizer.from_config(config)
    assert restored.to_config() == featurizer.to_config()
    assert restored.feature_names == featurizer.feature_names
    probe = CORPUS + [TextPair("Unseen prompt", "Completely new words, and some known ones: bake, sorry.")]
    a, b = featurizer.transform(probe), restored.transform(probe)
    assert a.dtype == np.float32 and a.shape == (len(probe), featurizer.n_features)
    assert np.array_equal(a, b)


def test_transform_of_nothing_is_an_empty_matrix(featurizer: Featurizer) -> None:
    out = featurizer.transform([])
    assert out.shape == (0, featurizer.n_features) and out.dtype == np.float32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(kind="something-else"), "kind is 'something-else'"),
        (lambda c: c.update(version=99), "version 99 is not supported"),
        (lambda c: c.update(idf=c["idf"][:-1]), "idf has"),
        (lambda c: c.pop("vocabulary"), "missing field 'vocabulary'"),
        (lambda c: c.update(hand_mean=[0.0]), "hand_mean/hand_std need 13 values"),
        (lambda c: c["lexicons"].pop("refusal"), "lexicons lacks refusal"),
    ],
)
def test_from_config_names_what_is_wrong(
    featurizer: Featurizer, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    config = json.loads(json.dumps(featurizer.to_config()))
    change(config)
    with pytest.raises(ValueError, match=message):
        Featurizer.from_config(config)


def test_fit_refuses_no_data() -> None:
    with pytest.raises(ValueError, match="zero pairs"):
        Featurizer.fit([])
