"""The per-token int8 rewrite, on a model that was really trained and exported (tests/conftest.py)."""

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from model_store.scoring import TextPair
from model_store.store import ModelStore
from model_store.tokenization import PairTokenizer, pad_batch
from training.quantize import collect_statistics, gptq_rows, outlier_channels_of, quantize_per_token

CALIBRATION = [
    TextPair("How do I boil an egg?", "Put it in boiling water for about eight minutes."),
    TextPair("How do I boil an egg?", "I can't help with that."),
    TextPair("Tell me a joke.", "Why did the scarecrow win an award? He was outstanding in his field."),
    TextPair("What is the capital of France?", "Paris."),
]


def _weight_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    weights = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def _calibration(version_dir: Path) -> list[dict[str, np.ndarray]]:
    tokenizer = PairTokenizer.from_dir(version_dir / "tokenizer", 64)
    return [pad_batch([item], pad_id=tokenizer.pad_id) for item in tokenizer.encode(CALIBRATION)]


def test_every_constant_weight_matmul_is_rewritten_and_attention_stays_fp32(trained_store: Path, tmp_path: Path) -> None:
    version_dir = Path(ModelStore(trained_store).resolve("tiny").path)
    fp32 = onnx.load(str(version_dir / "model.onnx"))
    expected = len(_weight_matmuls(fp32))
    assert expected > 0

    out = tmp_path / "int8.onnx"
    assert quantize_per_token(version_dir / "model.onnx", out, _calibration(version_dir)) == expected
    int8 = onnx.load(str(out))
    side_weights = {i.name for i in int8.graph.initializer if i.name.endswith("/w_out")}
    assert [n for n in _weight_matmuls(int8) if n.input[1] not in side_weights] == []
    assert sum(n.op_type == "MatMulIntegerToFloat" for n in int8.graph.node) == expected
    # Attention's activation-by-activation MatMuls are left alone.
    activation_matmuls = sum(n.op_type == "MatMul" for n in fp32.graph.node) - expected
    assert sum(n.op_type == "MatMul" for n in int8.graph.node) == activation_matmuls + len(side_weights)
    # Weights are stored in 7 bits: every int8 weight lies in [-63, 63].
    int8_weights = [numpy_helper.to_array(i) for i in int8.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) == expected
    assert all(np.abs(w.astype(np.int16)).max() <= 63 for w in int8_weights)


def test_outlier_channels_have_zero_int8_rows_and_travel_in_fp32(trained_store: Path, tmp_path: Path) -> None:
    version_dir = Path(ModelStore(trained_store).resolve("tiny").path)
    out = tmp_path / "int8.onnx"
    quantize_per_token(version_dir / "model.onnx", out, _calibration(version_dir), outlier_channels=2, outlier_ratio=1.0)
    model = onnx.load(str(out))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    with_outliers = 0
    for node in model.graph.node:
        if node.op_type != "MatMulIntegerToFloat":
            continue
        input_prefix = node.input[0].removesuffix("xq")  # ptq/inN/
        mm_prefix = node.input[1].removesuffix("wq")  # ptq/mmN/
        levels = init[node.input[1]]
        if input_prefix + "outlier_idx" not in init:
            assert mm_prefix + "w_out" not in init
            continue
        idx = init[input_prefix + "outlier_idx"]
        assert 1 <= idx.size <= 2
        assert not levels[idx].any()  # saturated outlier values multiply zero
        assert init[mm_prefix + "w_out"].shape == (idx.size, levels.shape[1])
        with_outliers += 1
    # With the bar at the 90th percentile itself, every input has channels past it.
    assert with_outliers == sum(n.op_type == "MatMulIntegerToFloat" for n in model.graph.node)


