"""The "06" report's figures for a period, from the hub's record of dossiers.

A period is a month (``2026-11``), a quarter (``2026-Q4``), a six-month half (``2026-H2``) or a
year (``2026``), from midnight to midnight **Vietnam time**. Each dossier counts once per column,
in the row of its agency (the one-stop system's ``co_quan``), procedure and field. The rules, as
the national reporting system reads them:

* a dossier is **received** when it has ``NgayTiepNhan``; one never received (still new, or
  refused at reception: status 3) is in no report;
* its **end** is the end of processing: for a resolved dossier (9 or 10; 9 wins over 10) its
  ``NgayKetThucXuLy``, else the first time it reached 9 (then 10, then ``NgayTra``); for a
  withdrawn (7) or stopped (8) one, the first time it took that status. Any other dossier is in
  progress;
* a dossier received before the period and not ended before it is **carried over**
  (``TiepNhanKyTruoc``); one received in the period counts by channel (``KenhThucHien`` 2 online,
  3 postal, anything else direct);
* a dossier resolved in the period is **before due**, **on due** or **late** by comparing the
  Vietnam calendar day of its end with that of its due date, **supplement time excluded**: the
  time it waited for a supplement (from each status 5 to the next status) is taken off its
  processing time. The due date is ``NgayHenTra``; a dossier without one is due after the
  procedure's maximum processing time for its channel in the local catalogue (working days are
  Monday to Friday: the hub knows no public holidays); with neither, it counts as on due and is
  named in :attr:`ReportRow.without_due_date`. ``due_date_moved=True`` is for one-stop systems that
  already push ``NgayHenTra`` back by the supplement time (the sandbox's does): then nothing is
  taken off a second time;
* withdrawn and stopped dossiers ended in the period are ``RutHoSo`` and ``DungXuLy``; every
  other dossier not ended before the period's end is **in progress** at its end, overdue when its
  due date (supplement time excluded) is before the end of the period;
* ``YeuCauBoSung``: dossiers asked for a supplement during the period (once each, however often).

So, per row: carried over + received online + direct + postal = resolved (3 columns) + in
progress (2) + withdrawn + stopped, and in progress is what the next period carries over.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select

from ..dossiers import SUPPLEMENT, StatusEntry, supplement_periods
from ..envelope import VN_TZ
from ..store.models import DossierRecord, DossierStatus, Procedure

COLUMNS = ("TiepNhanKyTruoc", "TiepNhanTrucTuyen", "TiepNhanTrucTiep", "TiepNhanBuuChinh", "GiaiQuyetTruocHan",
           "GiaiQuyetDungHan", "GiaiQuyetQuaHan", "DangXuLyTrongHan", "DangXuLyQuaHan", "YeuCauBoSung", "RutHoSo",
           "DungXuLy")
RESOLVED, WITHDRAWN, STOPPED, REFUSED = (9, 10), 7, 8, 3
_IN = 500


@dataclass(frozen=True)
class Period:
    """A reporting period: ``kind`` thang / quy / sau_thang / nam, its number in the year, and its
    bounds as aware UTC moments (start included, end excluded), from midnight Vietnam time."""

    kind: str
    year: int
    number: int
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, text: str) -> Period:
        text = text.strip().upper()
        if m := re.fullmatch(r"(\d{4})-(\d{1,2})", text):
            year, month = int(m[1]), int(m[2])
            if not 1 <= month <= 12:
                raise ValueError(f"period {text!r}: month must be 1..12")
            return cls._of("thang", year, month, month, 1)
        if m := re.fullmatch(r"(\d{4})-Q([1-4])", text):
            year, quarter = int(m[1]), int(m[2])
            return cls._of("quy", year, quarter, 3 * quarter - 2, 3)
        if m := re.fullmatch(r"(\d{4})-H([12])", text):
            year, half = int(m[1]), int(m[2])
            return cls._of("sau_thang", year, half, 6 * half - 5, 6)
        if m := re.fullmatch(r"(\d{4})", text):
            return cls._of("nam", int(m[1]), 1, 1, 12)
        raise ValueError(f"period {text!r}: write a month 2026-11, a quarter 2026-Q4, a half 2026-H2 or a year 2026")

    @classmethod
    def _of(cls, kind: str, year: int, number: int, first_month: int, months: int) -> Period:
        start = datetime(year, first_month, 1, tzinfo=VN_TZ)
        last = first_month + months
        end = datetime(year + (last - 1) // 12, (last - 1) % 12 + 1, 1, tzinfo=VN_TZ)
        return cls(kind, year, number, start.astimezone(UTC), end.astimezone(UTC))

    def __str__(self) -> str:
        local = self.start.astimezone(VN_TZ)
        return {"thang": f"{local:%Y-%m}", "quy": f"{self.year}-Q{self.number}",
                "sau_thang": f"{self.year}-H{self.number}", "nam": f"{self.year}"}[self.kind]


@dataclass
class ReportRow:
    """One row of the report: agency × procedure × field, the 06 columns, and the dossiers that
    counted as on due only because no due date could be found."""

    agency: str
    ma_tthc: str | None
    ma_linh_vuc: str | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))
    without_due_date: list[str] = field(default_factory=list)

    @property
    def received(self) -> int:
        return sum(self.counts[c] for c in COLUMNS[:4])

    @property
    def accounted(self) -> int:
        """Resolved, in progress, withdrawn and stopped: equals :attr:`received`."""
        return sum(self.counts[c] for c in COLUMNS[4:9]) + self.counts["RutHoSo"] + self.counts["DungXuLy"]

    def as_chi_tieu(self) -> dict[str, Any]:
        """The row as ``GuiBaoCao``'s ``ChiTieu`` (baocao.xsd order)."""
        row: dict[str, Any] = {"MaCoQuan": self.agency}
        if self.ma_tthc:
            row["MaTTHC"] = self.ma_tthc
        if self.ma_linh_vuc:
            row["MaLinhVuc"] = self.ma_linh_vuc
        return row | self.counts


