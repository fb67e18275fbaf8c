"""Whether ONNX Runtime multiplies int8 exactly on this CPU, and the setting that makes it.

Stored int8 graphs (training/quantize.py) multiply u8 activations by s8 weights in
MatMulIntegerToFloat. With VNNI or AMX, ONNX Runtime sums those products in 32 bits: exact
and fast. On x86 without them, its u8 x s8 kernel first adds adjacent products in a 16-bit
accumulator that saturates once both are large (255 x 127 twice is 64,770, past 32,767), and
8-bit weights get there. The session entry `session.x64quantprecision=1` makes ONNX Runtime
convert such weights to u8 and run its exact u8 x u8 kernel instead. It does that on every
x86 CPU, VNNI ones too, where it buys nothing and costs speed: on an AVX-512 VNNI EPYC the HH
model's int8 ceiling in bench_serving was 63.0 items/s with the entry and 111.1 without it,
for the same scores (README, serving).

So the engine asks ONNX Runtime rather than reading CPU flags: a one-node probe graph whose
products saturate a 16-bit accumulator (`int8_probe.onnx`, beside this file) runs once per
process with ONNX Runtime's defaults, and only if its answer is wrong do sessions get the
entry. Either way every session multiplies exactly; the probe only decides what that costs.

`python -m model_store.int8_products` rewrites the probe file (needs the `onnx` package,
which the `train` extra installs); a test checks that the shipped file is what it writes.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger("plaudit.model_store")

PROBE_PATH = Path(__file__).with_name("int8_probe.onnx")
EXACT_PRODUCTS_ENTRY = "session.x64quantprecision"

_K, _N = 64, 8
_ZERO_POINT = 128


def probe_weights() -> np.ndarray:
    """s8 [64, 8] at full range, columns alternating +127 and -127."""
    weights = np.full((_K, _N), 127, np.int8)
    weights[:, 1::2] = -127
    return weights


def probe_activations() -> np.ndarray:
    """u8 rows: all 255 (pairs overflow 16 bits), all 200 (they still do), and 255 every other
    column (each pair holds one product, which fits). One row alone is probed too, in case a
    kernel treats a single row differently."""
    activations = np.full((3, _K), 255, np.uint8)
    activations[1] = 200
    activations[2, ::2] = 0
    return activations


def exact_probe_result(activations: np.ndarray) -> np.ndarray:
    """What the probe graph computes in exact arithmetic: (a - 128) @ w, scales of 1."""
    exact = (activations.astype(np.int64) - _ZERO_POINT) @ probe_weights().astype(np.int64)
    return exact.astype(np.float32)


def probe_model_bytes() -> bytes:
    """The probe graph, built with `onnx` (what `int8_probe.onnx` holds)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMulIntegerToFloat", ["a", "w", "sa", "sw", "za"], ["y"], domain="com.microsoft")],
        "int8_products_probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, _K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, _N])],
        [
            numpy_helper.from_array(probe_weights(), "w"),
            numpy_helper.from_array(np.array(1.0, np.float32), "sa"),
            numpy_helper.from_array(np.ones(_N, np.float32), "sw"),
            numpy_helper.from_array(np.array(_ZERO_POINT, np.uint8), "za"),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        producer_name="plaudit",
    )
    model.ir_version = 8  # readable by every onnxruntime the project allows (>=1.18)
    return bytes(model.SerializeToString())


def products_are_exact(options: ort.SessionOptions) -> bool:
    """Run the probe with `options` on the CPU provider: are its int8 products exact?"""
    session = ort.InferenceSession(PROBE_PATH.read_bytes(), options, providers=["CPUExecutionProvider"])
    activations = probe_activations()
    for rows in (activations, activations[:1]):
        if not np.array_equal(session.run(None, {"a": rows})[0], exact_probe_result(rows)):
            return False
    return True


@functools.cache
def default_products_exact() -> bool:
    """Does ONNX Runtime, left to its defaults, multiply int8 exactly on this CPU? (Probed once.)

    A probe that cannot run (its file missing from a broken install, an ONNX Runtime that
    refuses it) answers False: the setting then costs speed on some CPUs, never correctness.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return products_are_exact(options)
    except Exception as exc:  # onnxruntime raises its own exception types, not one base class
        log.warning(
            "could not probe ONNX Runtime's int8 products (%s: %s); asking for the exact kernel "
            "on every session, which may be slower on this CPU",
            type(exc).__name__,
            exc,
        )
        return False


def exact_integer_products(opts: ort.SessionOptions) -> ort.SessionOptions:
    """Make int8 MatMuls exact on this CPU at the least cost; returns `opts`, changed in place.

    A correctness setting, not tuning: the ONNX engine applies it to every session, the naive
    baseline's too, so that no CPU overflows the products a stored file asks for.
    """
    if not default_products_exact():
        opts.add_session_config_entry(EXACT_PRODUCTS_ENTRY, "1")
    return opts


def int8_kernel() -> str:
    """'u8s8' where ONNX Runtime's own int8 kernel is exact (VNNI, AMX, not x86), else 'u8u8'
    (the exact but slower kernel the setting above selects)."""
    return "u8s8" if default_products_exact() else "u8u8"


if __name__ == "__main__":
    PROBE_PATH.write_bytes(probe_model_bytes())
    print(f"wrote {PROBE_PATH}")
