"""The hub's record of dossiers (issue 15, item 1): kept by the intake in the transaction of the
outbox events, each dossier's current fields and its status history; filled by the migration for
dossiers already in the outbox. SQLite and, with ``LIENTHONG_TEST_PG_URL``, PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lienthong.hub.delivery import outbox
from lienthong.hub.dossiers import dossier, history, portal_moment, supplement_periods
from lienthong.hub.dossiers import projection as projection_module
from lienthong.hub.store import make_engine, upgrade, write_transaction
from lienthong.hub.store.models import DossierRecord, OutboxEvent
from lienthong.sandbox.onestop import LOCAL_STATUSES, OneStopSimulator
from results_helpers import take_in
from sqlalchemy import func, select


@pytest.fixture
def sim(tmp_path):
    simulator = OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=5, arrivals_per_day=8)
    simulator.populate(40)
    yield simulator
    simulator.close()


def _local(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - timedelta(hours=7)


def test_the_intake_keeps_each_dossiers_fields_and_status_history(engine, sim):
    take_in(engine, sim.db.url)
    sim.advance(150)  # the dossiers move on; a second intake reads the new versions
    take_in(engine, sim.db.url)
    rows = sim.db.dossiers()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DossierRecord)).scalar_one() == len(rows)
    for row in rows:
        kept = dossier(engine, row["so_ho_so"])
        assert kept["version"] == row["phien_ban"] and kept["trang_thai"] == LOCAL_STATUSES[row["trang_thai"]]
        assert kept["agency"] == row["co_quan"] and kept["ma_tthc"] == row["ma_thu_tuc"]
        assert kept["ngay_nop"] == _local(row["ngay_nop"]) and kept["ngay_hen_tra"] == _local(row["ngay_hen_tra"])
        assert kept["ngay_tiep_nhan"] == _local(row["ngay_tiep_nhan"])
        # the steps replay the dossier's life: its history holds each of them, in time order
        steps = sim.db.steps(row["so_ho_so"])
        taken = [(e.status, e.at) for e in history(engine, row["so_ho_so"]) if e.kind == "step"]
        assert taken == [(LOCAL_STATUSES[s["trang_thai"]], _local(s["thoi_diem"])) for s in steps]


def test_supplement_periods_run_from_each_request_to_the_next_status(engine, sim):
    sim.advance(600)
    take_in(engine, sim.db.url)
    waited = 0
    for row in sim.db.dossiers():
        steps = sim.db.steps(row["so_ho_so"])
        expected, start = [], None
        for step in steps:
            status, at = LOCAL_STATUSES[step["trang_thai"]], _local(step["thoi_diem"])
            if status == 5 and start is None:
                start = at
            elif status != 5 and start is not None:
                expected.append((start, at))
                start = None
        if start is not None:
            expected.append((start, None))
        steps_only = [e for e in history(engine, row["so_ho_so"]) if e.kind == "step"]
        assert supplement_periods(steps_only) == expected
        waited += len(expected)
    assert waited > 0  # the simulation did ask for supplements


def test_an_older_version_read_again_never_replaces_a_newer_one(engine):
    def snapshot(version: int, status: int) -> dict:
        return {"kind": "dossier", "source_key": f"hoso:X:{version}", "version": version,
                "source_changed_at": datetime(2026, 12, 1, 1, version, tzinfo=UTC),
                "record": {"MaHoSo": "G10-20261201-0000009", "MaTTHC": "1.001012", "TrangThaiHoSo": status,
                           "NgayTiepNhan": "20261201080000"}}

    with write_transaction(engine) as conn:
        projection_module.project(conn, [snapshot(3, 4)])
    with write_transaction(engine) as conn:
        projection_module.project(conn, [snapshot(2, 2), snapshot(2, 2)])  # late, and twice
    kept = dossier(engine, "G10-20261201-0000009")
    assert (kept["version"], kept["trang_thai"]) == (3, 4)
    assert kept["ngay_tiep_nhan"] == portal_moment("20261201080000") == datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert [(e.status, e.source_key) for e in history(engine, "G10-20261201-0000009")] == [
        (2, "hoso:X:2"), (4, "hoso:X:3")]  # each status change once, in time order


def test_the_record_moves_only_with_the_outbox(engine, sim, monkeypatch):
    def broken(conn, changes, **kw):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr("lienthong.hub.flows.intake.project", broken)
    with pytest.raises(RuntimeError, match="disk is full"):
        take_in(engine, sim.db.url)
    with engine.connect() as conn:  # nothing of the batch was committed: neither events nor record
        assert conn.execute(select(func.count()).select_from(OutboxEvent)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(DossierRecord)).scalar_one() == 0


def test_the_migration_fills_the_record_from_the_outbox(tmp_path, sim):
    from lienthong.connectors.sources.sql import SqlSource
    from lienthong.mappings.dossier import DossierMapping

    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine, "0010")  # a hub from before the record
    with SqlSource(sim.db.url, DossierMapping.shipped("onestop_sandbox")) as source:
        changes = [c for batch in source.changes() for c in batch.changes if c.kind != "result"]
    with write_transaction(engine) as conn:
        outbox.enqueue(conn, changes)
    upgrade(engine, "head")
    rows = sim.db.dossiers()
    for row in rows:
        kept = dossier(engine, row["so_ho_so"])
        assert kept is not None and kept["trang_thai"] == LOCAL_STATUSES[row["trang_thai"]]
        assert kept["version"] == row["phien_ban"]
        assert len([e for e in history(engine, row["so_ho_so"]) if e.kind == "step"]) == len(
            sim.db.steps(row["so_ho_so"]))
    engine.dispose()
