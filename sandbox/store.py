"""The sandbox's own SQLite store: what the emulated national services received and hold.

Kept apart from the hub's database on purpose (default ``$LIENTHONG_HOME/sandbox/sandbox.db``):
the sandbox plays the *other* side of the wire, and tests compare what the hub believes it sent
(its audit trail) with what the national side actually got (this store). It is an emulator's
store, so the schema is created with ``create_all`` rather than migrated.

Tables:

* ``messages``  every POST that reached a service: time, service, operation, DocumentId, sender,
  outcome (``OK``, ``DUPLICATE`` or the fault code), SHA-256 and raw bytes of the request, and the
  reply payload of accepted state-changing messages (so that a resend with the same DocumentId
  gets the same answer instead of being applied twice);
* ``dossiers`` / ``dossier_events``  the portal's view of each dossier and every dossier or
  processing-step event received for it, in arrival order;
* ``uploads``  chunked result-file sessions (bytes live in files beside the database);
* ``reports``  reports received by the national reporting system.

Writes are serialised by one lock (SQLite has a single writer anyway); reads run concurrently
thanks to WAL mode.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.pool import StaticPool

metadata = MetaData()

messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("service", String(32), nullable=False),
    Column("operation", String(64)),
    Column("document_id", String(128)),
    Column("from_agency", String(32)),
    Column("outcome", String(64), nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("error", Text),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("payload_sha256", String(64)),  # of the exclusive-c14n payload: same content, new signature
    Column("reply_document_id", String(128)),
    Column("reply_payload", LargeBinary),
    Index("ix_messages_service_op", "service", "operation"),
    Index("ix_messages_doc", "from_agency", "document_id"),
)

dossiers = Table(
    "dossiers", metadata,
    Column("ma_ho_so", String(64), primary_key=True),
    Column("ma_tthc", String(16), nullable=False),
    Column("trang_thai", Integer, nullable=False),
    Column("kenh", Integer, nullable=False),
    Column("from_agency", String(32), nullable=False),
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("versions", Integer, nullable=False),
    Column("data", Text, nullable=False),  # JSON of the last HoSo received
)

dossier_events = Table(
    "dossier_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ma_ho_so", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # "HoSo" (DongBoHoSoMC) | "QuaTrinhXuLy" (CapNhatTienDoHoSoMC)
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("document_id", String(128), nullable=False),
    Column("is_updating", Boolean),
    Column("trang_thai", Integer, nullable=False),
    Column("thoi_diem", String(14)),  # ThoiDiemXuLy of a step (yyyyMMddHHmmss)
    Column("accepted", Boolean, nullable=False),
    Column("duplicate", Boolean, nullable=False, default=False),  # same step already accepted
    Column("ma_loi", String(32), nullable=False),
    Column("mo_ta", Text),
    Column("fingerprint", String(64)),  # of a step's time, status and content: spots re-pushed steps
    Column("data", Text, nullable=False),
)

uploads = Table(
    "uploads", metadata,
    Column("ma_phien_tai", String(64), primary_key=True),
    Column("ma_ho_so", String(64), nullable=False),
    Column("ma_giay_to_ket_qua", String(64)),
    Column("ten_tep", String(255), nullable=False),
    Column("kieu_tep", String(127), nullable=False),
    Column("kich_thuoc", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("da_nhan", Integer, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # open | done
    Column("giay_to_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_uploads_file", "ma_ho_so", "sha256", "kich_thuoc"),
)

reports = Table(
    "reports", metadata,
    Column("ma_bao_cao", String(64), primary_key=True),
    Column("ma_co_quan", String(32), nullable=False),
    Column("loai_ky", String(8), nullable=False),
    Column("nam", Integer, nullable=False),
    Column("ky", Integer, nullable=False),
    Column("trang_thai", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("document_id", String(128), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("data", Text, nullable=False),  # JSON list of ChiTieu rows
    Column("ghi_chu", Text),
)


# statements built once, executed with bound parameters (executemany for batches): building a
# statement per row costs more than SQLite's insert itself
_INSERT_MESSAGE = insert(messages)
_INSERT_DOSSIER = insert(dossiers)
_PREVIOUS_REPLY = (select(messages.c.payload_sha256, messages.c.reply_payload)
                   .where(and_(messages.c.from_agency == bindparam("p_from"),
                               messages.c.document_id == bindparam("p_doc"),
                               messages.c.outcome.in_(("OK", "TIMEOUT")), messages.c.reply_payload.is_not(None)))
                   .order_by(messages.c.id).limit(1))
_INSERT_EVENT = insert(dossier_events)
_UPDATE_DOSSIER = (update(dossiers).where(dossiers.c.ma_ho_so == bindparam("b_ma_ho_so"))
                   .values(ma_tthc=bindparam("ma_tthc"), trang_thai=bindparam("trang_thai"), kenh=bindparam("kenh"),
                           updated_at=bindparam("updated_at"), versions=bindparam("versions"),
                           data=bindparam("data")))


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive: they were stored as UTC, say so."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class ReceivedMessage:
    id: int
    received_at: datetime
    service: str
    operation: str | None
    document_id: str | None
    from_agency: str | None
    outcome: str
    http_status: int
    error: str | None
    sha256: str
    raw: bytes
    reply_document_id: str | None

    @property
    def ok(self) -> bool:
        return self.outcome in ("OK", "DUPLICATE")


@dataclass(frozen=True)
class DossierEvent:
    id: int
    ma_ho_so: str
    kind: str
    received_at: datetime
    document_id: str
    is_updating: bool | None
    trang_thai: int
    thoi_diem: str | None
    accepted: bool
    duplicate: bool
    ma_loi: str
    mo_ta: str | None
    data: dict[str, Any]


class SandboxStore:
    """The store; ``path=None`` keeps everything in memory (one connection, for quick tests)."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is None:
            self.engine = create_engine("sqlite://", poolclass=StaticPool,
                                        connect_args={"check_same_thread": False})
            # uploaded bytes still need a place on disk: a private temporary directory
            self._tmp: tempfile.TemporaryDirectory | None = tempfile.TemporaryDirectory(prefix="lienthong-sandbox-")
            self.files_dir = Path(self._tmp.name)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(f"sqlite:///{self.path}", connect_args={"check_same_thread": False,
                                                                                "timeout": 30})
            self._tmp = None
            self.files_dir = self.path.parent / f"{self.path.stem}-files"
        (self.files_dir / "partial").mkdir(parents=True, exist_ok=True)
        (self.files_dir / "results").mkdir(parents=True, exist_ok=True)

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - DB-API connection
            cur = dbapi_conn.cursor()
            if self.path is not None:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        # In memory there is one shared connection: reads must take the lock too.
        self._lock = threading.RLock()
        self._read_lock = self._lock if self.path is None else _NoLock()
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def partial_path(self, ma_phien_tai: str) -> Path:
        """Where the bytes of an open upload session accumulate."""
        return self.files_dir / "partial" / f"{ma_phien_tai}.part"

    def result_path(self, giay_to_id: str) -> Path:
        """Where a completed, checksum-verified result file is kept."""
        return self.files_dir / "results" / giay_to_id

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; handlers do their business writes and the message log in it."""
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self, conn: Connection | None = None) -> Iterator[Connection]:
        """A read connection; ``conn`` when the caller is inside a transaction already (a handler)."""
        if conn is not None:
            yield conn
            return
        with self._read_lock, self.engine.connect() as own:
            yield own

    # -- message log -----------------------------------------------------------------------
    def log_message(self, conn: Connection | None, *, service: str, operation: str | None, document_id: str | None,
                    from_agency: str | None, outcome: str, http_status: int, raw: bytes, error: str | None = None,
                    reply_document_id: str | None = None, reply_payload: bytes | None = None,
                    payload_sha256: str | None = None, received_at: datetime | None = None) -> int:
        row = dict(payload_sha256=payload_sha256,
            received_at=received_at or datetime.now(UTC), service=service, operation=operation,
            document_id=document_id, from_agency=from_agency, outcome=outcome, http_status=http_status,
            error=error, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), raw=raw,
            reply_document_id=reply_document_id, reply_payload=reply_payload,
        )
        # a pre-built INSERT with bound parameters: no per-call statement construction
        if conn is None:
            with self.write() as own:
                return own.execute(_INSERT_MESSAGE, row).inserted_primary_key[0]
        return conn.execute(_INSERT_MESSAGE, row).inserted_primary_key[0]

    def previous_reply(self, conn: Connection, from_agency: str, document_id: str) -> tuple[str, bytes] | None:
        """(payload sha256, reply payload) of an earlier *applied* message with the same sender and DocumentId.

        ``TIMEOUT`` counts as applied: an injected timeout drops the reply after processing, which
        is exactly the case a resend must not apply twice.
        """
        row = conn.execute(_PREVIOUS_REPLY, {"p_from": from_agency, "p_doc": document_id}).first()
        return (row.payload_sha256, row.reply_payload) if row else None

    def received(self, service: str | None = None, operation: str | None = None, *,
                 outcome: str | None = None, document_id: str | None = None) -> list[ReceivedMessage]:
        """Messages received, oldest first, optionally filtered."""
        stmt = select(messages).order_by(messages.c.id)
        for col, value in ((messages.c.service, service), (messages.c.operation, operation),
                           (messages.c.outcome, outcome), (messages.c.document_id, document_id)):
            if value is not None:
                stmt = stmt.where(col == value)
        with self.read() as conn:
            return [ReceivedMessage(
                id=r.id, received_at=_utc(r.received_at), service=r.service, operation=r.operation,
                document_id=r.document_id, from_agency=r.from_agency, outcome=r.outcome,
                http_status=r.http_status, error=r.error, sha256=r.sha256, raw=r.raw,
                reply_document_id=r.reply_document_id,
            ) for r in conn.execute(stmt)]

    def count(self, service: str | None = None, operation: str | None = None, *, outcome: str | None = None) -> int:
        stmt = select(func.count()).select_from(messages)
        for col, value in ((messages.c.service, service), (messages.c.operation, operation),
                           (messages.c.outcome, outcome)):
            if value is not None:
                stmt = stmt.where(col == value)
        with self.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def outcomes(self) -> dict[str, int]:
        """How many messages ended with each outcome (``OK``, ``DUPLICATE``, fault codes)."""
        with self.read() as conn:
            rows = conn.execute(select(messages.c.outcome, func.count()).group_by(messages.c.outcome))
            return {outcome: int(n) for outcome, n in rows}

    # -- dossiers --------------------------------------------------------------------------
    def get_dossier(self, ma_ho_so: str, conn: Connection | None = None) -> dict[str, Any] | None:
        """The portal's current record of a dossier: key columns plus ``data`` (last HoSo as a dict)."""
        with self.read(conn) as c:
            row = c.execute(select(dossiers).where(dossiers.c.ma_ho_so == ma_ho_so)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["data"] = json.loads(out["data"])
        out["first_received_at"] = _utc(out["first_received_at"])
        out["updated_at"] = _utc(out["updated_at"])
        return out

    def dossier(self, ma_ho_so: str) -> dict[str, Any] | None:
        return self.get_dossier(ma_ho_so)

    def dossier_states(self, conn: Connection, codes: list[str]) -> dict[str, tuple[int, int]]:
        """{MaHoSo: (trang_thai, versions)} of the dossiers among ``codes`` the portal holds (one query)."""
        out: dict[str, tuple[int, int]] = {}
        for i in range(0, len(codes), 500):
            rows = conn.execute(select(dossiers.c.ma_ho_so, dossiers.c.trang_thai, dossiers.c.versions)
                                .where(dossiers.c.ma_ho_so.in_(codes[i:i + 500])))
            out.update({r.ma_ho_so: (r.trang_thai, r.versions) for r in rows})
        return out

    def save_dossiers(self, conn: Connection, new: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
        """Insert ``new`` and update ``changed`` dossier rows (each with a ``data`` dict), batched.

        Rows carry ``ma_ho_so, ma_tthc, trang_thai, kenh, from_agency, at, data``; ``changed`` rows
        also ``versions`` (the new count).
        """
        if new:
            conn.execute(_INSERT_DOSSIER, [dict(
                ma_ho_so=r["ma_ho_so"], ma_tthc=r["ma_tthc"], trang_thai=r["trang_thai"], kenh=r["kenh"],
                from_agency=r["from_agency"], first_received_at=r["at"], updated_at=r["at"], versions=1,
                data=json.dumps(r["data"], ensure_ascii=False)) for r in new])
        if changed:
            conn.execute(_UPDATE_DOSSIER, [dict(
                b_ma_ho_so=r["ma_ho_so"], ma_tthc=r["ma_tthc"], trang_thai=r["trang_thai"], kenh=r["kenh"],
                updated_at=r["at"], versions=r["versions"],
                data=json.dumps(r["data"], ensure_ascii=False)) for r in changed])

    def add_dossier_events(self, conn: Connection, events: list[dict[str, Any]]) -> None:
        """Append events (keys: ma_ho_so, kind, at, document_id, trang_thai, accepted, ma_loi, data, and
        optionally is_updating, thoi_diem, mo_ta, duplicate, fingerprint) in one statement."""
        if events:
            conn.execute(_INSERT_EVENT, [dict(
                ma_ho_so=e["ma_ho_so"], kind=e["kind"], received_at=e["at"], document_id=e["document_id"],
                is_updating=e.get("is_updating"), trang_thai=e["trang_thai"], thoi_diem=e.get("thoi_diem"),
                accepted=e["accepted"], duplicate=e.get("duplicate", False), ma_loi=e["ma_loi"],
                mo_ta=e.get("mo_ta"), fingerprint=e.get("fingerprint"),
                data=json.dumps(e["data"], ensure_ascii=False)) for e in events])

    def accepted_steps(self, conn: Connection, codes: list[str]) -> dict[str, tuple[str | None, set[str]]]:
        """{MaHoSo: (latest accepted ThoiDiemXuLy, fingerprints of accepted steps)} for ``codes``."""
        out: dict[str, tuple[str | None, set[str]]] = {}
        for i in range(0, len(codes), 500):
            rows = conn.execute(select(dossier_events.c.ma_ho_so, dossier_events.c.thoi_diem,
                                       dossier_events.c.fingerprint)
                                .where(and_(dossier_events.c.ma_ho_so.in_(codes[i:i + 500]),
                                            dossier_events.c.kind == "QuaTrinhXuLy",
                                            dossier_events.c.accepted.is_(True))))
            for r in rows:
                last, prints = out.get(r.ma_ho_so, (None, set()))
                prints.add(r.fingerprint)
                out[r.ma_ho_so] = (max(last, r.thoi_diem) if last else r.thoi_diem, prints)
        return out

    def dossier_history(self, ma_ho_so: str) -> list[DossierEvent]:
        """Every dossier and step event received for ``ma_ho_so``, in arrival order (accepted or not)."""
        with self.read() as conn:
            rows = conn.execute(select(dossier_events).where(dossier_events.c.ma_ho_so == ma_ho_so)
                                .order_by(dossier_events.c.id))
            return [DossierEvent(
                id=r.id, ma_ho_so=r.ma_ho_so, kind=r.kind, received_at=_utc(r.received_at),
                document_id=r.document_id, is_updating=r.is_updating, trang_thai=r.trang_thai,
                thoi_diem=r.thoi_diem, accepted=r.accepted, duplicate=r.duplicate, ma_loi=r.ma_loi, mo_ta=r.mo_ta,
                data=json.loads(r.data),
            ) for r in rows]

    def dossier_count(self) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(dossiers)).scalar_one())

    # -- uploads ---------------------------------------------------------------------------
    def upload(self, ma_phien_tai: str, conn: Connection | None = None) -> dict[str, Any] | None:
        with self.read(conn) as c:
            row = c.execute(select(uploads).where(uploads.c.ma_phien_tai == ma_phien_tai)).first()
        return dict(row._mapping) if row else None

    def find_upload(self, conn: Connection, ma_ho_so: str, sha256: str, size: int) -> dict[str, Any] | None:
        """The most recent session for the same file of the same dossier (resume point)."""
        row = conn.execute(
            select(uploads).where(and_(uploads.c.ma_ho_so == ma_ho_so, uploads.c.sha256 == sha256,
                                       uploads.c.kich_thuoc == size))
            .order_by(uploads.c.created_at.desc()).limit(1)
        ).first()
        return dict(row._mapping) if row else None

    def create_upload(self, conn: Connection, **values: Any) -> None:
        conn.execute(insert(uploads).values(**values))

    def update_upload(self, conn: Connection, ma_phien_tai: str, **values: Any) -> None:
        conn.execute(update(uploads).where(uploads.c.ma_phien_tai == ma_phien_tai).values(**values))

    def uploads_for(self, ma_ho_so: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(select(uploads).where(uploads.c.ma_ho_so == ma_ho_so).order_by(uploads.c.created_at))
            return [dict(r._mapping) for r in rows]

    def result_by_id(self, giay_to_id: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(select(uploads).where(and_(uploads.c.giay_to_id == giay_to_id,
                                                          uploads.c.status == "done"))).first()
            return dict(row._mapping) if row else None

    # -- reports ---------------------------------------------------------------------------
    def add_report(self, conn: Connection, **values: Any) -> None:
        conn.execute(insert(reports).values(**values))

    def supersede_reports(self, conn: Connection, ma_co_quan: str, loai_ky: str, nam: int, ky: int) -> int:
        """Mark earlier reports for the same agency and period as replaced; how many were."""
        result = conn.execute(update(reports).where(and_(
            reports.c.ma_co_quan == ma_co_quan, reports.c.loai_ky == loai_ky, reports.c.nam == nam,
            reports.c.ky == ky, reports.c.trang_thai != "DA_THAY_THE",
        )).values(trang_thai="DA_THAY_THE"))
        return result.rowcount or 0

    def report(self, ma_bao_cao: str, conn: Connection | None = None) -> dict[str, Any] | None:
        with self.read(conn) as c:
            row = c.execute(select(reports).where(reports.c.ma_bao_cao == ma_bao_cao)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["data"] = json.loads(out["data"])
        out["received_at"] = _utc(out["received_at"])
        return out

    def reports_for(self, ma_co_quan: str | None = None) -> list[dict[str, Any]]:
        stmt = select(reports).order_by(reports.c.received_at)
        if ma_co_quan is not None:
            stmt = stmt.where(reports.c.ma_co_quan == ma_co_quan)
        with self.read() as conn:
            out = []
            for r in conn.execute(stmt):
                d = dict(r._mapping)
                d["data"] = json.loads(d["data"])
                d["received_at"] = _utc(d["received_at"])
                out.append(d)
            return out


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