def test_outlier_channels_are_the_ones_far_above_the_90th_percentile() -> None:
    max_abs = np.array([1.0] * 40 + [30.0, 1.5, 5.0, 9.0])
    assert outlier_channels_of(max_abs, limit=8, ratio=2.0).tolist() == [40, 42, 43]
    assert outlier_channels_of(max_abs, limit=2, ratio=2.0).tolist() == [40, 43]  # the largest first
    assert outlier_channels_of(np.ones(16), limit=8, ratio=2.0).size == 0  # a flat input has none


def test_gptq_with_uncorrelated_inputs_is_round_to_nearest() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 5))
    scale = np.abs(w).max(axis=0) / 63
    levels, final = gptq_rows(w, np.eye(16) * 7.0, scale, 63, np.zeros(16, bool))
    assert np.array_equal(levels, np.clip(np.round(w / scale), -63, 63).astype(np.int8))
    assert np.allclose(final, levels * scale)


def test_gptq_cuts_the_output_error_on_correlated_inputs() -> None:
    rng = np.random.default_rng(1)
    # 32 channels driven by 4 latent factors plus a little noise: strongly correlated.
    x = rng.normal(size=(2000, 4)) @ rng.normal(size=(4, 32)) + 0.05 * rng.normal(size=(2000, 32))
    w = rng.normal(size=(32, 8))
    scale = np.abs(w).max(axis=0) / 7  # a coarse 4-bit grid makes the difference plain
    rtn = np.clip(np.round(w / scale), -7, 7) * scale
    levels, _ = gptq_rows(w, x.T @ x, scale, 7, np.zeros(32, bool))
    assert np.abs(levels).max() <= 7
    err_rtn = np.linalg.norm(x @ w - x @ rtn)
    err_gptq = np.linalg.norm(x @ w - x @ (levels * scale))
    assert err_gptq < 0.5 * err_rtn


def test_gptq_leaves_exact_rows_unrounded_but_updated() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    w = rng.normal(size=(6, 3))
    scale = np.abs(w).max(axis=0) / 7
    exact = np.array([False, False, True, False, False, True])
    levels, final = gptq_rows(w, x.T @ x, scale, 7, exact)
    assert not levels[exact].any()
    # Row 0 is quantised before the exact rows, so they absorb its error: they differ from w.
    assert not np.allclose(final[exact], w[exact])
    assert np.allclose(final[~exact], levels[~exact] * scale)


def test_statistics_cover_every_quantised_input_with_real_rows_only(trained_store: Path) -> None:
    version_dir = Path(ModelStore(trained_store).resolve("tiny").path)
    feeds = _calibration(version_dir)
    stats = collect_statistics(version_dir / "model.onnx", feeds)
    fp32 = onnx.load(str(version_dir / "model.onnx"))
    assert set(stats) == {n.input[0] for n in _weight_matmuls(fp32)}
    tokens = sum(int(f["attention_mask"].sum()) for f in feeds)
    for s in stats.values():
        assert s.rows == tokens  # one item per feed: no padding rows
        assert np.allclose(s.gram, s.gram.T)
        assert np.all(np.diag(s.gram) <= s.rows * s.max_abs**2 + 1e-6)


def test_calibration_texts_come_from_training_items_of_every_shape() -> None:
    from training.data.examples import LikeExample, PairExample, scored_texts
    from training.pipeline import calibration_texts

    pairs = [PairExample(prompt=f"p{i}", chosen=f"c{i}", rejected=f"r{i}") for i in range(100)]
    like = LikeExample(prompt="lp", response="liked answer", liked=True)
    train = [*pairs[:50], like, *pairs[50:]]  # 201 scored texts, the like's in the middle
    texts = calibration_texts(train, n_items=20)
    assert len(texts) == 20 and len(set(texts)) == 20
    assert set(texts) <= set(scored_texts(train))
    assert TextPair("lp", "liked answer") in texts  # likes and ratings calibrate too
    assert {t.response[0] for t in texts} == {"c", "r", "l"}  # both sides of pairs
    # Spread over the whole set, not its first rows: the last tenth is represented.
    assert any(t.prompt in {f"p{i}" for i in range(90, 100)} for t in texts)
