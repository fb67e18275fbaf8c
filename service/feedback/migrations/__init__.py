"""Schema migrations for the feedback database (Alembic), run from code: no alembic.ini.

`upgrade_to_head(connection)` brings a database to the latest revision inside the caller's
transaction. Revisions live in `versions/` and are written by hand (the tables in
`service/feedback/schema.py` must match what they create; a test compares the two).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

SCRIPT_LOCATION = Path(__file__).resolve().parent
# Any constant shared by every Plaudit process: serializes concurrent upgrades on PostgreSQL.
_PG_LOCK_KEY = 0x504C4155444954  # "PLAUDIT"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations found in {SCRIPT_LOCATION / 'versions'}"
    return head


@cache
def known_revisions() -> frozenset[str]:
    """Every revision Plaudit's migrations define: a database at another one is not Plaudit's,
    or is a newer Plaudit's."""
    return frozenset(script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(connection: sa.Connection) -> None:
    """Migrate within the connection's open transaction; the caller commits.

    Two processes opening the same database at once must not both create the tables:
    SQLite is already serialized by the caller's BEGIN IMMEDIATE, PostgreSQL by an
    advisory lock held until the transaction ends.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    if current_revision(connection) == head_revision():
        return
    command.upgrade(alembic_config(connection), "head")
