"""LinearOnnxScorer: the exported linear model, run by ONNX Runtime, scores as its weights say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from model_store.features import Featurizer, words
from model_store.linear_scorer import LinearOnnxScorer
from model_store.loading import load_scorer_from_dir
from model_store.scoring import Scorer, TextPair
from training.linear import LinearModel, export_linear

CORPUS = [
    TextPair("How do I bake bread?", "Mix flour, water, salt and yeast, then bake it for 40 minutes."),
    TextPair("How do I bake bread?", "I'm sorry, but I can't help with that."),
    TextPair("What is a good first pet?", "A goldfish is a good first pet! You feed it once a day."),
    TextPair("What is a good first pet?", "As an AI, I cannot recommend pets. Sorry!"),
    TextPair("Any tips for sleeping better?", "Keep a fixed bedtime, avoid screens late and keep the room cool."),
    TextPair("Any tips for sleeping better?", "Why do you want to sleep? That is a strange question to ask."),
]
PROBE = CORPUS + [
    TextPair("Unseen prompt", "Entirely new words here, plus a few known ones: bake, sorry, pet."),
    TextPair("", ""),
    TextPair("A long prompt " * 30, "A short reply."),
]


@pytest.fixture(scope="module")
def model() -> LinearModel:
    featurizer = Featurizer.fit(CORPUS, max_terms=40)
    rng = np.random.default_rng(0)
    weights = rng.normal(size=featurizer.n_features).astype(np.float32)
    return LinearModel(featurizer=featurizer, weights=weights, bias=0.25, l2=0.0)


@pytest.fixture(scope="module")
def model_dir(model: LinearModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("linear-model")
    export_linear(model, out)
    return out


@pytest.fixture
def scorer(model_dir: Path) -> LinearOnnxScorer:
    return LinearOnnxScorer(model_dir, name="lin", version="1", intra_op_threads=1)


def test_export_writes_an_opset_17_graph_with_a_dynamic_batch(model: LinearModel, model_dir: Path) -> None:
    proto = onnx.load(str(model_dir / "model.onnx"))
    onnx.checker.check_model(proto)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert inp.name == "features" and out.name == "scores"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == model.featurizer.n_features
    assert json.loads((model_dir / "featurizer.json").read_text()) == model.featurizer.to_config()


def test_onnx_scores_equal_the_weights_scores(model: LinearModel, scorer: LinearOnnxScorer) -> None:
    got = scorer.score(PROBE)
    features = model.featurizer.transform(PROBE).astype(np.float64)
    reference = features @ model.weights.astype(np.float64) + model.bias
    assert got.dtype == np.float32 and got.shape == (len(PROBE),)
    np.testing.assert_allclose(got, reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, model.score(PROBE), atol=1e-5, rtol=0)
    assert np.ptp(got) > 0.1  # the weights really matter, so the comparison means something


def test_batched_scores_equal_one_at_a_time(scorer: LinearOnnxScorer) -> None:
    batched = scorer.score(PROBE, batch_size=len(PROBE))
    small_batches = scorer.score(PROBE, batch_size=3)
    single = np.concatenate([scorer.score([p]) for p in PROBE])
    np.testing.assert_allclose(batched, single, atol=1e-6, rtol=0)
    np.testing.assert_allclose(small_batches, single, atol=1e-6, rtol=0)


def test_encode_gives_one_feature_row_and_a_word_count_per_item(model: LinearModel, scorer: LinearOnnxScorer) -> None:
    encoded = scorer.encode(PROBE)
    rows = model.featurizer.transform(PROBE)
    for item, pair, row in zip(encoded, PROBE, rows, strict=True):
        assert item.n_tokens == len(words(pair.prompt)) + len(words(pair.response)) + 3
        assert np.array_equal(item.payload, row)
    assert scorer.run([]).shape == (0,)


def test_the_model_store_loader_builds_this_scorer(model_dir: Path) -> None:
    loaded = load_scorer_from_dir(model_dir, {"kind": "linear"}, name="lin", version="7", intra_op_threads=1)
    assert isinstance(loaded, LinearOnnxScorer) and isinstance(loaded, Scorer)
    assert (loaded.name, loaded.version) == ("lin", "7")
    loaded.warmup()
    loaded.close()


def test_missing_files_are_named(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="featurizer.json not found"):
        LinearOnnxScorer(tmp_path, name="lin", version="1")
    (tmp_path / "featurizer.json").write_text((model_dir / "featurizer.json").read_text())
    with pytest.raises(FileNotFoundError, match="model.onnx not found"):
        LinearOnnxScorer(tmp_path, name="lin", version="1")


def test_files_from_different_models_are_refused(model_dir: Path, tmp_path: Path) -> None:
    other = Featurizer.fit(CORPUS, max_terms=5)
    (tmp_path / "featurizer.json").write_text(json.dumps(other.to_config()))
    (tmp_path / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    with pytest.raises(ValueError, match="come from different models"):
        LinearOnnxScorer(tmp_path, name="lin", version="1")


def test_a_broken_featurizer_file_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "featurizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"featurizer\.json: not valid JSON \(line 1"):
        LinearOnnxScorer(tmp_path, name="lin", version="1")
    (tmp_path / "featurizer.json").write_text(json.dumps({"kind": "other"}))
    with pytest.raises(ValueError, match=r"featurizer\.json: featurizer config: kind is 'other'"):
        LinearOnnxScorer(tmp_path, name="lin", version="1")
