"""What `plaudit train` / `plaudit eval` refuse, and how they report what they could not measure.

Real data files, real training (the linear model, or the tiny test backbone), the real CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from model_store.store import ModelStore
from plaudit.cli import main
from tests.conftest import SAMPLE_FILES
from training.data.examples import LikeExample
from training.data.split import split_by_prompt


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as strict JSON parsers do."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def likes(n: int, liked: bool) -> list[dict[str, object]]:
    return [{"prompt": f"question {i}?", "response": f"answer number {i}", "liked": liked} for i in range(n)]


def ratings(n: int, rating: float) -> list[dict[str, object]]:
    return [{"prompt": f"question {i}?", "response": f"reply {i}", "rating": rating} for i in range(n)]


def train_linear(tmp_path: Path, *data: Path, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["train", "--model", "linear", "--store", str(tmp_path / "store"), "--name", "m"]
    return [*args, *extra, *(x for p in data for x in ("--data", str(p)))]


def assert_nothing_registered(store: Path) -> None:
    assert not store.exists() or ModelStore(store).names() == []


# -- 1. too little or one-sided data is refused before training -------------------------------


def test_one_row_is_refused_for_its_empty_validation_split_naming_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write_jsonl(tmp_path / "one.jsonl", likes(1, liked=True))
    code = main(train_linear(tmp_path, one))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: data refused, nothing was written to the store: the validation split is empty")
    assert "1 example (1 like) from 1 conversation" in err
    assert "give more data, about at least 2 different conversations" in err and "--val-fraction" in err
    assert_nothing_registered(tmp_path / "store")


def test_rows_of_one_conversation_are_refused_whatever_the_val_fraction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"prompt": "Best pasta shape?", "chosen": "Rigatoni, it holds sauce.", "rejected": "Pasta."},
        {"prompt": "Best pasta shape?", "response": "Rigatoni.", "liked": True},
        {"prompt": "Best pasta shape?", "response": "Pasta.", "liked": False},
    ]
    data = write_jsonl(tmp_path / "one-conversation.jsonl", rows)
    assert main(train_linear(tmp_path, data, extra=("--val-fraction", "0.9"))) == 2
    err = capsys.readouterr().err
    assert "the validation split is empty: the data holds 3 examples (1 pair, 2 likes) from 1 conversation" in err
    assert_nothing_registered(tmp_path / "store")


@pytest.mark.parametrize(
    ("files", "found"),
    [
        ({"likes.jsonl": likes(12, liked=True)}, "likes are liked=true and there are no pairs or ratings"),
        ({"likes.jsonl": likes(12, liked=False)}, "liked=false"),
        ({"ratings.jsonl": ratings(12, 4)}, "ratings are 4 and there are no pairs or likes"),
        ({"likes.jsonl": likes(12, liked=True), "ratings.jsonl": ratings(12, 3)}, "ratings are 3 and there are no pairs"),
    ],
)
def test_a_training_split_without_preference_signal_is_refused_saying_what_it_found(
    files: dict[str, list[dict[str, object]]], found: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [write_jsonl(tmp_path / name, rows) for name, rows in files.items()]
    code = main(train_linear(tmp_path, *paths))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "in the training split, all " in err and found in err, err
    assert "nothing to learn a preference from; give pairs, likes of both values, or ratings that differ" in err
    assert_nothing_registered(tmp_path / "store")


def test_the_refusal_counts_the_training_split_it_looked_at(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = likes(12, liked=True)
    examples = [LikeExample(str(r["prompt"]), str(r["response"]), True) for r in rows]
    train, _ = split_by_prompt(examples)
    assert main(train_linear(tmp_path, write_jsonl(tmp_path / "likes.jsonl", rows))) == 2
    assert (
        f"in the training split, all {len(train)} likes are liked=true and there are no pairs or ratings: "
        "nothing to learn a preference from" in capsys.readouterr().err
    )


# -- 1 and 2. an undefined validation metric: a warning, and null (never NaN) in JSON ---------


@pytest.fixture
def one_sided_validation(tmp_path: Path) -> tuple[Path, Path]:
    """Likes of both values in training, but only liked=true ones in validation (seed 0, 0.1).

    Returns (all the data, the validation rows alone).
    """
    rows = [
        {"prompt": f"How do I fix problem {i}?", "response": ("Step by step: " if i % 2 else "No idea. ") + f"case {i}."}
        for i in range(60)
    ]
    examples = [LikeExample(str(r["prompt"]), str(r["response"]), True) for r in rows]
    _, val = split_by_prompt(examples)
    val_prompts = {e.prompt for e in val}
    assert 0 < len(val_prompts) < len(rows)
    for i, row in enumerate(rows):
        row["liked"] = True if row["prompt"] in val_prompts else bool(i % 2)
    return (
        write_jsonl(tmp_path / "likes.jsonl", rows),
        write_jsonl(tmp_path / "val.jsonl", [r for r in rows if r["prompt"] in val_prompts]),
    )


def test_an_undefined_validation_metric_is_null_and_warned_about_in_train_json(
    one_sided_validation: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = one_sided_validation
    assert main(train_linear(tmp_path, data, extra=("--json",))) == 0
    result = strict_json(capsys.readouterr().out)
    assert result["metrics"]["like_auc"] is None
    assert result["metrics"]["validation"]["likes"]["auc"] is None
    n_val = result["metrics"]["validation"]["likes"]["n"]
    assert result["warnings"] == [
        f"on the validation split, likes AUC is undefined: all {n_val} likes are liked=true (it needs likes of both values)"
    ]
    mv = ModelStore(tmp_path / "store").resolve("m")
    stored = strict_json((mv.path / "metadata.json").read_text())
    assert stored["metrics"]["like_auc"] is None

    # models list / show --json: null, standard JSON
    assert main(["models", "list", "--store", str(tmp_path / "store"), "--json"]) == 0
    assert strict_json(capsys.readouterr().out)[0]["metrics"]["like_auc"] is None
    assert main(["models", "show", "m", "--store", str(tmp_path / "store"), "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["metadata"]["metrics"]["like_auc"] is None
    assert main(["models", "list", "--store", str(tmp_path / "store")]) == 0
    assert "like_auc=n/a" in capsys.readouterr().out


def test_an_undefined_validation_metric_reads_n_a_with_a_warning_in_train_text(
    one_sided_validation: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = one_sided_validation
    assert main(train_linear(tmp_path, data)) == 0
    out = capsys.readouterr().out
    assert "  like_auc: n/a\n" in out
    assert re.search(r"^  warning: on the validation split, likes AUC is undefined: all \d+ likes are liked=true", out, re.M), out
    assert "nan" not in out.lower()


def test_eval_prints_an_undefined_metric_as_null_in_json_and_n_a_in_text(
    one_sided_validation: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, val = one_sided_validation
    assert main(train_linear(tmp_path, data, extra=("--json",))) == 0
    capsys.readouterr()
    argv = ["eval", "--store", str(tmp_path / "store"), "--model", "m", "--data", str(val)]
    assert main([*argv, "--json"]) == 0
    report = strict_json(capsys.readouterr().out)
    assert report["likes"]["auc"] is None
    assert report["warnings"] == [
        f"likes AUC is undefined: all {report['likes']['n']} likes are liked=true (it needs likes of both values)"
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "AUC n/a" in out and "warning: likes AUC is undefined" in out and "nan" not in out.lower()


# -- 4. the previous version's figures and the promotion, as readable lines --------------------


def test_train_text_shows_the_previous_version_as_one_line_and_confirms_the_promotion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(train_linear(tmp_path, *SAMPLE_FILES)) == 0
    capsys.readouterr()
    assert main(train_linear(tmp_path, *SAMPLE_FILES, extra=("--promote", "candidate"))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("registered m:2 in ")
    previous = [line for line in lines if "previous" in line]
    assert len(previous) == 1, lines
    match = re.fullmatch(r"  previous m:1 on this validation split: (.*)", previous[0])
    assert match, previous[0]
    figures = dict(item.split(" ") for item in match[1].split(", "))
    assert set(figures) == {"pairwise_accuracy", "ece", "like_auc", "rating_mae"}
    assert all(re.fullmatch(r"\d\.\d{4}", value) for value in figures.values()), figures
    assert lines[-1] == "  candidate -> m:2"
    assert ModelStore(tmp_path / "store").aliases("m") == {"candidate": 2}


def test_train_text_says_why_the_previous_version_was_not_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(train_linear(tmp_path, *SAMPLE_FILES)) == 0
    assert main(train_linear(tmp_path, *SAMPLE_FILES, extra=("--seed", "1"))) == 0
    out = capsys.readouterr().out
    assert (
        "  previous m:1: not compared: it was split with seed 0 (now 1), so it may have trained on this "
        "validation split\n" in out
    )


def test_train_json_names_the_promotion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(train_linear(tmp_path, *SAMPLE_FILES, extra=("--promote", "candidate", "--json"))) == 0
    result = strict_json(capsys.readouterr().out)
    assert result["promoted"] == {"alias": "candidate", "ref": "m:1"}
    assert result["warnings"] == []


# -- 3. no pairs: agreement is n/a, not a perfect 1.0 -------------------------------------------


def test_ratings_only_transformer_reports_no_agreement_and_keeps_int8_opt_in(
    tiny_backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings_csv = next(p for p in SAMPLE_FILES if p.suffix == ".csv")
    argv = ["train", "--backbone", str(tiny_backbone), "--epochs", "1", "--max-length", "48", "--lr", "1e-3"]
    argv += ["--quantize", "--no-progress", "--store", str(tmp_path / "store"), "--name", "r", "--data", str(ratings_csv)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "onnx parity: max |diff| " in out and "decision agreement n/a (no validation pairs)" in out, out
    assert "int8 decision agreement vs fp32: n/a (no validation pairs)" in out, out
    assert "1.0000" not in out and "nan" not in out.lower(), out
    assert "default precision: fp32 (int8 stays opt-in, --precision int8: no validation pairs" in out, out

    mv = ModelStore(tmp_path / "store").resolve("r")
    meta = strict_json((mv.path / "metadata.json").read_text())
    assert meta["parity"]["n_pairs"] == 0 and meta["parity"]["decision_agreement"] is None
    assert meta["parity"]["passed"] is True  # the scores themselves still matched within atol
    int8 = meta["int8"]
    assert int8["n_pairs"] == 0 and int8["decision_agreement_vs_fp32"] is None
    assert int8["pairwise_accuracy_fp32"] is None and int8["pairwise_accuracy_int8"] is None
    assert int8["qualifies_as_default"] is False and meta["default_precision"] == "fp32"
    assert int8["not_default_because"].startswith("no validation pairs")


# -- 6. help shows the defaults ------------------------------------------------------------


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_train_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["train"], capsys)
    for option, default in [
        ("--model", "default: transformer"),
        ("--store", "default: $PLAUDIT_STORE_DIR, else ./plaudit-data/models"),
        ("--name", "default: default"),
        ("--epochs", "default: 2"),
        ("--max-length", "default: 256"),
        ("--batch-size", "default: 16"),
        ("--lr", "default: 5e-05"),
        ("--seed", "default: 0"),
        ("--val-fraction", "default: 0.1"),
        ("--evals-per-epoch", "default: 2"),
        ("--rating-scale", "default: 1-5"),
    ]:
        start = text.index(f" {option} ", text.index("options:"))
        assert default in text[start : start + 250], (option, text[start : start + 250])


def test_eval_help_says_the_rating_scale_defaults_to_the_models_own(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["eval"], capsys)
    assert "(default: the scale the model was trained with, from its metadata)" in text
    assert "(default: all)" in text and "(default: onnx)" in text and "(default: auto)" in text
