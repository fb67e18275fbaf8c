"""int8 export: per-token dynamic quantisation of the ONNX graph's constant-weight MatMuls.

Why not ONNX Runtime's `quantize_dynamic`: it scales activations per *tensor*, so one scale
covers the whole batch, and an item's int8 score then depends on its batch-mates (measured
on the HH model: up to 0.18 apart alone and in a batch). The service promises the same score
alone or in any batch, so here every activation row (one token of one item) gets its own
scale, and the integer product is exact: batching cannot change a score.

Each rewritten MatMul(X, W) becomes
    X2  = X viewed as [rows, K]
    hi, lo = max_k, min_k X2[r, k] over the ordinary channels     one range per row (token)
    mid = (hi + lo) / 2,  sx = (hi - lo) / 254
    Xq  = QuantizeLinear(X2 - mid, sx, 128)                      uint8, per row (axis 0)
    Y2  = MatMulIntegerToFloat(Xq, Wq, 1, sw, 128) * sx          int8 weights, one scale per column
    Y   = (Y2 + [Gather(X2, outliers), mid] @ [W[outliers]; colsum(Wq * sw)]) viewed as [..., N]
MatMuls that share an input (Q, K and V) share its quantisation.

Each row is quantised around the middle of its own range rather than around 0: the FFN's
down-projection reads post-GELU rows spanning about [-0.17, max], and a range centred on 0
spends half of its levels on values that never occur. Since X2 = (X2 - mid) + mid, the centre
comes back exactly through the int8 weights' column sums, in the small fp32 side product that
also carries the outlier channels.

Three things keep the int8 scores close to fp32, fitted on calibration items (training data,
never the validation pairs the export's agreement gate reads):
- Outlier channels. A few hidden channels of a transformer carry values far above the rest
  (MiniLM's FFN inputs: ~28 against a 90th percentile of ~3), and a per-row range set by them
  leaves the others only a few levels. Channels whose calibration max |x| passes
  OUTLIER_RATIO x their input's 90th percentile (at most OUTLIER_CHANNELS per input) stay out
  of the range and multiply their fp32 weight rows in the side product; their int8 weight
  rows are zero.
- GPTQ rounding (Frantar et al., 2022). Rounding each weight to its nearest level ignores what
  the inputs look like. GPTQ quantises one input row of W at a time and spreads that row's
  rounding error over the rows not yet quantised, weighted by the inverse of the calibration
  Gram matrix X^T X, which minimises the error of X @ W rather than of W itself. Rows go in
  activation order (busiest channel first), while the most rows remain to absorb the error.
- 8-bit weights. x86 CPUs without VNNI multiply u8 x s8 through a 16-bit accumulator that
  8-bit weights can saturate; the ONNX engine therefore asks ONNX Runtime for its exact
  u8 x u8 kernel on the CPUs where a probe finds the default inexact
  (model_store.int8_products), so no CPU overflows an int8 product. Earlier versions stored
  7-bit weights to stay exact instead.
  (Float rounding in the fp32 parts still differs between CPU types, as in fp32, and
  re-quantisation can amplify it.)
On the HH model (`python -m loadtest.bench_training --skip trl`), decision agreement with fp32
on the 164 validation pairs went from 98.17% (7-bit weights, rows centred on 0, GPTQ in channel
order) to 99.39%, and the max |diff| from 0.043 to 0.018.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHT_BITS = 8
OUTLIER_CHANNELS = 8  # at most, per quantised input
OUTLIER_RATIO = 2.0  # a channel is an outlier past this multiple of its input's 90th-percentile max |x|
GPTQ_DAMPING = 0.01  # of the mean diagonal, added to X^T X so that it inverts
CENTRED = True  # each activation row quantised around the middle of its range
ACT_ORDER = True  # GPTQ takes the busiest input channels first
RECIPE = f"per_token_centred_w{WEIGHT_BITS}_gptq_actorder_outliers"  # stored in the metadata


@dataclass
class InputStatistics:
    """Calibration statistics of one quantised input, over all its rows."""

    gram: np.ndarray  # X^T X, [K, K], float64
    max_abs: np.ndarray  # max |x| per channel, [K]
    rows: int = 0


def outlier_channels_of(max_abs: np.ndarray, limit: int, ratio: float = OUTLIER_RATIO) -> np.ndarray:
    """Channels whose calibration max |x| exceeds `ratio` x the 90th percentile, largest first, at most `limit`.

    Most inputs have none (their spread is small enough for one per-row scale) and then pay
    nothing for the fp32 side product.
    """
    order = np.argsort(-max_abs, kind="stable")[:limit]
    return np.sort(order[max_abs[order] > ratio * np.percentile(max_abs, 90)])


def quantizable_matmuls(model) -> list:  # onnx.ModelProto -> list[onnx.NodeProto]
    """MatMuls by a constant 2-D weight; MatMuls of two activations (attention) stay fp32."""
    weights = {i.name: i for i in model.graph.initializer}
    return [
        node
        for node in model.graph.node
        if node.op_type == "MatMul"
        and len(node.input) == 2
        and node.input[1] in weights
        and len(weights[node.input[1]].dims) == 2
    ]


def collect_statistics(fp32_path: Path, feeds: Iterable[Mapping[str, np.ndarray]]) -> dict[str, InputStatistics]:
    """Run the fp32 graph over calibration feeds and gather each quantisable input's statistics.

    Feed one item at a time: then every row is a real token and padding biases nothing.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(fp32_path))
    names = list(dict.fromkeys(node.input[0] for node in quantizable_matmuls(model)))
    known = {o.name for o in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    stats: dict[str, InputStatistics] = {}
    for feed in feeds:
        values = session.run(names, {k: v for k, v in feed.items() if k in wanted})
        for name, value in zip(names, values, strict=True):
            x = value.reshape(-1, value.shape[-1])
            s = stats.get(name)
            if s is None:
                s = stats[name] = InputStatistics(np.zeros((x.shape[1],) * 2), np.zeros(x.shape[1]))
            s.gram += x.T @ x  # one item's rows in float32, the running sum in float64
            np.maximum(s.max_abs, np.abs(x).max(axis=0), out=s.max_abs)
            s.rows += x.shape[0]
    return stats


def gptq_rows(
    w: np.ndarray, gram: np.ndarray, scale: np.ndarray, q_max: int, exact: np.ndarray, act_order: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ over the input rows of w [K, N] with fixed per-column `scale` [N].

    Rows flagged in `exact` [K] are not rounded (they stay fp32 beside the int8 product) but
    still absorb the error of the rows before them. `act_order` quantises the rows of the
    busiest channels (largest diagonal of X^T X) first, while the most rows remain to absorb
    their error. Returns (integer levels [K, N] with the exact rows zeroed, the final fp32
    values [K, N] of every row), both in w's row order.
    """
    k = w.shape[0]
    order = np.argsort(-np.diag(gram), kind="stable") if act_order else np.arange(k)
    work = w[order].astype(np.float64)
    h = gram[np.ix_(order, order)].copy()
    exact = exact[order]
    dead = np.diag(h) == 0  # a channel that never fires: its weights cannot matter
    h[dead, dead] = 1.0
    work[dead] = 0.0
    h[np.diag_indices(k)] += GPTQ_DAMPING * np.mean(np.diag(h))
    # Upper Cholesky factor of H^-1: row i holds the error-propagation weights for rows > i.
    h_inv_upper = np.linalg.cholesky(np.linalg.inv(h)).T
    levels = np.zeros((k, w.shape[1]), dtype=np.int8)
    for i in range(k):
        row = work[i]
        if exact[i]:
            continue  # kept as it is: no rounding error to spread
        q = np.clip(np.round(row / scale), -q_max, q_max)
        levels[i] = q.astype(np.int8)
        err = (row - q * scale) / h_inv_upper[i, i]
        work[i] = q * scale
        work[i + 1 :] -= np.outer(h_inv_upper[i, i + 1 :], err)
    back = np.argsort(order)
    return levels[back], work[back]


def quantize_per_token(
    fp32_path: Path,
    int8_path: Path,
    calibration: Iterable[Mapping[str, np.ndarray]],
    weight_bits: int = WEIGHT_BITS,
    outlier_channels: int = OUTLIER_CHANNELS,
    outlier_ratio: float = OUTLIER_RATIO,
    centred: bool = CENTRED,
    act_order: bool = ACT_ORDER,
) -> int:
    """Write the int8 graph; returns how many MatMuls were quantised.

    `calibration`: ONNX feeds (input_ids, attention_mask, token_type_ids), one item each,
    from training data.
    """
    import onnx
    from onnx import helper, numpy_helper

    stats = collect_statistics(fp32_path, calibration)
    model = onnx.load(str(fp32_path))
    graph = model.graph
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    weights = {i.name: i for i in graph.initializer}
    targets = quantizable_matmuls(model)
    to_rewrite = {id(node) for node in targets}
    if {node.input[0] for node in targets} - stats.keys():
        raise ValueError("int8 export needs at least one calibration item")
    q_max = 2 ** (weight_bits - 1) - 1

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    eps = const("ptq/eps", np.array(1e-12, np.float32))  # an all-zero row still gets a scale
    half = const("ptq/half", np.array(0.5, np.float32))
    inv_254 = const("ptq/inv254", np.array(1.0 / 254.0, np.float32))
    inv_127 = const("ptq/inv127", np.array(1.0 / 127.0, np.float32))
    one = const("ptq/one", np.array(1.0, np.float32))
    zero_point = const("ptq/zp", np.array(128, np.uint8))
    zero_point_1d = const("ptq/zp1d", np.array([128], np.uint8))

    rewritten: list[onnx.NodeProto] = []
    quantized_inputs: dict[str, tuple[str, str, str, str | None, np.ndarray]] = {}
    count = 0
    for node in graph.node:
        if id(node) not in to_rewrite:
            rewritten.append(node)
            continue
        x = node.input[0]
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        k, n = w.shape
        if x not in quantized_inputs:
            p = f"ptq/in{len(quantized_inputs)}/"
            outliers = outlier_channels_of(stats[x].max_abs, outlier_channels, outlier_ratio)
            ordinary = np.ones(k, np.float32)
            ordinary[outliers] = 0.0
            rewritten += [
                helper.make_node("Shape", [x], [p + "lead"], end=-1),
                helper.make_node("Reshape", [x, const(p + "rows_k", np.array([-1, k], np.int64))], [p + "x2"]),
            ]
            x_ordinary = p + "x2"
            if outliers.size:
                # Outlier channels read as 0 here, so they neither set a row's range nor its centre.
                x_ordinary = p + "x_ordinary"
                rewritten.append(helper.make_node("Mul", [p + "x2", const(p + "ordinary", ordinary)], [x_ordinary]))
            side: list[str] = []
            flat = const(p + "flat", np.array([-1], np.int64))
            if centred:
                # Each row is quantised around the middle of its own range: post-GELU rows (the
                # FFN's down-projection input) span about [-0.17, max], and a range centred on 0
                # would waste half of its levels on values that never occur. x = (x - mid) + mid;
                # mid travels in the fp32 side product, times the int8 weights' column sums.
                rewritten += [
                    helper.make_node("ReduceMax", [x_ordinary], [p + "hi"], axes=[1], keepdims=1),
                    helper.make_node("ReduceMin", [x_ordinary], [p + "lo"], axes=[1], keepdims=1),
                    helper.make_node("Add", [p + "hi", p + "lo"], [p + "sum"]),
                    helper.make_node("Mul", [p + "sum", half], [p + "mid"]),
                    helper.make_node("Sub", [p + "hi", p + "lo"], [p + "span"]),
                    helper.make_node("Mul", [p + "span", inv_254], [p + "scale0"]),
                    helper.make_node("Sub", [x_ordinary, p + "mid"], [p + "xc"]),
                ]
                to_quantize = p + "xc"
                side.append(p + "mid")
            else:
                rewritten += [
                    helper.make_node("Abs", [x_ordinary], [p + "abs"]),
                    helper.make_node("ReduceMax", [p + "abs"], [p + "amax"], axes=[1], keepdims=1),
                    helper.make_node("Mul", [p + "amax", inv_127], [p + "scale0"]),
                ]
                to_quantize = x_ordinary
            rewritten += [
                helper.make_node("Max", [p + "scale0", eps], [p + "scale_col"]),
                helper.make_node("Shape", [p + "scale_col"], [p + "n_rows"], end=1),
                helper.make_node("Expand", [zero_point_1d, p + "n_rows"], [p + "zps"]),
                helper.make_node("Reshape", [p + "scale_col", flat], [p + "scale"]),
                # Outlier channels are quantised too (as 0, or -mid when centred): their int8
                # weight rows are zero, so they add nothing here.
                helper.make_node("QuantizeLinear", [to_quantize, p + "scale", p + "zps"], [p + "xq"], axis=0),
            ]
            if outliers.size:
                idx = const(p + "outlier_idx", outliers.astype(np.int64))
                rewritten.append(helper.make_node("Gather", [p + "x2", idx], [p + "x_out"], axis=1))
                side.insert(0, p + "x_out")
            x_side = None
            if len(side) == 1:
                x_side = side[0]
            elif side:
                x_side = p + "x_side"
                rewritten.append(helper.make_node("Concat", side, [x_side], axis=1))
            quantized_inputs[x] = (p + "xq", p + "scale_col", p + "lead", x_side, outliers)
        xq, scale_col, lead, x_side, outliers = quantized_inputs[x]
        w_scale = np.abs(np.delete(w, outliers, axis=0)).max(axis=0) / q_max
        w_scale[w_scale == 0] = 1.0
        exact = np.zeros(k, bool)
        exact[outliers] = True
        levels, final = gptq_rows(w, stats[x].gram, w_scale, q_max, exact, act_order=act_order)
        p = f"ptq/mm{count}/"
        rewritten += [
            helper.make_node(
                "MatMulIntegerToFloat",
                [xq, const(p + "wq", levels), one, const(p + "w_scale", w_scale.astype(np.float32)), zero_point],
                [p + "y2"],
                domain="com.microsoft",
            ),
            helper.make_node("Mul", [p + "y2", scale_col], [p + "y2s"]),
        ]
        y2 = p + "y2s"
        if x_side is not None:
            # One small fp32 MatMul carries the outlier channels and, for centred rows, the
            # centre times the column sums of the int8 weights: x = xc + mid, so
            # x @ W = xc @ W + mid * sum_k W[k].
            side_rows = [final[outliers]]
            if centred:
                side_rows.append((levels.astype(np.float64) * w_scale).sum(axis=0, keepdims=True))
            w_side = const(p + "w_out", np.concatenate(side_rows).astype(np.float32))
            rewritten += [
                helper.make_node("MatMul", [x_side, w_side], [p + "y_out"]),
                helper.make_node("Add", [p + "y2s", p + "y_out"], [p + "y2sum"]),
            ]
            y2 = p + "y2sum"
        rewritten += [
            helper.make_node("Concat", [lead, const(p + "n", np.array([n], np.int64))], [p + "shape"], axis=0),
            helper.make_node("Reshape", [y2, p + "shape"], [node.output[0]]),
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
