"""audit ledger integrity: signed seals of the chain head, the export register, prune tombstones

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 06:47:06.998839

Migrations must run on SQLite and PostgreSQL alike: alter existing tables inside
``with op.batch_alter_table(...)`` (SQLite rebuilds the table) and use plain SQLAlchemy types
(``sa.DateTime(timezone=True)``, not the models' Python-side decorators).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_exports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('first_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('entry_count', sa.BigInteger(), nullable=False),
    sa.Column('anchor_hash', sa.String(length=64), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.Column('range_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('range_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('archive_sha256', sa.String(length=64), nullable=False),
    sa.Column('prev_archive_sha256', sa.String(length=64), nullable=True),
    sa.Column('file_name', sa.Text(), nullable=False),
    sa.CheckConstraint('first_seq >= 1 AND last_seq >= first_seq', name=op.f('ck_audit_exports_seq_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_exports')),
    sa.UniqueConstraint('archive_sha256', name=op.f('uq_audit_exports_archive_sha256')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('audit_exports', schema=None) as batch_op:
        batch_op.create_index('ix_audit_exports_last_seq', ['last_seq'], unique=False)

    op.create_table('audit_seals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('head_seq', sa.BigInteger(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.Column('prev_seal_hash', sa.String(length=64), nullable=False),
    sa.Column('document', sa.LargeBinary(), nullable=False),
    sa.Column('seal_hash', sa.String(length=64), nullable=False),
    sa.Column('tsa_token', sa.LargeBinary(), nullable=True),
    sa.Column('tsa_time', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_seals')),
    sa.UniqueConstraint('seal_hash', name=op.f('uq_audit_seals_seal_hash')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('audit_seals', schema=None) as batch_op:
        batch_op.create_index('ix_audit_seals_head_seq', ['head_seq'], unique=False)

    op.create_table('audit_tombstones',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('first_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.Column('archive_sha256', sa.String(length=64), nullable=False),
    sa.Column('prev_tombstone_hash', sa.String(length=64), nullable=False),
    sa.Column('document', sa.LargeBinary(), nullable=False),
    sa.Column('tombstone_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('first_seq >= 1 AND last_seq >= first_seq', name=op.f('ck_audit_tombstones_seq_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_tombstones')),
    sa.UniqueConstraint('tombstone_hash', name=op.f('uq_audit_tombstones_tombstone_hash')),
    sqlite_autoincrement=True
    )


def downgrade() -> None:
    op.drop_table('audit_tombstones')
    with op.batch_alter_table('audit_seals', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_seals_head_seq')

    op.drop_table('audit_seals')
    with op.batch_alter_table('audit_exports', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_exports_last_seq')

    op.drop_table('audit_exports')
