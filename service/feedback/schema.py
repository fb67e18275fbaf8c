"""The feedback database's tables (SQLAlchemy Core), as the latest migration leaves them.

The migrations under `migrations/versions` create and change the real schema; this module
describes the result for queries, and a test checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from service.feedback.records import MAX_ID_CHARS, MAX_LABEL_CHARS

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, so values are converted to UTC on the way in and tagged on the
    way out; PostgreSQL's timestamptz needs no help but gets the same treatment.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; pass a timezone-aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _label() -> sa.String:
    return sa.String(MAX_LABEL_CHARS)


JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feedback_id", sa.String(MAX_ID_CHARS), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("response", sa.Text),
    sa.Column("liked", sa.Boolean),
    sa.Column("rating", sa.Float),
    sa.Column("rating_min", sa.Float),
    sa.Column("rating_max", sa.Float),
    sa.Column("chosen", sa.Text),
    sa.Column("rejected", sa.Text),
    sa.Column("user", _label()),
    sa.Column("source", _label()),
    sa.Column("metadata", JSONDocument, nullable=False),
    sa.Column("model_name", _label()),
    sa.Column("model_version", _label()),
    sa.Column("request_id", _label()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("feedback_id", name="uq_feedback_feedback_id"),
    sa.CheckConstraint("kind IN ('like', 'rating', 'pair')", name="ck_feedback_kind"),
    sa.Index("ix_feedback_created_at", "created_at"),
    sa.Index("ix_feedback_kind", "kind"),
)

scored_comparisons = sa.Table(
    "scored_comparisons",
    metadata,
    sa.Column("request_id", _label(), primary_key=True),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("response_a", sa.Text, nullable=False),
    sa.Column("response_b", sa.Text, nullable=False),
    sa.Column("score_a", sa.Float, nullable=False),
    sa.Column("score_b", sa.Float, nullable=False),
    sa.Column("model_name", _label()),
    sa.Column("model_version", _label()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # The request_id was used again for other texts (a client that reuses X-Request-ID): a
    # choice on it can no longer tell which comparison it means, so none resolves.
    sa.Column("ambiguous", sa.Boolean, nullable=False, server_default=sa.false()),
    # Purging deletes by age: keep that a range scan.
    sa.Index("ix_scored_comparisons_created_at", "created_at"),
)
