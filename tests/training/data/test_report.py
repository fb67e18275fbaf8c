"""describe() is JSON-able and complete; format_report() shows what matters to a person."""

from __future__ import annotations

import json
from pathlib import Path

from training.data.loaders import load_dataset
from training.data.report import describe, format_report

ROWS = [
    {"prompt": "p", "chosen": "a", "rejected": "b"},
    {"prompt": "p", "chosen": "a", "rejected": "b"},
    {"prompt": "p", "chosen": "b", "rejected": "a"},
    {"prompt": "q", "response": "r", "liked": True, "annotator": "ana"},
    {"prompt": "q", "response": "r", "liked": False, "annotator": "ben"},
    {"prompt": "q", "response": "s", "liked": False, "annotator": "ana"},
    {"prompt": "q", "response": "s", "liked": False, "annotator": "ben"},
]


def test_describe_and_format(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    dataset = load_dataset([path])
    d = describe(dataset)
    assert json.loads(json.dumps(d)) == d
    assert d["files"] == [str(path)] and d["sha256"] == dataset.sha256
    assert d["counts"] == {"pairs": 3, "ratings": 0, "likes": 4} and d["total"] == 7
    assert d["warnings"] == []
    assert d["duplicates"] == [{"shape": "pairs", "origins": [f"{path}:1", f"{path}:2"]}]
    assert [c["origins"] for c in d["contradictions"]] == [[f"{path}:1", f"{path}:2", f"{path}:3"]]
    likes = d["agreement"]["likes"]
    assert (likes["metric"], likes["items"], likes["annotators"]) == ("nominal", 2, 2)
    assert likes["alpha"] is not None
    assert [item["origins"] for item in likes["low_agreement"]] == [[f"{path}:4", f"{path}:5"]]
    assert d["agreement"]["ratings"]["alpha"] is None

    text = format_report(d)
    assert f"sha256: {dataset.sha256}" in text
    assert "examples: 7 (3 pairs, 0 ratings, 4 likes)" in text
    assert f"duplicate rows: 1\n  pairs x2: {path}:1, {path}:2" in text
    assert "contradictions: 1\n  pairs by (no annotator): chosen and rejected are swapped" in text
    assert f"likes: alpha {likes['alpha']:.3f} (nominal) over 2 items, 2 annotators, 1 item in disagreement" in text
    assert f"'q': ana=liked, ben=disliked ({path}:4, {path}:5)" in text
    assert "ratings: no items labelled by 2+ annotators" in text
