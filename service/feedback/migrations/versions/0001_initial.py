"""Create the feedback and scored_comparisons tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("feedback_id", sa.String(128), nullable=False),
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
        sa.Column("user", sa.String(200)),
        sa.Column("source", sa.String(200)),
        sa.Column("metadata", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("model_name", sa.String(200)),
        sa.Column("model_version", sa.String(200)),
        sa.Column("request_id", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("feedback_id", name="uq_feedback_feedback_id"),
        sa.CheckConstraint("kind IN ('like', 'rating', 'pair')", name="ck_feedback_kind"),
    )
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])
    op.create_index("ix_feedback_kind", "feedback", ["kind"])
    op.create_table(
        "scored_comparisons",
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("response_a", sa.Text, nullable=False),
        sa.Column("response_b", sa.Text, nullable=False),
        sa.Column("score_a", sa.Float, nullable=False),
        sa.Column("score_b", sa.Float, nullable=False),
        sa.Column("model_name", sa.String(200)),
        sa.Column("model_version", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_scored_comparisons_created_at", "scored_comparisons", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_scored_comparisons_created_at", table_name="scored_comparisons")
    op.drop_table("scored_comparisons")
    op.drop_index("ix_feedback_kind", table_name="feedback")
    op.drop_index("ix_feedback_created_at", table_name="feedback")
    op.drop_table("feedback")
