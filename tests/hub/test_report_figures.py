"""The 06 report's figures for a month, against a fixture computed by hand (issue 15, item 2).

44 dossiers of November 2026 (Vietnam time), each written out below with what it must count as:
carried over from October or received in November by channel, resolved before / on / after its due
date with the time waiting for a supplement taken off, in progress (within or past its due date) at
the month's end, withdrawn, stopped, or out of the report; at the midnight boundaries, with several
supplement requests, without a due date (the catalogue's processing time, then nothing at all).
Then invariants over a simulated one-stop system's dossiers. SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lienthong.hub.dossiers import project
from lienthong.hub.envelope import VN_TZ
from lienthong.hub.reporting import COLUMNS, Period, report_rows
from lienthong.hub.store import write_transaction
from lienthong.hub.store.models import Procedure

PROCEDURE, OTHER, UNKNOWN = "1.000001", "1.000002", "9.999999"
HUB = "000.00.00.G10"


def at(text: str) -> datetime:
    """'11-03 09:00' (2026, Vietnam time) as aware UTC."""
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=VN_TZ).astimezone(UTC)


def portal(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")


def dossier(n: int, *, received: str | None, status: int, kenh: int | None = 2, due: str | None = None,
            steps: tuple[tuple[int, str], ...] = (), ket_thuc: str | None = "auto", tra: str | None = None,
            agency: str | None = "A", procedure: str = PROCEDURE) -> list[dict]:
    """A dossier's changes: its steps (2 at reception, then ``steps``) and its latest snapshot."""
    ma = f"A-20261101-{n:04d}"
    life = ([(2, received)] if received else []) + list(steps)
    if ket_thuc == "auto":
        ket_thuc = next((t for s, t in life if s == 9), None)
    record = {"MaHoSo": ma, "MaTTHC": procedure, "MaLinhVuc": "F1", "TrangThaiHoSo": status,
              "NgayTiepNhan": portal(at(received)) if received else None,
              "NgayHenTra": portal(at(due)) if due else None,
              "NgayKetThucXuLy": portal(at(ket_thuc)) if ket_thuc else None, "NgayTra": portal(at(tra)) if tra else None}
    if kenh is not None:
        record["KenhThucHien"] = kenh
    record = {k: v for k, v in record.items() if v is not None}
    changes = [{"kind": "step", "source_key": f"buoc:{n}:{i}",
                "record": {"MaHoSo": ma, "TrangThai": s, "ThoiDiemXuLy": portal(at(t))}} for i, (s, t) in enumerate(life)]
    changes.append({"kind": "dossier", "source_key": f"hoso:{ma}:9", "version": 9, "record": record,
                    "extra": {"co_quan": agency} if agency else {}, "source_changed_at": at("12-05 09:00")})
    return changes


