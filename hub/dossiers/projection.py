"""Keeping the record of dossiers current (see the package docstring).

Why in the intake's transaction: a report computed from the record must agree with what the hub
took in and pushed; a record updated afterwards (by another job) could lag the outbox or, after a
crash between the two, miss a change for good. Here a change is in both or in neither.

Why versions: the SQL source reads a dossier's row as it is now, and the same version may be read
twice (a re-read after a crash) or an older export file dropped late; the record keeps the newest
version it saw. The status history keeps every status change once (by its source key), whatever
order it arrives in, and is read in time order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from ..envelope import VN_TZ
from ..store.models import DossierRecord, DossierStatus, OutboxEvent

_RECORDS = DossierRecord.__table__
_STATUSES = DossierStatus.__table__
#: TrangThaiHoSo 5: supplement requested (the clock of the due date stops)
SUPPLEMENT = 5
#: portal date fields → record columns
_DATES = {"NgayNopHoSo": "ngay_nop", "NgayTiepNhan": "ngay_tiep_nhan", "NgayHenTra": "ngay_hen_tra",
          "NgayKetThucXuLy": "ngay_ket_thuc_xu_ly", "NgayTra": "ngay_tra", "NgayTuChoi": "ngay_tu_choi"}
_IN = 500


def portal_moment(value: Any) -> datetime | None:
    """The portal's ``yyyyMMddHHmmss`` (Vietnam time) as an aware UTC moment; None if absent or unreadable."""
    if not isinstance(value, str) or len(value) != 14 or not value.isdigit():
        return None
    try:
        local = datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=VN_TZ)
    except ValueError:
        return None
    return local.astimezone(UTC)


def _get(change: Any, name: str, default: Any = None) -> Any:
    if isinstance(change, dict):
        return change.get(name, default)
    return getattr(change, name, default)


def _record_row(change: Any, now: datetime) -> dict[str, Any]:
    record = _get(change, "record") or _get(change, "payload")
    extra = _get(change, "extra") or {}
    row = {"ma_ho_so": record["MaHoSo"], "agency": _text(extra.get("co_quan")), "ma_tthc": record.get("MaTTHC"),
           "ma_linh_vuc": record.get("MaLinhVuc"), "kenh": _int(record.get("KenhThucHien")),
           "trang_thai": int(record["TrangThaiHoSo"]), "version": _get(change, "version"),
           "source_key": _get(change, "source_key"),
           "record": json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
           "first_seen_at": now, "updated_at": now}
    for field, column in _DATES.items():
        row[column] = portal_moment(record.get(field))
    return row


def _text(value: Any) -> str | None:
    return value.strip()[:64] or None if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _status_row(change: Any) -> dict[str, Any] | None:
    kind = _get(change, "kind")
    record = _get(change, "record") or _get(change, "payload")
    if kind == "step":
        at = portal_moment(record.get("ThoiDiemXuLy"))
        status = _int(record.get("TrangThai"))
    elif kind == "dossier":
        at = _get(change, "source_changed_at")
        status = _int(record.get("TrangThaiHoSo"))
    else:
        return None
    if at is None or status is None:
        return None
    return {"ma_ho_so": record["MaHoSo"], "status": status, "at": at.astimezone(UTC), "kind": kind,
            "source_key": _get(change, "source_key")}


def project(conn: Connection, changes: Iterable[Any], *, now: datetime | None = None) -> int:
    """Apply mapped changes (dossier snapshots and steps; results are ignored) to the record, in
    the caller's transaction; returns how many dossier records were written."""
    now = now or datetime.now(UTC)
    newest: dict[str, dict[str, Any]] = {}
    statuses: list[dict[str, Any]] = []
    for change in changes:
        kind = _get(change, "kind")
        if kind == "dossier":
            row = _record_row(change, now)
            seen = newest.get(row["ma_ho_so"])
            if seen is None or (row["version"] or 0) >= (seen["version"] or 0):
                newest[row["ma_ho_so"]] = row
        if kind in ("dossier", "step"):
            status = _status_row(change)
            if status is not None:
                statuses.append(status)
    written = _upsert(conn, list(newest.values()))
    _add_statuses(conn, statuses)
    return written


