from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from model_store.errors import (
    AliasError,
    ChecksumError,
    DamagedVersionError,
    ModelNotFoundError,
    StoreError,
    UnreadableAliasesError,
)
from model_store.references import parse_ref
from model_store.store import METADATA_DIGEST_FILE, ModelStore, ModelVersion

MODEL_BYTES = bytes(range(256)) * 40
TOKENIZER_JSON = '{"model": {"type": "WordPiece"}}'


def make_staging(directory: Path, marker: str = "a") -> Path:
    """A small model directory: a binary file, a nested file and a config."""
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(MODEL_BYTES + marker.encode())
    (directory / "tokenizer").mkdir()
    (directory / "tokenizer" / "tokenizer.json").write_text(TOKENIZER_JSON)
    (directory / "config.json").write_text(json.dumps({"marker": marker}))
    return directory


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return make_staging(tmp_path / "staging")


def register_n(store: ModelStore, tmp_path: Path, n: int, name: str = "rm") -> list[ModelVersion]:
    return [
        store.register(name, make_staging(tmp_path / f"stage-{name}-{i}", marker=str(i)), {"i": i})
        for i in range(n)
    ]


def flip_first_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


# -- register ------------------------------------------------------------------------


def test_register_writes_files_metadata_and_digests(store: ModelStore, staging: Path) -> None:
    mv = store.register("rm", staging, {"metrics": {"pairwise_acc": 0.71}, "base_model": "minilm"})

    assert (mv.name, mv.version, mv.ref) == ("rm", 1, "rm:1")
    assert mv.path == store.root / "rm" / "versions" / "1"
    assert (mv.path / "model.onnx").read_bytes() == MODEL_BYTES + b"a"
    assert (mv.path / "tokenizer" / "tokenizer.json").read_text() == TOKENIZER_JSON
    on_disk = json.loads((mv.path / "metadata.json").read_text())
    assert on_disk == mv.metadata
    assert on_disk["name"] == "rm" and on_disk["version"] == 1
    assert on_disk["metrics"] == {"pairwise_acc": 0.71}
    assert on_disk["created_at"].endswith("+00:00")
    assert mv.files == {
        "config.json": hashlib.sha256(b'{"marker": "a"}').hexdigest(),
        "model.onnx": hashlib.sha256(MODEL_BYTES + b"a").hexdigest(),
        "tokenizer/tokenizer.json": hashlib.sha256(TOKENIZER_JSON.encode()).hexdigest(),
    }
    # The staging directory is copied, not consumed.
    assert (staging / "model.onnx").exists()
    # metadata.json holds the checksums, so it has its own, beside it.
    digest = (mv.path / METADATA_DIGEST_FILE).read_text().strip()
    assert digest == hashlib.sha256((mv.path / "metadata.json").read_bytes()).hexdigest()
    store.verify(mv)


def test_verify_refuses_edited_metadata(store: ModelStore, staging: Path) -> None:
    mv = store.register("rm", staging, {"max_length": 256})
    path = mv.path / "metadata.json"
    path.chmod(0o644)
    path.write_text(path.read_text().replace('"max_length": 256', '"max_length": 8'))
    edited = store.get("rm", 1)
    with pytest.raises(ChecksumError, match=r"metadata.json: expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}"):
        store.verify(edited)


def test_verify_refuses_edited_metadata_whose_digest_was_removed(store: ModelStore, staging: Path) -> None:
    mv = store.register("rm", staging, {"max_length": 256})
    path = mv.path / "metadata.json"
    path.chmod(0o644)
    path.write_text(path.read_text().replace('"max_length": 256', '"max_length": 8'))
    (mv.path / METADATA_DIGEST_FILE).unlink()
    with pytest.raises(ChecksumError, match=r"metadata.json.sha256: missing, so metadata.json cannot be checked"):
        store.verify(store.get("rm", 1))


def test_version_files_are_read_only(store: ModelStore, staging: Path) -> None:
    mv = store.register("rm", staging, {})
    for relpath in [*mv.files, "metadata.json"]:
        mode = (mv.path / relpath).stat().st_mode
        assert mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0, relpath


def test_registering_again_makes_a_new_version_and_leaves_the_old_one(
    store: ModelStore, tmp_path: Path
) -> None:
    first = store.register("rm", make_staging(tmp_path / "s1", marker="one"), {})
    second = store.register("rm", make_staging(tmp_path / "s2", marker="two"), {})

    assert [first.version, second.version] == [1, 2]
    assert (first.path / "model.onnx").read_bytes().endswith(b"one")
    assert (second.path / "model.onnx").read_bytes().endswith(b"two")
    store.verify(store.get("rm", 1))


