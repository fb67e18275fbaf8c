"""Feedback rows in the shapes training reads, streamed; and a JSONL writer for them.

Shapes (training/data/loaders.py): likes {prompt, response, liked}, ratings {prompt,
response, rating} with their scale as rating_min/rating_max, pairs {prompt, chosen,
rejected}. Every row also carries feedback_id, kind, source, annotator (the user, which
training's agreement report groups by), model_name, model_version and created_at (ISO 8601
UTC); training ignores keys it does not use.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from service.feedback import database
from service.feedback.errors import FeedbackStoreError
from service.feedback.records import KINDS
from service.feedback.schema import feedback

if TYPE_CHECKING:
    from service.feedback.store import FeedbackStore

# Rows fetched per round trip; PostgreSQL streams them through a server-side cursor.
EXPORT_BATCH_ROWS = 500
_SHAPE_FIELDS = {
    "like": ("prompt", "response", "liked"),
    "rating": ("prompt", "response", "rating", "rating_min", "rating_max"),
    "pair": ("prompt", "chosen", "rejected"),
}


def iter_export(engine: sa.Engine, since: datetime | None = None, kind: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows created at or after `since` (a naive datetime is read as UTC), of `kind` if given,
    in id order, fetched EXPORT_BATCH_ROWS at a time."""
    query = sa.select(feedback).order_by(feedback.c.id).limit(EXPORT_BATCH_ROWS)
    if kind is not None:
        if kind not in KINDS:
            raise FeedbackStoreError(f"kind {kind!r} is not one of: {', '.join(KINDS)}")
        query = query.where(feedback.c.kind == kind)
    if since is not None:
        query = query.where(feedback.c.created_at >= _as_utc(since))
    return _stream(engine, query)


def _stream(engine: sa.Engine, query: sa.Select[Any]) -> Iterator[dict[str, Any]]:
    # One short read transaction per batch, keyed on the last id sent: a client that reads
    # slowly (or stalls) holds no database connection between batches, so it cannot starve
    # the pool that POST /v1/feedback writes through. Rows committed during the export with
    # a higher id are included; ids are never reused.
    last_id = 0
    while True:
        with database.transaction(engine, write=False) as connection:
            rows = connection.execute(query.where(feedback.c.id > last_id))
            batch = [(row.id, training_row(row._mapping)) for row in rows]
        for last_id, exported in batch:
            yield exported
        if len(batch) < EXPORT_BATCH_ROWS:
            return


def training_row(row: Any) -> dict[str, Any]:
    """One stored row (a mapping of the feedback table's columns) in its training shape."""
    out: dict[str, Any] = {"feedback_id": row["feedback_id"], "kind": row["kind"]}
    for name in _SHAPE_FIELDS[row["kind"]]:
        out[name] = row[name]
    out["source"] = row["source"]
    out["annotator"] = row["user"]
    out["model_name"] = row["model_name"]
    out["model_version"] = row["model_version"]
    out["created_at"] = row["created_at"].isoformat()
    return out


def export_jsonl(
    store: FeedbackStore, out_path: str | Path, since: datetime | None = None, kind: str | None = None
) -> int:
    """Write the export to `out_path` as JSONL; returns the number of rows.

    The file appears complete or not at all: rows go to a temporary file beside it, which
    is synced and then renamed over `out_path`.
    """
    target = Path(out_path)
    problem = out_path_problem(target, store.sqlite_file)
    if problem is not None:
        raise FeedbackStoreError(problem)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise FeedbackStoreError(f"cannot write {target}: {exc.strerror}") from None
    count = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            for row in store.export(since=since, kind=kind):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return count


# The files a SQLite database keeps its data in: itself, its write-ahead log and index, and
# its rollback journal. Replacing any of them loses committed feedback.
SQLITE_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def out_path_problem(target: Path, database_file: Path | None = None) -> str | None:
    """Why an export cannot be written to `target`, or None if it can.

    `database_file`: the SQLite file being exported (None on PostgreSQL). The export is
    renamed over `target`, so a `target` that is that file, or one of its companions, would
    destroy the database; it is compared after resolving symlinks, and as the same file on
    disk where both exist (a hard link).
    """
    if target.is_dir():
        return f"--out {target} is a directory; give a file name such as {target / 'feedback.jsonl'}"
    for folder in target.parents:  # nearest first; mkdir would only say "File exists"
        if folder.is_dir():
            break
        if folder.exists():
            return f"cannot write --out {target}: {folder} is a file, not a folder; give --out a path in a folder"
    if database_file is None:
        return None
    for suffix in SQLITE_FILE_SUFFIXES:
        data_file = Path(f"{database_file}{suffix}")
        if _same_file(target, data_file):
            what = f"the feedback database {database_file}" + (f"'s {suffix} file" if suffix else " itself")
            return (
                f"--out {target} is {what}, which the export would overwrite: "
                f"give --out a file of its own, such as {database_file.with_suffix('.jsonl')}"
            )
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # both exist: catches hard links too
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
