"""`plaudit train` refuses what would fail or be lost after training, before any work starts.

The real CLI, real files and folders; the linear model on the sample pairs where a run must
get as far as registering, and data that does not exist where the refusal must come first
(a run that reached the data would say "data refused" instead).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_store.errors import StoreError
from model_store.store import ModelStore
from plaudit.cli import main
from tests.conftest import SAMPLE_DIR
from training.pipeline import TrainJob
from training.transformer_trainer import TransformerConfig

PAIRS = SAMPLE_DIR / "pairs.jsonl"


def train(store: Path | str, *extra: str, data: tuple[str, ...] = (str(PAIRS),), model: str = "linear") -> list[str]:
    argv = ["train", "--model", model, "--store", str(store), "--name", "m", "--no-progress"]
    return [*argv, *extra, *(x for p in data for x in ("--data", p))]


def refusal(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refusal prints, checked to be one line and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " INFO " not in line]  # the pipeline's log lines
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: "), err
    return lines[0]


# -- 1. --promote (and --name) are checked against the store's rule before training ------------


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--promote", "Bad Alias", "error: --promote: invalid alias 'Bad Alias': use lowercase letters"),
    ("--promote", "", "error: --promote: alias must be a non-empty string"),
    ("--name", "Bad", "error: --name: invalid model name 'Bad': use lowercase letters"),
])
def test_a_bad_alias_or_name_is_refused_before_data_training_or_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    store = tmp_path / "store"
    argv = train(store, flag, value, data=(str(tmp_path / "missing.jsonl"),))
    assert main(argv) == 2
    assert refusal(capsys).startswith(says)
    assert not store.exists()


def test_the_job_itself_refuses_a_bad_alias_so_no_caller_registers_first(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="--promote: invalid alias 'Prod'"):
        TrainJob(data=[str(PAIRS)], store=tmp_path / "s", name="m", kind="linear", promote_to="Prod")
    assert not (tmp_path / "s").exists()


def test_a_promotion_that_fails_after_registering_keeps_the_version_and_says_how_to_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    (store / "m" / "aliases.json").mkdir(parents=True)  # a folder where the alias file goes
    assert main(train(store, "--promote", "candidate")) == 1
    line = refusal(capsys)
    assert line.startswith("error: registered m:1, but could not point 'candidate' at it: Is a directory: ")
    assert f"plaudit models promote m:1 --to candidate --store {store}" in line
    assert ModelStore(store).version_numbers("m") == [1]  # nothing accepted is lost


# -- 2. and 6. the store must be a usable folder ----------------------------------------------


def test_a_store_that_is_a_file_is_refused_before_the_data_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storefile = tmp_path / "storefile"
    storefile.write_text("mine\n")
    assert main(train(storefile, data=(str(tmp_path / "missing.jsonl"),))) == 2
    assert refusal(capsys) == f"error: --store {storefile}: is a file, not a folder; give a folder (or a path to create one)"
    assert storefile.read_text() == "mine\n"


def test_a_store_below_a_file_is_refused_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "storefile").write_text("")
    assert main(train(tmp_path / "storefile" / "models")) == 2
    assert f"{tmp_path / 'storefile'}, above it, is a file, not a folder" in refusal(capsys)


def test_a_file_where_the_store_keeps_the_models_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "m").write_text("")
    assert main(train(store, data=(str(tmp_path / "missing.jsonl"),))) == 2
    assert f"{store / 'm'} is a file where the store keeps a folder" in refusal(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder all the same")
def test_a_read_only_store_is_refused_before_the_data_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o555)
    try:
        assert main(train(store, data=(str(tmp_path / "missing.jsonl"),))) == 2
        assert refusal(capsys).startswith(f"error: --store {store}: cannot write into it: Permission denied")
    finally:
        store.chmod(0o755)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where even root creates nothing")
def test_a_store_that_cannot_be_created_is_refused_before_the_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(train("/proc/plaudit-store", data=(str(tmp_path / "missing.jsonl"),))) == 2
    line = refusal(capsys)
    assert line.startswith("error: --store /proc/plaudit-store: cannot create it in /proc: ")
    assert line.endswith("; give a writable folder")


def test_a_filesystem_failure_at_registration_is_one_line_and_registers_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    (store / "m" / ".lock").mkdir(parents=True)  # a folder where the store's lock file goes
    assert main(train(store)) == 1
    line = refusal(capsys)
    assert line.startswith(f"error: cannot write the new version of 'm' into the store {store}: Is a directory: ")
    assert line.endswith("; nothing was registered")
    assert ModelStore(store).names() == []
    assert not [p for p in (store / "m").iterdir() if p.name.startswith(".register-")]


def test_the_write_probe_leaves_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    assert main(train(store, "--threads", "1")) == 0  # --threads applies to the linear model too
    assert "registered m:1" in capsys.readouterr().out
    assert not list(tmp_path.rglob(".plaudit-probe-*"))
    # A store still to be created is not created by a refused run.
    assert main(train(tmp_path / "new-store", data=(str(tmp_path / "missing.jsonl"),))) == 2
    assert not (tmp_path / "new-store").exists() and not list(tmp_path.glob(".plaudit-probe-*"))


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_store_is_refused_not_taken_as_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(train(value)) == 2
    assert refusal(capsys).startswith("error: --store is empty: give the model store's folder")
    assert list(tmp_path.iterdir()) == []


# -- 3. --checkpoint-dir ----------------------------------------------------------------------


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storefile = tmp_path / "storefile"
    storefile.write_text("")
    argv = train(tmp_path / "store", "--checkpoint-dir", str(storefile), model="transformer", data=(str(tmp_path / "missing.jsonl"),))
    assert main(argv) == 2
    assert refusal(capsys) == (
        f"error: --checkpoint-dir {storefile}: is a file, not a folder; give a folder (or a path to create one)"
    )
    assert not (tmp_path / "store").exists()


def test_resume_without_a_checkpoint_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(train(tmp_path / "store", "--resume", model="transformer")) == 2
    assert refusal(capsys) == "error: --resume continues from --checkpoint-dir DIR: give --checkpoint-dir too"


# -- 4. numeric ranges, checked when the config is built --------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("epochs", 0, "--epochs must be a whole number of at least 1, got 0"),
        ("batch_size", 0, "--batch-size must be a whole number of at least 1, got 0"),
        ("batch_size", -4, "--batch-size must be a whole number of at least 1, got -4"),
        ("evals_per_epoch", 0, "--evals-per-epoch must be a whole number of at least 1, got 0"),
        ("max_length", 0, "--max-length must be a whole number of at least 1, got 0"),
        ("freeze_layers", -1, "--freeze-layers must be a whole number of at least 0, got -1"),
        ("threads", 0, "--threads must be a whole number of at least 1, got 0"),
        ("lr", 0.0, "--lr must be a finite number above 0, got 0.0"),
        ("lr", float("nan"), "--lr must be a finite number above 0, got nan"),
        ("lr", float("inf"), "--lr must be a finite number above 0, got inf"),
        ("head_lr", -1.0, "head_lr must be a finite number above 0"),
        ("max_grad_norm", 0.0, "max_grad_norm must be a finite number above 0"),
        ("patience", 0, "patience must be a whole number of at least 1"),
        ("max_steps", 0, "max_steps must be a whole number of at least 1"),
        ("weight_decay", -0.1, "weight_decay must be a finite number of at least 0"),
        ("warmup_ratio", 1.5, "warmup_ratio must be between 0 and 1"),
        ("pooling", "max", "pooling must be one of response, mean, got 'max'"),
    ],
)
def test_an_out_of_range_option_is_refused_when_the_config_is_built(field: str, value: object, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        TransformerConfig(**{field: value})
    assert says in str(refused.value)


def test_the_config_takes_the_edges_of_each_range() -> None:
    TransformerConfig(epochs=1, batch_size=1, evals_per_epoch=1, freeze_layers=0, threads=1, lr=1e-9, max_steps=1,
                      warmup_ratio=0.0, weight_decay=0.0, patience=1)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--batch-size", "0"), "error: --batch-size must be a whole number of at least 1, got 0; give 1 or more"),
        (("--epochs", "0"), "error: --epochs must be a whole number of at least 1, got 0; give 1 or more"),
        (("--lr", "-1"), "error: --lr must be a finite number above 0, got -1.0; e.g. --lr 5e-5"),
        (("--evals-per-epoch", "0"), "error: --evals-per-epoch must be a whole number of at least 1, got 0"),
        (("--val-fraction", "1"), "error: --val-fraction must be between 0 and 1 (exclusive), e.g. 0.1; got 1.0"),
        (("--seed", "-1"), "error: --seed must be a whole number from 0 to 4294967295, got -1"),
    ],
)
def test_the_cli_shows_a_range_error_as_one_line_before_touching_data_or_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], says: str
) -> None:
    store = tmp_path / "store"
    assert main(train(store, *flags, model="transformer", data=(str(tmp_path / "missing.jsonl"),))) == 2
    assert refusal(capsys).startswith(says)
    assert not store.exists()


# -- 5. transformer flags with --model linear --------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--lr", "1e-3"), "error: --lr applies to --model transformer only; drop it to train --model linear"),
        (("--epochs", "2"), "error: --epochs applies to --model transformer only"),  # the default, given all the same
        (("--resume",), "error: --resume applies to --model transformer only"),
        (("--checkpoint-dir", "ck"), "error: --checkpoint-dir applies to --model transformer only"),
        (("--quantize",), "error: --quantize applies to --model transformer only"),
        (("--backbone", "somewhere"), "error: --backbone applies to --model transformer only"),
        (
            ("--lr", "1e-3", "--batch-size", "8", "--lr", "2e-3", "--ema-decay", "0.9"),
            "error: --lr, --batch-size, --ema-decay apply to --model transformer only; drop them to train --model linear",
        ),
    ],
)
def test_linear_refuses_the_transformer_flags_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], says: str
) -> None:
    store = tmp_path / "store"
    assert main(train(store, *flags)) == 2
    assert refusal(capsys).startswith(says)
    assert not store.exists() and not (tmp_path / "ck").exists()


# -- 7. the same data file twice ---------------------------------------------------------------


def test_the_same_data_file_twice_is_refused_however_it_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.jsonl").write_bytes(PAIRS.read_bytes())
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "pairs.jsonl")
    store = tmp_path / "store"
    for second, shown in [
        ("pairs.jsonl", "'pairs.jsonl' twice"),
        ("./pairs.jsonl", "'pairs.jsonl' and './pairs.jsonl'"),
        (str(tmp_path / "pairs.jsonl"), f"'pairs.jsonl' and '{tmp_path / 'pairs.jsonl'}'"),
        ("link.jsonl", "'pairs.jsonl' and 'link.jsonl'"),
    ]:
        assert main(train(store, data=("pairs.jsonl", second))) == 2
        assert refusal(capsys) == (
            f"error: --data names the same file {shown}: its rows would be trained on twice; give each file once"
        )
    assert not store.exists()
