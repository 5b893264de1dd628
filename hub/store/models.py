"""The hub's relational schema (SQLAlchemy 2 declarative models).

All tables live in this one module for now, so Alembic sees a single ``Base.metadata`` and the
migrations in ``hub/store/migrations/versions`` can be checked against it. Later issues add the
procedure catalogue, dossiers, outbox and dead-letter tables here; split the module into a
package only when it grows unwieldy, and keep re-exporting ``Base`` from here.

Conventions, chosen so the same schema behaves identically on SQLite and PostgreSQL:

* every constraint and index has a deterministic name (``NAMING_CONVENTION``), because Alembic's
  batch mode on SQLite rebuilds tables and can only recreate constraints it can name;
* timestamps are ``UTCDateTime``: timezone-aware in Python, stored as UTC (SQLite has no time
  zone support, so the value is normalised before it is written and re-tagged when read);
* bounded ``String`` lengths, so PostgreSQL enforces them as SQLite would not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: ``prev_hash`` of the very first audit entry (and ``audit_head.last_hash`` of an empty ledger).
GENESIS_HASH = "0" * 64

#: A 64-bit integer key that is also SQLite's ``INTEGER PRIMARY KEY``: on SQLite the table is then
#: clustered on it (the rowid), which keeps sequential scans of the ledger cheap.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware ``datetime`` stored as UTC on every backend.

    Naive datetimes are refused on the way in: a ledger timestamp whose zone is a guess is not
    evidence. Values come back as aware UTC datetimes on SQLite (which stores text without a zone)
    and PostgreSQL (``timestamptz``, returned in the session's zone) alike, so a value read back
    hashes exactly as it did when written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give a timezone-aware value")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AuditEntry(Base):
    """One message that crossed the hub's boundary, exactly as it crossed it.

    Entries form a hash chain: ``entry_hash`` = SHA-256 over ``prev_hash`` and a canonical encoding
    of every other column (see ``lienthong.hub.audit.trail``), so editing, removing, inserting or
    reordering rows is detectable by re-walking the chain. ``body`` holds the exact bytes sent or
    received, zlib-compressed; ``body_sha256``/``body_size`` describe the uncompressed bytes so an
    auditor can match them against a partner's copy without this database.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    direction: Mapped[str] = mapped_column(String(3), nullable=False)
    partner: Mapped[str] = mapped_column(String(64), nullable=False)
    operation: Mapped[str] = mapped_column(String(128), nullable=False)
    document_id: Mapped[str | None] = mapped_column(String(128))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    from_agency: Mapped[str | None] = mapped_column(String(64))
    to_agency: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    body_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    body_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    entry_hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint("direction IN ('out', 'in')", name="direction"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint("body_size >= 0", name="body_size_nonnegative"),
        Index("ix_audit_log_document_id", "document_id"),
        Index("ix_audit_log_correlation_id", "correlation_id"),
        Index("ix_audit_log_partner_operation", "partner", "operation"),
        Index("ix_audit_log_recorded_at", "recorded_at"),
    )

    def __repr__(self) -> str:
        return (
            f"AuditEntry(seq={self.seq}, {self.direction} {self.partner}.{self.operation}, "
            f"document_id={self.document_id!r}, outcome={self.outcome!r})"
        )


