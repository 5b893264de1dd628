"""SqlSource: incremental, keyset-paginated, read-only intake from the one-stop database.

The tables are created here as the issue-4 contract describes them (``hoso`` updated in place,
``hoso_buoc_xu_ly`` append-only, ``cap_nhat_luc`` UTC timestamps), once per backend: SQLite
always, PostgreSQL when ``LIENTHONG_TEST_PG_URL`` is set. The last tests read the sandbox's
simulated one-stop system (lienthong.sandbox.onestop) end to end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lienthong.connectors.sources import (
    MAPPED,
    CursorInvalid,
    Source,
    SourceBatch,
    SourceUnavailable,
    SqlCursor,
    SqlSource,
)
from lienthong.hub.errors import ConfigurationError, RetryableError
from lienthong.hub.store import make_engine
from lienthong.mappings.dossier import DOSSIER, STEP, DossierMapping
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, insert, text, update
from sqlalchemy.exc import DBAPIError

metadata = MetaData()
hoso = Table(
    "hoso", metadata,
    Column("so_ho_so", Text, primary_key=True),
    *(Column(c, Text) for c in (
        "ma_thu_tuc", "ten_thu_tuc", "ma_linh_vuc", "ten_linh_vuc", "kenh_nop", "chu_ho_so", "so_giay_to",
        "loai_chu_ho_so", "email", "dien_thoai", "trich_yeu", "ngay_nop", "ngay_tiep_nhan", "ngay_hen_tra",
        "ngay_ket_thuc_xu_ly", "ngay_tra", "trang_thai", "don_vi_xu_ly", "co_quan")),
    Column("cap_nhat_luc", DateTime),
    Column("phien_ban", Integer, nullable=False),
)
steps = Table(
    "hoso_buoc_xu_ly", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *(Column(c, Text) for c in ("so_ho_so", "nguoi_xu_ly", "chuc_danh", "phong_ban", "noi_dung", "trang_thai",
                                "thoi_diem", "ngay_bat_dau", "han_xu_ly")),
    Column("cap_nhat_luc", DateTime, nullable=False),
    sqlite_autoincrement=True,
)
results = Table(  # the shipped mapping reads result documents too
    "hoso_ket_qua", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *(Column(c, Text) for c in ("so_ho_so", "ten_giay_to", "ma_giay_to", "ma_thanh_phan", "ten_tep", "kieu_tep",
                                "tep", "sha256")),
    Column("kich_thuoc", Integer),
    Column("cap_nhat_luc", DateTime, nullable=False),
    sqlite_autoincrement=True,
)

T0 = datetime(2026, 11, 23, 1, 0, 0)  # UTC, naive as stored


def code(n: int) -> str:
    return f"000.00.10.G10-20261123-{n:07d}"


def dossier(n: int, at: datetime, *, status: str = "MOI", version: int = 1, **changes: Any) -> dict[str, Any]:
    row = {
        "so_ho_so": code(n), "ma_thu_tuc": "1.001000", "ten_thu_tuc": "Cấp giấy phép hành nghề thú y",
        "ma_linh_vuc": "G10-TY", "ten_linh_vuc": "Thú y", "kenh_nop": "TRUC_TUYEN", "chu_ho_so": f"Lê Văn Hải {n}",
        "so_giay_to": f"0010990{n:05d}", "loai_chu_ho_so": "CONG_DAN", "email": None, "dien_thoai": "0987 654 321",
        "trich_yeu": f"Hồ sơ đề nghị cấp phép số {n}", "ngay_nop": "2026-11-23 08:00:00", "ngay_tiep_nhan": None,
        "ngay_hen_tra": None, "ngay_ket_thuc_xu_ly": None, "ngay_tra": None, "trang_thai": status,
        "don_vi_xu_ly": "Cục Thú y", "co_quan": "000.00.10.G10", "cap_nhat_luc": at, "phien_ban": version,
    }
    row.update(changes)
    return row


def step(n: int, at: datetime, status: str = "MOI", **changes: Any) -> dict[str, Any]:
    row = {"so_ho_so": code(n), "nguoi_xu_ly": "Phạm Thu Trang", "chuc_danh": "Chuyên viên", "phong_ban": None,
           "noi_dung": "Tiếp nhận hồ sơ", "trang_thai": status, "thoi_diem": "2026-11-23 08:00:00",
           "ngay_bat_dau": None, "han_xu_ly": None, "cap_nhat_luc": at}
    row.update(changes)
    return row


@pytest.fixture
def writer(db_url):
    """An engine that plays the one-stop system: creates the tables and writes rows."""
    engine = make_engine(db_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def mapping() -> DossierMapping:
    return DossierMapping.shipped("onestop_sandbox")


def add(engine, dossiers=(), step_rows=()) -> None:
    with engine.begin() as conn:
        if dossiers:
            conn.execute(insert(hoso), list(dossiers))
        if step_rows:
            conn.execute(insert(steps), list(step_rows))


def move(engine, n: int, at: datetime, status: str, version: int) -> None:
    """A dossier changes status: its row is updated in place and a step is appended (one transaction)."""
    with engine.begin() as conn:
        conn.execute(update(hoso).where(hoso.c.so_ho_so == code(n))
                     .values(trang_thai=status, cap_nhat_luc=at, phien_ban=version))
        conn.execute(insert(steps), [step(n, at, status)])


def read_all(source, cursor=None) -> tuple[list[SourceBatch], str | None]:
    batches = list(source.changes(cursor))
    return batches, (batches[-1].cursor if batches else cursor)


def keys(batches, kind=None) -> list[str]:
    return [i.source_key for b in batches for i in b.items if kind is None or i.kind == kind]


# --------------------------------------------------------------------------------------------
def test_reads_everything_then_only_what_changed(db_url, writer, mapping):
    add(writer, [dossier(n, T0 + timedelta(seconds=n)) for n in range(1, 6)],
        [step(n, T0 + timedelta(seconds=n)) for n in range(1, 6)])
    with SqlSource(db_url, mapping) as source:
        assert isinstance(source, Source) and source.name == "onestop_sandbox"
        batches, cursor = read_all(source)
        assert len(batches) == 1
        (batch,) = batches
        assert batch.outcomes() == {MAPPED: 10} and batch.origin == "hoso+hoso_buoc_xu_ly+hoso_ket_qua" and batch.file is None
        assert [i.kind for i in batch.items] == [DOSSIER] * 5 + [STEP] * 5  # dossiers first
        assert keys(batches, DOSSIER) == [f"hoso:{code(n)}:1" for n in range(1, 6)]
        assert keys(batches, STEP) == [f"buoc:{n}" for n in range(1, 6)]
        first = batch.changes[0]
        assert first.record["MaHoSo"] == code(1) and first.record["TrangThaiHoSo"] == 1
        assert first.record["NgayNopHoSo"] == "20261123080000" and dict(first.extra) == {"co_quan": "000.00.10.G10"}

        assert list(source.changes(cursor)) == []  # nothing new

        move(writer, 2, T0 + timedelta(minutes=5), "DA_TIEP_NHAN", 2)
        add(writer, [dossier(6, T0 + timedelta(minutes=6))], [step(6, T0 + timedelta(minutes=6))])
        batches, cursor = read_all(source, cursor)
        assert keys(batches) == [f"hoso:{code(2)}:2", f"hoso:{code(6)}:1", "buoc:6", "buoc:7"]
        assert [c.status for b in batches for c in b.changes] == [2, 1, 2, 1]
        assert list(source.changes(cursor)) == []


def test_pages_are_bounded_and_ties_on_the_change_time_are_broken_by_the_dossier_code(db_url, writer, mapping):
    same = T0 + timedelta(seconds=30)
    # 7 dossiers changed in the same instant, inserted out of order, between two others
    add(writer, [dossier(100, T0)] + [dossier(n, same) for n in (5, 3, 7, 1, 6, 2, 4)] + [dossier(200, T0 + timedelta(1))])
    with SqlSource(db_url, mapping, batch_size=3) as source:
        batches, cursor = read_all(source)
    assert [len(b) for b in batches] == [3, 3, 3]
    assert keys(batches) == [f"hoso:{code(n)}:1" for n in (100, 1, 2, 3, 4, 5, 6, 7, 200)]  # none lost, none twice
    # resuming from any committed cursor goes on from exactly there
    with SqlSource(db_url, mapping, batch_size=2) as source:
        rest, _ = read_all(source, batches[0].cursor)
    assert keys(rest) == [f"hoso:{code(n)}:1" for n in (3, 4, 5, 6, 7, 200)]


def test_a_step_never_comes_before_its_dossier(db_url, writer, mapping):
    """With a small page, a dossier changed again later is read after its first steps would be:
    the steps wait until the dossier pages have caught up."""
    for n in range(1, 7):
        at = T0 + timedelta(seconds=n)
        add(writer, [dossier(n, at)], [step(n, at)])
    for n in range(1, 7):  # every dossier moves on later: their rows' change times are now late
        move(writer, n, T0 + timedelta(minutes=n), "DA_TIEP_NHAN", 2)
    with SqlSource(db_url, mapping, batch_size=4) as source:
        batches, _ = read_all(source)
    seen_dossiers: set[str] = set()
    for batch in batches:
        for item in batch.items:
            if item.kind == DOSSIER:
                seen_dossiers.add(item.ma_ho_so)
            else:
                assert item.ma_ho_so in seen_dossiers, f"step {item.source_key} before its dossier"
    assert sorted(keys(batches, STEP)) == sorted(f"buoc:{i}" for i in range(1, 13))
    assert len(keys(batches, DOSSIER)) == 6


def test_rows_that_cannot_be_mapped_are_items_with_their_error(db_url, writer, mapping):
    add(writer, [dossier(1, T0), dossier(2, T0 + timedelta(seconds=1), status="CHUYEN_LIEN_THONG"),
                 dossier(3, T0 + timedelta(seconds=2), trich_yeu=None),
                 dossier(4, T0 + timedelta(seconds=3), ngay_nop="31/02/2026"),
                 dossier(5, T0 + timedelta(seconds=4), trich_yeu="Đề nghị " * 200)],
        [step(1, T0), step(2, T0 + timedelta(seconds=1), "CHUYEN_LIEN_THONG")])
    with SqlSource(db_url, mapping) as source:
        (batch,), _ = read_all(source)
    assert batch.outcomes() == {MAPPED: 3, "MAPPING_UNKNOWN_CODE": 2, "MAPPING_MISSING_FIELD": 1,
                                "MAPPING_MALFORMED_VALUE": 1, "truncated": 1}
    failed = {i.source_key: i for i in batch.failures}
    assert set(failed) == {f"hoso:{code(2)}:1", f"hoso:{code(3)}:1", f"hoso:{code(4)}:1", "buoc:2"}
    bad = failed[f"hoso:{code(2)}:1"]
    assert not bad.ok and bad.change is None and bad.ma_ho_so == code(2)
    assert "unknown local code 'CHUYEN_LIEN_THONG'" in str(bad.error) and "onestop_sandbox.yaml" in str(bad.error)
    raw = bad.raw_json()
    assert raw["trang_thai"] == "CHUYEN_LIEN_THONG" and isinstance(raw["cap_nhat_luc"], str)


def test_the_source_only_reads(db_url, writer, mapping):
    add(writer, [dossier(1, T0)])
    with SqlSource(db_url, mapping) as source:
        with pytest.raises(DBAPIError), source.engine.begin() as conn:
            conn.execute(text("DELETE FROM hoso"))
        assert len(keys(read_all(source)[0])) == 1  # still there


def test_check_names_missing_tables_and_columns(db_url, writer, mapping, tmp_path):
    with SqlSource(db_url, mapping) as source:
        assert source.check() == {"dossiers_without_cursor": 0, "steps_without_cursor": 0, "results_without_cursor": 0}
    with writer.begin() as conn:
        conn.execute(insert(hoso), [dossier(1, None)])
    with SqlSource(db_url, mapping) as source:
        assert source.check()["dossiers_without_cursor"] == 1  # never readable: reported, not hidden

    doc = Path(mapping.path).read_text(encoding="utf-8")
    renamed = tmp_path / "onestop_renamed.yaml"
    renamed.write_text(doc.replace("table: hoso_buoc_xu_ly", "table: buoc_xu_ly"), encoding="utf-8")
    with SqlSource(db_url, DossierMapping.load(renamed)) as source:
        with pytest.raises(ConfigurationError, match=r"onestop_renamed.yaml: steps.table: buoc_xu_ly does not exist"):
            list(source.changes())
    renamed.write_text(doc.replace("column: don_vi_xu_ly", "column: don_vi"), encoding="utf-8")
    with SqlSource(db_url, DossierMapping.load(renamed)) as source:
        with pytest.raises(ConfigurationError, match=r"dossiers: table hoso has no column don_vi \(it has: "):
            source.check()


def test_settling_leaves_recent_rows_for_later(db_url, writer, mapping):
    now = [T0 + timedelta(minutes=10)]
    add(writer, [dossier(1, T0), dossier(2, T0 + timedelta(minutes=9, seconds=58))],
        [step(1, T0), step(2, T0 + timedelta(minutes=9, seconds=58)), step(1, T0 + timedelta(seconds=5))])
    with SqlSource(db_url, mapping, settle_seconds=5, clock=lambda: now[0].replace(tzinfo=UTC)) as source:
        batches, cursor = read_all(source)
        # dossier 2 and step 2 are 2 s old; step 3 is old, but comes after step 2 in id order
        assert keys(batches) == [f"hoso:{code(1)}:1", "buoc:1"]
        now[0] += timedelta(seconds=10)
        batches, cursor = read_all(source, cursor)
        assert keys(batches) == [f"hoso:{code(2)}:1", "buoc:2", "buoc:3"]


def test_cursor_text_round_trips_and_a_damaged_one_is_refused():
    cursor = SqlCursor((datetime(2026, 11, 23, 1, 2, 3, 456789), code(9)), (42, None))
    assert SqlCursor.decode(cursor.encode()) == cursor
    text_cursor = SqlCursor(("2026-11-23 01:02:03.000000", code(9)), None)
    assert SqlCursor.decode(text_cursor.encode()) == text_cursor
    assert SqlCursor.decode(None) == SqlCursor() == SqlCursor.decode("")
    for damaged in ("{", '{"v": 3}', '{"v": 2, "anchors": [1]}', '{"v": 1, "dossiers": [1]}', '{"v": 1, "dossiers": [{"$x": 1}, 2]}', "[]"):
        with pytest.raises(CursorInvalid):
            SqlCursor.decode(damaged)


def test_configuration_and_availability_errors(tmp_path, mapping):
    with pytest.raises(ConfigurationError, match="does not exist"):
        SqlSource(f"sqlite:///{tmp_path / 'none.db'}", mapping)
    assert not (tmp_path / "none.db").exists()  # not created by the attempt
    with SqlSource("postgresql://nobody@127.0.0.1:9/onestop", mapping) as source:
        with pytest.raises(SourceUnavailable) as caught:
            list(source.changes())
    assert isinstance(caught.value, RetryableError) and caught.value.code == "SOURCE_UNAVAILABLE"
    assert "nobody@127.0.0.1:9/onestop" in str(caught.value)
    files_only = DossierMapping.parse(
        Path(mapping.path).read_text(encoding="utf-8").replace("kind: sql", "kind: filedrop"), "files_only.yaml")
    with pytest.raises(ConfigurationError, match="SqlSource needs a sql mapping"):
        SqlSource("sqlite://", files_only)


def test_an_engine_can_be_passed_in(writer, mapping):
    add(writer, [dossier(1, T0)], [step(1, T0)])
    source = SqlSource(writer, mapping)
    assert keys(read_all(source)[0]) == [f"hoso:{code(1)}:1", "buoc:1"]
    source.close()  # the caller's engine stays usable
    with writer.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hoso")).scalar_one() == 1


# --------------------------------------------------------------------------------------------
# the sandbox's simulated one-stop system
# --------------------------------------------------------------------------------------------
def test_reads_the_simulated_one_stop_system_exactly_once(db_url, mapping):
    onestop = pytest.importorskip("lienthong.sandbox.onestop")
    from lienthong.sandbox.catalogue import Catalogue

    catalogue = Catalogue(60, seed=1)
    sim = onestop.OneStopSimulator(db_url, seed=3, agencies=3, procedures=12, catalogue=catalogue, batch_size=500)
    try:
        sim.populate(150)
        known = set(catalogue.codes())
        with SqlSource(db_url, DossierMapping.shipped("onestop_sandbox", known_procedures=known.__contains__),
                       batch_size=200) as source:
            batches, cursor = read_all(source)
            assert sum(b.outcomes()[MAPPED] for b in batches) == len(keys(batches))  # every row maps
            assert len(keys(batches, DOSSIER)) == sim.db.count("hoso")
            assert len(keys(batches, STEP)) == sim.db.count("hoso_buoc_xu_ly")
            assert len(set(keys(batches))) == len(keys(batches))

            sim.advance(300)
            codes = {kind: sim.inject(kind) for kind in onestop.INJECTION_KINDS}
            more, cursor = read_all(source, cursor)
            assert len(keys(more, STEP)) == 300 + len(onestop.INJECTION_KINDS)
            assert list(source.changes(cursor)) == []
        outcome = {i.ma_ho_so: (i.error.code if i.error else MAPPED) for b in more for i in b.items if i.kind == DOSSIER}
        assert {kind: outcome[c[0]] for kind, c in codes.items()} == {
            "unknown_status": "MAPPING_UNKNOWN_CODE", "missing_field": "MAPPING_MISSING_FIELD",
            "malformed_date": "MAPPING_MALFORMED_VALUE", "overlong_text": MAPPED, "non_nfc": MAPPED,
            "unknown_procedure": "MAPPING_UNKNOWN_PROCEDURE"}
        adjusted = {i.ma_ho_so: {a.kind for a in i.change.adjustments} for b in more for i in b.items
                    if i.kind == DOSSIER and i.ok and i.change.adjustments}
        assert "truncated" in adjusted[codes["overlong_text"][0]] and "normalised" in adjusted[codes["non_nfc"][0]]
    finally:
        sim.close()


def test_batches_fit_the_outbox(tmp_path, mapping):
    """The intake pattern: each batch's changes (and dead letters for the rows that failed) go into
    the hub's outbox in one transaction; reading the same rows again adds nothing."""
    outbox = pytest.importorskip("lienthong.hub.delivery.outbox")
    from lienthong.hub.store import upgrade

    onestop_url = f"sqlite:///{tmp_path / 'onestop.db'}"
    writer = make_engine(onestop_url)
    metadata.create_all(writer)
    add(writer, [dossier(1, T0), dossier(2, T0 + timedelta(seconds=1), status="CHUYEN_LIEN_THONG")],
        [step(1, T0), step(2, T0 + timedelta(seconds=1), "CHUYEN_LIEN_THONG")])
    hub = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(hub)
    try:
        for attempt in range(2):
            with SqlSource(onestop_url, mapping) as source:
                (batch,) = list(source.changes())
            with hub.begin() as conn:
                result = outbox.enqueue(conn, batch.changes)
                letters = []
                for item in batch.failures:
                    rejected = item.rejected()
                    letters.append(outbox.enqueue_rejected(conn, rejected, reason_code=rejected["reason_code"],
                                                           reason=rejected["reason"]))
            if attempt == 0:
                assert result.inserted == 2 and all(letters) and len(letters) == 2
            else:
                assert result.inserted == 0 and result.duplicates == 2 and letters == [None, None]
        assert batch.failures[0].rejected()["reason_code"] == "MAPPING_UNKNOWN_CODE"
        assert batch.failures[0].rejected()["partition_key"] == code(2)
    finally:
        writer.dispose()
        hub.dispose()
