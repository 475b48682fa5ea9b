"""Schema version 5: every table as both stores had it when Alembic took over.

On a new database this creates them; on one made before Alembic (an SQLite file's `PRAGMA user_version`, a
PostgreSQL database's schema_version table) it runs the steps still missing, so the file is adopted with its rows.

Revision ID: 0001_schema_v5
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001_schema_v5"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    raw = bind.connection.driver_connection
    if bind.dialect.name == "sqlite":
        from newsletter.store.sqlite import legacy_upgrade
    else:
        from newsletter.store.postgres import legacy_upgrade
    legacy_upgrade(raw)


def downgrade() -> None:
    raise NotImplementedError("the first revision has no way down: restore a backup instead")