class AuditHead(Base):
    """The ledger's single head row (``id`` = 1): the last seq and hash appended.

    Appenders lock this row first, which serialises them into one chain; and because it is updated
    in the same transaction as each append, a head that names more than the log holds proves
    entries were removed from the end (which the chain alone cannot show).
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("last_seq >= 0", name="last_seq_nonnegative"),
    )


# --- procedure catalogue (CSDL quốc gia về TTHC) --------------------------------------------------
class Procedure(Base):
    """The ministry's current copy of one national procedure (TTHC), never deleted.

    ``document`` is the canonical record (``lienthong.mappings.procedure``) as JSON, the columns
    beside it are what lists and filters need. A procedure that disappears from the national
    catalogue gets ``removed_at``; one that is unpublished keeps its record with ``published``
    false. Every change is a row in ``procedure_versions``.
    """

    __tablename__ = "procedures"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    publishing_agency: Mapped[str | None] = mapped_column(String(64))
    published: Mapped[bool] = mapped_column(Boolean, nullable=False)
    levels: Mapped[str] = mapped_column(String(64), nullable=False)  # e.g. "BO,TINH"
    online_level: Mapped[str | None] = mapped_column(String(32))
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    document: Mapped[str] = mapped_column(Text, nullable=False)
    national_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_procedures_publishing_agency", "publishing_agency"),
        Index("ix_procedures_national_updated_at", "national_updated_at"),
    )


class ProcedureVersion(Base):
    """One state of a procedure as the hub saw it: what changed, and when it was seen."""

    __tablename__ = "procedure_versions"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), ForeignKey("procedures.code"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    #: new | changed | unpublished | republished | removed | restored
    change_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    document: Mapped[str] = mapped_column(Text, nullable=False)
    #: JSON list of readable change lines against the previous version (empty for "new")
    changes: Mapped[str] = mapped_column(Text, nullable=False)
    national_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    sync_run: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("code", "version"),
        Index("ix_procedure_versions_seen_at", "seen_at"),
    )


class ProcedureLink(Base):
    """Which fields (lĩnh vực) and implementing agencies a procedure belongs to, for filtering."""

    __tablename__ = "procedure_links"

    code: Mapped[str] = mapped_column(String(16), ForeignKey("procedures.code"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "field" | "agency"
    target: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_procedure_links_kind_target", "kind", "target"),)


class CatalogueAgency(Base):
    """An agency of the national catalogue (``LayDanhMucCoQuan``)."""

    __tablename__ = "catalogue_agencies"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    level: Mapped[str | None] = mapped_column(String(16))
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class CatalogueField(Base):
    """A field (lĩnh vực) of the national catalogue (``LayDanhMucLinhVuc``)."""

    __tablename__ = "catalogue_fields"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    sector: Mapped[str | None] = mapped_column(String(64))
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class SyncState(Base):
    """Where a sync stands: its watermark moves only in the transaction that commits a batch."""

    __tablename__ = "sync_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: the partner endpoint the watermark was taken from (no credentials): a watermark says how far
    #: *that* catalogue was read, and means nothing for another endpoint's
    endpoint: Mapped[str | None] = mapped_column(Text)
    last_full_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_summary: Mapped[str | None] = mapped_column(Text)


class QuarantinedRecord(Base):
    """A record that could not be accepted, kept with its reason and the exact bytes received."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    record_key: Mapped[str | None] = mapped_column(String(64))
    reason_code: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    sync_run: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_quarantine_source_record_key", "source", "record_key"),)


