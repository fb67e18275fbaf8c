"""FeedbackStore: durable, idempotent storage of human judgements and of scored comparisons.

Every write returns only after its transaction has committed. Idempotency rests on the
database, not on a check-then-insert: the insert relies on the unique feedback_id, and
when it collides the store re-reads the row that won and compares bodies. That stays
correct with many threads or processes retrying the same id at the same moment.

The methods are synchronous and thread-safe (one engine, a pool of connections); an
async caller runs them in a thread pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from service.feedback import database
from service.feedback.errors import (
    AmbiguousComparison,
    FeedbackConflict,
    FeedbackStoreError,
    InvalidFeedback,
    UnknownComparison,
)
from service.feedback.export import iter_export
from service.feedback.migrations import current_revision, head_revision, known_revisions, upgrade_to_head
from service.feedback.records import (
    LIST_KEY_SEPARATOR,
    MAX_LABEL_CHARS,
    AddResult,
    FeedbackRow,
    NewFeedback,
    ResolvedChoice,
    ScoredComparison,
    body_sha256,
    check_feedback_id,
    check_printable_id,
    comparison_key,
    comparison_values,
    list_index,
    normalize,
)
from service.feedback.schema import feedback, scored_comparisons
from service.feedback.stats import compute_stats

DEFAULT_COMPARISON_RETENTION = timedelta(days=7)


PURGE_BATCH_ROWS = 5000  # comparisons deleted per write transaction


class FeedbackStore:
    """Open with `FeedbackStore.open(url)`; close with `close()` (or use it as a context manager)."""

    def __init__(self, engine: sa.Engine, url: str, comparison_retention: timedelta) -> None:
        self._engine = engine
        self.url = url
        self.comparison_retention = comparison_retention

    @classmethod
    def open(
        cls,
        url: str,
        *,
        comparison_retention: timedelta = DEFAULT_COMPARISON_RETENTION,
        create: bool = True,
        pool_size: int = 8,
        url_from: str = "--db or PLAUDIT_FEEDBACK_DB",
        hang_limit_s: float = database.POSTGRES_HANG_LIMIT_S,
    ) -> FeedbackStore:
        """Connect to `url` and migrate its schema to the latest revision.

        `create=False` is for readers such as `plaudit feedback export`: it refuses a SQLite
        file that does not exist yet (a typo should not yield an empty database), and a
        database without Plaudit's schema (another application's), in which it writes nothing.
        A Plaudit database at an older schema revision is still migrated, as the server would:
        the schema is ours, and the queries here are written for the latest revision.
        A database whose revision this Plaudit does not know is refused either way.
        `url_from` names where the caller took the URL from, for that refusal's message.
        `hang_limit_s`: how long a PostgreSQL connection may be held before it is presumed hung
        and cut (database.create_engine).
        """
        if comparison_retention <= timedelta(0):
            raise FeedbackStoreError(f"comparison_retention must be positive, got {comparison_retention}")
        parsed = database.parse_url(url)
        shown = database.describe(parsed)
        if not create and parsed.get_backend_name() == "sqlite":
            if not Path(parsed.database or "").is_file():
                raise FeedbackStoreError(f"no feedback database at {parsed.database} ({shown}): check {url_from}")
            # Looked at before the store's own engine connects: its connections switch the file
            # to WAL, a write, which a file that is not ours must never get.
            probe = database.create_probe_engine(parsed)
            try:
                with probe.connect() as connection:
                    _check_schema(connection, shown, url_from, create=False)
            except sa.exc.DBAPIError as exc:  # not a SQLite file at all, unreadable, ...
                raise FeedbackStoreError(f"cannot open the feedback database {shown}: {_reason(exc)}") from exc
            finally:
                probe.dispose()
        engine = database.create_engine(parsed, pool_size=pool_size, hang_limit_s=hang_limit_s)
        try:
            # Looked at first in a time-limited read (a hung server fails the open instead of
            # holding it for ever); on PostgreSQL this is the only look before any write.
            with database.transaction(engine, write=False) as connection:
                current = _check_schema(connection, shown, url_from, create=create)
            if current != head_revision():
                # Not time-limited: a migration of a large table may take long without being
                # hung. Checked again under the write lock: another process may have moved it.
                with database.transaction(engine, write=True, time_limited=False) as connection:
                    _check_schema(connection, shown, url_from, create=create)
                    upgrade_to_head(connection)
        except sa.exc.DBAPIError as exc:  # unreachable server, unreadable or foreign file, ...
            engine.dispose()
            raise FeedbackStoreError(f"cannot open the feedback database {shown}: {_reason(exc)}") from exc
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, shown, comparison_retention)

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite file the store keeps its data in; None on PostgreSQL."""
        url = self._engine.url
        return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None

    # -- feedback ------------------------------------------------------------------------

    def add(self, item: NewFeedback) -> AddResult:
        """Store one judgement, once per feedback_id.

        Same feedback_id and same body as a stored row: returns that original row with
        created=False and writes nothing. Same id, different body: FeedbackConflict.
        A bad body: InvalidFeedback naming the field.
        """
        values = normalize(item)
        feedback_id = uuid.uuid4().hex if item.feedback_id is None else check_feedback_id(item.feedback_id)
        row = {**values, "feedback_id": feedback_id, "body_sha256": body_sha256(values)}
        try:
            with database.transaction(self._engine, write=True) as connection:
                # Stamped once the write lock is held (database.transaction), so created_at and
                # id follow commit order and an export `since` the last row seen misses none.
                row["created_at"] = _now()
                inserted = connection.execute(sa.insert(feedback).values(row)).inserted_primary_key
        except sa.exc.IntegrityError:
            # The insert lost to a committed row with this id (a retry, or a concurrent one):
            # that row decides. Re-read it in a new transaction (PostgreSQL aborted this one).
            existing = self.get(feedback_id)
            if existing is None:
                raise  # another constraint failed; not an idempotency question
            if existing.body_sha256 != row["body_sha256"]:
                raise FeedbackConflict(feedback_id, existing) from None
            return AddResult(existing, created=False)
        assert inserted is not None, "the insert reported no primary key"
        return AddResult(FeedbackRow(id=int(inserted[0]), **row), created=True)

    def get(self, feedback_id: str) -> FeedbackRow | None:
        with database.transaction(self._engine, write=False) as connection:
            found = connection.execute(sa.select(feedback).where(feedback.c.feedback_id == feedback_id)).first()
        return None if found is None else FeedbackRow(**found._mapping)

    def count(self) -> int:
        with database.transaction(self._engine, write=False) as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one())

    def export(self, since: datetime | None = None, kind: str | None = None) -> Iterator[dict[str, Any]]:
        """Rows in training's shapes, in id order, streamed (see service.feedback.export)."""
        return iter_export(self._engine, since=since, kind=kind)

    def stats(self) -> dict[str, Any]:
        """Counts by kind and source, like rate, agreement (see service.feedback.stats)."""
        return compute_stats(self._engine)

    # -- scored comparisons ----------------------------------------------------------------

    def remember_comparison(self, comparison: ScoredComparison) -> bool:
        """Keep what /v1/compare scored. A request_id seen again with the same texts (a retry)
        is overwritten, latest scores win; seen again with other texts, it is marked
        ambiguous, and a choice on it is refused from then on (AmbiguousComparison) rather
        than resolved to either comparison. False when it was marked so.

        Raises InvalidFeedback for text no database can keep (NUL, unpaired surrogates) or
        an over-long request_id; nothing is stored then.
        """
        now = _now()
        row = {**comparison_values(comparison), "created_at": now}
        texts = ("prompt", "response_a", "response_b")
        table = scored_comparisons
        with database.transaction(self._engine, write=True) as connection:
            # Writers go one at a time (database.transaction), so this read stays true until commit.
            found = connection.execute(
                sa.select(table.c.created_at, *(table.c[name] for name in texts)).where(
                    table.c.request_id == row["request_id"]
                )
            ).first()
            # An expired row is as good as purged: the id is free again.
            live = found is not None and found.created_at >= now - self.comparison_retention
            if live and any(found._mapping[name] != row[name] for name in texts):
                connection.execute(
                    sa.update(table).where(table.c.request_id == row["request_id"]).values(ambiguous=True)
                )
                return False
            if not live:
                row["ambiguous"] = False
            dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
            insert = dialect.insert(table).values(row)
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[table.c.request_id],
                    set_={name: insert.excluded[name] for name in row if name != "request_id"},
                )
            )
        return True

    def resolve_choice(self, request_id: str, choice: str, index: int | None = None) -> ResolvedChoice:
        """The pair a user made by picking reply "a" or "b" of a remembered comparison:
        the one /v1/compare scored under `request_id`, or item `index` of its `comparisons` list.

        Raises UnknownComparison when nothing is remembered under the request_id (never, or
        older than `comparison_retention`), AmbiguousComparison when it was remembered for two
        different comparisons, and InvalidFeedback for a choice other than "a" or "b", or an
        index that does not fit what the request_id scored: none for a list, one past the
        list's end, one for a single comparison.
        """
        if choice not in ("a", "b"):
            raise InvalidFeedback("choice", f'expected "a" or "b", got {choice!r}')
        if index is not None and index < 0:
            raise InvalidFeedback("index", f"expected an integer >= 0, got {index!r}")
        check_printable_id("request_id", request_id, MAX_LABEL_CHARS)  # as every id the service hands out
        live_since = _now() - self.comparison_retention
        table = scored_comparisons
        query = sa.select(table).where(
            table.c.request_id == comparison_key(request_id, index), table.c.created_at >= live_since
        )
        # The other form under the same id: a list's first keys for a single comparison, the
        # single one for a list's item. Both forms live means the id was reused (exact keys:
        # an index lookup, not a prefix scan, on the path every choice takes).
        other_form = [comparison_key(request_id, i) for i in (0, 1)] if index is None else [request_id]
        with database.transaction(self._engine, write=False) as connection:
            found = connection.execute(query).first()
            if found is None:
                self._explain_missing(connection, request_id, index, live_since)
            reused = connection.execute(
                sa.select(table.c.request_id).where(table.c.request_id.in_(other_form), table.c.created_at >= live_since)
            ).first()
        if found.ambiguous or reused is not None:
            raise AmbiguousComparison(request_id)
        a, b = found.response_a, found.response_b
        chosen, rejected = (a, b) if choice == "a" else (b, a)
        return ResolvedChoice(found.prompt, chosen, rejected, found.model_name, found.model_version)

    @staticmethod
    def _explain_missing(
        connection: sa.Connection, request_id: str, index: int | None, live_since: datetime
    ) -> NoReturn:
        """Why no comparison is remembered under (request_id, index): what the request_id did
        score, if anything, so the caller learns which `index` to give."""
        table = scored_comparisons
        live = table.c.created_at >= live_since
        # The list's items, by their keys' prefix (LIKE, escaped; exact match checked below, as
        # SQLite's LIKE ignores case). A rare, failed lookup: no index needed.
        prefix = request_id + LIST_KEY_SEPARATOR
        keys = connection.execute(
            sa.select(table.c.request_id).where(table.c.request_id.startswith(prefix, autoescape=True), live)
        ).scalars()
        indexes = {i for key in keys if (i := list_index(key, request_id)) is not None}
        if indexes:
            # Only the items kept are known, not the list's length: an item that could not be
            # stored (remembering never fails a comparison), or is still being stored, is
            # missing here even if it was the last. So the kept ones are named, not a size.
            kept = _describe_indexes(sorted(indexes))
            if index is None:
                raise InvalidFeedback(
                    "index", f"request_id {request_id!r} scored a list of comparisons; give its index (kept: {kept})"
                )
            raise UnknownComparison(request_id, index, kept_in_list=kept)
        if index is not None:
            single = sa.select(table.c.request_id).where(table.c.request_id == request_id, live)
            if connection.execute(single).first() is not None:
                raise InvalidFeedback(
                    "index", f"request_id {request_id!r} scored a single comparison, not a list; leave index out"
                )
        raise UnknownComparison(request_id, index)

    def purge_comparisons(self, older_than: timedelta | None = None, batch_rows: int = PURGE_BATCH_ROWS) -> int:
        """Delete comparisons older than `older_than` (default: the retention); returns how many.

        In batches of `batch_rows`, each its own write transaction: a large backlog neither holds
        the write lock for long (writers wait at most 30 s for it) nor needs a transaction past
        the hang limit, so every batch stays time-limited, and a batch cut short loses nothing
        the next purge does not do again.
        """
        age = self.comparison_retention if older_than is None else older_than
        cutoff = _now() - age
        table = scored_comparisons
        oldest = sa.select(table.c.request_id).where(table.c.created_at < cutoff).limit(batch_rows)
        purged = 0
        while True:
            with database.transaction(self._engine, write=True) as connection:
                # The ids first, then delete them: a subquery in DELETE with LIMIT is refused
                # by some backends, and the ids are few.
                ids = connection.execute(oldest).scalars().all()
                if ids:
                    connection.execute(sa.delete(table).where(table.c.request_id.in_(ids)))
            purged += len(ids)
            if len(ids) < batch_rows:
                return purged

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeedbackStore({self.url!r})"


