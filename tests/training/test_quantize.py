"""The per-token int8 rewrite, on a model that was really trained and exported (tests/conftest.py)."""

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from model_store.store import ModelStore
from training.quantize import quantize_per_token


def _weight_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    weights = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def test_every_constant_weight_matmul_is_rewritten_and_attention_stays_fp32(trained_store: Path, tmp_path: Path) -> None:
    fp32_path = Path(ModelStore(trained_store).resolve("tiny").path) / "model.onnx"
    fp32 = onnx.load(str(fp32_path))
    expected = len(_weight_matmuls(fp32))
    assert expected > 0

    out = tmp_path / "int8.onnx"
    assert quantize_per_token(fp32_path, out) == expected
    int8 = onnx.load(str(out))
    assert _weight_matmuls(int8) == []
    assert sum(n.op_type == "MatMulIntegerToFloat" for n in int8.graph.node) == expected
    # Attention's activation-by-activation MatMuls are left alone.
    activation_matmuls = sum(n.op_type == "MatMul" for n in fp32.graph.node) - expected
    assert sum(n.op_type == "MatMul" for n in int8.graph.node) == activation_matmuls
    # Weights are stored in 7 bits: every int8 weight lies in [-63, 63].
    int8_weights = [numpy_helper.to_array(i) for i in int8.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) == expected
    assert all(np.abs(w.astype(np.int16)).max() <= 63 for w in int8_weights)
