"""The int8 exactness probe (model_store/int8_products.py) and the setting it decides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from model_store import int8_products
from model_store.int8_products import (
    EXACT_PRODUCTS_ENTRY,
    PROBE_PATH,
    exact_integer_products,
    exact_probe_result,
    probe_activations,
    probe_model_bytes,
    probe_weights,
    products_are_exact,
)


def _entry(options: ort.SessionOptions) -> str | None:
    try:
        return str(options.get_session_config_entry(EXACT_PRODUCTS_ENTRY))
    except RuntimeError:  # onnxruntime raises for an entry never set
        return None


def test_the_shipped_probe_is_the_graph_the_module_writes() -> None:
    pytest.importorskip("onnx", reason="rebuilding the probe needs the onnx package (train extra)")
    assert PROBE_PATH.read_bytes() == probe_model_bytes()


def test_the_probe_overflows_a_16_bit_accumulator_and_its_exact_result_is_numpys() -> None:
    """The kernel multiplies the raw u8 values (the zero point is taken off afterwards): in row
    0, two adjacent products sum to 2 x 255 x 127 = 64,770, past 32,767, so a saturating kernel
    cannot pass the probe; in row 2 every other product is 0, which fits."""
    raw = probe_activations().astype(np.int64)
    w = probe_weights().astype(np.int64)
    pair_sums = raw[:, 0::2, None] * w[None, 0::2, :] + raw[:, 1::2, None] * w[None, 1::2, :]
    assert np.abs(pair_sums[0]).max() > 32_767 and np.abs(pair_sums[1]).max() > 32_767
    assert np.abs(pair_sums[2]).max() <= 32_767
    exact = exact_probe_result(probe_activations())
    np.testing.assert_array_equal(exact, ((raw - 128) @ w).astype(np.float32))
    assert exact[0, 0] == 64 * 127 * 127


def test_with_the_setting_int8_products_are_exact_on_this_cpu() -> None:
    options = ort.SessionOptions()
    options.add_session_config_entry(EXACT_PRODUCTS_ENTRY, "1")
    assert products_are_exact(options)


def test_the_probe_fails_a_kernel_whose_products_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check compares outputs exactly: one unit off anywhere and it says inexact."""
    true_result = int8_products.exact_probe_result

    def off_by_one(activations: np.ndarray) -> np.ndarray:
        result = true_result(activations).copy()
        result[-1, -1] += 1
        return result

    monkeypatch.setattr(int8_products, "exact_probe_result", off_by_one)
    options = ort.SessionOptions()
    options.add_session_config_entry(EXACT_PRODUCTS_ENTRY, "1")
    assert not products_are_exact(options)


@pytest.mark.parametrize("default_exact", [True, False])
def test_the_setting_is_added_only_where_the_default_kernel_is_inexact(
    monkeypatch: pytest.MonkeyPatch, default_exact: bool
) -> None:
    monkeypatch.setattr(int8_products, "default_products_exact", lambda: default_exact)
    options = exact_integer_products(ort.SessionOptions())
    assert _entry(options) == (None if default_exact else "1")
    assert int8_products.int8_kernel() == ("u8s8" if default_exact else "u8u8")


def test_the_scorers_options_multiply_exactly_here_whatever_the_cpu() -> None:
    from model_store.onnx_scorer import session_options

    for options in (session_options(1), ort.SessionOptions()):
        assert products_are_exact(exact_integer_products(options))


def test_a_probe_that_cannot_run_falls_back_to_the_exact_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing probe file costs speed, never correctness: the sessions get the setting."""
    monkeypatch.setattr(int8_products, "PROBE_PATH", tmp_path / "missing.onnx")
    int8_products.default_products_exact.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="plaudit.model_store"):
            assert int8_products.default_products_exact() is False
        assert "could not probe" in caplog.text and "FileNotFoundError" in caplog.text
        assert _entry(exact_integer_products(ort.SessionOptions())) == "1"
    finally:
        int8_products.default_products_exact.cache_clear()  # the next caller probes the real file