# --- outbox, dead letters, circuit breaker (dossier status push to the national portal) ------------
#: Outbox event states. ``pending``, ``claimed`` and ``dead`` events *block* their partition: a
#: later event of the same dossier is never claimed while an earlier one is in one of them, which is
#: what keeps a later status from being overtaken by an earlier one. ``delivered`` and
#: ``discarded`` (an operator gave up on a dead letter, with a reason) are final and unblock it.
OUTBOX_STATES = ("pending", "claimed", "delivered", "dead", "discarded")
OUTBOX_BLOCKING_STATES = ("pending", "claimed", "dead")
#: ``result``: a digitised result file to upload before the dossier snapshot that lists it
OUTBOX_KINDS = ("dossier", "step", "result")
BREAKER_STATES = ("closed", "open", "half_open")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class OutboxEvent(Base):
    """One change of one dossier waiting for (or done with) delivery to the national portal.

    ``id`` is the global order: the intake inserts changes in the order they happened, so within a
    partition (``partition_key`` = MaHoSo) ascending ids are the order the portal must see them in.
    ``idempotency_key`` is the change's source key (``hoso:<so_ho_so>:<phien_ban>``,
    ``buoc:<id>``): the same change read twice is one event. ``payload`` is the canonical dict of
    the intake contract (portal field names) as JSON. ``source_changed_at`` is when the change
    happened in the one-stop system, so ``delivered_at - source_changed_at`` is the freshness the
    ministry is judged on. A claimed event belongs to ``claimed_by`` until ``lease_expires_at``;
    after that any worker may take it over (the owner crashed or hung).
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    partition_key: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(255), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    source_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: DocumentId of the message that carries the event: recorded before that message is sent (a
    #: resend repeats exactly that message), and once delivered, the message that delivered it
    #: (find it in the audit ledger). Cleared when a dead event is replayed.
    document_id: Mapped[str | None] = mapped_column(String(128))
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        CheckConstraint(_in("state", OUTBOX_STATES), name="state"),
        CheckConstraint(_in("kind", OUTBOX_KINDS), name="kind"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        # claiming: ready events in global order (state, id), readiness checked from the index
        Index("ix_outbox_state_id_next_attempt_at", "state", "id", "next_attempt_at"),
        # "is there an earlier undelivered event of this dossier?" and a partition's next events
        Index("ix_outbox_partition_key_id_state", "partition_key", "id", "state"),
        # freshness over the recently delivered
        Index("ix_outbox_delivered_at", "delivered_at"),
        # the events of one message, to send it again exactly (takeover, retry)
        Index("ix_outbox_document_id", "document_id"),
        # SQLite: never reuse an id, even of a pruned newest row (ids are the delivery order)
        {"sqlite_autoincrement": True},
    )

    def __repr__(self) -> str:
        return (f"OutboxEvent(id={self.id}, {self.kind} {self.partition_key}, key={self.idempotency_key!r}, "
                f"state={self.state!r}, attempts={self.attempts})")


class DeadLetter(Base):
    """Why an outbox event could not be delivered, with the evidence to decide what to do.

    ``request_bytes`` are the exact signed SOAP bytes that went out (null when the event never
    left: refused locally, unmapped code, lookup failed), ``response_bytes`` the partner's answer
    (null when none came). A dead letter is closed either by a replay (the event goes back to
    pending, in its place) or by a discard (the event is given up, with the reason and who decided).
    An event may collect several over its life (dead, replayed, dead again); at most one is open.
    """

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigIntKey, ForeignKey("outbox.id"), nullable=False)
    reason_code: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    #: DocumentId of the message the evidence belongs to (the audit ledger has it too)
    document_id: Mapped[str | None] = mapped_column(String(128))
    request_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    discarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    discard_reason: Mapped[str | None] = mapped_column(Text)
    discarded_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_dead_letters_event_id", "event_id"),
        Index("ix_dead_letters_created_at", "created_at"),
    )


class ResultUpload(Base):
    """The upload of one result file (an outbox event of kind ``result``) to the portal.

    Written by the worker that uploads it: ``sha256`` and ``size`` are the file's fingerprint the
    first time it was read (announced to the portal in ``BatDauTaiTepKetQua``; every later reading
    must hash to them, or the file changed and the event goes to the dead letters); ``session`` and
    ``confirmed`` are the portal's upload session and the bytes it confirmed holding, kept current
    while streaming (what ``lienthong status`` counts as in flight); ``giay_to_id`` and ``url`` are
    what ``KetThucTaiTepKetQua`` returned once the portal confirmed the hash. The dossier snapshots
    behind the result list it in ``DanhSachGiayToKetQua`` from this row. ``restarts`` counts the
    times an upload had to start again from byte 0 after the portal had confirmed a chunk (the
    portal lost the bytes, or they failed its hash); ``resumed`` the times it went on from the
    offset the portal reported.
    """

    __tablename__ = "result_uploads"

    event_id: Mapped[int] = mapped_column(BigIntKey, ForeignKey("outbox.id"), primary_key=True)
    partition_key: Mapped[str] = mapped_column(String(64), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    session: Mapped[str | None] = mapped_column(String(64))
    confirmed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    resumed: Mapped[int] = mapped_column(Integer, nullable=False)
    restarts: Mapped[int] = mapped_column(Integer, nullable=False)
    giay_to_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("size >= 0", name="size_nonnegative"),
        CheckConstraint("confirmed >= 0", name="confirmed_nonnegative"),
        # the results of the dossiers in a round of snapshots
        Index("ix_result_uploads_partition_key", "partition_key", "event_id"),
    )


class DossierRecord(Base):
    """The hub's record of one dossier: its current fields, as the intake last took them in.

    Kept by the intake in the transaction that enqueues the dossier's changes
    (``lienthong.hub.dossiers``), so reports and the 766 scorecard are computed from what the hub
    took in and sent, never from the one-stop system at report time. The dates are the portal's
    (``yyyyMMddHHmmss`` Vietnam time) as aware UTC moments; ``record`` is the latest snapshot as
    canonical JSON; ``version`` its row version in the source (an older version read again never
    replaces a newer one). ``agency`` is the one-stop system's handling agency (the mapping's
    ``co_quan`` column), None when the source does not say.
    """

    __tablename__ = "dossier_records"

    ma_ho_so: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency: Mapped[str | None] = mapped_column(String(64))
    ma_tthc: Mapped[str | None] = mapped_column(String(16))
    ma_linh_vuc: Mapped[str | None] = mapped_column(String(64))
    kenh: Mapped[int | None] = mapped_column(Integer)
    trang_thai: Mapped[int] = mapped_column(Integer, nullable=False)
    ngay_nop: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ngay_tiep_nhan: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ngay_hen_tra: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ngay_ket_thuc_xu_ly: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ngay_tra: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ngay_tu_choi: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int | None] = mapped_column(Integer)
    source_key: Mapped[str] = mapped_column(String(255), nullable=False)
    record: Mapped[str] = mapped_column(Text, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        # a period's report: dossiers of an agency received, finished or due in a window
        Index("ix_dossier_records_agency_tiep_nhan", "agency", "ngay_tiep_nhan"),
        Index("ix_dossier_records_ket_thuc", "ngay_ket_thuc_xu_ly"),
    )


class DossierStatus(Base):
    """One status a dossier took, and when: from its processing steps (``TrangThai`` at
    ``ThoiDiemXuLy``) and from its snapshots (``TrangThaiHoSo`` when the change was read). The
    times of each status, and the supplement periods (from a 5 to the next other status), are
    read from here. ``source_key`` is the change's idempotency key: read twice, recorded once."""

    __tablename__ = "dossier_statuses"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    ma_ho_so: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    source_key: Mapped[str] = mapped_column(String(255), nullable=False)

    __table_args__ = (
        UniqueConstraint("source_key"),
        CheckConstraint(_in("kind", ("dossier", "step")), name="kind"),
        Index("ix_dossier_statuses_ma_ho_so_at", "ma_ho_so", "at"),
        {"sqlite_autoincrement": True},
    )


