"""Invariance tests on a model that was really trained and exported (tests/conftest.py)."""

import os
from pathlib import Path

import numpy as np
import pytest

from model_store.loading import load_scorer
from model_store.scoring import Scorer, TextPair
from model_store.store import ModelStore
from training.export import int8_qualifies_as_default

TEXTS = [
    TextPair("How do I boil an egg?", "Put it in boiling water for nine minutes, then cool it in cold water."),
    TextPair("How do I boil an egg?", "No."),
    TextPair("Tell me a joke", "Why did the chicken cross the road? To get to the other side!"),
    TextPair("", "A response with an empty prompt still scores."),
    TextPair("word " * 200, "A long prompt is cut from the left; this response survives."),
    TextPair("Plan a trip", "Day one: museums. Day two: the old town. Day three: the coast. " * 8),
]


@pytest.fixture(scope="module")
def onnx_scorer(trained_store: Path) -> Scorer:
    return load_scorer(ModelStore(trained_store).resolve("tiny"), engine="onnx", precision="fp32")


def test_batched_scores_equal_one_at_a_time(onnx_scorer: Scorer) -> None:
    together = onnx_scorer.run(onnx_scorer.encode(TEXTS))
    alone = np.array([onnx_scorer.run(onnx_scorer.encode([t]))[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    # and in any other grouping / order
    reordered = onnx_scorer.run(onnx_scorer.encode(TEXTS[::-1]))[::-1]
    np.testing.assert_allclose(reordered, alone, atol=1e-5, rtol=0)


def test_score_helper_matches_run(onnx_scorer: Scorer) -> None:
    np.testing.assert_allclose(onnx_scorer.score(TEXTS), onnx_scorer.run(onnx_scorer.encode(TEXTS)), atol=1e-5)


def test_onnx_equals_torch_engine(trained_store: Path, onnx_scorer: Scorer) -> None:
    torch_scorer = load_scorer(ModelStore(trained_store).resolve("tiny"), engine="torch", device="cpu")
    np.testing.assert_allclose(torch_scorer.score(TEXTS), onnx_scorer.score(TEXTS), atol=1e-4, rtol=0)


def test_torch_engine_scores_do_not_depend_on_padding_to_a_length_multiple(trained_store: Path) -> None:
    """On CUDA the torch engine pads batches to a multiple of 32 tokens (fewer distinct shapes);
    the extra columns are masked, so scores stay those of the tightest padding."""
    torch_scorer = load_scorer(ModelStore(trained_store).resolve("tiny"), engine="torch", device="cpu")
    assert torch_scorer.width_multiple == 1  # CPU: no rounding
    tight = torch_scorer.run(torch_scorer.encode(TEXTS))
    torch_scorer.width_multiple = 32
    np.testing.assert_allclose(torch_scorer.run(torch_scorer.encode(TEXTS)), tight, atol=1e-5, rtol=0)


def test_int8_model_is_stored_and_loads(trained_store: Path) -> None:
    mv = ModelStore(trained_store).resolve("tiny")
    assert mv.metadata["onnx"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    int8 = mv.metadata["int8"]
    assert int8["recipe"] == "per_token_centred_w8_gptq_actorder_outliers"
    # Agreeing on every decision means the same accuracy; each flip moves it by 1/n_pairs.
    accuracy_gap = abs(int8["pairwise_accuracy_int8"] - int8["pairwise_accuracy_fp32"])
    assert accuracy_gap <= (1.0 - int8["decision_agreement_vs_fp32"]) + 1e-9
    assert sorted(p.name for p in Path(mv.path).glob("*.onnx")) == ["model.int8.onnx", "model.onnx"]
    # The default follows the gate on the figures the export measured.
    qualifies = int8_qualifies_as_default(
        int8["decision_agreement_vs_fp32"], int8["batch_invariance_max_diff"], int8["n_pairs"]
    )
    assert int8["qualifies_as_default"] is qualifies
    assert mv.metadata["default_precision"] == ("int8" if qualifies else "fp32")
    scores = load_scorer(mv, precision="int8").score(TEXTS)
    assert scores.shape == (len(TEXTS),) and np.all(np.isfinite(scores))


def test_int8_batched_scores_equal_one_at_a_time(trained_store: Path) -> None:
    """Per-token scales: an item's int8 score cannot depend on its batch-mates."""
    scorer = load_scorer(ModelStore(trained_store).resolve("tiny"), engine="onnx", precision="int8")
    together = scorer.run(scorer.encode(TEXTS))
    alone = np.array([scorer.run(scorer.encode([t]))[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    reordered = scorer.run(scorer.encode(TEXTS[::-1]))[::-1]
    np.testing.assert_allclose(reordered, alone, atol=1e-5, rtol=0)
    assert ModelStore(trained_store).resolve("tiny").metadata["int8"]["batch_invariance_max_diff"] <= 1e-5


def test_int8_stays_close_to_fp32(trained_store: Path, onnx_scorer: Scorer) -> None:
    scorer = load_scorer(ModelStore(trained_store).resolve("tiny"), engine="onnx", precision="int8")
    fp32 = onnx_scorer.score(TEXTS)
    spread = float(np.ptp(fp32))
    assert spread > 0
    # 8-bit weights and activations: a few percent of the score range at most.
    np.testing.assert_allclose(scorer.score(TEXTS), fp32, atol=0.05 * spread + 1e-3, rtol=0)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_lone_call_on_its_own_wider_session_scores_the_same(trained_store: Path, precision: str) -> None:
    """The service scores a lone item on a second session with more threads: the thread count
    must not move a score, alone or against the narrow session's batches."""
    mv = ModelStore(trained_store).resolve("tiny")
    scorer = load_scorer(mv, precision=precision, intra_op_threads=1, lone_call_threads=3)
    try:
        assert scorer.lone_call_threads == 3  # type: ignore[attr-defined]
        assert scorer._session.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]
        narrow_batch = scorer.run(scorer.encode(TEXTS))
        lone = np.array([scorer.run_alone(scorer.encode([t]))[0] for t in TEXTS])
        np.testing.assert_allclose(lone, narrow_batch, atol=1e-5, rtol=0)
        np.testing.assert_allclose(scorer.run_alone(scorer.encode(TEXTS)), narrow_batch, atol=1e-5, rtol=0)
    finally:
        scorer.close()
    # Without one, or when it would add no threads, a lone call runs on the one session.
    for threads, lone_threads in ((1, None), (1, 1), (None, os.cpu_count())):
        plain = load_scorer(mv, precision=precision, intra_op_threads=threads, lone_call_threads=lone_threads)
        assert plain.lone_call_threads is None  # type: ignore[attr-defined]
        np.testing.assert_allclose(plain.run_alone(plain.encode(TEXTS)), narrow_batch, atol=1e-5, rtol=0)
        plain.close()


@pytest.mark.parametrize("spinning", [True, False])
def test_the_spinning_choice_reaches_the_onnx_runtime_session(trained_store: Path, spinning: bool) -> None:
    scorer = load_scorer(ModelStore(trained_store).resolve("tiny"), intra_op_spinning=spinning)
    options = scorer._session.get_session_options()  # type: ignore[attr-defined]
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")


def test_every_session_of_the_onnx_engine_multiplies_int8_exactly(trained_store: Path) -> None:
    """Each session's own options, run on the saturating probe (model_store/int8_products.py)."""
    import onnxruntime as ort

    from model_store.int8_products import products_are_exact

    mv = ModelStore(trained_store).resolve("tiny")
    tuned = load_scorer(mv, precision="int8", intra_op_threads=1, lone_call_threads=2)
    baseline = load_scorer(mv, precision="int8", onnx_options=ort.SessionOptions())  # the naive server's way
    for session in (tuned._session, tuned._lone_session, baseline._session):  # type: ignore[attr-defined]
        assert products_are_exact(session.get_session_options())
    tuned.close()
    baseline.close()


def test_unknown_precision_and_missing_file_are_refused(trained_store: Path) -> None:
    mv = ModelStore(trained_store).resolve("tiny")
    with pytest.raises(ValueError, match="unknown precision"):
        load_scorer(mv, precision="fp8")
    # Each engine refuses the precisions it cannot run instead of quietly running fp32.
    with pytest.raises(ValueError, match="--engine torch cannot run precision int8"):
        load_scorer(mv, engine="torch", precision="int8")
    with pytest.raises(ValueError, match="--engine onnx cannot run precision fp16"):
        load_scorer(mv, engine="onnx", precision="fp16")
    with pytest.raises(ValueError, match="x:1 is a linear model, which runs on --engine onnx only"):
        from model_store.loading import load_scorer_from_dir

        load_scorer_from_dir(mv.path, {"kind": "linear"}, name="x", version="1", engine="torch")


def test_metadata_cannot_point_the_engine_outside_the_versions_folder(trained_store: Path) -> None:
    # Checksums cover the version's own files, so a path that leaves its folder is refused.
    from model_store.loading import load_scorer_from_dir

    mv = ModelStore(trained_store).resolve("tiny")
    escaping = {**mv.metadata, "onnx": {"fp32": "../../../elsewhere/model.onnx"}, "default_precision": "fp32"}
    with pytest.raises(ValueError, match="names ONNX file '../../../elsewhere/model.onnx', outside the version's folder"):
        load_scorer_from_dir(Path(mv.path), escaping, name="tiny", version="1")
