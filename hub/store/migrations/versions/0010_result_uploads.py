"""digitised results: outbox events of kind result, and the upload of each result file

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 04:00:00

An outbox event may now be a ``result``: a result file of the one-stop system to upload to the
portal before the dossier snapshot that lists it (in the same partition, so the order rules of the
outbox apply to it unchanged). ``result_uploads`` keeps, per result event, the file's fingerprint
as first read, the portal's upload session and the bytes it confirmed, and the GiayToId and link
the portal returned: what the snapshots behind it list, and what ``lienthong status`` counts.

The kind constraint is re-created (SQLite rebuilds the table in batch mode; PostgreSQL alters it).
Migrations must run on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_BEFORE, _AFTER = "'dossier', 'step'", "'dossier', 'step', 'result'"


def _outbox(kinds: str) -> sa.Table:
    """The outbox as revision 0009 left it (with the kind constraint ``kinds``): SQLite's batch mode
    copies the table from this definition, so the migration also runs offline (``--sql``)."""
    table = sa.Table('outbox', sa.MetaData(),
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
    sa.CheckConstraint(f"kind IN ({kinds})", name='ck_outbox_kind'),
    sa.CheckConstraint("state IN ('pending', 'claimed', 'delivered', 'dead', 'discarded')", name='ck_outbox_state'),
    sa.CheckConstraint('attempts >= 0', name='ck_outbox_attempts_nonnegative'),
    sa.PrimaryKeyConstraint('id', name='pk_outbox'),
    sa.UniqueConstraint('idempotency_key', name='uq_outbox_idempotency_key'),
    sqlite_autoincrement=True)
    sa.Index('ix_outbox_delivered_at', table.c.delivered_at)
    sa.Index('ix_outbox_partition_key_id_state', table.c.partition_key, table.c.id, table.c.state)
    sa.Index('ix_outbox_state_id_next_attempt_at', table.c.state, table.c.id, table.c.next_attempt_at)
    sa.Index('ix_outbox_document_id', table.c.document_id)
    return table


def _kinds(old: str, new: str) -> None:
    with op.batch_alter_table('outbox', schema=None, copy_from=_outbox(old)) as batch_op:
        batch_op.drop_constraint(op.f('ck_outbox_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_outbox_kind'), f"kind IN ({new})")


def upgrade() -> None:
    _kinds(_BEFORE, _AFTER)
    op.create_table('result_uploads',
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('partition_key', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('session', sa.String(length=64), nullable=True),
    sa.Column('confirmed', sa.BigInteger(), nullable=False),
    sa.Column('resumed', sa.Integer(), nullable=False),
    sa.Column('restarts', sa.Integer(), nullable=False),
    sa.Column('giay_to_id', sa.String(length=64), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('size >= 0', name=op.f('ck_result_uploads_size_nonnegative')),
    sa.CheckConstraint('confirmed >= 0', name=op.f('ck_result_uploads_confirmed_nonnegative')),
    sa.ForeignKeyConstraint(['event_id'], ['outbox.id'], name=op.f('fk_result_uploads_event_id_outbox')),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_result_uploads'))
    )
    with op.batch_alter_table('result_uploads', schema=None) as batch_op:
        batch_op.create_index('ix_result_uploads_partition_key', ['partition_key', 'event_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('result_uploads', schema=None) as batch_op:
        batch_op.drop_index('ix_result_uploads_partition_key')
    op.drop_table('result_uploads')
    op.execute("DELETE FROM outbox WHERE kind = 'result'")
    _kinds(_AFTER, _BEFORE)