class BreakerState(Base):
    """The circuit breaker of one partner, shared by every worker (see ``lienthong.hub.delivery.breaker``).

    ``failures`` counts consecutive retryable failures; ``trips`` consecutive openings without a
    success in between (the cool-down grows with it); ``next_probe_at`` is when an open breaker
    lets one probe through, and, while half-open, when an unanswered probe is given up.
    """

    __tablename__ = "breaker_state"

    partner: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    failures: Mapped[int] = mapped_column(Integer, nullable=False)
    trips: Mapped[int] = mapped_column(Integer, nullable=False)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        CheckConstraint(_in("state", BREAKER_STATES), name="state"),
        CheckConstraint("failures >= 0", name="failures_nonnegative"),
        CheckConstraint("trips >= 0", name="trips_nonnegative"),
    )


class IntakeCursor(Base):
    """Where the intake stands in one source, moved with the outbox events it took in.

    ``source`` is the source's identity (given by the operator, or derived from the mapping and
    the location); ``location`` is where the cursor was taken (database URL without credentials,
    inbox folder), so a cursor is never applied to another database under the same identity;
    ``mapping`` is the mapping it was read with. A row with no ``location`` was stored before
    sources had identities (keyed by the mapping's name): the intake refuses to guess whose it is.
    ``cursor`` is empty after ``--reset-cursor`` until the first batch commits (read from the start). ``last_run_at`` and
    ``last_run`` (JSON: counts, or the refusal's code and message) say how the last run ended.
    """

    __tablename__ = "intake_cursors"

    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    mapping: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(16))
    location: Mapped[str | None] = mapped_column(Text)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_run: Mapped[str | None] = mapped_column(Text)


