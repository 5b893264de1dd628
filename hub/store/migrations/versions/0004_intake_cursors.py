"""intake cursors

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 05:55:31.881951

Migrations must run on SQLite and PostgreSQL alike: alter existing tables inside
``with op.batch_alter_table(...)`` (SQLite rebuilds the table) and use plain SQLAlchemy types
(``sa.DateTime(timezone=True)``, not the models' Python-side decorators).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('intake_cursors',
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_intake_cursors'))
    )


def downgrade() -> None:
    op.drop_table('intake_cursors')
