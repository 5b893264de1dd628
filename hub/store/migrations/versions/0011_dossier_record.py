"""the hub's record of dossiers: current fields and status history, filled from the outbox

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 05:00:00

Reports and the 766 scorecard are computed from the hub's own record of dossiers, which the
intake keeps in the transaction that enqueues each change (``lienthong.hub.dossiers``). The
dossiers taken in before this revision are filled here from their outbox events, oldest first
(the snapshots' and steps' payloads are the portal's fields): dead and discarded events are left
out, as they never reached the portal. The fill reads the tables as the models define them at
this revision's time; it selects only the columns it names.

Migrations must run on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dossier_records',
    sa.Column('ma_ho_so', sa.String(length=64), nullable=False),
    sa.Column('agency', sa.String(length=64), nullable=True),
    sa.Column('ma_tthc', sa.String(length=16), nullable=True),
    sa.Column('ma_linh_vuc', sa.String(length=64), nullable=True),
    sa.Column('kenh', sa.Integer(), nullable=True),
    sa.Column('trang_thai', sa.Integer(), nullable=False),
    sa.Column('ngay_nop', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ngay_tiep_nhan', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ngay_hen_tra', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ngay_ket_thuc_xu_ly', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ngay_tra', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ngay_tu_choi', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('source_key', sa.String(length=255), nullable=False),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('ma_ho_so', name=op.f('pk_dossier_records'))
    )
    with op.batch_alter_table('dossier_records', schema=None) as batch_op:
        batch_op.create_index('ix_dossier_records_agency_tiep_nhan', ['agency', 'ngay_tiep_nhan'], unique=False)
        batch_op.create_index('ix_dossier_records_ket_thuc', ['ngay_ket_thuc_xu_ly'], unique=False)

    op.create_table('dossier_statuses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ma_ho_so', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source_key', sa.String(length=255), nullable=False),
    sa.CheckConstraint("kind IN ('dossier', 'step')", name=op.f('ck_dossier_statuses_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dossier_statuses')),
    sa.UniqueConstraint('source_key', name=op.f('uq_dossier_statuses_source_key')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('dossier_statuses', schema=None) as batch_op:
        batch_op.create_index('ix_dossier_statuses_ma_ho_so_at', ['ma_ho_so', 'at'], unique=False)

    if not op.get_context().as_sql:  # offline (--sql) scripts create the tables; the fill needs a database
        from lienthong.hub.dossiers import rebuild

        rebuild(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table('dossier_statuses', schema=None) as batch_op:
        batch_op.drop_index('ix_dossier_statuses_ma_ho_so_at')
    op.drop_table('dossier_statuses')
    with op.batch_alter_table('dossier_records', schema=None) as batch_op:
        batch_op.drop_index('ix_dossier_records_ket_thuc')
        batch_op.drop_index('ix_dossier_records_agency_tiep_nhan')
    op.drop_table('dossier_records')
