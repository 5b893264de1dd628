"""audit subject index (derived: dossier and procedure codes per audit entry, filled lazily)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 06:47:47.716979

Migrations must run on SQLite and PostgreSQL alike: alter existing tables inside
``with op.batch_alter_table(...)`` (SQLite rebuilds the table) and use plain SQLAlchemy types
(``sa.DateTime(timezone=True)``, not the models' Python-side decorators).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_subject',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'value', 'seq', name=op.f('pk_audit_subject'))
    )
    op.create_table('audit_subject_state',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('unparsed', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_subject_state_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_subject_state'))
    )


def downgrade() -> None:
    op.drop_table('audit_subject_state')
    op.drop_table('audit_subject')
