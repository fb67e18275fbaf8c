"""Mark a remembered comparison whose request_id was reused for other texts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scored_comparisons") as table:
        table.add_column(sa.Column("ambiguous", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("scored_comparisons") as table:
        table.drop_column("ambiguous")