def _upsert(conn: Connection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    keys = [r["ma_ho_so"] for r in rows]
    stored: dict[str, tuple[int | None, datetime]] = {}
    for start in range(0, len(keys), _IN):
        for key, version, first in conn.execute(select(_RECORDS.c.ma_ho_so, _RECORDS.c.version,
                                                       _RECORDS.c.first_seen_at)
                                                .where(_RECORDS.c.ma_ho_so.in_(keys[start:start + _IN]))):
            stored[key] = (version, first)
    inserts, updates = [], []
    for row in rows:
        if row["ma_ho_so"] not in stored:
            inserts.append(row)
            continue
        version, first = stored[row["ma_ho_so"]]
        if (row["version"] or 0) >= (version or 0):  # an older version read again changes nothing
            updates.append({**row, "first_seen_at": first})
    if inserts:
        conn.execute(_RECORDS.insert(), inserts)
    if updates:  # one statement, executed for every row (a batch of 500 dossiers is one round trip)
        columns = [c for c in updates[0] if c not in ("ma_ho_so", "first_seen_at")]
        statement = (_RECORDS.update().where(_RECORDS.c.ma_ho_so == bindparam("b_ma_ho_so"))
                     .values({c: bindparam(f"b_{c}") for c in columns}))
        conn.execute(statement, [{f"b_{k}": v for k, v in row.items() if k != "first_seen_at"} for row in updates])
    return len(inserts) + len(updates)


def _add_statuses(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = sorted({r["source_key"] for r in rows})
    known: set[str] = set()
    for start in range(0, len(keys), _IN):
        known.update(conn.execute(select(_STATUSES.c.source_key)
                                  .where(_STATUSES.c.source_key.in_(keys[start:start + _IN]))).scalars())
    fresh, seen = [], set()
    for row in rows:
        if row["source_key"] in known or row["source_key"] in seen:
            continue
        seen.add(row["source_key"])
        fresh.append(row)
    if fresh:
        conn.execute(_STATUSES.insert(), fresh)


def rebuild(conn: Connection, *, batch: int = 5_000) -> int:
    """Fill the record from the outbox's dossier and step events (oldest first), for the dossiers
    taken in before the record existed; returns how many events were read. Safe to run again."""
    events = OutboxEvent.__table__
    last, read = 0, 0
    while True:
        rows = conn.execute(select(events.c.id, events.c.kind, events.c.idempotency_key, events.c.payload,
                                   events.c.source_changed_at, events.c.state)
                            .where(events.c.id > last, events.c.kind.in_(("dossier", "step")),
                                   events.c.state.in_(("pending", "claimed", "delivered")))
                            .order_by(events.c.id).limit(batch)).all()
        if not rows:
            return read
        changes = []
        for row in rows:
            try:
                payload = json.loads(row.payload)
            except ValueError:
                continue
            if not isinstance(payload, dict) or not payload.get("MaHoSo"):
                continue
            if row.kind == "dossier" and payload.get("TrangThaiHoSo") is None:
                continue
            changed = row.source_changed_at
            if changed is not None and changed.tzinfo is None:
                changed = changed.replace(tzinfo=UTC)
            changes.append({"kind": row.kind, "source_key": row.idempotency_key, "record": payload,
                            "source_changed_at": changed, "version": _version_of(row.idempotency_key)})
        project(conn, changes)
        read += len(rows)
        last = rows[-1].id


def _version_of(key: str) -> int | None:
    """The row version in a dossier snapshot's key (``[prefix]hoso:<code>:<version>[+…]``)."""
    tail = key.split("+", 1)[0].rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class StatusEntry:
    status: int
    at: datetime
    kind: str
    source_key: str


def dossier(engine: Engine, ma_ho_so: str) -> dict[str, Any] | None:
    """The record of one dossier (its columns), or None."""
    with engine.connect() as conn:
        row = conn.execute(select(_RECORDS).where(_RECORDS.c.ma_ho_so == ma_ho_so)).mappings().first()
    return dict(row) if row is not None else None


def history(engine: Engine, ma_ho_so: str) -> list[StatusEntry]:
    """The statuses one dossier took, in time order (a step before a snapshot at the same moment)."""
    with engine.connect() as conn:
        rows = conn.execute(select(_STATUSES.c.status, _STATUSES.c.at, _STATUSES.c.kind, _STATUSES.c.source_key)
                            .where(_STATUSES.c.ma_ho_so == ma_ho_so)
                            .order_by(_STATUSES.c.at, _STATUSES.c.kind.desc(), _STATUSES.c.id)).all()
    return [StatusEntry(r.status, r.at, r.kind, r.source_key) for r in rows]


def supplement_periods(entries: list[StatusEntry]) -> list[tuple[datetime, datetime | None]]:
    """(start, end) of each time the dossier waited for a supplement: from a status 5 to the next
    other status (end None: still waiting). Repeated 5s in a row are one period."""
    periods: list[tuple[datetime, datetime | None]] = []
    start: datetime | None = None
    for entry in entries:
        if entry.status == SUPPLEMENT:
            if start is None:
                start = entry.at
        elif start is not None:
            periods.append((start, entry.at))
            start = None
    if start is not None:
        periods.append((start, None))
    return periods
