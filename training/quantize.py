"""int8 export: per-token dynamic quantisation of the ONNX graph's constant-weight MatMuls.

Why not ONNX Runtime's `quantize_dynamic`: it scales activations per *tensor*, so one scale
covers the whole batch, and an item's int8 score then depends on its batch-mates (measured
on the HH model: up to 0.18 apart alone and in a batch). The service promises the same score
alone or in any batch, so here every activation row (one token of one item) gets its own
scale, and the integer product is exact: batching cannot change a score.

Each rewritten MatMul(X, W) becomes
    X2  = X viewed as [rows, K]
    sx  = max_k |X2[r, k]| / 127                      one scale per row (token)
    Xq  = QuantizeLinear(X2, sx, 128)                 uint8, per row (axis 0)
    Y2  = MatMulIntegerToFloat(Xq, Wq, 1, sw, 128)    int8 weights, one scale per column
    Y   = (Y2 * sx) viewed as [..., N]
MatMuls that share an input (Q, K and V) share its quantisation. Weights use 7 bits: x86
CPUs without VNNI multiply u8 x s8 through a 16-bit accumulator that 8-bit weights can
saturate, and 7 bits keep the integer result exact, so scores do not depend on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WEIGHT_BITS = 7
RECIPE = f"per_token_w{WEIGHT_BITS}"  # stored in the metadata: what made the int8 file


def quantize_per_token(fp32_path: Path, int8_path: Path, weight_bits: int = WEIGHT_BITS) -> int:
    """Write the int8 graph; returns how many MatMuls were quantised."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_path))
    graph = model.graph
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    weights = {i.name: i for i in graph.initializer}
    q_max = 2 ** (weight_bits - 1) - 1

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    inv_127 = const("ptq/inv127", np.array(1.0 / 127.0, np.float32))
    eps = const("ptq/eps", np.array(1e-12, np.float32))  # an all-zero row still gets a scale
    one = const("ptq/one", np.array(1.0, np.float32))
    zero_point = const("ptq/zp", np.array(128, np.uint8))
    zero_point_1d = const("ptq/zp1d", np.array([128], np.uint8))
    column = const("ptq/column", np.array([-1, 1], np.int64))

    def is_quantizable(node: onnx.NodeProto) -> bool:
        """A MatMul by a constant 2-D weight; MatMuls of two activations (attention) stay fp32."""
        w = weights.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        return w is not None and len(w.dims) == 2

    rewritten: list[onnx.NodeProto] = []
    quantized_inputs: dict[str, tuple[str, str, str]] = {}
    count = 0
    for node in graph.node:
        if not is_quantizable(node):
            rewritten.append(node)
            continue
        x = node.input[0]
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        k, n = w.shape
        if x not in quantized_inputs:
            p = f"ptq/in{len(quantized_inputs)}/"
            rewritten += [
                helper.make_node("Shape", [x], [p + "lead"], end=-1),
                helper.make_node("Reshape", [x, const(p + "rows_k", np.array([-1, k], np.int64))], [p + "x2"]),
                helper.make_node("Abs", [p + "x2"], [p + "abs"]),
                helper.make_node("ReduceMax", [p + "abs"], [p + "amax"], axes=[1], keepdims=0),
                helper.make_node("Mul", [p + "amax", inv_127], [p + "scale0"]),
                helper.make_node("Max", [p + "scale0", eps], [p + "scale"]),
                helper.make_node("Shape", [p + "scale"], [p + "n_rows"]),
                helper.make_node("Expand", [zero_point_1d, p + "n_rows"], [p + "zps"]),
                helper.make_node("QuantizeLinear", [p + "x2", p + "scale", p + "zps"], [p + "xq"], axis=0),
                helper.make_node("Reshape", [p + "scale", column], [p + "scale_col"]),
            ]
            quantized_inputs[x] = (p + "xq", p + "scale_col", p + "lead")
        xq, scale_col, lead = quantized_inputs[x]
        w_scale = np.abs(w).max(axis=0) / q_max
        w_scale[w_scale == 0] = 1.0
        w_q = np.clip(np.round(w / w_scale), -q_max, q_max).astype(np.int8)
        p = f"ptq/mm{count}/"
        rewritten += [
            helper.make_node(
                "MatMulIntegerToFloat",
                [xq, const(p + "wq", w_q), one, const(p + "w_scale", w_scale.astype(np.float32)), zero_point],
                [p + "y2"],
                domain="com.microsoft",
            ),
            helper.make_node("Mul", [p + "y2", scale_col], [p + "y2s"]),
            helper.make_node("Concat", [lead, const(p + "n", np.array([n], np.int64))], [p + "shape"], axis=0),
            helper.make_node("Reshape", [p + "y2s", p + "shape"], [node.output[0]]),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(rewritten)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]  # the fp32 weights go
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(int8_path))
    return count