def test_register_rejects_bad_input_with_precise_messages(
    store: ModelStore, staging: Path, tmp_path: Path
) -> None:
    with pytest.raises(StoreError, match="invalid model name 'Bad Name'"):
        store.register("Bad Name", staging, {})
    with pytest.raises(StoreError, match="is not a directory"):
        store.register("rm", tmp_path / "missing", {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="contains no files"):
        store.register("rm", tmp_path / "empty", {})
    with pytest.raises(StoreError, match=r"metadata keys \['version'\] are set by the store"):
        store.register("rm", staging, {"version": 7})
    with pytest.raises(StoreError, match="metadata is not JSON"):
        store.register("rm", staging, {"path": Path("x")})
    (staging / "metadata.json").write_text("{}")
    with pytest.raises(StoreError, match="metadata.json would be overwritten"):
        store.register("rm", staging, {})
    assert store.names() == []


def test_concurrent_registrations_get_distinct_versions(store: ModelStore, tmp_path: Path) -> None:
    stagings = [make_staging(tmp_path / f"s{i}", marker=f"thread-{i}") for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda s: store.register("rm", s, {"from": s.name}), stagings))

    assert sorted(mv.version for mv in results) == list(range(1, 13))
    for mv in results:
        # Each version holds the content of the staging dir it was registered from.
        marker = "thread-" + mv.metadata["from"][1:]
        assert (mv.path / "model.onnx").read_bytes().endswith(marker.encode())
        store.verify(mv)
    assert [mv.version for mv in store.list("rm")] == list(range(1, 13))


