"""The synthetic one-stop system: its tables, the lives its dossiers live, bad data, export files.

Most tests read one populated SQLite database built once for the module (600 dossiers over about
75 days, enough for every status and branch to occur); tests that change data build their own.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xmlschema
from lienthong.connectors.services import schemas_dir
from lienthong.hub.errors import XmlDtdForbidden, XmlMalformed
from lienthong.hub.xmlsafe import parse_xml
from lienthong.sandbox import onestop
from lienthong.sandbox.catalogue import Catalogue
from lienthong.sandbox.onestop import (
    BROKEN_KINDS,
    CHANNELS,
    FAMILY_NAMES,
    HOSO_COLUMNS,
    INITIAL_STATUSES,
    INJECTION_KINDS,
    LOCAL_STATUSES,
    STEP_COLUMNS,
    TERMINAL_STATUSES,
    TRANSITIONS,
    UNKNOWN_STATUS,
    ExportCursor,
    OneStopDatabase,
    OneStopSimulator,
    atomic_write,
    export_files,
    from_work_index,
    local_text,
    next_working_time,
    parse_local,
    work_index,
    write_broken_file,
)
from lxml import etree
from sqlalchemy import DateTime, Integer, Text, inspect

VN = timedelta(hours=7)


def _sqlite(path: Path) -> str:
    return f"sqlite:///{path}"


def dump(db: OneStopDatabase) -> tuple[list[dict], list[dict]]:
    return db.dossiers(), db.steps()


def lives(db: OneStopDatabase) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for step in db.steps():
        out.setdefault(step["so_ho_so"], []).append(step)
    return out


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> OneStopDatabase:
    path = tmp_path_factory.mktemp("onestop") / "populated.db"
    sim = OneStopSimulator(_sqlite(path), seed=3, arrivals_per_day=8)
    sim.populate(600)
    sim.close()
    db = OneStopDatabase(_sqlite(path))
    yield db
    db.close()


@pytest.fixture
def db(tmp_path) -> OneStopDatabase:
    database = OneStopDatabase(_sqlite(tmp_path / "onestop.db"))
    yield database
    database.close()


@pytest.fixture(scope="module")
def populated_rows(populated) -> tuple[list[dict], dict[str, list[dict]]]:
    return populated.dossiers(), lives(populated)


# ---------------------------------------------------------------------------------- tables
def test_tables_are_exactly_the_contract(db):
    inspector = inspect(db.engine)
    assert set(inspector.get_table_names()) == {"hoso", "hoso_buoc_xu_ly", "hoso_ket_qua"}
    assert tuple(c["name"] for c in inspector.get_columns("hoso_ket_qua")) == (
        "id", "so_ho_so", "ten_giay_to", "ma_giay_to", "ma_thanh_phan", "ten_tep", "kieu_tep", "tep", "kich_thuoc",
        "sha256", "cap_nhat_luc")
    hoso_cols = inspector.get_columns("hoso")
    assert tuple(c["name"] for c in hoso_cols) == HOSO_COLUMNS == (
        "so_ho_so", "ma_thu_tuc", "ten_thu_tuc", "ma_linh_vuc", "ten_linh_vuc", "kenh_nop", "chu_ho_so",
        "so_giay_to", "loai_chu_ho_so", "email", "dien_thoai", "trich_yeu", "ngay_nop", "ngay_tiep_nhan",
        "ngay_hen_tra", "ngay_ket_thuc_xu_ly", "ngay_tra", "trang_thai", "don_vi_xu_ly", "co_quan",
        "cap_nhat_luc", "phien_ban")
    step_cols = inspector.get_columns("hoso_buoc_xu_ly")
    assert tuple(c["name"] for c in step_cols) == STEP_COLUMNS == (
        "id", "so_ho_so", "nguoi_xu_ly", "chuc_danh", "phong_ban", "noi_dung", "trang_thai", "thoi_diem",
        "ngay_bat_dau", "han_xu_ly", "cap_nhat_luc")
    types = {c["name"]: c["type"] for c in hoso_cols + step_cols}
    assert isinstance(types["cap_nhat_luc"], DateTime)
    assert isinstance(types["phien_ban"], Integer) and isinstance(types["id"], Integer)
    assert all(isinstance(types[c], Text) for c in HOSO_COLUMNS if c not in ("cap_nhat_luc", "phien_ban"))
    assert inspector.get_pk_constraint("hoso")["constrained_columns"] == ["so_ho_so"]
    assert inspector.get_pk_constraint("hoso_buoc_xu_ly")["constrained_columns"] == ["id"]
    db.create()  # creating again is harmless
    assert db.count() == 0 and db.count("hoso_buoc_xu_ly") == 0


def test_count_refuses_an_unknown_table(db):
    with pytest.raises(ValueError, match="unknown table 'hoso_x'"):
        db.count("hoso_x")


# ---------------------------------------------------------------------------------- determinism
def test_same_seed_gives_the_same_rows_and_another_seed_others(tmp_path):
    dumps = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        sim = OneStopSimulator(_sqlite(tmp_path / f"{name}.db"), seed=seed, arrivals_per_day=20)
        sim.populate(150)
        dumps.append(dump(sim.db))
        sim.close()
    assert dumps[0] == dumps[1]
    assert len(dumps[0][0]) == 150
    assert dumps[0][0] != dumps[2][0]


def test_pieces_batches_and_reopening_change_nothing(tmp_path):
    whole = OneStopSimulator(_sqlite(tmp_path / "whole.db"), seed=5, arrivals_per_day=30)
    assert whole.advance(900) == 900
    expected = dump(whole.db)
    whole.close()

    url = _sqlite(tmp_path / "pieces.db")
    first = OneStopSimulator(url, seed=5, arrivals_per_day=30, batch_size=7)
    first.advance(250)
    first.advance(0)
    first.advance(200)
    first.close()
    again = OneStopSimulator(url, seed=5, arrivals_per_day=30, batch_size=1000)  # state rebuilt from the rows
    assert again.total_changes == 450
    again.advance(450)
    assert dump(again.db) == expected
    assert again.total_changes == 900 == again.db.count("hoso_buoc_xu_ly")
    again.close()


def test_a_failed_write_leaves_the_database_as_the_state(tmp_path, monkeypatch):
    url = _sqlite(tmp_path / "fail.db")
    sim = OneStopSimulator(url, seed=2, arrivals_per_day=30, batch_size=50)
    sim.advance(120)
    calls = {"n": 0}
    real_flush = OneStopSimulator._flush

    def failing(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_flush(self)

    monkeypatch.setattr(OneStopSimulator, "_flush", failing)
    with pytest.raises(OSError, match="disk full"):
        sim.advance(200)
    monkeypatch.setattr(OneStopSimulator, "_flush", real_flush)
    assert sim.total_changes == sim.db.count("hoso_buoc_xu_ly") == 170  # the first batch of 50 made it
    sim.advance(130)
    reference = OneStopSimulator(_sqlite(tmp_path / "ref.db"), seed=2, arrivals_per_day=30)
    reference.advance(300)
    assert dump(sim.db) == dump(reference.db)
    sim.close()
    reference.close()


# ---------------------------------------------------------------------------------- lives
def test_every_life_follows_the_allowed_transitions(populated_rows):
    rows, steps = populated_rows
    seen_moves = set()
    for row in rows:
        life = steps[row["so_ho_so"]]
        statuses = [s["trang_thai"] for s in life]
        assert statuses[0] in INITIAL_STATUSES
        assert (statuses[0] == "DA_TIEP_NHAN") == (row["kenh_nop"] == "TRUC_TIEP"), row["so_ho_so"]
        for a, b in zip(statuses, statuses[1:], strict=False):
            assert b in TRANSITIONS[a], f"{row['so_ho_so']}: {a} → {b}"
            seen_moves.add((a, b))
        assert statuses[-1] == row["trang_thai"]
        assert row["phien_ban"] == len(life)
        assert row["cap_nhat_luc"] == life[-1]["cap_nhat_luc"]
        assert not any(s in TERMINAL_STATUSES for s in statuses[:-1])
    every_move = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert seen_moves == every_move  # 600 dossiers are enough for every branch to happen
    loops = [life for life in steps.values()
             if [s["trang_thai"] for s in life].count("CHO_BO_SUNG") >= 2]
    assert loops, "some dossiers are asked for supplements more than once"


def test_the_database_shows_a_realistic_mix(populated):
    counts = populated.status_counts()
    assert list(counts) == list(LOCAL_STATUSES)
    assert sum(counts.values()) == 600
    assert counts["DA_TRA_KQ"] > 0.5 * 600  # most dossiers are done
    for status in ("MOI", "DANG_XU_LY", "TU_CHOI", "CONG_DAN_RUT", "DUNG_XU_LY"):
        assert counts[status] > 0, status


def test_dates_follow_each_life(populated_rows):
    rows, steps = populated_rows
    early = late = 0
    for row in rows:
        statuses = {s["trang_thai"] for s in steps[row["so_ho_so"]]}
        submitted = parse_local(row["ngay_nop"])
        received = parse_local(row["ngay_tiep_nhan"])
        assert submitted is not None
        assert (received is not None) == ("DA_TIEP_NHAN" in statuses)
        assert (row["ngay_hen_tra"] is not None) == (received is not None)
        if received is not None:
            assert received >= submitted
            assert parse_local(row["ngay_hen_tra"]) > received
        assert (row["ngay_tra"] is not None) == (row["trang_thai"] == "DA_TRA_KQ")
        assert (row["ngay_ket_thuc_xu_ly"] is not None) == bool(statuses & {"DA_XU_LY", "DUNG_XU_LY"})
        if "DA_XU_LY" in statuses:
            if row["ngay_ket_thuc_xu_ly"] <= row["ngay_hen_tra"]:
                early += 1
            else:
                late += 1
        if row["ngay_tra"] is not None:
            assert row["ngay_tra"] > row["ngay_ket_thuc_xu_ly"]
        code_date = row["so_ho_so"].split("-")[1]
        assert code_date == row["ngay_nop"][:10].replace("-", "")
    assert early > late > 0  # most on time, some late


def test_officials_act_in_working_hours_and_steps_carry_the_local_time(populated_rows):
    _rows, steps = populated_rows
    for life in steps.values():
        for step in life:
            utc = step["cap_nhat_luc"]
            assert step["thoi_diem"] == (utc + VN).strftime("%Y-%m-%d %H:%M:%S")
            local = utc + VN
            if step["chuc_danh"] is None:  # a citizen's or company's own submission: any hour
                assert step["trang_thai"] == "MOI"
                continue
            assert local.weekday() < 5, step
            minutes = local.hour * 60 + local.minute
            assert 450 <= minutes < 690 or 810 <= minutes < 1020, step


def test_the_clock_strictly_increases(populated, populated_rows):
    rows, _steps = populated_rows
    stamps = [s["cap_nhat_luc"] for s in populated.steps()]
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False))
    assert len({r["cap_nhat_luc"] for r in rows}) == len(rows)
    assert stamps[0] >= datetime(2026, 1, 5, 0, 30)  # 07:30 Vietnam time, the default start


def test_steps_say_who_did_what_in_vietnamese(populated_rows):
    _rows, steps = populated_rows
    texts = [s["noi_dung"] for life in steps.values() for s in life]
    assert any(t.startswith("Yêu cầu bổ sung: ") for t in texts)
    assert any(t.startswith("Tiếp nhận hồ sơ") and "thẩm định" in t for t in texts)
    assert any(t.startswith("Thông báo thực hiện nghĩa vụ tài chính: ") and t.endswith(" đồng") for t in texts)
    for life in steps.values():
        for step in life:
            assert step["nguoi_xu_ly"] and step["noi_dung"]
            if step["trang_thai"] in ("DA_XU_LY", "DUNG_XU_LY"):
                assert "trưởng" in step["chuc_danh"] or "Giám đốc" in step["chuc_danh"]
            if step["trang_thai"] in ("DANG_XU_LY", "DA_XU_LY", "CHO_BO_SUNG"):
                assert step["han_xu_ly"] is not None


def test_terminal_dossiers_never_move(tmp_path):
    sim = OneStopSimulator(_sqlite(tmp_path / "t.db"), seed=4, arrivals_per_day=5)
    sim.populate(200)
    done = {r["so_ho_so"]: r for r in sim.db.dossiers() if r["trang_thai"] in TERMINAL_STATUSES}
    assert len(done) > 50
    steps_before = {code: sim.db.count("hoso_buoc_xu_ly", so_ho_so=code) for code in done}
    sim.advance(1500)
    sim.close()
    reopened = OneStopSimulator(_sqlite(tmp_path / "t.db"), seed=4, arrivals_per_day=5)
    reopened.advance(500)
    for row in reopened.db.dossiers(codes=list(done)):
        assert row == done[row["so_ho_so"]]
        assert reopened.db.count("hoso_buoc_xu_ly", so_ho_so=row["so_ho_so"]) == steps_before[row["so_ho_so"]]
    reopened.close()


# ---------------------------------------------------------------------------------- content
def test_dossier_codes_match_the_portal_schema(populated_rows):
    rows, steps = populated_rows
    ma_ho_so = xmlschema.XMLSchema(str(schemas_dir() / "dvc_portal.xsd")).types["MaHoSo"]
    for row in rows:
        assert ma_ho_so.is_valid(row["so_ho_so"]), row["so_ho_so"]
        assert row["so_ho_so"].startswith(row["co_quan"] + "-")
    # the seven-digit sequence follows the order of submission
    first_ids = sorted((life[0]["id"], code) for code, life in steps.items())
    sequences = [int(code.rsplit("-", 1)[1]) for _id, code in first_ids]
    assert sequences == list(range(1, len(rows) + 1))


def test_people_and_text_are_vietnamese_and_nfc(populated_rows):
    rows, steps = populated_rows
    families = {name for name, _w in FAMILY_NAMES}
    for row in rows + [s for life in steps.values() for s in life]:
        for value in row.values():
            if isinstance(value, str):
                assert unicodedata.is_normalized("NFC", value), value
    citizens = [r for r in rows if r["loai_chu_ho_so"] == "CONG_DAN"]
    assert citizens
    for r in citizens:
        parts = r["chu_ho_so"].split()
        assert len(parts) == 3 and parts[0] in families, r["chu_ho_so"]
        assert len(r["so_giay_to"]) == 12 and r["so_giay_to"].isdigit()
    for r in rows:
        assert r["loai_chu_ho_so"] in onestop.OWNER_TYPES
        if r["loai_chu_ho_so"] != "CONG_DAN":
            assert len(r["so_giay_to"]) == 10 and r["so_giay_to"].isdigit()
        if r["email"] is not None:
            assert r["email"].isascii() and r["email"].endswith("@sandbox.lienthong.invalid")
        if r["dien_thoai"] is not None:
            assert len(r["dien_thoai"]) == 10 and r["dien_thoai"].startswith("0")
        assert 0 < len(r["trich_yeu"]) <= 1000 and r["chu_ho_so"] in r["trich_yeu"]
    assert any(not r["chu_ho_so"].isascii() for r in rows)
    assert {r["loai_chu_ho_so"] for r in rows} >= {"CONG_DAN", "DOANH_NGHIEP"}


def test_procedures_agencies_and_channels_come_from_the_catalogue(populated_rows):
    rows, _steps = populated_rows
    catalogue = Catalogue(300, seed=1)
    agencies = set()
    for row in rows:
        record = catalogue.record(row["ma_thu_tuc"])
        assert record is not None, row["ma_thu_tuc"]
        assert row["ten_thu_tuc"] == record["TENTTHC"]
        assert row["co_quan"] == record["COQUANTHUCHIEN"][0]["MADONVI"]
        assert row["don_vi_xu_ly"] == record["COQUANTHUCHIEN"][0]["TENDONVI"]
        assert row["ma_linh_vuc"] == record["LINHVUCTHUCHIEN"][0]["MALINHVUC"]
        assert CHANNELS[row["kenh_nop"]] in {w["KENH"] for w in record["CACHTHUCTHUCHIEN"]}
        agencies.add(row["co_quan"])
    assert len(agencies) == 5
    channels = [r["kenh_nop"] for r in rows]
    assert channels.count("TRUC_TUYEN") > channels.count("TRUC_TIEP") > channels.count("BUU_CHINH") > 0


def test_explicit_agencies_and_procedures(tmp_path):
    sim = OneStopSimulator(_sqlite(tmp_path / "x.db"), procedures=["1.001000", "1.001004"], arrivals_per_day=50)
    assert [p.code for p in sim.procedures] == ["1.001000", "1.001004"]
    sim.advance(80)
    assert {r["ma_thu_tuc"] for r in sim.db.dossiers()} <= {"1.001000", "1.001004"}
    sim.close()
    sim = OneStopSimulator(_sqlite(tmp_path / "y.db"), agencies=["000.00.04.G10"], procedures=3)
    assert {p.agency_code for p in sim.procedures} == {"000.00.04.G10"} and len(sim.procedures) == 3
    sim.close()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"procedures": ["1.001000", "7.000001"]}, "procedure '7.000001' is not in the catalogue"),
    ({"agencies": ["000.00.99.G10"]}, "no published procedure of the catalogue is handled by 000.00.99.G10"),
    ({"agencies": 500}, "agencies=500: the catalogue has procedures for"),
    ({"agencies": 6, "procedures": 4}, "procedures=4 cannot cover agencies=6"),
    ({"procedures": 0}, "procedures must be at least 1"),
    ({"start": datetime(2026, 1, 5)}, "start must be timezone-aware"),
    ({"arrivals_per_day": 0}, "arrivals_per_day must be positive"),
    ({"batch_size": 0}, "batch_size must be a positive whole number"),
])
def test_bad_parameters_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        OneStopSimulator(_sqlite(tmp_path / "bad.db"), **kwargs)


def test_advance_and_populate_refuse_nonsense(db):
    sim = OneStopSimulator(db)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="advance by a whole number"):
            sim.advance(bad)
        with pytest.raises(ValueError, match="dossiers must be a whole number"):
            sim.populate(bad)


def test_working_time_helpers():
    saturday = int(datetime(2026, 1, 10, 9, 0, tzinfo=UTC).timestamp()) - 7 * 3600
    assert local_text(next_working_time(saturday)) == "2026-01-12 07:30:00"
    lunch = parse_local("2026-01-12 12:15:00")
    assert local_text(next_working_time(lunch)) == "2026-01-12 13:30:00"
    morning = parse_local("2026-01-12 10:00:00")
    assert from_work_index(work_index(morning)) == morning
    # 7.5 working hours later = the same time on the next working day
    assert local_text(from_work_index(work_index(morning) + onestop.WORKDAY_SECONDS)) == "2026-01-13 10:00:00"
    friday = parse_local("2026-01-16 16:00:00")
    assert local_text(from_work_index(work_index(friday) + 3600 * 2)) == "2026-01-19 08:30:00"
    assert parse_local("31/02/2026") is None and parse_local("2026-02-31 08:00:00") is None
    assert parse_local(None) is None


# ---------------------------------------------------------------------------------- injection
@pytest.fixture
def live_sim(tmp_path) -> OneStopSimulator:
    sim = OneStopSimulator(_sqlite(tmp_path / "inject.db"), seed=9, arrivals_per_day=40)
    sim.populate(120)
    yield sim
    sim.close()


@pytest.mark.parametrize("kind", INJECTION_KINDS)
def test_each_injection_produces_what_it_says_and_never_moves(live_sim, kind, tmp_path):
    before = {r["so_ho_so"]: r for r in live_sim.db.dossiers()}
    codes = live_sim.inject(kind, 4)
    assert len(codes) == len(set(codes)) == 4
    assert not set(codes) & set(before)
    rows = {r["so_ho_so"]: r for r in live_sim.db.dossiers(codes=codes)}
    catalogue = Catalogue(300, seed=1)
    for i, code in enumerate(codes):
        row = rows[code]
        steps = live_sim.db.steps(code)
        assert row["phien_ban"] == 1 and len(steps) == 1
        if kind == "unknown_status":
            assert row["trang_thai"] == steps[0]["trang_thai"] == UNKNOWN_STATUS == "CHUYEN_LIEN_THONG"
            assert UNKNOWN_STATUS not in LOCAL_STATUSES
        elif kind == "missing_field":
            assert (row["trich_yeu"] is None) if i % 2 == 0 else (row["chu_ho_so"] == "")
        elif kind == "malformed_date":
            assert row["ngay_nop"] == onestop.MALFORMED_DATES[i] and parse_local(row["ngay_nop"]) is None
        elif kind == "overlong_text":
            assert len(row["trich_yeu"]) > 1000 and unicodedata.is_normalized("NFC", row["trich_yeu"])
        elif kind == "non_nfc":
            for column in ("chu_ho_so", "trich_yeu"):
                assert not unicodedata.is_normalized("NFC", row[column])
                assert unicodedata.normalize("NFC", row[column]) != row[column]
        elif kind == "unknown_procedure":
            assert row["ma_thu_tuc"] == f"9.{999999 - i:06d}" and catalogue.record(row["ma_thu_tuc"]) is None
        if kind != "unknown_status":
            assert row["trang_thai"] in INITIAL_STATUSES
    frozen = dict(rows)
    live_sim.advance(400)
    assert live_sim.db.count("hoso_buoc_xu_ly") == sum(r["phien_ban"] for r in live_sim.db.dossiers())
    reopened = OneStopSimulator(live_sim.db, seed=9, arrivals_per_day=40)
    reopened.advance(400)
    for row in reopened.db.dossiers(codes=codes):
        assert row == frozen[row["so_ho_so"]]
    assert reopened.db.count("hoso_buoc_xu_ly") == sum(r["phien_ban"] for r in reopened.db.dossiers())


def test_injection_keeps_the_simulation_deterministic(tmp_path):
    dumps = []
    for name in ("a", "b"):
        sim = OneStopSimulator(_sqlite(tmp_path / f"{name}.db"), seed=6, arrivals_per_day=40)
        sim.advance(100)
        sim.inject("non_nfc", 2)
        if name == "b":
            sim.close()
            sim = OneStopSimulator(_sqlite(tmp_path / f"{name}.db"), seed=6, arrivals_per_day=40)
        sim.advance(100)
        dumps.append(dump(sim.db))
        sim.close()
    assert dumps[0] == dumps[1]


def test_inject_refuses_unknown_kinds_and_counts(live_sim):
    with pytest.raises(ValueError, match="unknown injection kind 'bad_xml': one of unknown_status, missing_field"):
        live_sim.inject("bad_xml", 1)
    with pytest.raises(ValueError, match="count must be a whole number"):
        live_sim.inject("non_nfc", 0)


# ---------------------------------------------------------------------------------- export files
def read_back(paths: list[Path]) -> dict[str, list[dict]]:
    """A plain reader of the three layouts (the hub's own reader is hardened; this one checks shape)."""
    out: dict[str, list[dict]] = {"hoso": [], "buoc_xu_ly": []}
    for path in paths:
        if path.suffix == ".json":
            data = json.loads(path.read_bytes().decode("utf-8"))
            assert set(data) == {"hoso", "buoc_xu_ly"}
            for key in out:
                out[key] += data[key]
        elif path.suffix == ".csv":
            key = "hoso" if path.name.startswith("hoso-") else "buoc_xu_ly"
            with open(path, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                assert tuple(reader.fieldnames) == (HOSO_COLUMNS if key == "hoso" else STEP_COLUMNS)
                out[key] += list(reader)
        else:
            root = parse_xml(path.read_bytes())
            assert root.tag == "xuat_du_lieu"
            for record in root:
                out[record.tag].append({child.tag: child.text or "" for child in record})
    return out


def expected_records(rows: list[dict], columns: tuple[str, ...], fmt: str) -> list[dict]:
    out = []
    for row in rows:
        values = {c: onestop.export_value(row[c]) for c in columns}
        if fmt == "csv":
            values = {c: "" if v is None else str(v) for c, v in values.items()}
        elif fmt == "xml":
            values = {c: str(v) for c, v in values.items() if v is not None}
        out.append(values)
    return out


@pytest.mark.parametrize("fmt", ["json", "csv", "xml"])
def test_export_files_round_trip(live_sim, tmp_path, fmt):
    live_sim.inject("non_nfc", 1)
    live_sim.inject("missing_field", 2)  # a NULL and an empty string
    live_sim.inject("overlong_text", 1)
    inbox = tmp_path / "inbox"
    paths = live_sim.export_files(inbox, format=fmt)
    expected_names = {"json": ["onestop-"], "xml": ["onestop-"], "csv": ["hoso-", "buoc_xu_ly-"]}[fmt]
    assert [p.name.split("2026")[0] for p in paths] == expected_names
    assert all(p.suffix == f".{fmt}" and p.parent == inbox for p in paths)
    assert sorted(os.listdir(inbox)) == sorted(p.name for p in paths)  # no temporary file left behind
    back = read_back(paths)
    assert back["hoso"] == expected_records(live_sim.db.dossiers(), HOSO_COLUMNS, fmt)
    assert back["buoc_xu_ly"] == expected_records(live_sim.db.steps(), STEP_COLUMNS, fmt)
    assert back["hoso"][0]["cap_nhat_luc"].endswith("Z")
    # NFD text survives the file unchanged (normalising is the hub's job, not the exporter's)
    nfd = [r for r in back["hoso"] if r.get("chu_ho_so") and not unicodedata.is_normalized("NFC", r["chu_ho_so"])]
    assert len(nfd) == 1

    # incremental: only what changed after the cursor, in files whose names sort after the first ones
    cursor = live_sim.db.high_water()
    live_sim.advance(40)
    more = live_sim.export_files(inbox, format=fmt, since_cursor=cursor)
    assert more and min(p.name for p in more if p.name.startswith(paths[0].name[:4])) > paths[0].name
    back = read_back(more)
    assert len(back["buoc_xu_ly"]) == 40
    assert back["buoc_xu_ly"] == expected_records(live_sim.db.steps(after_id=cursor.step_id), STEP_COLUMNS, fmt)
    assert back["hoso"] == expected_records(live_sim.db.dossiers(since=cursor), HOSO_COLUMNS, fmt)
    changed = {s["so_ho_so"] for s in back["buoc_xu_ly"]}
    assert {r["so_ho_so"] for r in back["hoso"]} == changed
    assert live_sim.export_files(inbox, format=fmt, since_cursor=live_sim.db.high_water()) == []


def reading_order(path: Path) -> tuple[str, int]:
    """How a file-drop reader orders an inbox: by name, a CSV by the name after its kind prefix."""
    for rank, prefix in enumerate(("hoso-", "buoc_xu_ly-")):
        if path.suffix == ".csv" and path.name.startswith(prefix):
            return path.name[len(prefix):], rank
    return path.name, 0


@pytest.mark.parametrize("fmt", ["json", "csv", "xml"])
def test_large_exports_are_split_with_dossiers_first(live_sim, tmp_path, fmt):
    whole = read_back(live_sim.export_files(tmp_path / "whole", format=fmt))
    total = len(whole["hoso"]) + len(whole["buoc_xu_ly"])
    assert total > 300
    paths = live_sim.export_files(tmp_path / "parts", format=fmt, max_records=100)
    assert len(paths) == -(-len(whole["hoso"]) // 100) + -(-len(whole["buoc_xu_ly"]) // 100)
    ordered = sorted(paths, key=reading_order)
    assert ordered == paths  # returned in the order a reader takes them
    kinds = []
    for path in ordered:
        part = read_back([path])
        assert bool(part["hoso"]) != bool(part["buoc_xu_ly"])  # one kind per part
        assert len(part["hoso"]) + len(part["buoc_xu_ly"]) <= 100
        kinds.append("hoso" if part["hoso"] else "buoc_xu_ly")
    assert kinds == sorted(kinds, key=["hoso", "buoc_xu_ly"].index)  # every dossier before any step
    assert read_back(ordered) == whole
    # small enough for one file: no parts
    (single,) = live_sim.export_files(tmp_path / "one", format="json", max_records=total)
    assert "-p0" not in single.name
    with pytest.raises(ValueError, match="max_records must be a whole number"):
        live_sim.export_files(tmp_path, max_records=0)


def test_cursor_ties_break_on_the_dossier_code(db):
    sim = OneStopSimulator(db, arrivals_per_day=100)
    sim.advance(30)
    rows = db.dossiers()
    middle = rows[10]
    after = db.dossiers(since=ExportCursor(middle["cap_nhat_luc"], middle["so_ho_so"], 0))
    assert after == rows[11:]
    before_key = db.dossiers(since=ExportCursor(middle["cap_nhat_luc"], "", 0))
    assert before_key == rows[10:]
    aware = db.dossiers(since=ExportCursor(middle["cap_nhat_luc"].replace(tzinfo=UTC), middle["so_ho_so"], 0))
    assert aware == rows[11:]


def test_export_refuses_an_unknown_format(db, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'yaml': one of json, csv, xml"):
        export_files(db, tmp_path, format="yaml")
    assert export_files(db, tmp_path / "empty", format="json") == []


def test_atomic_write_shows_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "onestop-x.json"
    seen = []
    real_replace = os.replace

    def checking_replace(src, dst):
        # just before the rename: the final name does not exist, the hidden temporary is complete
        assert not Path(dst).exists()
        assert Path(src).name.startswith(".") and Path(src).name.endswith(".tmp")
        assert json.loads(Path(src).read_bytes()) == {"hoso": [], "buoc_xu_ly": []}
        seen.append((Path(src).name, Path(dst)))
        real_replace(src, dst)

    from lienthong.hub import files

    monkeypatch.setattr(files.os, "replace", checking_replace)
    atomic_write(target, b'{"hoso": [], "buoc_xu_ly": []}')
    assert seen and seen[0][1] == target and target.exists()

    def half_then_fail(fh):
        fh.write(b'{"hoso": [')
        raise RuntimeError("export interrupted")

    broken = tmp_path / "onestop-y.json"
    with pytest.raises(RuntimeError, match="export interrupted"):
        atomic_write(broken, half_then_fail)
    assert not broken.exists()
    assert sorted(os.listdir(tmp_path)) == ["onestop-x.json"]  # the temporary file is gone too


def test_exports_go_through_the_atomic_write(live_sim, tmp_path, monkeypatch):
    written = []
    real = onestop.atomic_write
    monkeypatch.setattr(onestop, "atomic_write", lambda path, content: written.append(path) or real(path, content))
    paths = live_sim.export_files(tmp_path, format="csv")
    assert written == paths and len(paths) == 2


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_broken_files_are_broken_in_the_way_they_say(tmp_path, kind):
    path = write_broken_file(tmp_path, kind)
    assert path.exists() and os.listdir(tmp_path) == [path.name]
    data = path.read_bytes()
    if kind == "truncated_json":
        assert path.name.endswith(".json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(data.decode("utf-8"))
    elif kind == "json_wrong_shape":
        assert isinstance(json.loads(data), list)
    elif kind == "csv_wrong_header":
        assert path.name.startswith("hoso-") and path.suffix == ".csv"
        header = next(csv.reader(data.decode("utf-8").splitlines()))
        assert "so_ho_so" not in header and len(header) == len(HOSO_COLUMNS)
    elif kind in ("xml_dtd", "xml_external_entity"):
        assert b"<!DOCTYPE" in data and path.suffix == ".xml"
        with pytest.raises(XmlDtdForbidden):
            parse_xml(data)
    elif kind == "xml_malformed":
        with pytest.raises(XmlMalformed):
            parse_xml(data)
    elif kind == "not_utf8":
        assert path.name.startswith("hoso-")
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        assert "Nguyễn" in unicodedata.normalize("NFC", data.decode("cp1258"))


def test_broken_file_kind_must_be_known(tmp_path):
    with pytest.raises(ValueError, match="unknown broken-file kind 'empty'"):
        write_broken_file(tmp_path, "empty")


def test_a_well_formed_xml_export_parses_with_the_hardened_parser(live_sim, tmp_path):
    (path,) = live_sim.export_files(tmp_path, format="xml")
    root = parse_xml(path.read_bytes())
    assert len(root.findall("hoso")) == live_sim.db.count()
    assert etree.tostring(root, encoding="unicode").count("<buoc_xu_ly>") == live_sim.db.count("hoso_buoc_xu_ly")


# ---------------------------------------------------------------------------------- command line
def test_cli_summary_as_json(tmp_path, capsys):
    url = _sqlite(tmp_path / "cli.db")
    code = onestop.main(["--db", url, "--dossiers", "60", "--advance", "40", "--arrivals-per-day", "30",
                         "--inject", "unknown_status=2", "--export-dir", str(tmp_path / "out"), "--format", "csv",
                         "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["created"] == 60
    assert summary["dossiers"] == sum(summary["status_counts"].values()) > 62  # --advance submits some too
    assert summary["status_counts"][UNKNOWN_STATUS] == 2
    with OneStopDatabase(url) as db:
        assert summary["steps"] == summary["changes"] == db.count("hoso_buoc_xu_ly")
        assert summary["dossiers"] == db.count()
    assert len(summary["injected"]["unknown_status"]) == 2
    assert [Path(p).name.split("-")[0] for p in summary["exported"]] == ["hoso", "buoc_xu_ly"]


def test_cli_table_and_continuing_run(tmp_path, capsys):
    url = _sqlite(tmp_path / "cli.db")
    assert onestop.main(["--db", url, "--dossiers", "30"]) == 0
    first = capsys.readouterr().out
    assert "DA_TIEP_NHAN" in first and "30 dossiers" in first
    assert onestop.main(["--db", url, "--advance", "25", "--export-dir", str(tmp_path / "in"), "--only-this-run",
                         "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "this run: 0 submitted, 25 changes" in out and "exported" in out
    steps_file = next((tmp_path / "in").glob("buoc_xu_ly-*.csv"))
    assert len(steps_file.read_text(encoding="utf-8").splitlines()) == 1 + 25  # header + this run's steps


def test_cli_explains_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        onestop.main(["--db", _sqlite(tmp_path / "x.db"), "--inject", "nonsense=3"])
    assert exc.value.code == 2
    assert "expected KIND=COUNT" in capsys.readouterr().err
    assert onestop.main(["--db", _sqlite(tmp_path / "x.db"), "--agencies", "0"]) == 1
    assert "agencies must be at least 1" in capsys.readouterr().err


def test_cli_default_database_is_under_lienthong_home(tmp_home, capsys):
    assert onestop.main(["--dossiers", "5", "--json"]) == 0
    assert (tmp_home / "sandbox" / "onestop.db").exists()
    assert json.loads(capsys.readouterr().out)["dossiers"] == 5


@pytest.mark.slow
def test_module_runs_as_a_program(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lienthong.sandbox.onestop", "--db", _sqlite(tmp_path / "m.db"), "--dossiers", "20",
         "--json"], capture_output=True, text=True, timeout=120, env=dict(os.environ, LIENTHONG_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dossiers"] == 20


# ---------------------------------------------------------------------------------- backends, scale
def test_postgresql_and_sqlite_hold_the_same_rows(db_url, tmp_path):
    reference = OneStopSimulator(_sqlite(tmp_path / "reference.db"), seed=11, arrivals_per_day=25)
    reference.populate(120)
    reference_codes = reference.inject("malformed_date", 2)
    reference.advance(100)
    sim = OneStopSimulator(db_url, seed=11, arrivals_per_day=25, batch_size=64)
    sim.populate(120)
    assert sim.inject("malformed_date", 2) == reference_codes
    sim.close()
    sim = OneStopSimulator(db_url, seed=11, arrivals_per_day=25)  # reopened: state rebuilt from PostgreSQL
    sim.advance(100)
    assert dump(sim.db) == dump(reference.db)
    assert sim.db.high_water() == reference.db.high_water()
    sim.close()
    reference.close()


@pytest.mark.slow
def test_populate_twenty_thousand_dossiers(tmp_path):
    sim = OneStopSimulator(_sqlite(tmp_path / "big.db"), seed=1)
    began = time.perf_counter()
    report = sim.populate(20_000)
    sim.advance(15_000)
    elapsed = time.perf_counter() - began
    assert report.dossiers == 20_000 and sum(report.status_counts.values()) == 20_000
    assert sim.total_dossiers == sim.db.count() > 20_000
    assert sim.total_changes >= 100_000
    assert sim.db.count("hoso_buoc_xu_ly") == sim.total_changes
    assert report.status_counts["DA_TRA_KQ"] > 10_000
    assert elapsed < 120, f"{sim.total_changes} changes took {elapsed:.1f} s"
    print(f"populate(20000): {report.changes} changes in {report.seconds:.1f} s "
          f"({report.changes_per_second:,.0f}/s); +15000 changes, {elapsed:.1f} s in all")
    inbox = tmp_path / "inbox"
    began = time.perf_counter()
    paths = sim.export_files(inbox, format="json", max_records=20_000)
    assert len(paths) == 2 + 6  # 23,084 dossiers and 104,716 steps in parts of 20,000
    assert all(p.stat().st_size < 64 * 1024 * 1024 for p in paths)  # the hub's reader limit
    assert sum(len(json.loads(p.read_bytes())["hoso"]) for p in paths) == sim.total_dossiers
    print(f"export of {sim.total_dossiers} dossiers and {sim.total_changes} steps as JSON: "
          f"{time.perf_counter() - began:.1f} s, {sum(p.stat().st_size for p in paths) / 1e6:.0f} MB "
          f"in {len(paths)} files")
    shutil.rmtree(inbox)
    sim.close()