def _check_schema(connection: sa.Connection, shown: str, url_from: str, *, create: bool) -> str | None:
    """Refuse a database Plaudit must not migrate: one at a schema revision that is not
    Plaudit's, and, unless `create`, one without Plaudit's schema at all. Returns its revision."""
    revision = current_revision(connection)
    if revision is not None and revision not in known_revisions():
        # The server opens with create=True and its own flag's name is not known here.
        check = "" if create else f"; check {url_from}"
        raise FeedbackStoreError(
            f"{shown} is at schema revision {revision!r}, which is not one this Plaudit knows: it is "
            f"another application's database, or a newer Plaudit's (upgrade Plaudit){check}"
        )
    if revision is not None or create:
        return revision
    tables = set(sa.inspect(connection).get_table_names())
    if feedback.name in tables:
        why = f"it has a {feedback.name} table, but no alembic_version table naming a Plaudit schema revision"
    elif tables:
        why = f"it has no {feedback.name} table"
    else:
        why = "it has no tables"
    raise FeedbackStoreError(
        f"{shown} is not a Plaudit feedback database ({why}): check {url_from}; "
        "`plaudit serve --feedback-db URL` creates one"
    )


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's first line: "file is not a database", "connection refused", ..."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)


def _now() -> datetime:
    return datetime.now(UTC)


def _describe_indexes(indexes: list[int]) -> str:
    """ "0-3", or "0-1, 3" where items are missing: the list items a request_id keeps."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
