"""The committed sample data: loads cleanly, is what the generator writes, and is learnable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from training.data.loaders import load_dataset
from training.data.quality import check_quality
from training.data.split import split_by_prompt

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "training" / "sample_data"
FILES = [SAMPLE_DIR / "pairs.jsonl", SAMPLE_DIR / "ratings.csv", SAMPLE_DIR / "likes.jsonl"]


def test_sample_data_loads_cleanly_with_expected_counts() -> None:
    dataset = load_dataset(FILES)
    assert dataset.counts() == {"pairs": 239, "ratings": 115, "likes": 169}
    assert dataset.warnings == []
    assert len({e.prompt for e in dataset.examples}) == 73
    quality = check_quality(dataset.examples)
    assert quality.duplicates == []
    assert quality.contradictions == []
    for shape, agreement in quality.agreement.items():
        assert agreement.items >= 10, shape
        assert agreement.alpha is not None and 0.5 < agreement.alpha < 0.95, shape
        assert 1 <= len(agreement.low_agreement) <= 3, shape
    assert sum(1 for p in dataset.pairs if p.margin > 0) > 20


def test_length_alone_does_not_tell_the_preferred_reply() -> None:
    dataset = load_dataset(FILES)
    longer_wins = sum(len(p.chosen) > len(p.rejected) for p in dataset.pairs) / len(dataset.pairs)
    assert 0.4 < longer_wins < 0.6
    liked = [len(e.response) for e in dataset.likes if e.liked]
    disliked = [len(e.response) for e in dataset.likes if not e.liked]
    assert abs(sum(liked) / len(liked) - sum(disliked) / len(disliked)) < 40


def test_split_of_sample_data_has_both_sides() -> None:
    train, val = split_by_prompt(load_dataset(FILES).examples)
    assert train and val
    assert not {e.prompt for e in train} & {e.prompt for e in val}


def test_committed_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SAMPLE_DIR / "generate.py"), "--out-dir", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for committed in FILES:
        assert (tmp_path / committed.name).read_bytes() == committed.read_bytes(), committed.name