def _local_day(moment: datetime) -> date:
    return moment.astimezone(VN_TZ).date()


def _add_working_days(start: datetime, days: float) -> datetime:
    """``days`` working days (Monday to Friday) after ``start``, at the same time of day."""
    local = start.astimezone(VN_TZ)
    whole, part = int(days), days - int(days)
    while whole > 0:
        local += timedelta(days=1)
        if local.weekday() < 5:
            whole -= 1
    return (local + timedelta(days=part)).astimezone(UTC)


class _Catalogue:
    """Maximum processing time per procedure and channel, from the local catalogue (read once)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._cache: dict[str, list[dict[str, Any]] | None] = {}

    def due(self, code: str | None, kenh: int | None, received: datetime) -> datetime | None:
        if not code:
            return None
        if code not in self._cache:
            with self.engine.connect() as conn:
                document = conn.execute(select(Procedure.document).where(Procedure.code == code)).scalar()
            self._cache[code] = json.loads(document).get("channels") if document else None
        channels = self._cache[code] or []
        chosen = [c for c in channels if c.get("kenh") == kenh] or channels
        longest: tuple[float, str] | None = None
        for channel in chosen:
            for time in channel.get("times") or []:
                try:
                    amount = float(time.get("amount"))
                except (TypeError, ValueError):
                    continue
                unit = (time.get("unit") or "").lower()
                days = amount / 24 if "giờ" in unit else amount
                if longest is None or days > longest[0]:
                    longest = (days, unit)
        if longest is None:
            return None
        days, unit = longest
        if "làm việc" in unit:
            return _add_working_days(received, days)
        return received + timedelta(days=days)


def _end(record: dict[str, Any], entries: list[StatusEntry]) -> datetime | None:
    status = record["trang_thai"]
    if status in RESOLVED:
        if record["ngay_ket_thuc_xu_ly"] is not None:
            return record["ngay_ket_thuc_xu_ly"]
        for wanted in RESOLVED:  # 9 wins over 10
            found = next((e.at for e in entries if e.status == wanted), None)
            if found is not None:
                return found
        return record["ngay_tra"]
    if status in (WITHDRAWN, STOPPED):
        return next((e.at for e in entries if e.status == status), record["updated_at"])
    return None


def _supplement_time(entries: list[StatusEntry], until: datetime) -> timedelta:
    total = timedelta(0)
    for start, stop in supplement_periods(entries):
        stop = until if stop is None or stop > until else stop
        if stop > start:
            total += stop - start
    return total


def _own_history(entries: list[StatusEntry]) -> list[StatusEntry]:
    """The steps when the dossier has any (they carry the real times), else its snapshots."""
    steps = [e for e in entries if e.kind == "step"]
    return steps or entries


def report_rows(engine: Engine, period: Period, *, agency: str | None = None, default_agency: str = "",
                due_date_moved: bool = False) -> list[ReportRow]:
    """The report's rows for ``period`` (see the module docstring), sorted by agency, procedure, field.

    ``agency`` keeps one agency's dossiers; ``default_agency`` is the row of dossiers whose source
    names none (the hub's own agency)."""
    records = DossierRecord.__table__
    query = select(records).where(records.c.ngay_tiep_nhan.is_not(None), records.c.ngay_tiep_nhan < period.end,
                                  records.c.trang_thai != REFUSED)
    if agency is not None:
        query = query.where(records.c.agency == agency if agency != default_agency
                            else or_(records.c.agency == agency, records.c.agency.is_(None)))
    catalogue = _Catalogue(engine)
    rows: dict[tuple[str, str | None, str | None], ReportRow] = {}
    with engine.connect() as conn:
        dossiers = [dict(r) for r in conn.execute(query).mappings()]
        histories: dict[str, list[StatusEntry]] = defaultdict(list)
        codes = [d["ma_ho_so"] for d in dossiers]
        statuses = DossierStatus.__table__
        for start in range(0, len(codes), _IN):
            for r in conn.execute(select(statuses.c.ma_ho_so, statuses.c.status, statuses.c.at, statuses.c.kind,
                                         statuses.c.source_key)
                                  .where(statuses.c.ma_ho_so.in_(codes[start:start + _IN]))
                                  .order_by(statuses.c.ma_ho_so, statuses.c.at, statuses.c.kind.desc(),
                                            statuses.c.id)):
                histories[r.ma_ho_so].append(StatusEntry(r.status, r.at, r.kind, r.source_key))
    for record in dossiers:
        entries = _own_history(histories.get(record["ma_ho_so"], []))
        end = _end(record, entries)
        if end is not None and end < period.start:
            continue  # ended before the period: in none of its columns
        key = (record["agency"] or default_agency, record["ma_tthc"], record["ma_linh_vuc"])
        row = rows.get(key)
        if row is None:
            row = rows[key] = ReportRow(*key)
        counts = row.counts
        received = record["ngay_tiep_nhan"]
        if received < period.start:
            counts["TiepNhanKyTruoc"] += 1
        else:
            column = {2: "TiepNhanTrucTuyen", 3: "TiepNhanBuuChinh"}.get(record["kenh"], "TiepNhanTrucTiep")
            counts[column] += 1
        if any(e.status == SUPPLEMENT and period.start <= e.at < period.end for e in entries):
            counts["YeuCauBoSung"] += 1
        due = record["ngay_hen_tra"] or catalogue.due(record["ma_tthc"], record["kenh"], received)
        status = record["trang_thai"]
        if end is not None and end < period.end:
            if status == WITHDRAWN:
                counts["RutHoSo"] += 1
            elif status == STOPPED:
                counts["DungXuLy"] += 1
            elif due is None:
                counts["GiaiQuyetDungHan"] += 1
                row.without_due_date.append(record["ma_ho_so"])
            else:
                taken = end if due_date_moved else end - _supplement_time(entries, end)
                day, due_day = _local_day(taken), _local_day(due)
                counts["GiaiQuyetTruocHan" if day < due_day else
                       "GiaiQuyetDungHan" if day == due_day else "GiaiQuyetQuaHan"] += 1
            continue
        # in progress at the period's end
        if due is None:
            counts["DangXuLyTrongHan"] += 1
            row.without_due_date.append(record["ma_ho_so"])
            continue
        effective = due if due_date_moved else due + _supplement_time(entries, period.end)
        counts["DangXuLyQuaHan" if effective < period.end else "DangXuLyTrongHan"] += 1
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] or "", k[2] or ""))]