def test_failed_registration_leaves_no_version(
    store: ModelStore, staging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rename = os.rename

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.register("rm", staging, {})
    monkeypatch.setattr(os, "rename", real_rename)

    assert store.names() == []
    assert not [p for p in (store.root / "rm").iterdir() if p.name.startswith(".register-")]
    # The crash came after the lock-held allocation had recorded number 1 in the counter, and
    # numbers are never reused (a reader may have seen rm:1 announced), so the next is 2.
    assert store.register("rm", staging, {}).version == 2


def test_leftovers_of_crashed_registrations_are_ignored(store: ModelStore, staging: Path) -> None:
    store.register("rm", staging, {})
    leftover = store.root / "rm" / ".register-0123abcd"
    leftover.mkdir()
    (leftover / "model.onnx").write_bytes(b"half")
    (store.root / "rm" / "versions" / "not-a-version").mkdir()
    (store.root / "junk").mkdir()

    assert store.names() == ["rm"]
    assert [mv.version for mv in store.list("rm")] == [1]
    assert store.resolve("rm").version == 1
    assert store.register("rm", staging, {}).version == 2


def test_next_registration_purges_tombstones_and_day_old_temporary_folders(
    store: ModelStore, staging: Path
) -> None:
    import os
    import time

    store.register("rm", staging, {})
    model_dir = store.root / "rm"
    abandoned, filling, tombstone = (model_dir / n for n in (".register-old", ".register-new", ".trash-1-x"))
    for folder in (abandoned, filling, tombstone):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    day_and_a_bit = time.time() - 25 * 3600
    os.utime(abandoned, (day_and_a_bit, day_and_a_bit))

    assert store.register("rm", staging, {}).version == 2
    assert not abandoned.exists() and not tombstone.exists()
    assert filling.exists()  # a registration may still be copying into it
    assert [mv.version for mv in store.list("rm")] == [1, 2]


def test_version_numbers_are_never_reused(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 3)
    store.delete("rm", 3)
    assert store.register("rm", make_staging(tmp_path / "again"), {}).version == 4


# -- lookup --------------------------------------------------------------------------


def test_names_list_get_latest(store: ModelStore, tmp_path: Path) -> None:
    assert store.names() == []
    register_n(store, tmp_path, 3, name="rm")
    register_n(store, tmp_path, 1, name="other")

    assert store.names() == ["other", "rm"]
    assert [mv.version for mv in store.list("rm")] == [1, 2, 3]
    assert store.get("rm", 2).metadata["i"] == 1
    assert store.latest("rm").version == 3


def test_unknown_names_and_versions_list_what_exists(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model store at .*: train a model into it"):
        store.list("rm")
    store.root.mkdir(parents=True)
    with pytest.raises(ModelNotFoundError, match="no model named 'rm' .*the store is empty"):
        store.list("rm")
    register_n(store, tmp_path, 2, name="rm")
    register_n(store, tmp_path, 1, name="other")

    with pytest.raises(ModelNotFoundError, match="no model named 'nope' .*models: other, rm"):
        store.resolve("nope")
    with pytest.raises(ModelNotFoundError, match="model 'rm' has no version 9; versions: 1, 2"):
        store.resolve("rm:9")
    with pytest.raises(ModelNotFoundError, match=r"no alias 'staging'; aliases: \(none\)"):
        store.resolve("rm@staging")
    store.promote("rm", 1)
    with pytest.raises(ModelNotFoundError, match="aliases: production -> 1"):
        store.resolve("rm@staging")


def test_resolve_rules(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 3)
    assert store.resolve("rm").version == 3  # no production alias: newest
    store.promote("rm", 2)
    store.promote("rm", 1, alias="staging")

    assert store.resolve("rm").version == 2  # production wins over newest
    assert store.resolve("rm@production").version == 2
    assert store.resolve("rm@staging").version == 1
    assert store.resolve("rm:3").version == 3
    assert store.aliases("rm") == {"production": 2, "staging": 1}


# -- verify --------------------------------------------------------------------------


def test_verify_names_the_changed_file_and_both_digests(store: ModelStore, staging: Path) -> None:
    mv = store.register("rm", staging, {})
    expected = mv.files["tokenizer/tokenizer.json"]
    target = mv.path / "tokenizer" / "tokenizer.json"
    flip_first_byte(target)
    actual = hashlib.sha256(target.read_bytes()).hexdigest()

    with pytest.raises(ChecksumError) as info:
        store.verify(mv)
    message = str(info.value)
    assert "rm:1" in message
    assert f"tokenizer/tokenizer.json: expected sha256 {expected}, got {actual}" in message
    assert "model.onnx" not in message


def test_verify_reports_missing_and_unexpected_files(store: ModelStore, staging: Path) -> None:
    mv = store.register("rm", staging, {})
    (mv.path / "config.json").unlink()
    (mv.path / "extra.bin").write_bytes(b"x")

    with pytest.raises(ChecksumError) as info:
        store.verify(mv)
    assert info.value.problems == [
        f"config.json: missing (expected sha256 {mv.files['config.json']})",
        "extra.bin: unexpected file, not recorded at registration",
    ]


# -- promote / rollback --------------------------------------------------------------


def test_promote_records_history(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 3)
    store.promote("rm", 1)
    store.promote("rm", 3)
    store.promote("rm", 3)  # promoting the current target again is a no-op

    raw = json.loads((store.root / "rm" / "aliases.json").read_text())
    assert raw == {"aliases": {"production": 3}, "history": {"production": [1, 3]}}


def test_promote_refuses_a_corrupt_version_and_keeps_the_old_alias(
    store: ModelStore, tmp_path: Path
) -> None:
    register_n(store, tmp_path, 2)
    store.promote("rm", 1)
    flip_first_byte(store.get("rm", 2).path / "model.onnx")

    with pytest.raises(ChecksumError, match="model.onnx: expected sha256"):
        store.promote("rm", 2)
    assert store.aliases("rm") == {"production": 1}
    assert store.resolve("rm").version == 1


def test_promote_refuses_unknown_versions_and_bad_aliases(
    store: ModelStore, tmp_path: Path
) -> None:
    register_n(store, tmp_path, 1)
    with pytest.raises(ModelNotFoundError, match="no version 5"):
        store.promote("rm", 5)
    with pytest.raises(StoreError, match="invalid alias 'Prod!'"):
        store.promote("rm", 1, alias="Prod!")
    assert store.aliases("rm") == {}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{bad", "line 1: Expecting property name"),
        (b"\xff\xfe", "not UTF-8 text"),
        ('{"aliases": {"production": "3"}}', "not in the expected shape"),
        ('{"aliases": {}, "history": {"production": [1, "x"]}}', "not in the expected shape"),
        ("[]", "not in the expected shape"),
    ],
)
def test_unreadable_aliases_are_refused_never_guessed_or_overwritten(
    store: ModelStore, tmp_path: Path, content: str | bytes, why: str
) -> None:
    register_n(store, tmp_path, 2)
    store.promote("rm", 1)
    path = store.root / "rm" / "aliases.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    before = path.read_bytes()
    for attempt in (
        lambda: store.aliases("rm"),
        lambda: store.resolve("rm"),
        lambda: store.promote("rm", 2),
        lambda: store.rollback("rm"),
        lambda: store.delete("rm", 2),
    ):
        with pytest.raises(UnreadableAliasesError) as info:
            attempt()
        assert str(info.value).startswith(f"the aliases of model 'rm' are unreadable: {path} {why}")
        assert "restore the file from a backup" in str(info.value)
    assert path.read_bytes() == before
    assert store.version_numbers("rm") == [1, 2]
    assert store.get("rm", 2).version == 2  # an exact version needs no alias


def test_crash_during_alias_replace_leaves_the_old_alias(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_n(store, tmp_path, 2)
    store.promote("rm", 1)

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="simulated crash"):
            store.promote("rm", 2)

    assert store.aliases("rm") == {"production": 1}
    assert store.resolve("rm").version == 1
    assert sorted(p.name for p in (store.root / "rm").iterdir() if "tmp" in p.name) == []


def test_a_damaged_version_can_still_be_deleted(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 2)
    metadata = store.root / "rm" / "versions" / "1" / "metadata.json"
    metadata.chmod(0o644)
    metadata.write_text("{ not json")
    with pytest.raises(DamagedVersionError, match="rm:1 is damaged: .*metadata.json line 1"):
        store.get("rm", 1)
    store.delete("rm", 1)
    assert store.version_numbers("rm") == [2]


def test_two_deletes_racing_for_one_version_leave_one_clear_refusal(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    register_n(store, tmp_path, 2)
    # Count the deletes that reach the model's lock: they have passed their first check (the
    # version exists) by then, so both are in the race before the test lets either in.
    arrived = 0
    arrival = threading.Condition()
    real_locked = ModelStore._locked

    @contextmanager
    def counted_locked(self: ModelStore, name: str) -> Iterator[None]:
        nonlocal arrived
        with arrival:
            arrived += 1
            arrival.notify_all()
        with real_locked(self, name):
            yield

    monkeypatch.setattr(ModelStore, "_locked", counted_locked)
    lock = os.open(store.root / "rm" / ".lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # both deletes pass their first check, then wait here
    with ThreadPoolExecutor(2) as pool:
        try:
            racing = [pool.submit(store.delete, "rm", 1) for _ in range(2)]
            with arrival:
                assert arrival.wait_for(lambda: arrived == 2, timeout=30), "both deletes to reach the lock"
        finally:
            os.close(lock)  # lets them in; also when the test failed, or the pool would wait forever
        outcomes = [f.exception() for f in racing]
    assert outcomes.count(None) == 1
    (refused,) = [e for e in outcomes if e is not None]
    # Never an OSError from renaming a folder that is gone (what the loser used to get).
    assert isinstance(refused, ModelNotFoundError), refused
    # The loser passed the first check too: only the check under the lock can refuse it.
    assert "rm:1 was already deleted" in str(refused)
    assert store.version_numbers("rm") == [2]


def test_a_version_number_of_absurd_length_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="no version has 4400 digits"):
        parse_ref("rm:" + "9" * 4400)


def test_stray_temp_file_from_a_killed_promote_is_ignored(
    store: ModelStore, tmp_path: Path
) -> None:
    register_n(store, tmp_path, 2)
    store.promote("rm", 1)
    # What a process killed between write and rename leaves behind: a torn temp file.
    stray = store.root / "rm" / ".aliases.json.tmp-deadbeef"
    stray.write_text('{"aliases": {"production": 2')

    assert store.aliases("rm") == {"production": 1}
    assert store.resolve("rm").version == 1
    store.promote("rm", 2)
    assert store.resolve("rm").version == 2
    # The next registration (under the lock, where every such write happens) clears it.
    register_n(store, tmp_path / "more", 1)
    assert not stray.exists()


def test_rollback_walks_back_through_history(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 3)
    for version in (1, 2, 3):
        store.promote("rm", version)

    assert store.rollback("rm").version == 2
    assert store.resolve("rm").version == 2
    assert store.rollback("rm").version == 1
    with pytest.raises(AliasError, match=r"rm@production: no earlier version to roll back to"):
        store.rollback("rm")
    assert store.resolve("rm").version == 1
    store.promote("rm", 3)
    assert store.rollback("rm").version == 1


def test_a_second_rollback_says_there_is_no_earlier_version_not_that_it_only_pointed_at_one(
    store: ModelStore, tmp_path: Path
) -> None:
    """After 1 -> 2 and a rollback to 1, the alias has pointed at 2 as well: the refusal of a
    second rollback must not claim it has pointed only at version 1."""
    register_n(store, tmp_path, 2)
    store.promote("rm", 1)
    store.promote("rm", 2)
    assert store.rollback("rm").version == 1

    with pytest.raises(AliasError) as refused:
        store.rollback("rm")
    message = str(refused.value)
    assert "pointed only" not in message
    assert message == (
        "cannot roll back rm@production: no earlier version to roll back to: it points at "
        "version 1 and its history is [1] (a rollback drops the version it leaves); "
        "promote a version instead"
    )
    assert store.resolve("rm").version == 1


def test_rollback_of_an_unset_alias_is_a_clear_error(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 1)
    with pytest.raises(AliasError, match="cannot roll back rm@staging: the alias is not set"):
        store.rollback("rm", alias="staging")
    with pytest.raises(ModelNotFoundError, match="no model named 'nope'"):
        store.rollback("nope")


# -- delete --------------------------------------------------------------------------


def test_delete_refuses_an_aliased_version(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 2)
    store.promote("rm", 2)
    with pytest.raises(AliasError) as info:
        store.delete("rm", 2)
    message = str(info.value)
    assert "rm@production" in message and "promote another version" in message
    assert "--force" in message
    assert store.get("rm", 2).path.is_dir()


def test_delete_removes_the_version(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 2)
    store.delete("rm", 1)

    assert [mv.version for mv in store.list("rm")] == [2]
    assert not (store.root / "rm" / "versions" / "1").exists()
    assert not [p for p in (store.root / "rm").iterdir() if p.name.startswith(".trash-")]
    with pytest.raises(ModelNotFoundError, match="no version 1; versions: 2"):
        store.get("rm", 1)


def test_deleted_versions_leave_the_history(store: ModelStore, tmp_path: Path) -> None:
    register_n(store, tmp_path, 3)
    for version in (1, 2, 3):
        store.promote("rm", version)
    store.delete("rm", 2)

    assert store.rollback("rm").version == 1


def test_forced_delete_drops_the_alias_and_rollback_restores_the_previous(
    store: ModelStore, tmp_path: Path
) -> None:
    register_n(store, tmp_path, 3)
    store.promote("rm", 1)
    store.promote("rm", 2)
    store.delete("rm", 2, force=True)

    assert store.aliases("rm") == {}
    assert store.resolve("rm").version == 3  # no production: newest
    assert store.rollback("rm").version == 1
    assert store.aliases("rm") == {"production": 1}


def test_model_version_is_immutable_and_hashable(store: ModelStore, staging: Path) -> None:
    mv = store.register("rm", staging, {})
    with pytest.raises(AttributeError):
        mv.version = 5  # type: ignore[misc]
    assert mv == store.get("rm", 1)
    assert len({mv, store.get("rm", 1)}) == 1


# -- standard JSON: an undefined metric is null, never NaN -------------------------------


def test_register_refuses_nan_or_infinity_in_metadata_and_writes_nothing(store: ModelStore, staging: Path) -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(StoreError, match="metadata is not JSON: Out of range float values"):
            store.register("rm", staging, {"metrics": {"like_auc": bad}})
    assert store.names() == []
    mv = store.register("rm", staging, {"metrics": {"like_auc": None}})  # undefined: null
    assert json.loads((mv.path / "metadata.json").read_text())["metrics"] == {"like_auc": None}


def test_nan_in_the_metadata_of_an_older_version_reads_as_none(store: ModelStore, staging: Path) -> None:
    mv = store.register("rm", staging, {"metrics": {"like_auc": 0.25, "pairwise_accuracy": 0.75}})
    write_as_older_versions_did(mv.path, {"metrics": {"like_auc": float("nan"), "pairwise_accuracy": 0.75}})
    again = store.get("rm", 1)
    store.verify(again)  # still the bytes its digest names
    assert again.metadata["metrics"] == {"like_auc": None, "pairwise_accuracy": 0.75}


def write_as_older_versions_did(version_dir: Path, fields: dict[str, object]) -> None:
    """Rewrite a version's metadata.json with `fields` as Python's default json.dumps wrote
    them before metadata was held to standard JSON (NaN as a bare `NaN`), and its digest."""
    path = version_dir / "metadata.json"
    metadata = json.loads(path.read_text()) | fields
    data = (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode()
    assert b"NaN" in data or b"Infinity" in data
    for name, content in (("metadata.json", data), ("metadata.json.sha256", f"{hashlib.sha256(data).hexdigest()}\n".encode())):
        (version_dir / name).chmod(0o644)
        (version_dir / name).write_bytes(content)