# every dossier, and (in the comment) what it counts as in November 2026
FIXTURE = [
    # carried over from October
    dossier(1, received="10-20 09:00", due="11-05 17:00", status=10, steps=((9, "11-04 10:00"),)),  # KyTruoc, TruocHan
    dossier(2, received="10-22 09:00", due="11-06 17:00", status=9, steps=((9, "11-06 16:00"),)),  # KyTruoc, DungHan
    dossier(3, received="10-25 09:00", due="11-03 17:00", status=9, steps=((9, "11-10 10:00"),)),  # KyTruoc, QuaHan
    dossier(4, received="10-28 09:00", due="11-20 17:00", status=4, steps=((4, "10-29 09:00"),)),  # KyTruoc, DangXuLyQuaHan
    dossier(5, received="10-29 09:00", due="12-10 17:00", status=4, steps=((4, "10-30 09:00"),)),  # KyTruoc, DangXuLyTrongHan
    dossier(6, received="10-15 09:00", due="10-30 17:00", status=10, steps=((9, "10-30 10:00"),)),  # ended in October: out
    dossier(7, received="10-15 09:00", due="11-05 17:00", status=7, steps=((7, "10-31 23:30"),)),  # withdrawn before: out
    dossier(8, received="10-15 09:00", due="11-05 17:00", status=7, steps=((7, "11-01 00:10"),)),  # KyTruoc, RutHoSo
    dossier(9, received="10-31 23:59", due="12-05 17:00", status=4),  # KyTruoc, DangXuLyTrongHan (received before midnight)
    dossier(10, received="10-10 09:00", due="11-20 17:00", status=8, steps=((8, "11-15 09:00"),)),  # KyTruoc, DungXuLy
    # received in November
    dossier(11, received="11-01 00:00", due="11-08 17:00", status=9, steps=((9, "11-07 10:00"),)),  # TrucTuyen, TruocHan
    dossier(12, received="11-03 09:00", due="11-10 17:00", status=9, steps=((9, "11-10 10:00"),)),  # TrucTuyen, DungHan
    dossier(13, received="11-03 09:00", due="11-10 17:00", status=9, steps=((9, "11-11 10:00"),)),  # TrucTuyen, QuaHan
    dossier(14, received="11-04 09:00", due="11-11 17:00", status=9, kenh=1, steps=((9, "11-09 10:00"),)),  # TrucTiep, TruocHan
    dossier(15, received="11-04 09:00", due="11-11 17:00", status=9, kenh=None, steps=((9, "11-11 10:00"),)),  # TrucTiep, DungHan
    dossier(16, received="11-05 09:00", due="11-12 17:00", status=9, kenh=3, steps=((9, "11-20 10:00"),)),  # BuuChinh, QuaHan
    dossier(17, received="11-05 09:00", due="11-12 17:00", status=9,  # 3 days of supplement: DungHan, YCBS
            steps=((5, "11-06 09:00"), (4, "11-09 09:00"), (9, "11-15 10:00"))),
    dossier(18, received="11-05 09:00", due="11-12 17:00", status=9,  # 1 + 2 days of supplement: QuaHan, YCBS once
            steps=((5, "11-06 09:00"), (4, "11-07 09:00"), (5, "11-08 09:00"), (4, "11-10 09:00"), (9, "11-16 10:00"))),
    dossier(19, received="11-06 09:00", due="11-13 17:00", status=9, kenh=1,  # TrucTiep, 1 day off: TruocHan, YCBS
            steps=((5, "11-07 09:00"), (4, "11-08 09:00"), (9, "11-13 10:00"))),
    dossier(20, received="11-10 09:00", due="11-17 09:00", status=5,  # waiting for a supplement since 11-16: TrongHan, YCBS
            steps=((5, "11-16 09:00"),)),
    dossier(21, received="11-10 09:00", due="11-17 09:00", status=4),  # DangXuLyQuaHan
    dossier(22, received="11-20 09:00", due="12-05 17:00", status=4),  # DangXuLyTrongHan
    dossier(23, received="11-25 09:00", due="11-30 23:00", status=4),  # DangXuLyQuaHan (due before midnight)
    dossier(24, received="11-25 09:00", due="12-01 00:00", status=4),  # DangXuLyTrongHan (due at the period's end)
    dossier(25, received="11-12 09:00", due="11-19 17:00", status=7, kenh=1, steps=((7, "11-14 09:00"),)),  # TrucTiep, RutHoSo
    dossier(26, received="11-12 09:00", due="11-19 17:00", status=8, kenh=1, steps=((8, "11-20 09:00"),)),  # TrucTiep, DungXuLy
    dossier(27, received="11-12 09:00", due="11-19 17:00", status=9, steps=((9, "12-02 10:00"),)),  # resolved later: DangXuLyQuaHan
    dossier(28, received="11-28 09:00", due="12-05 17:00", status=9, steps=((9, "11-30 23:59"),)),  # TruocHan
    dossier(29, received="11-28 09:00", due="12-05 17:00", status=9, steps=((9, "12-01 00:00"),)),  # DangXuLyTrongHan
    dossier(30, received="11-02 09:00", status=9, steps=((9, "11-09 15:00"),)),  # no due: 5 working days online = 11-09: DungHan
    dossier(31, received="11-06 09:00", status=9, kenh=1, steps=((9, "11-18 10:00"),)),  # 7 working days direct = 11-17: QuaHan
    dossier(32, received="11-02 09:00", status=9, procedure=UNKNOWN, steps=((9, "11-20 10:00"),)),  # no due at all: DungHan, named
    dossier(33, received="11-02 09:00", status=4, procedure=UNKNOWN),  # no due at all: DangXuLyTrongHan, named
    dossier(34, received="11-03 09:00", due="11-11 17:00", status=10, ket_thuc=None, tra="11-12 09:00",  # 9 wins: TruocHan
            steps=((9, "11-10 09:00"), (10, "11-12 09:00"))),
    dossier(35, received="11-03 09:00", due="11-12 17:00", status=10, ket_thuc="11-12 09:00", tra="11-13 09:00",
            steps=((9, "11-12 09:00"), (10, "11-13 09:00"))),  # DungHan
    dossier(36, received="11-05 09:00", due="11-12 17:00", status=3),  # refused at reception: out
    dossier(37, received=None, status=1),  # never received: out
    dossier(38, received="12-01 00:00", due="12-08 17:00", status=2),  # received in December: out
    dossier(39, received="11-15 09:00", due="11-22 17:00", status=9,  # two requests in a row, 2 days: DungHan, YCBS once
            steps=((5, "11-16 09:00"), (5, "11-17 09:00"), (4, "11-18 09:00"), (9, "11-24 09:00"))),
    dossier(40, received="10-20 09:00", due="11-10 17:00", status=9,  # KyTruoc; 3 days of October supplement: TruocHan
            steps=((5, "10-25 09:00"), (4, "10-28 09:00"), (9, "11-12 09:00"))),
    # other rows: another agency, another procedure, a dossier whose source names no agency
    dossier(41, received="11-03 09:00", due="11-10 17:00", status=9, agency="B", steps=((9, "11-05 10:00"),)),
    dossier(42, received="10-05 09:00", due="10-20 17:00", status=4, kenh=1, agency="B"),
    dossier(43, received="11-03 09:00", due="11-10 17:00", status=9, agency="B", procedure=OTHER,
            steps=((9, "11-04 10:00"),)),
    dossier(44, received="11-04 09:00", due="12-12 17:00", status=4, agency=None),
]

