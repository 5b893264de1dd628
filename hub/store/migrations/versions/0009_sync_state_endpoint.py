"""catalogue watermark kept with the endpoint it was taken from

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00

A catalogue watermark says how far one national endpoint's catalogue was read. Pointed at another
endpoint (the sandbox, then production; a new address of the national service), an incremental
sync from it would skip that endpoint's records changed before it. The endpoint is now kept with
the watermark; an incremental sync against another endpoint is refused until a full sync.
Watermarks stored before this revision have no endpoint: the next sync records its own (nobody
can tell which endpoint they came from, and refusing every existing deployment's daily sync for
it would be worse than trusting the configuration that has been running).

Migrations must run on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('sync_state', sa.Column('endpoint', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sync_state', schema=None) as batch_op:
        batch_op.drop_column('endpoint')
