"""`check_loadable`: what a stored version cannot run, found from its metadata before loading."""

from __future__ import annotations

import pytest

from model_store.loading import check_loadable, load_scorer
from model_store.store import ModelStore

TRANSFORMER = {"kind": "transformer", "max_length": 64, "onnx": {"fp32": "model.onnx"}, "default_precision": "fp32"}


def refusal(metadata: dict, **options: str) -> str:
    where = {"engine": "onnx", "device": "cpu", "precision": "auto"} | options
    with pytest.raises(ValueError) as info:
        check_loadable(metadata, name="m", version="3", **where)
    return str(info.value)


def test_what_a_version_lacks_is_named_without_loading_it():
    assert refusal(TRANSFORMER, precision="int8").startswith("m:3 has no int8 ONNX file (has: fp32)")
    assert "is a linear model, which runs on --engine onnx only" in refusal({"kind": "linear"}, engine="torch")
    assert "metadata kind 'ranker' is not one of" in refusal({"kind": "ranker"})
    assert "--engine onnx cannot run precision bf16" in refusal(TRANSFORMER, precision="bf16")
    assert "is for --device cuda" in refusal(TRANSFORMER, engine="torch", precision="fp16")
    # These tests run without a GPU build of onnxruntime.
    assert "device=cuda needs onnxruntime-gpu" in refusal(TRANSFORMER, device="cuda")


def test_what_it_can_run_passes():
    check_loadable(TRANSFORMER, name="m", version="3", engine="onnx", device="cpu", precision="auto")
    check_loadable(TRANSFORMER, name="m", version="3", engine="torch", device="cpu", precision="auto")
    check_loadable({"kind": "linear"}, name="m", version="3", engine="onnx", device="cpu", precision="fp32")


def test_it_agrees_with_the_loader_on_a_real_version(trained_store):
    # The loader runs the same check first, so the two cannot drift apart.
    store = ModelStore(trained_store)
    mv = store.resolve("tiny:1")
    check_loadable(mv.metadata, name="tiny", version="1", engine="onnx", device="cpu", precision="int8")
    load_scorer(mv, precision="int8").close()
    with pytest.raises(ValueError, match="is for --device cuda"):
        load_scorer(mv, engine="torch", precision="bf16")


def test_a_linear_version_refuses_int8_it_has_no_file_for_rather_than_running_fp32(linear_store):
    # It used to load model.onnx (fp32) and report "int8": in `plaudit eval` and in the service.
    store = ModelStore(linear_store)
    mv = store.resolve("lin:1")
    assert "int8" not in mv.metadata["onnx"]
    for attempt in (
        lambda: check_loadable(mv.metadata, name="lin", version="1", engine="onnx", device="cpu", precision="int8"),
        lambda: load_scorer(mv, precision="int8"),
    ):
        with pytest.raises(ValueError) as info:
            attempt()
        assert str(info.value) == (
            "lin:1 has no int8 ONNX file (has: fp32); a linear model is exported in fp32 only: "
            "pick --precision fp32 (or auto)"
        )
    for precision in ("auto", "fp32"):
        load_scorer(mv, precision=precision).close()
