"""A directory of immutable, checksummed model versions with movable aliases.

Layout under the store root::

    <name>/versions/<n>/...           model files + metadata.json (files read-only)
    <name>/aliases.json               {"aliases": {"production": 3},
                                       "history": {"production": [1, 3]}}
    <name>/.lock                      flock'ed for every change to <name>
    <name>/.last_version              highest number ever allocated, so numbers are never reused

A version appears by renaming a fully written, fsynced temporary directory into
`versions/`, and disappears by renaming it out again, so readers never see half a
version. Temporary (`.register-*`) and tombstone (`.trash-*`) directories left by a
crash live outside `versions/` and are ignored; the next registration of that name
removes tombstones and temporary directories untouched for a day (a registration copies
its files outside the lock, so a younger temporary directory may still be filling).
"""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from model_store.errors import (
    AliasError,
    ChecksumError,
    DamagedVersionError,
    ModelNotFoundError,
    StoreError,
    UnreadableAliasesError,
)
from model_store.fileio import (
    TEMP_MARKER,
    atomic_write_bytes,
    atomic_write_json,
    copy_file_hashed,
    fsync_dir,
    sha256_file,
    write_file_synced,
)
from model_store.references import DEFAULT_ALIAS, ModelRef, parse_ref, validate_name

METADATA_FILE = "metadata.json"
# sha256 of metadata.json, written beside it at registration: the file checksums live in
# the metadata, so the metadata needs its own. Versions registered before it have none.
METADATA_DIGEST_FILE = "metadata.json.sha256"
RESERVED_METADATA_KEYS = frozenset({"name", "version", "created_at", "files"})
_VERSIONS_DIR = "versions"
_ALIASES_FILE = "aliases.json"
_LOCK_FILE = ".lock"
_COUNTER_FILE = ".last_version"
_REGISTER_PREFIX = ".register-"
_TRASH_PREFIX = ".trash-"
_ABANDONED_AFTER_S = 24 * 3600.0
_NO_STORE_HELP = "train a model into it (plaudit train --store DIR) or point --store / PLAUDIT_STORE_DIR at one"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version; `path` is its directory, `metadata` its metadata.json."""

    name: str
    version: int
    path: Path
    metadata: dict[str, Any] = field(hash=False, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def files(self) -> dict[str, str]:
        """Relative path (POSIX separators) -> sha256, as recorded at registration
        ({} if the metadata's table is not one, which `verify` refuses)."""
        files = self.metadata.get("files")
        return dict(files) if isinstance(files, dict) else {}


@dataclass
class _AliasState:
    aliases: dict[str, int]
    history: dict[str, builtins.list[int]]

    def to_json(self) -> dict[str, Any]:
        return {"aliases": self.aliases, "history": self.history}


def _list_files(directory: Path) -> builtins.list[str]:
    """Every regular file under `directory`, as sorted POSIX relative paths."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(directory, followlinks=True):
        for filename in filenames:
            full = Path(dirpath, filename)
            if full.is_file():
                found.append(full.relative_to(directory).as_posix())
    return sorted(found)


class ModelStore:
    """Register, look up, verify, alias and delete model versions under `root`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # -- lookup -------------------------------------------------------------------------

    def names(self) -> builtins.list[str]:
        """Models that have at least one version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            child.name
            for child in self.root.iterdir()
            if child.is_dir() and _is_valid_name(child.name) and self._version_numbers(child.name)
        )

    def list(self, name: str) -> builtins.list[ModelVersion]:
        """All versions of `name`, oldest first."""
        numbers = self._existing_versions(name)
        return [self._load(name, number) for number in numbers]

    def version_numbers(self, name: str) -> builtins.list[int]:
        """The version numbers of `name`, oldest first, without reading any metadata."""
        return self._existing_versions(name)

    def get(self, name: str, version: int) -> ModelVersion:
        self._require_version(name, version)
        return self._load(name, version)

    def latest(self, name: str) -> ModelVersion:
        return self._load(name, self._existing_versions(name)[-1])

    def aliases(self, name: str) -> dict[str, int]:
        self._existing_versions(name)
        return dict(self._read_alias_state(name).aliases)

    def aliases_of(self, name: str, version: int) -> builtins.list[str]:
        """The aliases of `name` that point at `version`, sorted."""
        return aliases_pointing_at(self.aliases(name), version)

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """"NAME" -> its production alias if set, else its newest version;
        "NAME@alias" and "NAME:version" -> exactly that."""
        parsed = ref if isinstance(ref, ModelRef) else parse_ref(ref)
        if parsed.version is not None:
            return self.get(parsed.name, parsed.version)
        aliases = self.aliases(parsed.name)
        if parsed.alias is not None:
            if parsed.alias not in aliases:
                raise ModelNotFoundError(
                    f"model {parsed.name!r} has no alias {parsed.alias!r}; aliases: "
                    + _describe_aliases(aliases)
                )
            return self.get(parsed.name, aliases[parsed.alias])
        if DEFAULT_ALIAS in aliases:
            return self.get(parsed.name, aliases[DEFAULT_ALIAS])
        return self.latest(parsed.name)

    # -- integrity ----------------------------------------------------------------------

    def verify(self, mv: ModelVersion) -> None:
        """Raise ChecksumError unless the version's files are exactly those registered."""
        if "files" not in mv.metadata or not isinstance(mv.metadata["files"], dict):
            raise ChecksumError(mv.ref, [f"{METADATA_FILE} has no 'files' table"])
        expected = mv.files
        present = set(_list_files(mv.path)) - {METADATA_FILE, METADATA_DIGEST_FILE}
        problems = []
        digest_path = mv.path / METADATA_DIGEST_FILE
        if digest_path.is_file():
            recorded = digest_path.read_text(encoding="utf-8").strip()
            actual = sha256_file(mv.path / METADATA_FILE)
            if actual != recorded:
                problems.append(f"{METADATA_FILE}: expected sha256 {recorded}, got {actual}")
        else:
            # register() always writes it; without it an edited metadata.json (which picks the
            # engine's file, precision and max length, and holds the file table) would pass.
            problems.append(f"{METADATA_DIGEST_FILE}: missing, so {METADATA_FILE} cannot be checked")
        for relpath in sorted(expected):
            if relpath not in present:
                problems.append(f"{relpath}: missing (expected sha256 {expected[relpath]})")
                continue
            actual = sha256_file(mv.path / relpath)
            if actual != expected[relpath]:
                problems.append(
                    f"{relpath}: expected sha256 {expected[relpath]}, got {actual}"
                )
        for relpath in sorted(present - set(expected)):
            problems.append(f"{relpath}: unexpected file, not recorded at registration")
        if problems:
            raise ChecksumError(mv.ref, problems)

    # -- changes ------------------------------------------------------------------------

    def register(
        self, name: str, staging_dir: Path | str, metadata: dict[str, Any]
    ) -> ModelVersion:
        """Copy every file under `staging_dir` into a new version of `name`.

        `staging_dir` is left untouched. The store adds name, version, created_at and
        files (relative path -> sha256) to `metadata`.
        """
        validate_name(name)
        staging = Path(staging_dir)
        if not staging.is_dir():
            raise StoreError(f"cannot register {name!r}: {staging} is not a directory")
        clashing = sorted(RESERVED_METADATA_KEYS & set(metadata))
        if clashing:
            raise StoreError(
                f"cannot register {name!r}: metadata keys {clashing} are set by the store; "
                "remove them"
            )
        try:
            # Standard JSON only: NaN and infinity are not JSON, and strict parsers refuse them
            # (an undefined metric is None, written as null).
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot register {name!r}: metadata is not JSON: {exc}") from None
        sources = _list_files(staging)
        if not sources:
            raise StoreError(f"cannot register {name!r}: {staging} contains no files")
        for own in (METADATA_FILE, METADATA_DIGEST_FILE):
            if own in sources:
                raise StoreError(
                    f"cannot register {name!r}: {staging / own} would be overwritten by the "
                    "store's own; pass the metadata's content as `metadata` instead"
                )

        model_dir = self.root / name
        versions_dir = model_dir / _VERSIONS_DIR
        new_model = not versions_dir.is_dir()
        versions_dir.mkdir(parents=True, exist_ok=True)
        if new_model:  # a first registration must survive a power cut too
            fsync_dir(model_dir)
            fsync_dir(self.root)
        # The copy is the slow part, so it happens before taking the lock.
        tmp = model_dir / f"{_REGISTER_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            files = {}
            for relpath in sources:
                target = tmp / relpath
                target.parent.mkdir(parents=True, exist_ok=True)
                files[relpath] = copy_file_hashed(staging / relpath, target)
            with self._locked(name):
                _purge_crash_leftovers(model_dir, keep=tmp)
                version = self._allocate_version(name)
                full_metadata = {
                    **metadata,
                    "name": name,
                    "version": version,
                    "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "files": files,
                }
                text = json.dumps(full_metadata, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
                metadata_bytes = (text + "\n").encode("utf-8")
                write_file_synced(tmp / METADATA_FILE, metadata_bytes)
                digest = hashlib.sha256(metadata_bytes).hexdigest()
                write_file_synced(tmp / METADATA_DIGEST_FILE, f"{digest}\n".encode())
                _seal(tmp)
                final = versions_dir / str(version)
                os.rename(tmp, final)
                fsync_dir(versions_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ModelVersion(name=name, version=version, path=final, metadata=full_metadata)

    def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS) -> None:
        """Point `alias` at `version`, after checking the version's files are intact."""
        validate_name(alias, kind="alias")
        mv = self.get(name, version)
        self.verify(mv)
        with self._locked(name):
            if not mv.path.is_dir():
                raise ModelNotFoundError(f"{mv.ref} was deleted while it was being promoted")
            state = self._read_alias_state(name)
            state.aliases[alias] = version
            history = state.history.setdefault(alias, [])
            if not history or history[-1] != version:
                history.append(version)
            atomic_write_json(self.root / name / _ALIASES_FILE, state.to_json())

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Point `alias` back at the version it pointed at before the last promote."""
        validate_name(alias, kind="alias")
        self._existing_versions(name)
        with self._locked(name):
            state = self._read_alias_state(name)
            history = list(state.history.get(alias, []))
            current = state.aliases.get(alias)
            # history[-1] is the current target; when a forced delete removed the alias,
            # history[-1] is the version it pointed at before, which is what we restore.
            if current is not None and history and history[-1] == current:
                history.pop()
            if not history:
                if current is not None:
                    # Not "it has only pointed at": each rollback drops the version it leaves,
                    # so the history no longer shows versions that were rolled back from.
                    kept = ", ".join(str(v) for v in state.history.get(alias, []))
                    where = (
                        f"no earlier version to roll back to: it points at version {current} and "
                        f"its history is {f'[{kept}]' if kept else 'empty'} "
                        "(a rollback drops the version it leaves)"
                    )
                else:
                    where = f"the alias is not set; aliases: {_describe_aliases(state.aliases)}"
                raise AliasError(
                    f"cannot roll back {name}@{alias}: {where}; promote a version instead"
                )
            target = history[-1]
            mv = self.get(name, target)
            self.verify(mv)
            state.aliases[alias] = target
            state.history[alias] = history
            atomic_write_json(self.root / name / _ALIASES_FILE, state.to_json())
        return mv

    def delete(self, name: str, version: int, force: bool = False) -> None:
        """Remove a version. Refused while an alias points at it, unless `force`,
        which also removes those aliases. Works on a damaged version too (its metadata
        is not read), since deleting it is how one gets rid of it."""
        path = self._require_version(name, version)
        ref = f"{name}:{version}"
        with self._locked(name):
            if not path.is_dir():
                raise ModelNotFoundError(f"{ref} was already deleted (by another process)")
            state = self._read_alias_state(name)
            pointing = sorted(a for a, v in state.aliases.items() if v == version)
            if pointing and not force:
                names = ", ".join(f"{name}@{a}" for a in pointing)
                raise AliasError(
                    f"cannot delete {ref}: {names} points at it; promote another version "
                    "to that alias first, or pass --force to delete it and drop the alias"
                )
            # Aliases first: a crash between the two steps leaves an unaliased version,
            # never an alias pointing at nothing.
            if pointing or any(version in h for h in state.history.values()):
                for alias in pointing:
                    del state.aliases[alias]
                state.history = {
                    alias: kept
                    for alias, h in state.history.items()
                    if (kept := _without(h, version))
                }
                atomic_write_json(self.root / name / _ALIASES_FILE, state.to_json())
            tombstone = self.root / name / f"{_TRASH_PREFIX}{version}-{uuid.uuid4().hex}"
            os.rename(path, tombstone)
            fsync_dir(path.parent)
        # Once renamed the version is gone for readers; a leftover tombstone is harmless.
        shutil.rmtree(tombstone, ignore_errors=True)

    # -- internals ----------------------------------------------------------------------

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Exclusive lock on one model, across threads and processes (one fd per call)."""
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(model_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last fd releases the flock

    def _version_numbers(self, name: str) -> builtins.list[int]:
        versions_dir = self.root / name / _VERSIONS_DIR
        if not versions_dir.is_dir():
            return []
        return sorted(
            int(child.name)
            for child in versions_dir.iterdir()
            if child.name.isascii()
            and child.name.isdigit()
            and str(int(child.name)) == child.name
            and child.is_dir()
        )

    def _require_version(self, name: str, version: int) -> Path:
        """The folder of `name:version`; ModelNotFoundError (listing the versions) if there is none."""
        numbers = self._existing_versions(name)
        if version not in numbers:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version}; versions: " + ", ".join(str(n) for n in numbers)
            )
        return self.root / name / _VERSIONS_DIR / str(version)

    def check_exists(self) -> None:
        """ModelNotFoundError, saying how to make one, if the store's folder does not exist."""
        if not self.root.is_dir():
            raise ModelNotFoundError(f"no model store at {self.root}: {_NO_STORE_HELP}")

    def _existing_versions(self, name: str) -> builtins.list[int]:
        """Version numbers of `name`; ModelNotFoundError (listing models) if there are none."""
        validate_name(name)
        numbers = self._version_numbers(name)
        if not numbers:
            self.check_exists()
            known = self.names()
            listing = f"models: {', '.join(known)}" if known else "the store is empty"
            raise ModelNotFoundError(f"no model named {name!r} in {self.root}; {listing}")
        return numbers

    def _allocate_version(self, name: str) -> int:
        """Next version number; call with the lock held. Never reuses a deleted number."""
        counter = self.root / name / _COUNTER_FILE
        last = 0
        if counter.is_file():
            text = counter.read_text(encoding="utf-8").strip()
            if text.isdigit():
                last = int(text)
        version = max([last, *self._version_numbers(name)]) + 1
        atomic_write_bytes(counter, f"{version}\n".encode())
        return version

    def _load(self, name: str, version: int) -> ModelVersion:
        path = self.root / name / _VERSIONS_DIR / str(version)
        metadata_path = path / METADATA_FILE
        try:
            # Versions registered before metadata was held to standard JSON may hold NaN (an
            # undefined metric): read it as None, the null they now write, for every reader.
            metadata = json.loads(metadata_path.read_text(encoding="utf-8"), parse_constant=_undefined)
        except FileNotFoundError:
            raise DamagedVersionError(f"{name}:{version} is damaged: {metadata_path} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise DamagedVersionError(f"{name}:{version} is damaged: {metadata_path} {where}") from None
        if not isinstance(metadata, dict):
            raise DamagedVersionError(f"{name}:{version} is damaged: {metadata_path} is not an object")
        return ModelVersion(name=name, version=version, path=path, metadata=metadata)

    def _read_alias_state(self, name: str) -> _AliasState:
        """The aliases of `name`; UnreadableAliasesError if its aliases.json is damaged (never
        guessed, so that no promote or delete overwrites what it held)."""
        path = self.root / name / _ALIASES_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _AliasState(aliases={}, history={})
        except json.JSONDecodeError as exc:
            raise _unreadable_aliases(name, path, f"line {exc.lineno}: {exc.msg}") from None
        except UnicodeDecodeError:
            raise _unreadable_aliases(name, path, "not UTF-8 text") from None
        aliases = raw.get("aliases", {}) if isinstance(raw, dict) else None
        history = raw.get("history", {}) if isinstance(raw, dict) else None
        if not (
            isinstance(aliases, dict)
            and all(_is_version_number(v) for v in aliases.values())
            and isinstance(history, dict)
            and all(isinstance(h, list) and all(_is_version_number(v) for v in h) for h in history.values())
        ):
            raise _unreadable_aliases(name, path, "not in the expected shape")
        return _AliasState(aliases=dict(aliases), history={a: list(h) for a, h in history.items()})


def aliases_pointing_at(aliases: dict[str, int], version: int) -> list[str]:
    """Those of `aliases` (alias -> version, as ModelStore.aliases gives) that name `version`, sorted."""
    return sorted(alias for alias, v in aliases.items() if v == version)


def _unreadable_aliases(name: str, path: Path, why: str) -> UnreadableAliasesError:
    return UnreadableAliasesError(
        f"the aliases of model {name!r} are unreadable: {path} {why}; restore the file from a backup, "
        'or rewrite it in the form {"aliases": {"production": 3}, "history": {"production": [1, 3]}} '
        "(alias -> version, and each alias's versions, oldest first), or remove it to drop every alias "
        f"of {name!r} and set them again with plaudit models promote {name}:VERSION --to ALIAS"
    )


def _is_version_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _undefined(constant: str) -> None:
    """NaN, Infinity or -Infinity in an old metadata.json: no number, so None."""
    return None


def _is_valid_name(name: str) -> bool:
    try:
        validate_name(name)
    except StoreError:
        return False
    return True


def _seal(directory: Path) -> None:
    """Make every file read-only and flush every directory entry under `directory`."""
    for dirpath, _dirnames, filenames in os.walk(directory):
        for filename in filenames:
            os.chmod(Path(dirpath, filename), 0o444)
        fsync_dir(Path(dirpath))


def _without(history: builtins.list[int], version: int) -> builtins.list[int]:
    """`history` minus `version`, with the repeats that leaves collapsed."""
    kept: builtins.list[int] = []
    for v in history:
        if v != version and (not kept or kept[-1] != v):
            kept.append(v)
    return kept


def _describe_aliases(aliases: dict[str, int]) -> str:
    if not aliases:
        return "(none)"
    return ", ".join(f"{alias} -> {version}" for alias, version in sorted(aliases.items()))


def _purge_crash_leftovers(model_dir: Path, keep: Path) -> None:
    """Remove what crashed registrations and deletions left in `model_dir` (call under its lock).

    Tombstones are only ever removed, so any present now is abandoned. A temporary
    registration directory is filled before its owner takes the lock, so only one that
    has not changed for a day counts as abandoned.
    """
    now = time.time()
    for entry in model_dir.iterdir():
        if entry.name.startswith(".") and TEMP_MARKER in entry.name and entry.is_file():
            # An atomic write's temporary file (aliases, counter): those writes hold this
            # lock, so one present now was left by a crash.
            entry.unlink(missing_ok=True)
            continue
        if entry == keep or not entry.is_dir():
            continue
        if entry.name.startswith(_TRASH_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(_REGISTER_PREFIX):
            try:
                idle_s = now - entry.stat().st_mtime
            except FileNotFoundError:
                continue
            if idle_s > _ABANDONED_AFTER_S:
                shutil.rmtree(entry, ignore_errors=True)