class AuditSeal(Base):
    """A signed checkpoint of the audit chain's head (``lienthong audit seal``, hourly DAG).

    ``document`` is the exact signed XML (enveloped XML-DSig by the hub key) of the checkpoint
    {``head_seq``, ``head_hash``, ``sealed_at``, ``prev_seal_hash``}; the columns beside it are a
    copy for queries, and the verifier trusts only the signed document. ``seal_hash`` is SHA-256 of
    ``document``, which the next seal names as its ``prev_seal_hash``, so seals form a chain of
    their own. ``tsa_token`` is the DER RFC 3161 time-stamp token over the signature value, when a
    TSA is configured. Rewriting the whole audit chain consistently no longer goes unnoticed: the
    entry at ``head_seq`` would not have the sealed hash, and a new seal needs the hub's key.
    """

    __tablename__ = "audit_seals"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    head_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    head_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    prev_seal_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    document: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    seal_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    tsa_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    tsa_time: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("seal_hash"),
        Index("ix_audit_seals_head_seq", "head_seq"),
        {"sqlite_autoincrement": True},
    )


class AuditExport(Base):
    """One archive written by ``lienthong audit export``: which entries, and its hash.

    Exports chain: each archive names the previous export's ``archive_sha256`` and last seq/hash
    (``prev_archive_sha256``), so an inspector holding the archives can check none is missing.
    ``lienthong audit prune`` removes only entries inside ``first_seq..last_seq`` of some export.
    """

    __tablename__ = "audit_exports"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(128))
    first_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    entry_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: prev_hash of the first exported entry (what the chain inside the archive starts from)
    anchor_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    range_from: Mapped[datetime | None] = mapped_column(UTCDateTime())
    range_to: Mapped[datetime | None] = mapped_column(UTCDateTime())
    archive_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    prev_archive_sha256: Mapped[str | None] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (
        UniqueConstraint("archive_sha256"),
        CheckConstraint("first_seq >= 1 AND last_seq >= first_seq", name="seq_range"),
        Index("ix_audit_exports_last_seq", "last_seq"),
        {"sqlite_autoincrement": True},
    )


class AuditTombstone(Base):
    """What ``lienthong audit prune`` removed, signed by the hub key, so verification can resume.

    ``document`` is the signed XML of {``first_seq``..``last_seq`` pruned, ``last_hash`` (the
    entry hash of ``last_seq``, the anchor the remaining chain links to), the export archives that
    hold the pruned entries, ``prev_tombstone_hash``}. ``lienthong audit verify`` starts from the
    newest tombstone: entry ``last_seq + 1`` must link to ``last_hash``.
    """

    __tablename__ = "audit_tombstones"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(128))
    first_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    archive_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    prev_tombstone_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    document: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    tombstone_hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        UniqueConstraint("tombstone_hash"),
        CheckConstraint("first_seq >= 1 AND last_seq >= first_seq", name="seq_range"),
        {"sqlite_autoincrement": True},
    )


# --- audit ledger reading: the derived subject index (see lienthong.hub.audit.query) --------------
class AuditSubject(Base):
    """Which dossiers (``MaHoSo``) and procedures (``MaTTHC``) one audit entry is about.

    Derived data, outside the hash chain: the codes live inside the message bodies, and parsing
    bodies on the append path would slow every exchange, so the index is filled lazily by the
    first search after new entries and can be dropped and rebuilt at any time
    (``lienthong audit search --reindex``). ``kind`` is ``dossier``, ``procedure``, or
    ``unparsed`` for a body that could not be read (``value`` then says why). The key leads with
    (kind, value) so a search by dossier is an index range scan.
    """

    __tablename__ = "audit_subject"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class AuditSubjectState(Base):
    """How far the subject index has read the ledger (single row, ``id`` = 1).

    Indexers advance ``last_seq`` with a compare-and-set in the transaction that inserts their
    batch, so two searches indexing at once never insert the same entries twice.
    """

    __tablename__ = "audit_subject_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    unparsed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)
