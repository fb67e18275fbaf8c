from pathlib import Path

import numpy as np
import pytest

from model_store.store import ModelStore
from training.export import check_parity, decision_agreement, int8_default_refusal, int8_qualifies_as_default


def test_parity_report_on_literal_scores() -> None:
    ref = np.array([1.0, 0.2, 0.0, 0.5, 3.0])  # 2 pairs: (1.0 vs 0.0), (0.2 vs 0.5), 1 extra
    close = ref + np.array([5e-5, -5e-5, 0, 0, 9e-5])
    ok = check_parity(ref, close, n_pairs=2, atol=1e-4)
    assert ok.passed and ok.decision_agreement == 1.0 and ok.max_abs_diff == pytest.approx(9e-5, rel=1e-3)
    flipped = ref.copy()
    flipped[1] = 0.6  # pair 2 now prefers the other response
    bad = check_parity(ref, flipped, n_pairs=2, atol=1.0)
    assert not bad.passed and bad.decision_agreement == 0.5
    far = check_parity(ref, ref + 1e-3, n_pairs=2, atol=1e-4)
    assert not far.passed and far.decision_agreement == 1.0


def test_decision_agreement_counts_same_winner() -> None:
    a1, a2 = np.array([1.0, 0.0, 2.0]), np.array([0.0, 1.0, 1.0])
    b1, b2 = np.array([5.0, 0.0, 0.0]), np.array([0.0, 9.0, 1.0])
    assert decision_agreement(a1, a2, b1, b2) == pytest.approx(2 / 3)


def test_stored_model_passed_the_parity_gate_on_real_validation_samples(trained_store: Path) -> None:
    mv = ModelStore(trained_store).resolve("tiny")
    parity = mv.metadata["parity"]
    assert parity["passed"] is True
    assert parity["max_abs_diff"] <= 1e-4
    assert parity["decision_agreement"] == 1.0
    assert parity["n_pairs"] == mv.metadata["metrics"]["validation"]["pairs"]["n"] > 0
    for name in ("model.onnx", "tokenizer/tokenizer.json", "torch/reward_model.safetensors", "torch/config.json"):
        assert name in mv.files, name


def test_export_fails_past_tolerance(tiny_backbone: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel

    from model_store.engines.torch_model import RewardModel
    from model_store.scoring import TextPair
    from model_store.tokenization import PairTokenizer
    from training.export import ParityError, export_transformer

    torch.manual_seed(0)
    model = RewardModel(AutoModel.from_pretrained(tiny_backbone), hidden_size=32).eval()
    tok = PairTokenizer.from_dir(tiny_backbone, 32)
    texts = [TextPair("q", "good answer"), TextPair("q", "bad")]
    with pytest.raises(ParityError, match="tolerance"):
        export_transformer(model, tok, tiny_backbone, tmp_path / "m", texts, 1, atol=-1.0)


def test_int8_export_refuses_to_calibrate_without_training_items(tiny_backbone: Path, tmp_path: Path) -> None:
    from transformers import AutoModel

    from model_store.engines.torch_model import RewardModel
    from model_store.scoring import TextPair
    from model_store.tokenization import PairTokenizer
    from training.export import export_transformer

    model = RewardModel(AutoModel.from_pretrained(tiny_backbone), hidden_size=32).eval()
    tok = PairTokenizer.from_dir(tiny_backbone, 32)
    texts = [TextPair("q", "good answer"), TextPair("q", "bad")]
    with pytest.raises(ValueError, match="calibration_texts"):
        export_transformer(model, tok, tiny_backbone, tmp_path / "m", texts, 1, quantize=True)
    assert not (tmp_path / "m").exists()  # refused before anything was written


def test_export_traces_eager_attention_and_leaves_the_trained_model_as_it_was(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    import onnx
    import torch
    from transformers import AutoModel

    from model_store.engines.torch_model import RewardModel
    from training.export import export_onnx

    torch.manual_seed(0)
    backbone = AutoModel.from_pretrained(tiny_backbone, attn_implementation="sdpa")
    model = RewardModel(backbone, hidden_size=32).eval()
    export_onnx(model, tmp_path / "model.onnx")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    # Traced SDPA guards fully masked rows with IsNaN/Where around each Softmax (the slow
    # graph); eager attention is a plain Softmax over QK^T. The trainer's SDPA comes back after.
    assert "Softmax" in ops and "IsNaN" not in ops
    assert backbone.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    ("agreement", "batch_diff", "n_pairs", "qualifies"),
    [
        (1.0, 0.0, 164, True),
        (0.99, 1e-5, 100, True),  # every bound is inclusive
        (1.0, 0.0, 20, True),
        (0.9899, 0.0, 1000, False),  # one flip too many in 100 pairs
        (1.0, 2e-5, 164, False),  # an item would score differently alone and in a batch
        (1.0, 0.0, 19, False),  # too few pairs to tell
        (1.0, 0.0, 0, False),  # ratings or likes only: agreement is vacuous
    ],
)
def test_int8_default_gate(agreement: float, batch_diff: float, n_pairs: int, qualifies: bool) -> None:
    assert int8_qualifies_as_default(agreement, batch_diff, n_pairs) is qualifies


def test_agreement_over_no_pairs_is_undefined_not_perfect() -> None:
    empty = np.zeros(0)
    assert decision_agreement(empty, empty, empty, empty) is None
    ref = np.array([0.3, -0.2, 1.0])  # three rated items, no pairs
    close = check_parity(ref, ref + 5e-5, n_pairs=0, atol=1e-4)
    assert close.decision_agreement is None and close.passed  # the scores still matched
    assert close.as_dict()["decision_agreement"] is None
    assert not check_parity(ref, ref + 1e-3, n_pairs=0, atol=1e-4).passed


@pytest.mark.parametrize(
    ("agreement", "batch_diff", "n_pairs", "reason"),
    [
        (None, 0.0, 0, "no validation pairs to compare its decisions with fp32's on (the gate needs at least 20)"),
        (1.0, 0.0, 0, "no validation pairs"),  # a vacuous 1.0 from an older caller passes no more
        (1.0, 0.0, 19, "only 19 validation pairs (the gate needs at least 20)"),
        (0.98, 0.0, 100, "decision agreement with fp32 0.9800 is below 0.99"),
        (1.0, 2e-5, 100, "an item scores up to 2.0e-05 apart alone and in a batch (at most 1e-05 allowed)"),
        (0.99, 1e-5, 20, None),
    ],
)
def test_int8_default_gate_says_why_it_refuses(
    agreement: float | None, batch_diff: float, n_pairs: int, reason: str | None
) -> None:
    got = int8_default_refusal(agreement, batch_diff, n_pairs)
    assert got == reason if reason is None else got.startswith(reason)
    assert int8_qualifies_as_default(agreement, batch_diff, n_pairs) is (reason is None)
