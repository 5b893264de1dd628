"""intake cursors keyed by source identity, with the location they were taken from

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:00:00

Until now an intake cursor was stored under the *mapping's* name, so two sources read with the
same mapping shared one position (and the second silently skipped what lay before the first's).
Cursors are now stored under the source's identity with the location they were taken from.

What happens to a cursor stored before this revision: it carries its mapping's name and no
location. It is carried over to the identity of the source it came from *where that can be
told*: when exactly one source is configured in this process's environment the way the CLI and
the intake DAG read a single source (``LIENTHONG_ONESTOP_URL`` or ``LIENTHONG_INBOX``), and the
cursor has that kind's shape (a SQL cursor is JSON, a file-drop cursor a file name), it moves to
that source's derived identity (``<mapping>@<location>``) with its location. Otherwise it stays
as it is, without a location, and the next intake of a source read with that mapping refuses
(``SOURCE_CURSOR_UNCLAIMED``) until an operator says ``--adopt-cursor`` (it is this source's) or
``--reset-cursor`` (read this source from the start), a decision recorded in the audit trail.

Migrations must run on SQLite and PostgreSQL alike: alter existing tables inside
``with op.batch_alter_table(...)`` (SQLite rebuilds the table) and use plain SQLAlchemy types.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN (nullable) works on both backends without rebuilding the table
    op.add_column('intake_cursors', sa.Column('mapping', sa.String(length=64), nullable=True))
    op.add_column('intake_cursors', sa.Column('kind', sa.String(length=16), nullable=True))
    op.add_column('intake_cursors', sa.Column('location', sa.Text(), nullable=True))
    op.add_column('intake_cursors', sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('intake_cursors', sa.Column('last_run', sa.Text(), nullable=True))

    conn = op.get_bind()
    cursors = sa.table('intake_cursors', sa.column('source', sa.String), sa.column('cursor', sa.Text),
                       sa.column('mapping', sa.String), sa.column('kind', sa.String),
                       sa.column('location', sa.Text))
    # before this revision the key was the mapping's name
    conn.execute(sa.update(cursors).values(mapping=cursors.c.source))
    if context.is_offline_mode():  # a SQL script for a DBA: no rows to look at, none carried over
        return
    legacy = conn.execute(sa.select(cursors.c.source, cursors.c.cursor)).all()
    target = _configured_source()
    if target is None or len(legacy) != 1:
        return
    kind, location = target
    (name, text), = legacy
    shape = "sql" if (text or "").lstrip().startswith("{") else "filedrop"
    if shape != kind:
        return
    from lienthong.connectors.sources.base import derived_source_id

    conn.execute(sa.update(cursors).where(cursors.c.source == name)
                 .values(source=derived_source_id(name, location), kind=kind, location=location))


def _configured_source() -> tuple[str, str] | None:
    """The one source this environment configures (kind, location), as the CLI and DAG read it."""
    from lienthong.connectors.sources.base import inbox_location, sql_location

    url = (os.environ.get('LIENTHONG_ONESTOP_URL') or '').strip()
    inbox = (os.environ.get('LIENTHONG_INBOX') or '').strip()
    if bool(url) == bool(inbox):
        return None
    try:
        return ("sql", sql_location(url)) if url else ("filedrop", inbox_location(inbox))
    except Exception:  # noqa: BLE001 - an unreadable setting cannot tell us anything: leave it to the operator
        return None


def downgrade() -> None:
    with op.batch_alter_table('intake_cursors', schema=None) as batch_op:
        batch_op.drop_column('last_run')
        batch_op.drop_column('last_run_at')
        batch_op.drop_column('location')
        batch_op.drop_column('kind')
        batch_op.drop_column('mapping')
