"""Packing a stored version for the GPU machine and registering it there (both run here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtest import device_bundle
from model_store.loading import load_scorer
from model_store.scoring import TextPair
from model_store.store import ModelStore

TEXTS = [TextPair("How do I boil an egg?", "Simmer it for eight minutes."), TextPair("Hi", "Go away.")]


def test_a_packed_model_registers_and_scores_like_the_original(trained_store: Path, tmp_path: Path) -> None:
    data = tmp_path / "items.jsonl"
    data.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    bundle = tmp_path / "bundle"
    packed = device_bundle.pack(trained_store, "tiny", data, bundle, wheels=False)
    assert packed["ref"] == "tiny:1" and packed["fits_carry_limit"] and (bundle / "data" / "items.jsonl").read_text() == data.read_text()
    assert not (bundle / "model" / "model.onnx").exists()  # only what the torch engine reads travels

    ref = device_bundle.register(bundle, tmp_path / "gpu-store", "gpu-bench")
    store = ModelStore(tmp_path / "gpu-store")
    version = store.resolve(ref)
    store.verify(version)  # registered like any version: checksummed
    assert version.metadata["packed_from"]["ref"] == "tiny:1"
    original = load_scorer(ModelStore(trained_store).resolve("tiny"), engine="torch").score(TEXTS)
    carried = load_scorer(version, engine="torch").score(TEXTS)
    # fp16 weights: close to fp32, not equal.
    np.testing.assert_allclose(carried, original, atol=2e-2, rtol=0)
    with pytest.raises(device_bundle.BundleError, match="exists"):
        device_bundle.pack(trained_store, "tiny", None, bundle, wheels=False)


def test_only_transformer_versions_are_packed(linear_store: Path, tmp_path: Path) -> None:
    with pytest.raises(device_bundle.BundleError, match="only transformer versions"):
        device_bundle.pack(linear_store, "lin", None, tmp_path / "bundle", wheels=False)
    assert not (tmp_path / "bundle").exists()  # refused before anything was written


def test_register_without_a_bundle_says_how_to_make_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert device_bundle.main(["register", "--bundle", str(tmp_path), "--store", str(tmp_path / "s")]) == 1
    assert "no model.json; make the bundle with `pack`" in capsys.readouterr().err
