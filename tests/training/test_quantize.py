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
    # Centred rows: every int8 MatMul has a side product (its rows' centres, and any outliers).
    assert len(side_weights) == expected
    assert [n for n in _weight_matmuls(int8) if n.input[1] not in side_weights] == []
    assert sum(n.op_type == "MatMulIntegerToFloat" for n in int8.graph.node) == expected
    # Attention's activation-by-activation MatMuls are left alone.
    activation_matmuls = sum(n.op_type == "MatMul" for n in fp32.graph.node) - expected
    assert sum(n.op_type == "MatMul" for n in int8.graph.node) == activation_matmuls + len(side_weights)
    # 8-bit weights: symmetric levels in [-127, 127], and the full range is used.
    int8_weights = [numpy_helper.to_array(i) for i in int8.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) == expected
    assert all(np.abs(w.astype(np.int16)).max() == 127 for w in int8_weights)


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
        w_side = init[mm_prefix + "w_out"]
        scale = init[mm_prefix + "w_scale"]
        # The side product's last row is the centre's weight: the int8 weights' column sums.
        np.testing.assert_allclose(w_side[-1], (levels.astype(np.float64) * scale).sum(axis=0), rtol=1e-5, atol=1e-6)
        if input_prefix + "outlier_idx" not in init:
            assert w_side.shape == (1, levels.shape[1])
            continue
        idx = init[input_prefix + "outlier_idx"]
        assert 1 <= idx.size <= 2
        assert not levels[idx].any()  # whatever outlier channels quantise to multiplies zero
        assert w_side.shape == (idx.size + 1, levels.shape[1])
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


def test_activation_order_changes_the_order_not_the_layout() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=(8, 4))
    scale = np.abs(w).max(axis=0) / 63
    # Uncorrelated inputs: nothing to spread, so either order rounds to nearest, row for row.
    gram = np.diag(rng.uniform(1, 10, size=8))
    plain, _ = gptq_rows(w, gram, scale, 63, np.zeros(8, bool))
    ordered, _ = gptq_rows(w, gram, scale, 63, np.zeros(8, bool), act_order=True)
    assert np.array_equal(ordered, plain)
    # Correlated inputs: exact rows stay unrounded where they were, whatever the order.
    x = rng.normal(size=(400, 8)) * np.arange(1, 9)  # channel 7 is the busiest
    exact = np.zeros(8, bool)
    exact[2] = True
    levels, final = gptq_rows(w, x.T @ x, scale, 63, exact, act_order=True)
    assert not levels[2].any() and levels[~exact].any()
    assert np.allclose(final[~exact], levels[~exact] * scale)
    # The busiest channel goes first, so it is rounded to nearest: no error reached it yet.
    assert np.array_equal(levels[7], np.clip(np.round(w[7] / scale), -63, 63))


def _one_matmul_model(path: Path, w: np.ndarray) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, w.shape[1]])],
        [numpy_helper.from_array(w.astype(np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_centred_rows_halve_the_error_on_one_sided_activations(tmp_path: Path) -> None:
    """Post-GELU rows span about [-0.17, max]: a range centred on 0 wastes half of its levels."""
    import onnxruntime as ort

    from model_store.int8_products import exact_integer_products
    from model_store.onnx_scorer import session_options

    rng = np.random.default_rng(4)
    # Weights on an 8-bit grid (every column reaches 127 levels), so only the activations round.
    w = rng.integers(-127, 128, size=(64, 16)) / 64.0
    w[0] = 127 / 64.0
    z = rng.normal(size=(300, 64)) * rng.uniform(0.5, 3, size=(300, 1))
    x = (0.5 * z * (1 + np.tanh(0.8 * z))).astype(np.float32)  # GELU-shaped: one-sided rows
    _one_matmul_model(tmp_path / "fp32.onnx", w)
    calibration = [{"x": x[i : i + 10]} for i in range(0, 200, 10)]
    held_out = x[200:]
    exact = held_out.astype(np.float64) @ w
    errors = {}
    for centred in (True, False):
        out = tmp_path / f"int8-{centred}.onnx"
        quantize_per_token(tmp_path / "fp32.onnx", out, calibration, centred=centred, outlier_channels=0)
        session = ort.InferenceSession(str(out), exact_integer_products(session_options(1)), providers=["CPUExecutionProvider"])
        y = session.run(None, {"x": held_out})[0]
        errors[centred] = float(np.sqrt(np.mean((y - exact) ** 2)))
        # Per row: the same item alone gives the same output (batching cannot move a score).
        alone = session.run(None, {"x": held_out[:1]})[0]
        np.testing.assert_allclose(alone[0], y[0], rtol=0, atol=1e-5)
    assert errors[True] < 0.6 * errors[False], errors


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