EXPECTED = {
    ("A", PROCEDURE): dict(TiepNhanKyTruoc=9, TiepNhanTrucTuyen=17, TiepNhanTrucTiep=6, TiepNhanBuuChinh=1,
                           GiaiQuyetTruocHan=7, GiaiQuyetDungHan=7, GiaiQuyetQuaHan=5, DangXuLyTrongHan=6,
                           DangXuLyQuaHan=4, YeuCauBoSung=5, RutHoSo=2, DungXuLy=2),
    ("A", UNKNOWN): dict(TiepNhanTrucTuyen=2, GiaiQuyetDungHan=1, DangXuLyTrongHan=1),
    ("B", PROCEDURE): dict(TiepNhanKyTruoc=1, TiepNhanTrucTuyen=1, GiaiQuyetTruocHan=1, DangXuLyQuaHan=1),
    ("B", OTHER): dict(TiepNhanTrucTuyen=1, GiaiQuyetTruocHan=1),
    (HUB, PROCEDURE): dict(TiepNhanTrucTuyen=1, DangXuLyTrongHan=1),
}


@pytest.fixture
def fixture_store(engine):
    document = ('{"channels": [{"kenh": 2, "label": "Trực tuyến", "times": [{"amount": "5", "unit": "Ngày làm việc"}]},'
                ' {"kenh": 1, "label": "Trực tiếp", "times": [{"amount": "7", "unit": "Ngày làm việc"}]}]}')
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        conn.execute(Procedure.__table__.insert().values(
            code=PROCEDURE, name="Thủ tục thử", publishing_agency="G10", published=True, levels="BO",
            online_level="toan_trinh", content_hash="0" * 64, version=1, document=document, first_seen_at=now,
            last_seen_at=now))
        project(conn, [c for changes in FIXTURE for c in changes])
    return engine


def test_november_2026_as_computed_by_hand(fixture_store):
    rows = report_rows(fixture_store, Period.parse("2026-11"), default_agency=HUB)
    got = {(r.agency, r.ma_tthc): r for r in rows}
    assert set(got) == set(EXPECTED)
    for key, expected in EXPECTED.items():
        assert got[key].counts == {c: expected.get(c, 0) for c in COLUMNS}, key
        assert got[key].received == got[key].accounted, key
    assert got[("A", UNKNOWN)].without_due_date == ["A-20261101-0032", "A-20261101-0033"]
    assert got[("A", PROCEDURE)].without_due_date == []  # the catalogue gave their due dates
    # one agency's report holds only its rows; the hub's own agency takes the dossiers naming none
    assert {(r.agency, r.ma_tthc) for r in report_rows(fixture_store, Period.parse("2026-11"), agency="B",
                                                       default_agency=HUB)} == {("B", PROCEDURE), ("B", OTHER)}
    assert [(r.agency, r.counts["DangXuLyTrongHan"]) for r in report_rows(
        fixture_store, Period.parse("2026-11"), agency=HUB, default_agency=HUB)] == [(HUB, 1)]


def test_what_november_leaves_in_progress_december_carries_over(fixture_store):
    november = {(r.agency, r.ma_tthc): r for r in report_rows(fixture_store, Period.parse("2026-11"))}
    december = {(r.agency, r.ma_tthc): r for r in report_rows(fixture_store, Period.parse("2026-12"))}
    for key, row in november.items():
        left = row.counts["DangXuLyTrongHan"] + row.counts["DangXuLyQuaHan"]
        carried = december[key].counts["TiepNhanKyTruoc"] if key in december else 0
        assert carried == left, key


