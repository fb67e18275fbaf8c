"""Durable file writes: a reader sees the old content or the new, never a torn file.

The pattern is always the same: write a temporary file in the destination's directory,
fsync it, `os.replace` it over the destination, then fsync the directory so the rename
itself survives a power cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
TEMP_MARKER = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (new, renamed or removed children) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A unique hidden sibling of `path`; leftovers are recognisable by TEMP_MARKER."""
    return path.with_name(f".{path.name}{TEMP_MARKER}{uuid.uuid4().hex}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably."""
    tmp = temp_path_for(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def dumps_json(obj: Any) -> str:
    """The CLIs' --json output: standard JSON, so an undefined metric must be None (null).

    allow_nan=False makes a NaN that slipped through fail here rather than print `NaN`,
    which strict JSON parsers refuse.
    """
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Replace `path` with `obj` as indented, key-sorted standard JSON (NaN is refused)."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def write_file_synced(path: Path, data: bytes) -> None:
    """Create `path` (which must not exist) with `data` and fsync it."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_file_hashed(src: Path, dst: Path) -> str:
    """Copy `src` to the new file `dst`, fsync it, and return the sha256 of what was written.

    Hashing the bytes as they are copied means the recorded digest describes the copy,
    even if `src` changes while we read it.
    """
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest()
