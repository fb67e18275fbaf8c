"""The linear reward model: training on every feedback shape, export, and readable weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_store.linear_scorer import LinearOnnxScorer
from model_store.scoring import TextPair
from training.data.examples import LikeExample, PairExample, RatingExample
from training.data.loaders import load_examples
from training.data.split import split_by_prompt
from training.linear import LinearModel, explain, export_linear, pair_accuracy, train_linear, weights_table

# Refusals are always the rejected reply, and they share no other pattern with each other.
REFUSAL_PAIRS = [
    PairExample("How do I boil an egg?", "Put it in boiling water for seven minutes.", "I can't help with that."),
    PairExample("What is the capital of France?", "Paris is the capital of France.", "I cannot answer questions like this."),
    PairExample("Recommend a book for a long flight.", "Try The Martian, a fun and fast read.", "As an AI, I won't recommend books."),
    PairExample("How do I fix a flat tyre?", "Remove the wheel, patch the tube and reinflate it.", "I'm not able to discuss tyres."),
    PairExample("Suggest a name for my cat.", "Miso is a sweet name for a cat.", "I will not suggest names, sorry."),
    PairExample("How many legs does a spider have?", "A spider has eight legs.", "I'm unable to talk about spiders."),
    PairExample("What goes well with pasta?", "Tomato sauce, basil and parmesan.", "I refuse to discuss food."),
    PairExample("How do I make tea?", "Steep a tea bag in hot water for three minutes.", "As an AI, I cannot make tea advice."),
]


@pytest.fixture(scope="module")
def refusal_model() -> LinearModel:
    return train_linear(REFUSAL_PAIRS, [])


def _weight(model: LinearModel, name: str) -> float:
    return float(model.weights[model.featurizer.feature_names.index(name)])


def test_refusals_always_rejected_train_to_full_accuracy_and_a_negative_refusal_weight(
    refusal_model: LinearModel,
) -> None:
    assert pair_accuracy(refusal_model, REFUSAL_PAIRS) == 1.0
    assert refusal_model.metrics["train_pair_accuracy"] == 1.0
    assert _weight(refusal_model, "refusal phrases") < 0
    unseen = refusal_model.score(
        [TextPair("Where is Rome?", "Rome is in Italy."), TextPair("Where is Rome?", "I can't answer that.")]
    )
    assert unseen[0] > unseen[1]


def test_training_is_deterministic_whatever_the_seed() -> None:
    a = train_linear(REFUSAL_PAIRS, REFUSAL_PAIRS[:2], seed=0)
    b = train_linear(REFUSAL_PAIRS, REFUSAL_PAIRS[:2], seed=1)
    assert np.array_equal(a.weights, b.weights) and a.bias == b.bias and a.l2 == b.l2


def test_l2_is_chosen_on_validation_loss() -> None:
    train, val = REFUSAL_PAIRS[:6], REFUSAL_PAIRS[6:]
    model = train_linear(train, val, l2=(1e-1, 1e-2, 1e-3))
    assert [row["l2"] for row in model.l2_search] == [1e-1, 1e-2, 1e-3]
    best = min(model.l2_search, key=lambda row: row["val_loss"])
    assert model.l2 == best["l2"]
    assert model.metrics["val_loss"] == pytest.approx(best["val_loss"])


def test_mixed_shapes_train_in_one_run() -> None:
    prompt = "How do I boil an egg?"
    good, bad = "Boil it for seven minutes, then cool it in cold water.", "Eggs are round. Whatever."
    data = [
        *REFUSAL_PAIRS[:4],
        RatingExample(prompt, good, rating=5),
        RatingExample(prompt, bad, rating=1),
        RatingExample("Name a planet.", "Mars is a planet.", rating=9, scale_min=0, scale_max=10),
        RatingExample("Name a planet.", "Planets are whatever.", rating=1, scale_min=0, scale_max=10),
        LikeExample("Name a colour.", "Blue is a lovely colour.", liked=True),
        LikeExample("Name a colour.", "Colours are whatever.", liked=False),
        LikeExample("Name a fruit.", "An apple is a fruit.", liked=True),
        LikeExample("Name a fruit.", "Fruit is whatever.", liked=False),
    ]
    model = train_linear(data, [], l2=1e-3)
    assert model.metrics["train_pair_accuracy"] == 1.0
    rated_good, rated_bad, liked, disliked = model.score(
        [
            TextPair(prompt, good),
            TextPair(prompt, bad),
            TextPair("Name a colour.", "Blue is a lovely colour."),
            TextPair("Name a colour.", "Colours are whatever."),
        ]
    )
    assert rated_good > 0 > rated_bad  # regressed towards +1 and -1
    assert liked > 0 > disliked  # P(liked) = sigmoid(reward) on the right side of 1/2


def test_ratings_alone_train_without_any_pairs() -> None:
    data = [
        RatingExample("Name a planet.", "Mars is a planet.", rating=5),
        RatingExample("Name a planet.", "Whatever, planets.", rating=1),
        RatingExample("Name a star.", "The Sun is a star.", rating=5),
        RatingExample("Name a star.", "Whatever, stars.", rating=1),
    ]
    model = train_linear(data, [], l2=1e-3)
    assert "train_pair_accuracy" not in model.metrics
    high, low = model.score([TextPair("Name a moon.", "Titan is a moon."), TextPair("Name a moon.", "Whatever, moons.")])
    assert high > low


def test_weights_table_and_explanation_are_readable(refusal_model: LinearModel) -> None:
    table = weights_table(refusal_model)
    assert sorted(row["name"] for row in table) == sorted(refusal_model.featurizer.feature_names)
    magnitudes = [abs(float(row["weight"])) for row in table]
    assert magnitudes == sorted(magnitudes, reverse=True)
    by_name = {row["name"]: row["weight"] for row in table}
    assert by_name["refusal phrases"] == pytest.approx(_weight(refusal_model, "refusal phrases"))

    text = explain(refusal_model, top=3)
    assert "refusal phrases" in text and "tfidf:'" in text
    assert f"{_weight(refusal_model, 'refusal phrases'):+.3f}" in text
    lowering = text.split("lower the reward")[1].splitlines()[1:]
    assert 1 <= len(lowering) <= 3 and all("tfidf:'" in line and "-" in line for line in lowering)


def test_export_round_trips_through_the_served_scorer(refusal_model: LinearModel, tmp_path: Path) -> None:
    export_linear(refusal_model, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["featurizer.json", "model.onnx"]
    scorer = LinearOnnxScorer(tmp_path / "model", name="lin", version="1", intra_op_threads=1)
    pairs = [TextPair(ex.prompt, r) for ex in REFUSAL_PAIRS for r in (ex.chosen, ex.rejected)]
    np.testing.assert_allclose(scorer.score(pairs), refusal_model.score(pairs), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("train", "l2", "message"),
    [([], 1e-3, "at least one training example"), (REFUSAL_PAIRS, -1.0, "l2 must be"), (REFUSAL_PAIRS, (), "l2 must be")],
)
def test_bad_arguments_are_refused(train: list[PairExample], l2: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_linear(train, [], l2=l2)


@pytest.mark.hh
def test_hh_grouped_validation_accuracy_beats_sixty_percent(hh_pairs: Path, tmp_path: Path) -> None:
    examples = load_examples(hh_pairs)
    train, val = split_by_prompt(examples, val_fraction=0.1, seed=0)
    pairs = [ex for ex in val if isinstance(ex, PairExample)]
    model = train_linear(train, val)
    export_linear(model, tmp_path / "hh")
    scorer = LinearOnnxScorer(tmp_path / "hh", name="hh", version="1")
    chosen = scorer.score([TextPair(p.prompt, p.chosen) for p in pairs])
    rejected = scorer.score([TextPair(p.prompt, p.rejected) for p in pairs])
    served_accuracy = float(np.mean(chosen > rejected))
    shorter_wins = float(np.mean([len(p.chosen) < len(p.rejected) for p in pairs]))

    assert served_accuracy >= 0.60
    assert served_accuracy > shorter_wins
    assert served_accuracy == pytest.approx(model.metrics["val_pair_accuracy"], abs=2 / len(pairs))