def test_a_source_that_moves_the_due_date_itself_is_not_given_the_supplement_time_twice(fixture_store):
    rows = {(r.agency, r.ma_tthc): r for r in report_rows(fixture_store, Period.parse("2026-11"),
                                                          due_date_moved=True)}
    counts = rows[("A", PROCEDURE)].counts
    # 17 (3 days) and 39 (2 days) become late, 19 (1 day) on due, 40 late, 18 stays late
    assert (counts["GiaiQuyetTruocHan"], counts["GiaiQuyetDungHan"], counts["GiaiQuyetQuaHan"]) == (5, 6, 8)
    assert rows[("A", PROCEDURE)].received == rows[("A", PROCEDURE)].accounted


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026-11", "2026-11-01", "2026-12-01"), ("2026-12", "2026-12-01", "2027-01-01"),
    ("2026-Q4", "2026-10-01", "2027-01-01"), ("2026-H1", "2026-01-01", "2026-07-01"), ("2026", "2026-01-01", "2027-01-01"),
])
def test_periods_run_from_midnight_to_midnight_vietnam_time(text, start, end):
    period = Period.parse(text)
    assert period.start == datetime.fromisoformat(start).replace(tzinfo=VN_TZ)
    assert period.end == datetime.fromisoformat(end).replace(tzinfo=VN_TZ)
    assert period.start.tzinfo is UTC and period.start.hour == 17  # the day before, 17:00 UTC
    assert str(period) == text


@pytest.mark.parametrize("text", ["2026-13", "2026-Q5", "2026-H3", "11/2026", "last month"])
def test_a_period_that_is_not_one_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="period"):
        Period.parse(text)


def test_over_a_simulated_one_stop_system_every_received_dossier_is_accounted_for_each_month(engine, tmp_path):
    from lienthong.sandbox.onestop import OneStopSimulator
    from results_helpers import take_in

    sim = OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=11, arrivals_per_day=20)
    sim.populate(600)
    sim.advance(2000)
    take_in(engine, sim.db.url)
    months = ["2026-01", "2026-02", "2026-03", "2026-04"]
    previous: dict = {}
    total = 0
    for month in months:
        rows = {(r.agency, r.ma_tthc, r.ma_linh_vuc): r for r in report_rows(engine, Period.parse(month))}
        assert {k for k, left in previous.items() if left} <= set(rows), month  # carried over, not lost
        for key, row in rows.items():
            assert row.received == row.accounted, (month, key)
            assert all(v >= 0 for v in row.counts.values())
            left = previous.get(key, 0)
            assert row.counts["TiepNhanKyTruoc"] == left, (month, key)
        previous = {k: r.counts["DangXuLyTrongHan"] + r.counts["DangXuLyQuaHan"] for k, r in rows.items()}
        total += sum(r.received - r.counts["TiepNhanKyTruoc"] for r in rows.values())
    received_in_months = sum(1 for d in sim.db.dossiers() if d["ngay_tiep_nhan"] and d["trang_thai"] != "TU_CHOI"
                             and "2026-01-01" <= d["ngay_tiep_nhan"] < "2026-05-01")
    assert total == received_in_months


def test_report_build_prints_the_figures_as_json_csv_and_a_table(fixture_store, tmp_home, monkeypatch, capsys):
    import json

    from lienthong.hub.cli import main

    monkeypatch.setenv("LIENTHONG_DB_URL", fixture_store.url.render_as_string(hide_password=False))
    monkeypatch.setenv("LIENTHONG_AGENCY_CODE", HUB)
    assert main(["report", "build", "--period", "2026-11", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["period"] == "2026-11" and shown["kind"] == "thang" and shown["number"] == 11
    by_key = {(r["MaCoQuan"], r.get("MaTTHC")): r for r in shown["rows"]}
    assert {k: {c: v for c, v in r.items() if c in COLUMNS} for k, r in by_key.items()} == {
        k: {c: e.get(c, 0) for c in COLUMNS} for k, e in EXPECTED.items()}
    assert by_key[("A", UNKNOWN)]["without_due_date"] == ["A-20261101-0032", "A-20261101-0033"]
    assert main(["report", "build", "--period", "2026-11", "--agency", "B", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",")[:4] == ["MaCoQuan", "MaTTHC", "MaLinhVuc", "TiepNhanKyTruoc"]
    assert [line.split(",")[:2] for line in lines[1:]] == [["B", PROCEDURE], ["B", OTHER]]
    assert main(["report", "build", "--period", "2026-11"]) == 0
    assert "Báo cáo 06" in capsys.readouterr().out
    assert main(["report", "build", "--period", "tháng 11"]) == 2
    assert "2026-Q4" in capsys.readouterr().err
