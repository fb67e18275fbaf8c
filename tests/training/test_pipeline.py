"""`plaudit train` / `plaudit eval` end to end through the real CLI entry point."""

import json
from pathlib import Path

import pytest

from model_store.store import ModelStore
from plaudit.cli import main
from tests.conftest import SAMPLE_FILES


def _data_args() -> list[str]:
    return [x for p in SAMPLE_FILES for x in ("--data", str(p))]


def test_eval_through_onnx_reproduces_the_accuracy_training_reported(
    trained_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mv = ModelStore(trained_store).resolve("tiny")
    reported = mv.metadata["metrics"]["validation"]
    code = main(["eval", "--store", str(trained_store), "--model", "tiny", "--split", "val", "--json", *_data_args()])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["ref"] == "tiny:1"
    # What ran: tiny:1's int8 export passed the gate, so "auto" ran int8.
    assert (out["model"]["engine"], out["model"]["precision"]) == ("onnx", mv.metadata["default_precision"])
    assert "warning" not in capsys.readouterr().err  # its own data: no warning about the split
    assert out["pairs"]["n"] == reported["pairs"]["n"]
    assert out["pairs"]["accuracy"] == reported["pairs"]["accuracy"]
    assert out["ratings"]["mae"] == pytest.approx(reported["ratings"]["mae"], abs=1e-6)
    assert out["likes"]["auc"] == pytest.approx(reported["likes"]["auc"], abs=1e-6)


def test_eval_report_has_every_section_and_plots(trained_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "--store", str(trained_store), "--model", "tiny@production", "--plots", str(tmp_path), *_data_args()])
    assert code == 0
    text = capsys.readouterr().out
    for needle in ("pairs (", "ECE", "chosen shorter", "chosen longer", "ratings (", "R²", "likes (", "AUC"):
        assert needle in text
    for png in ("score_distributions.png", "reliability.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_says_what_ran_what_it_could_not_plot_and_when_val_is_not_held_out(
    trained_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings = [str(p) for p in SAMPLE_FILES if p.suffix == ".csv"]
    argv = ["eval", "--store", str(trained_store), "--model", "tiny", "--data", *ratings]
    assert main([*argv, "--precision", "fp32", "--plots", str(tmp_path / "plots")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("model tiny:1 (onnx, fp32) on ")
    assert f"no plots written to {tmp_path / 'plots'}: they are drawn from pairs, and this data has none" in captured.err
    assert main([*argv, "--split", "val"]) == 0
    err = capsys.readouterr().err
    assert "warning: tiny:1 was trained on other data" in err and "--split val takes its fraction" in err


def test_metadata_records_data_hash_split_and_objectives(trained_store: Path) -> None:
    meta = ModelStore(trained_store).resolve("tiny").metadata
    assert len(meta["data"]["sha256"]) == 64
    assert meta["objectives"] == ["likes", "pairs", "ratings"]
    assert meta["split"]["val"] > 0 and meta["split"]["train"] > meta["split"]["val"]
    assert meta["kind"] == "transformer" and meta["max_length"] == 64
    assert (Path(ModelStore(trained_store).resolve("tiny").path) / "eval" / "reliability.png").is_file()


BAD_FILES = {
    "malformed.jsonl": ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": \n', ":2:"),
    "missing.jsonl": ('{"prompt": "p", "chosen": "a"}\n', "field 'rejected': missing"),
    "wrongtype.jsonl": ('{"prompt": "p", "chosen": 3, "rejected": "b"}\n', "field 'chosen'"),
    "scale.jsonl": ('{"prompt": "p", "response": "r", "rating": 9}\n', "outside the declared scale"),
    "empty.jsonl": ("", "empty"),
    "unknown.jsonl": ('{"question": "q", "answer": "a"}\n', "no known shape"),
}


@pytest.mark.parametrize("filename", sorted(BAD_FILES))
def test_bad_data_is_refused_and_nothing_is_written(
    filename: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, needle = BAD_FILES[filename]
    path = tmp_path / filename
    path.write_text(content)
    store = tmp_path / "store"
    code = main(["train", "--model", "linear", "--store", str(store), "--name", "m", "--data", str(path)])
    err = capsys.readouterr().err
    assert code != 0
    assert str(path) in err and needle in err
    assert "Traceback" not in err
    assert not store.exists() or ModelStore(store).names() == []


def test_train_linear_end_to_end_and_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    code = main(["train", "--model", "linear", "--store", str(store), "--name", "lin", "--promote", "candidate", "--json", *_data_args()])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ref"] == "lin:1" and 0.5 < result["metrics"]["pairwise_accuracy"] <= 1.0
    assert ModelStore(store).aliases("lin") == {"candidate": 1}
    assert main(["explain", "--store", str(store), "--model", "lin@candidate", "--top", "5"]) == 0
    from model_store.features import HAND_FEATURES

    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("lin:1: weights")
    assert lines[1] == "features:" and len(lines) == 1 + 1 + len(HAND_FEATURES) + 1 + 5
    assert lines[2 + len(HAND_FEATURES)] == "the 5 strongest terms (TF-IDF of the response):"
    shown = {line.split(None, 1)[1] for line in lines[2 : 2 + len(HAND_FEATURES)]}
    assert shown == set(HAND_FEATURES)


def test_training_logs_what_the_loader_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "typo.jsonl"
    typo.write_text(json.dumps({"prompt": "Any tips?", "chosen": "Yes, here are three.", "rejected": "No.", "margn": 1}) + "\n")
    args = ["train", "--model", "linear", "--store", str(tmp_path / "store"), "--name", "lin", "--json"]
    with caplog.at_level("WARNING"):
        assert main([*args, *_data_args(), "--data", str(typo)]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith(f"data: {typo}: ignored field(s) 'margn' (first on line 1)") for m in warned), warned


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resumed_training_matches_an_uninterrupted_run(tiny_backbone: Path, tmp_path: Path, ema_decay: float) -> None:
    from training.data.loaders import load_dataset
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    examples = load_dataset([SAMPLE_FILES[0]]).examples
    train, val = list(examples[:64]), list(examples[64:80])
    cfg = dict(
        backbone=str(tiny_backbone), max_length=48, epochs=2, batch_size=16, lr=1e-3, evals_per_epoch=2,
        patience=99, ema_decay=ema_decay,
    )
    full = TransformerTrainer(TransformerConfig(**cfg), progress=False).fit(train, val)

    ckpt = str(tmp_path / "ckpt")
    interrupted = TransformerTrainer(TransformerConfig(checkpoint_dir=ckpt, max_steps=5, **cfg), progress=False).fit(train, val)
    assert [h["step"] for h in interrupted.history] == [2, 4]
    assert (tmp_path / "ckpt" / "checkpoint.pt").is_file()
    resumed = TransformerTrainer(TransformerConfig(checkpoint_dir=ckpt, resume=True, **cfg), progress=False).fit(train, val)

    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history] == [2, 4, 6, 8]
    for got, want in zip(resumed.history, full.history, strict=True):
        assert got["val_loss"] == pytest.approx(want["val_loss"], abs=1e-5)


def test_resuming_with_other_options_or_data_is_refused(tiny_backbone: Path, tmp_path: Path) -> None:
    from training.data.loaders import load_dataset
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    examples = load_dataset([SAMPLE_FILES[0]]).examples
    train, val = list(examples[:64]), list(examples[64:80])
    cfg = dict(backbone=str(tiny_backbone), max_length=48, epochs=2, batch_size=16, lr=1e-3, evals_per_epoch=2)
    ckpt = str(tmp_path / "ckpt")
    TransformerTrainer(TransformerConfig(checkpoint_dir=ckpt, max_steps=3, **cfg), progress=False).fit(train, val)
    with pytest.raises(ValueError, match=r"written by a run with batch_size=16 \(this run: 8\)"):
        TransformerTrainer(TransformerConfig(checkpoint_dir=ckpt, resume=True, **(cfg | {"batch_size": 8})), progress=False).fit(
            train, val
        )
    with pytest.raises(ValueError, match=r"4 steps per epoch \(this run's data: 2\)"):
        TransformerTrainer(TransformerConfig(checkpoint_dir=ckpt, resume=True, **cfg), progress=False).fit(train[:32], val)
    # Other rows of the same number: the step counts agree, the data does not.
    other = list(examples[80:144])
    assert len(other) == len(train) and other != train
    with pytest.raises(ValueError, match=r"other training or validation data"):
        TransformerTrainer(TransformerConfig(checkpoint_dir=ckpt, resume=True, **cfg), progress=False).fit(other, val)
    # What may change on resume (max_steps, threads) is accepted.
    resumed = TransformerTrainer(TransformerConfig(checkpoint_dir=ckpt, resume=True, threads=1, **cfg), progress=False).fit(
        train, val
    )
    assert [h["step"] for h in resumed.history] == [2, 4, 6, 8]


def test_a_run_that_stopped_early_stays_stopped_when_resumed(tiny_backbone: Path, tmp_path: Path) -> None:
    import torch

    from training.data.loaders import load_dataset
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    examples = load_dataset([SAMPLE_FILES[0]]).examples
    train, val = list(examples[:64]), list(examples[64:80])
    cfg = dict(backbone=str(tiny_backbone), max_length=48, epochs=2, batch_size=16, lr=1e-3, evals_per_epoch=2, patience=2)
    ckpt = tmp_path / "ckpt" / "checkpoint.pt"
    TransformerTrainer(TransformerConfig(checkpoint_dir=str(ckpt.parent), max_steps=4, **cfg), progress=False).fit(train, val)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    saved["state"]["bad_evals"] = 2  # as the early stop at step 4 would have left it
    torch.save(saved, ckpt)
    resumed = TransformerTrainer(TransformerConfig(checkpoint_dir=str(ckpt.parent), resume=True, **cfg), progress=False).fit(
        train, val
    )
    assert [h["step"] for h in resumed.history] == [2, 4]  # no step after the stop


def test_weight_average_matches_hand_computed_values_and_swaps_back() -> None:
    import torch

    from training.transformer_trainer import WeightAverage

    param = torch.nn.Parameter(torch.zeros(2))
    average = WeightAverage([param], decay=0.5)
    with torch.no_grad():
        param.fill_(1.0)
    average.update()  # warm-up decay min(0.5, 2/11) = 2/11: 0 + (9/11) * (1 - 0)
    assert average.average[0].tolist() == pytest.approx([9 / 11] * 2)
    with torch.no_grad():
        param.fill_(3.0)
    average.update()  # min(0.5, 3/12) = 0.25
    assert average.average[0].tolist() == pytest.approx([0.25 * 9 / 11 + 0.75 * 3.0] * 2)
    with average.applied():
        assert param.tolist() == pytest.approx([0.25 * 9 / 11 + 0.75 * 3.0] * 2)
    assert param.tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="ema_decay must be between 0 and 1"):
        WeightAverage([param], decay=1.0)


def test_with_ema_the_returned_model_is_the_averaged_one_that_scored_best(tiny_backbone: Path) -> None:
    from training.collate import tokenize_examples
    from training.data.loaders import load_dataset
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    examples = load_dataset([SAMPLE_FILES[0]]).examples
    train, val = list(examples[:64]), list(examples[64:80])
    trainer = TransformerTrainer(
        TransformerConfig(
            backbone=str(tiny_backbone), max_length=48, epochs=2, batch_size=16, lr=1e-3,
            evals_per_epoch=2, patience=99, ema_decay=0.9,
        )
    )
    result = trainer.fit(train, val)
    best = max(result.history, key=lambda h: h["val_accuracy"])  # the first of equal scores wins
    best = next(h for h in result.history if h["val_accuracy"] == best["val_accuracy"])
    again = trainer.evaluate(tokenize_examples(val, trainer.tokenizer))
    assert again["val_loss"] == pytest.approx(best["val_loss"], abs=1e-6)


def test_training_changes_every_trainable_parameter(tiny_backbone: Path) -> None:
    import torch

    from training.data.loaders import load_dataset
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    examples = list(load_dataset([SAMPLE_FILES[0]]).examples[:32])
    trainer = TransformerTrainer(TransformerConfig(backbone=str(tiny_backbone), max_length=48, epochs=1, batch_size=16, lr=1e-3), progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.fit(examples, [])
    for name, param in trainer.model.named_parameters():
        if param.requires_grad:
            assert not torch.equal(before[name], param), f"{name} did not change"
        else:  # frozen word embeddings stay as they were
            assert torch.equal(before[name], param), name


def test_frozen_lower_layers_stay_put_and_the_rest_trains(tiny_backbone: Path) -> None:
    import torch

    from training.data.loaders import load_dataset
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    examples = list(load_dataset([SAMPLE_FILES[0]]).examples[:32])
    trainer = TransformerTrainer(
        TransformerConfig(backbone=str(tiny_backbone), max_length=48, epochs=1, batch_size=16, lr=1e-3, freeze_layers=1)
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.fit(examples, [])
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)}
    frozen = {n for n in before if n.startswith(("backbone.embeddings.", "backbone.encoder.layer.0."))}
    assert frozen and not frozen & changed
    assert {n for n in before if n.startswith(("backbone.encoder.layer.1.", "head."))} <= changed


def test_freezing_more_layers_than_the_backbone_has_is_refused(tiny_backbone: Path) -> None:
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    with pytest.raises(ValueError, match="freeze_layers must be between 1 and 2"):
        TransformerTrainer(TransformerConfig(backbone=str(tiny_backbone), freeze_layers=3), progress=False)


def test_layer_lr_decay_gives_each_block_its_own_rate(tiny_backbone: Path) -> None:
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    trainer = TransformerTrainer(TransformerConfig(backbone=str(tiny_backbone), lr=1e-3, head_lr=1e-2, layer_lr_decay=0.5), progress=False)
    optimizer, _ = trainer._optimizer(total_steps=10)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(trainer.model.named_parameters())
    # The tiny backbone has two blocks: the top one learns at lr, the one below at half,
    # the (trainable part of the) embeddings at a quarter, the head at head_lr.
    assert lr_of[id(named["backbone.encoder.layer.1.output.dense.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(named["backbone.encoder.layer.0.output.dense.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["backbone.embeddings.LayerNorm.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(named["head.weight"])] == pytest.approx(1e-2)
    # Frozen word embeddings get no optimizer state at all; every trainable tensor is in exactly one group.
    assert id(named["backbone.embeddings.word_embeddings.weight"]) not in lr_of
    assert len(lr_of) == sum(len(g["params"]) for g in optimizer.param_groups)
    assert set(lr_of) == {id(p) for p in trainer.model.parameters() if p.requires_grad}


def test_layer_lr_decay_outside_zero_to_one_is_refused(tiny_backbone: Path) -> None:
    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    with pytest.raises(ValueError, match=r"--layer-lr-decay must be in \(0, 1\] \(1 = off\), got 1.5"):
        TransformerTrainer(TransformerConfig(backbone=str(tiny_backbone), layer_lr_decay=1.5), progress=False)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ema_decay", 1.0, r"--ema-decay must be 0 \(off\) or between 0 and 1"),
        ("ema_decay", -0.1, r"--ema-decay must be 0 \(off\) or between 0 and 1"),
        ("label_smoothing", 0.5, r"--label-smoothing must be in \[0, 0.5\), got 0.5"),
        ("layer_lr_decay", 0.0, r"--layer-lr-decay must be in \(0, 1\] \(1 = off\), got 0.0"),
    ],
)
def test_a_bad_training_option_is_refused_when_the_config_is_built(field: str, value: float, message: str) -> None:
    from training.transformer_trainer import TransformerConfig

    with pytest.raises(ValueError, match=message):
        TransformerConfig(**{field: value})


def test_no_progress_prints_no_progress_bar_not_even_the_backbone_loading_one(
    tiny_backbone: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import SAMPLE_DIR

    capfd.readouterr()  # drop what building the backbone printed
    args = ["train", "--backbone", str(tiny_backbone), "--epochs", "1", "--max-length", "48", "--no-progress"]
    code = main([*args, "--store", str(tmp_path / "store"), "--name", "m", "--data", str(SAMPLE_DIR / "pairs.jsonl")])
    err = capfd.readouterr().err
    assert code == 0, err
    assert "Loading weights" not in err and "it/s]" not in err and "step/s" not in err, err


def test_a_quiet_backbone_load_leaves_the_progress_bar_switches_as_they_were(
    tiny_backbone: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    from training.transformer_trainer import TransformerConfig, TransformerTrainer

    cfg = TransformerConfig(backbone=str(tiny_backbone))
    capfd.readouterr()
    before = (hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled())
    TransformerTrainer(cfg, progress=False)
    assert "Loading weights" not in capfd.readouterr().err
    assert (hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled()) == before
    if before[0]:  # the bar this hides is really there when progress is on
        TransformerTrainer(cfg)
        assert "Loading weights" in capfd.readouterr().err


def test_the_cli_refuses_a_bad_option_before_touching_data_or_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    code = main(["train", "--data", str(tmp_path / "missing.jsonl"), "--store", str(store), "--name", "x", "--label-smoothing", "0.7"])
    assert code != 0
    assert "--label-smoothing must be in [0, 0.5), got 0.7" in capsys.readouterr().err
    assert not store.exists()


@pytest.mark.parametrize(
    ("text", "scale"),
    [("1-5", (1.0, 5.0)), ("0-10", (0.0, 10.0)), ("-2-2", (-2.0, 2.0)), ("-3--1", (-3.0, -1.0)), ("0.5-4.5", (0.5, 4.5))],
)
def test_a_rating_scale_may_have_signed_ends(text: str, scale: tuple[float, float]) -> None:
    from training.cli import parse_scale

    assert parse_scale(text) == scale


@pytest.mark.parametrize("command", [["data", "check"], ["train", "--name", "x"]])
@pytest.mark.parametrize("scale", ["0-inf", "0-1e400", "nan-5"])
def test_a_rating_scale_with_an_end_that_is_not_finite_is_a_usage_error(
    command: list[str], scale: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # data check ended on a traceback for these (train and eval caught them later).
    argv = [*command, *(["--data"] if command[0] == "train" else []), str(SAMPLE_FILES[0]), f"--rating-scale={scale}"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--rating-scale" in err and ("must be finite numbers" in err or "expected MIN-MAX" in err), err


def test_data_check_takes_a_scale_below_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "ratings.csv"
    data.write_text("prompt,response,rating\nhow?,like so,-2\nwhy?,because,1.5\n", encoding="utf-8")
    assert main(["data", "check", str(data), "--rating-scale=-2-2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["ratings"] == 2, report


def test_the_version_in_place_is_compared_only_on_a_split_it_did_not_train_on(tmp_path: Path) -> None:
    from training.pipeline import TrainJob, run_training

    store = tmp_path / "store"
    job = dict(data=[str(p) for p in SAMPLE_FILES], store=store, name="lin", kind="linear", progress=False)
    first = run_training(TrainJob(**job))
    assert "previous" not in first.metrics  # nothing was in place

    same_split = run_training(TrainJob(**job))
    previous = same_split.metrics["previous"]
    assert previous["ref"] == "lin:1"
    # The same model on the same rows: the version in place scores what the first run scored.
    assert previous["pairwise_accuracy"] == pytest.approx(first.metrics["pairwise_accuracy"])

    other_seed = run_training(TrainJob(**job, seed=1))
    assert other_seed.metrics["previous"] == {
        "ref": "lin:2",
        "skipped": "it was split with seed 0 (now 1), so it may have trained on this validation split",
    }
