"""procedure catalogue: procedures, versions, links, agencies, fields, sync state, quarantine

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 04:50:07.311041

Migrations must run on SQLite and PostgreSQL alike: alter existing tables inside
``with op.batch_alter_table(...)`` (SQLite rebuilds the table) and use plain SQLAlchemy types
(``sa.DateTime(timezone=True)``, not the models' Python-side decorators).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('catalogue_agencies',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_catalogue_agencies'))
    )
    op.create_table('catalogue_fields',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('sector', sa.String(length=64), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_catalogue_fields'))
    )
    op.create_table('procedures',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('publishing_agency', sa.String(length=64), nullable=True),
    sa.Column('published', sa.Boolean(), nullable=False),
    sa.Column('levels', sa.String(length=64), nullable=False),
    sa.Column('online_level', sa.String(length=32), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('national_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_procedures'))
    )
    with op.batch_alter_table('procedures', schema=None) as batch_op:
        batch_op.create_index('ix_procedures_national_updated_at', ['national_updated_at'], unique=False)
        batch_op.create_index('ix_procedures_publishing_agency', ['publishing_agency'], unique=False)

    op.create_table('quarantine',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('record_key', sa.String(length=64), nullable=True),
    sa.Column('reason_code', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sync_run', sa.String(length=64), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantine'))
    )
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.create_index('ix_quarantine_source_record_key', ['source', 'record_key'], unique=False)

    op.create_table('sync_state',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('watermark', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_full_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_summary', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_sync_state'))
    )
    op.create_table('procedure_links',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['code'], ['procedures.code'], name=op.f('fk_procedure_links_code_procedures')),
    sa.PrimaryKeyConstraint('code', 'kind', 'target', name=op.f('pk_procedure_links'))
    )
    with op.batch_alter_table('procedure_links', schema=None) as batch_op:
        batch_op.create_index('ix_procedure_links_kind_target', ['kind', 'target'], unique=False)

    op.create_table('procedure_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('change_kind', sa.String(length=16), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('changes', sa.Text(), nullable=False),
    sa.Column('national_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sync_run', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['code'], ['procedures.code'], name=op.f('fk_procedure_versions_code_procedures')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_procedure_versions')),
    sa.UniqueConstraint('code', 'version', name=op.f('uq_procedure_versions_code_version'))
    )
    with op.batch_alter_table('procedure_versions', schema=None) as batch_op:
        batch_op.create_index('ix_procedure_versions_seen_at', ['seen_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('procedure_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_procedure_versions_seen_at')

    op.drop_table('procedure_versions')
    with op.batch_alter_table('procedure_links', schema=None) as batch_op:
        batch_op.drop_index('ix_procedure_links_kind_target')

    op.drop_table('procedure_links')
    op.drop_table('sync_state')
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index('ix_quarantine_source_record_key')

    op.drop_table('quarantine')
    with op.batch_alter_table('procedures', schema=None) as batch_op:
        batch_op.drop_index('ix_procedures_publishing_agency')
        batch_op.drop_index('ix_procedures_national_updated_at')

    op.drop_table('procedures')
    op.drop_table('catalogue_fields')
    op.drop_table('catalogue_agencies')
