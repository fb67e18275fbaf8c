from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from model_store.cli import register_commands
from model_store.store import ModelStore


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plaudit")
    register_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = make_parser().parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, fragment: str) -> None:
    assert err.startswith("error: ") and err.endswith("\n")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert fragment in err


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A store with rm:1..3 (rm:2 in production) and other:1."""
    store = ModelStore(tmp_path / "models")
    for name, count in (("rm", 3), ("other", 1)):
        for i in range(1, count + 1):
            staging = tmp_path / f"stage-{name}-{i}"
            staging.mkdir()
            (staging / "model.onnx").write_bytes(f"{name}-{i}".encode())
            metrics = {"pairwise_acc": 0.6 + i / 100, "eval_loss": 0.5, "n_eval": 200, "x": 1}
            store.register(name, staging, {"metrics": metrics, "base_model": "minilm"})
    store.promote("rm", 2)
    return tmp_path / "models"


def test_list_prints_a_table_with_aliases_and_metrics(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["models", "list", "--store", str(store_dir)], capsys)

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "CREATED", "ALIASES", "METRICS"]
    assert len(lines) == 5
    rm2 = next(line.split() for line in lines if line.startswith("rm ") and " 2 " in line)
    assert rm2[3] == "production"
    # Metrics are stored key-sorted; the first three numeric ones are shown.
    assert rm2[4:] == ["eval_loss=0.5", "n_eval=200", "pairwise_acc=0.62"]


def test_list_json_and_name_filter(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "list", "rm", "--store", str(store_dir), "--json"], capsys)

    assert code == 0
    rows = json.loads(out)
    assert [(r["name"], r["version"], r["aliases"]) for r in rows] == [
        ("rm", 1, []),
        ("rm", 2, ["production"]),
        ("rm", 3, []),
    ]
    assert rows[0]["metrics"]["pairwise_acc"] == pytest.approx(0.61)
    assert rows[0]["created_at"]


def test_list_on_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = run(["models", "list", "--store", str(tmp_path / "empty")], capsys)
    assert (code, err) == (0, "")
    assert out == f"no models in {tmp_path / 'empty'}\n"


def test_a_store_that_does_not_exist_is_an_error_not_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped --store must not look like an empty store.
    (tmp_path / "a-file").write_text("x")
    for missing in (tmp_path / "typo", tmp_path / "a-file"):
        code, out, err = run(["models", "list", "--store", str(missing)], capsys)
        assert (code, out) == (2, "")
        assert err.startswith(f"error: no model store at {missing}: train a model into it")


def test_store_defaults_to_env_then_working_directory(
    store_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLAUDIT_STORE_DIR", str(store_dir))
    code, out, _ = run(["models", "list", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 4

    monkeypatch.delenv("PLAUDIT_STORE_DIR")
    workdir = tmp_path / "work"
    (workdir / "plaudit-data").mkdir(parents=True)
    store_dir.rename(workdir / "plaudit-data" / "models")
    monkeypatch.chdir(workdir)
    code, out, _ = run(["models", "list", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 4


def test_show_resolves_refs(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "show", "rm", "--store", str(store_dir)], capsys)
    assert code == 0
    assert "ref: rm:2" in out and "aliases: production" in out
    assert "base_model: minilm" in out
    assert "  model.onnx  sha256:" in out

    code, out, _ = run(["models", "show", "rm:3", "--json", "--store", str(store_dir)], capsys)
    payload = json.loads(out)
    assert code == 0
    assert payload["ref"] == "rm:3" and payload["aliases"] == []
    assert payload["metadata"]["version"] == 3
    assert set(payload["metadata"]["files"]) == {"model.onnx"}


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("rm:abc", "version must be an integer, e.g. rm:3"),
        ("rm:9", "model 'rm' has no version 9; versions: 1, 2, 3"),
        ("rm@staging", "no alias 'staging'; aliases: production -> 2"),
        ("nope", "no model named 'nope'"),
    ],
)
def test_show_errors_are_one_line_with_exit_code_2(
    store_dir: Path, capsys: pytest.CaptureFixture[str], ref: str, fragment: str
) -> None:
    code, out, err = run(["models", "show", ref, "--store", str(store_dir)], capsys)
    assert code == 2 and out == ""
    assert_one_line_error(err, fragment)


def test_promote_and_rollback(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ModelStore(store_dir)
    argv = ["models", "promote", "rm:3", "--to", "staging", "--store", str(store_dir)]
    code, out, _ = run(argv, capsys)
    assert code == 0 and out == "rm@staging -> rm:3\n"

    code, out, _ = run(["models", "promote", "rm@staging", "--store", str(store_dir)], capsys)
    assert code == 0 and out == "rm@production -> rm:3 (was rm:2)\n"
    assert store.aliases("rm") == {"production": 3, "staging": 3}

    code, out, _ = run(["models", "rollback", "rm", "--store", str(store_dir)], capsys)
    assert code == 0 and out == "rm@production -> rm:2 (was rm:3)\n"
    assert store.resolve("rm").version == 2

    code, _, err = run(["models", "rollback", "rm", "--store", str(store_dir)], capsys)
    assert code == 2
    assert_one_line_error(err, "cannot roll back rm@production")


def test_promote_of_a_corrupt_version_fails_and_keeps_the_alias(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = store_dir / "rm" / "versions" / "3" / "model.onnx"
    model.chmod(0o644)
    model.write_bytes(b"tampered")

    code, _, err = run(["models", "promote", "rm:3", "--store", str(store_dir)], capsys)
    assert code == 1
    assert_one_line_error(err, "rm:3 failed verification: model.onnx: expected sha256")
    assert ModelStore(store_dir).aliases("rm") == {"production": 2}

    code, _, err = run(["models", "verify", "rm:3", "--store", str(store_dir)], capsys)
    assert code == 1
    code, out, _ = run(["models", "verify", "rm", "--store", str(store_dir)], capsys)
    assert code == 0 and out == "rm:2: 1 files OK\n"


def test_delete(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ModelStore(store_dir)
    code, _, err = run(["models", "delete", "rm:2", "--store", str(store_dir)], capsys)
    assert code == 2
    assert_one_line_error(err, "rm@production points at it")
    assert "--force" in err

    code, _, err = run(["models", "delete", "rm", "--store", str(store_dir)], capsys)
    assert code == 2
    assert_one_line_error(err, "delete needs an exact version, e.g. rm:3")

    code, out, _ = run(["models", "delete", "rm:1", "--store", str(store_dir)], capsys)
    assert code == 0 and out == "deleted rm:1\n"

    code, out, _ = run(["models", "delete", "rm:2", "--force", "--store", str(store_dir)], capsys)
    assert code == 0 and out == "deleted rm:2 and dropped alias production\n"
    assert [mv.version for mv in store.list("rm")] == [3]
    assert store.aliases("rm") == {}


def test_models_without_a_subcommand_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        make_parser().parse_args(["models"])
    assert info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_every_command_that_takes_a_store_reads_the_same_variable_as_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plaudit.cli import build_parser
    from service.settings import Settings

    monkeypatch.setenv("PLAUDIT_STORE_DIR", str(tmp_path / "shared-store"))
    parser = build_parser()
    for argv in (
        ["train", "--data", "pairs.jsonl"],
        ["eval", "--model", "m", "--data", "pairs.jsonl"],
        ["explain", "--model", "m"],
        ["up"],
    ):
        assert Path(parser.parse_args(argv).store) == tmp_path / "shared-store", argv[0]
    assert Settings().store_dir == tmp_path / "shared-store"


def test_list_shows_the_healthy_versions_and_names_a_damaged_one(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metadata = store_dir / "rm" / "versions" / "1" / "metadata.json"
    metadata.chmod(0o644)
    metadata.write_text("{ torn")
    code, out, err = run(["models", "list", "--json"] + ["--store", str(store_dir)], capsys)
    assert code == 1  # damaged: the store's content is at fault
    assert sorted((row["name"], row["version"]) for row in json.loads(out)) == [("other", 1), ("rm", 2), ("rm", 3)]
    assert_one_line_error(err, "rm:1 is damaged")
    assert "plaudit models delete" in err
    # ...and deleting it is how one gets rid of it.
    code, out, _ = run(["models", "delete", "rm:1", "--store", str(store_dir)], capsys)
    assert (code, out) == (0, "deleted rm:1\n")


def break_aliases(store_dir: Path, name: str = "rm") -> tuple[Path, str]:
    path = store_dir / name / "aliases.json"
    path.write_text("{bad")
    return path, "{bad"


def test_list_marks_an_unreadable_aliases_file_and_still_lists_every_model(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    break_aliases(store_dir)
    code, out, err = run(["models", "list", "--store", str(store_dir)], capsys)
    assert code == 1  # the store's content is at fault
    rows = [line.split()[:4] for line in out.splitlines()[1:]]
    assert [row[:2] for row in rows] == [["other", "1"], ["rm", "1"], ["rm", "2"], ["rm", "3"]]
    assert [row[3] for row in rows if row[0] == "rm"] == ["(unreadable)"] * 3  # not "-": unknown
    assert_one_line_error(err, f"the aliases of model 'rm' are unreadable: {store_dir / 'rm' / 'aliases.json'} line 1")
    assert "restore the file from a backup" in err and '{"aliases": {"production": 3}' in err

    code, out, err = run(["models", "list", "--json", "--store", str(store_dir)], capsys)
    assert code == 1 and err.count("\n") == 1
    assert {(r["name"], r["version"]): r["aliases"] for r in json.loads(out)} == {
        ("other", 1): [], ("rm", 1): None, ("rm", 2): None, ("rm", 3): None
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "show", "rm"],
        ["models", "show", "rm:1"],
        ["models", "promote", "rm:3"],
        ["models", "promote", "rm:3", "--to", "staging"],
        ["models", "rollback", "rm"],
        ["models", "delete", "rm:1"],
        ["models", "delete", "rm:2", "--force"],
    ],
)
def test_commands_on_a_model_with_unreadable_aliases_refuse_say_how_to_fix_and_write_nothing(
    store_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    path, text = break_aliases(store_dir)
    code, out, err = run([*argv, "--store", str(store_dir)], capsys)
    assert (code, out) == (1, "")
    assert_one_line_error(err, "the aliases of model 'rm' are unreadable")
    assert "plaudit models promote rm:VERSION --to ALIAS" in err
    assert path.read_text() == text  # never overwritten with guessed aliases
    assert ModelStore(store_dir).version_numbers("rm") == [1, 2, 3]
    # The other model is untouched by it.
    assert run(["models", "promote", "other:1", "--store", str(store_dir)], capsys)[0] == 0


def test_removing_an_unreadable_aliases_file_as_told_lets_the_model_be_promoted_again(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = break_aliases(store_dir)
    path.unlink()
    code, out, _ = run(["models", "promote", "rm:3", "--store", str(store_dir)], capsys)
    assert (code, out) == (0, "rm@production -> rm:3\n")


def one_file_staging(tmp_path: Path) -> Path:
    """A staging folder with one stand-in model file: enough to register metadata."""
    staging = tmp_path / "stage"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"m")
    return staging


def test_a_metric_past_floats_range_does_not_break_the_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "models")
    staging = one_file_staging(tmp_path)
    store.register("big", staging, {"metrics": {"n": 10**400, "acc": 0.7}})
    code, out, err = run(["models", "list", "--store", str(tmp_path / "models")], capsys)
    assert (code, err) == (0, "")
    assert "acc=0.7" in out and "n=" not in out


def test_plaudit_up_builds_a_train_command_that_parses_with_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `plaudit up` on a store with no model runs `plaudit train` with this command line; a Path
    # default for --store once broke it (argparse takes strings only).
    from plaudit.cli import build_parser, up_train_argv

    monkeypatch.setenv("PLAUDIT_STORE_DIR", str(tmp_path / "store"))
    parser = build_parser()
    train = parser.parse_args(up_train_argv(parser.parse_args(["up"])))
    assert (train.store, train.name, train.promote, train.quantize) == (str(tmp_path / "store"), "default", "production", True)
    assert len(train.data) == 3 and all(Path(p).is_file() for p in train.data)


def test_plaudit_up_serves_where_plaudit_port_and_host_say_unless_flags_say_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `plaudit up` once passed --host 127.0.0.1 --port 8000 to serve whatever the environment said.
    from plaudit.cli import build_parser, up_serve_argv
    from service.cli import settings_overrides
    from service.settings import Settings

    monkeypatch.setenv("PLAUDIT_PORT", "8765")
    monkeypatch.setenv("PLAUDIT_HOST", "0.0.0.0")
    parser = build_parser()
    for up_argv, where in ((["up"], ("0.0.0.0", 8765)), (["up", "--host", "::1", "--port", "9001"], ("::1", 9001))):
        serve = parser.parse_args(up_serve_argv(parser.parse_args([*up_argv, "--store", str(tmp_path)])))
        settings = Settings(**settings_overrides(serve))
        assert (settings.host, settings.port) == where, up_argv
        assert (Path(settings.store_dir), settings.model) == (tmp_path, "default")


def test_plaudit_up_refuses_a_bad_option_before_it_announces_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `plaudit up --epochs 0` said "training the default model" and then refused, naming
    # plaudit train's default epochs rather than up's.
    from plaudit.cli import main

    code = main(["up", "--epochs", "0", "--store", str(tmp_path / "store"), "--train-only"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out
    assert "--epochs must be" in err and "default" not in err
    assert not (tmp_path / "store").exists()


def test_a_reader_that_leaves_early_gets_no_error_line(store_dir: Path) -> None:
    # `plaudit models show rm:1 | head -3` printed "error: Broken pipe" on stderr.
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-m", "plaudit.cli", "models", "show", "rm:2", "--store", str(store_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the child has imported anything, let alone written
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1
    assert err == "", err


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as strict JSON parsers do."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_list_and_show_print_an_undefined_metric_as_null_and_n_a(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.model_store.test_store import write_as_older_versions_did

    store = ModelStore(tmp_path / "models")
    staging = one_file_staging(tmp_path)
    store.register("new", staging, {"metrics": {"pairwise_accuracy": 0.75, "like_auc": None}})
    old = store.register("old", staging, {"metrics": {"pairwise_accuracy": 0.75, "like_auc": 0.5}})
    write_as_older_versions_did(old.path, {"metrics": {"pairwise_accuracy": 0.75, "like_auc": float("nan")}})
    root = str(tmp_path / "models")

    code, out, err = run(["models", "list", "--store", root, "--json"], capsys)
    assert (code, err) == (0, "")
    rows = strict_json(out)
    assert [r["metrics"] for r in rows] == [{"like_auc": None, "pairwise_accuracy": 0.75}] * 2

    code, out, _ = run(["models", "list", "--store", root], capsys)
    assert code == 0
    for line in out.splitlines()[1:]:
        assert line.split()[-2:] == ["like_auc=n/a", "pairwise_accuracy=0.75"], line

    for ref in ("new", "old"):
        code, out, _ = run(["models", "show", ref, "--store", root, "--json"], capsys)
        assert code == 0
        assert strict_json(out)["metadata"]["metrics"]["like_auc"] is None


def test_train_without_the_train_extra_says_what_to_install(tmp_path: Path) -> None:
    # In the serving image (no torch) `plaudit train` ended in an import traceback.
    import subprocess
    import sys

    no_torch = (
        "import sys; sys.modules['torch'] = None; from plaudit.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    pairs = Path(__file__).resolve().parents[2] / "training" / "sample_data" / "pairs.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", no_torch, "train", "--data", str(pairs), "--model", "linear", "--store", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: plaudit train needs the train extra (torch is not installed): ")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
