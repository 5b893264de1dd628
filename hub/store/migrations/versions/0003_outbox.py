"""outbox, dead letters, breaker

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 05:34:43.048601

Migrations must run on SQLite and PostgreSQL alike: alter existing tables inside
``with op.batch_alter_table(...)`` (SQLite rebuilds the table) and use plain SQLAlchemy types
(``sa.DateTime(timezone=True)``, not the models' Python-side decorators).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('breaker_state',
    sa.Column('partner', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('trips', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_probe_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('closed', 'open', 'half_open')", name=op.f('ck_breaker_state_state')),
    sa.CheckConstraint('failures >= 0', name=op.f('ck_breaker_state_failures_nonnegative')),
    sa.CheckConstraint('trips >= 0', name=op.f('ck_breaker_state_trips_nonnegative')),
    sa.PrimaryKeyConstraint('partner', name=op.f('pk_breaker_state'))
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('partition_key', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('source_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=128), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('document_id', sa.String(length=128), nullable=True),
    sa.Column('last_error_code', sa.String(length=64), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('dossier', 'step')", name=op.f('ck_outbox_kind')),
    sa.CheckConstraint("state IN ('pending', 'claimed', 'delivered', 'dead', 'discarded')", name=op.f('ck_outbox_state')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_outbox_attempts_nonnegative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_outbox_idempotency_key')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_delivered_at', ['delivered_at'], unique=False)
        batch_op.create_index('ix_outbox_partition_key_id_state', ['partition_key', 'id', 'state'], unique=False)
        batch_op.create_index('ix_outbox_state_id_next_attempt_at', ['state', 'id', 'next_attempt_at'], unique=False)

    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('document_id', sa.String(length=128), nullable=True),
    sa.Column('request_bytes', sa.LargeBinary(), nullable=True),
    sa.Column('response_bytes', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('discarded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('discard_reason', sa.Text(), nullable=True),
    sa.Column('discarded_by', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['outbox.id'], name=op.f('fk_dead_letters_event_id_outbox')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters'))
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index('ix_dead_letters_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_dead_letters_event_id', ['event_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letters_event_id')
        batch_op.drop_index('ix_dead_letters_created_at')

    op.drop_table('dead_letters')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_state_id_next_attempt_at')
        batch_op.drop_index('ix_outbox_partition_key_id_state')
        batch_op.drop_index('ix_outbox_delivered_at')

    op.drop_table('outbox')
    op.drop_table('breaker_state')
