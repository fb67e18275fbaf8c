"""The per-operator profile: hand-made profiles, then a really exported model at both precisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import bench_ops
from loadtest.data import synthetic_items


def _run(ts: int) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": 50}


def _node(op: str, ts: int, dur: int) -> dict:
    return {"cat": "Node", "name": f"{op}_{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_kernel_time_sums_node_events_by_operator_after_the_warmup_runs() -> None:
    profile = [
        _run(0), _node("MatMul", 1, 900), _node("Add", 2, 900),  # warm-up run: left out
        _run(100), _node("MatMul", 101, 30), _node("Add", 102, 5), _node("MatMul", 103, 20),
        _run(200), _node("MatMul", 201, 40), _node("Add", 202, 7),
        {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 1000},
        {"cat": "Node", "name": "MatMul_fence_before", "ts": 150, "dur": 1, "args": {"op_name": "MatMul"}},
    ]
    micros, calls, runs = bench_ops.kernel_time_by_op(profile, skip_runs=1)
    assert runs == 2
    assert micros == {"MatMul": 90, "Add": 12}
    assert calls == {"MatMul": 3, "Add": 2}
    assert bench_ops.kernel_time_by_op(profile, skip_runs=3) == ({}, {}, 0)


def test_profiles_a_stored_model_at_both_precisions(trained_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ops.json"
    argv = ["--store", str(trained_store), "--model", "tiny:1", "--items", "5", "--out", str(out)]
    assert bench_ops.main(argv) == 0
    results = json.loads(out.read_text())
    fp32, int8 = results["precisions"]["fp32"], results["precisions"]["int8"]
    assert fp32["items"] == int8["items"] == 5
    assert "MatMul" in fp32["ops"] and "MatMulIntegerToFloat" not in fp32["ops"]
    assert "MatMulIntegerToFloat" in int8["ops"]
    for r in (fp32, int8):
        assert r["ms_per_item"] == pytest.approx(sum(v["ms_per_item"] for v in r["ops"].values()))
        assert r["ms_per_item"] == pytest.approx(r["matrix_products_ms_per_item"] + r["other_ms_per_item"])
        assert 0.0 < r["matrix_products_ms_per_item"] < r["ms_per_item"]
    # int8 rewrites each weight MatMul into more nodes (per-row quantisation around it)
    assert int8["node_runs_per_item"] > fp32["node_runs_per_item"]
    printed = capsys.readouterr().out
    assert "fp32: " in printed and "int8: " in printed and "fp32 / int8 kernel time: x" in printed
    assert "MatMulIntegerToFloat" in printed


def test_refuses_bad_counts(trained_store: Path) -> None:
    with pytest.raises(SystemExit):
        bench_ops.main(["--store", str(trained_store), "--model", "tiny:1", "--items", "0"])


def test_synthetic_items_are_used_without_data(trained_store: Path) -> None:
    version = bench_ops.verified_version(trained_store, "tiny:1")
    r = bench_ops.profile_precision(version, "fp32", synthetic_items(2), threads=1)
    assert r["items"] == 2 and r["ms_per_item"] > 0.0
