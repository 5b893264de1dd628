"""Intake from the one-stop system into the outbox, then delivery to the portal, end to end."""

from __future__ import annotations

from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.soap import SoapConnector
from lienthong.connectors.sources.filedrop import FileDropSource
from lienthong.connectors.sources.sql import SqlSource
from lienthong.hub.delivery.engine import deliver_once
from lienthong.hub.delivery.outbox import stats
from lienthong.hub.delivery.retry import RetryPolicy
from lienthong.hub.flows.intake import intake_once, stored_cursor
from lienthong.hub.store.models import DeadLetter, OutboxEvent
from lienthong.mappings.dossier import DossierMapping
from lienthong.sandbox.onestop import LOCAL_STATUSES, OneStopSimulator, export_files
from national_helpers import settings_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session


def _events(engine, state=None) -> int:
    with Session(engine) as s:
        stmt = select(func.count()).select_from(OutboxEvent)
        if state:
            stmt = stmt.where(OutboxEvent.state == state)
        return s.scalar(stmt)


def test_sql_intake_is_complete_idempotent_and_keeps_its_cursor(tmp_path, audit):
    sim = OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=3)
    sim.populate(60)
    mapping = DossierMapping.shipped("onestop_sandbox")
    with SqlSource(sim.db.engine, mapping) as source:
        first = intake_once(audit.engine, source)
        assert first.read == sim.db.count("hoso") + sim.db.count("hoso_buoc_xu_ly")
        assert first.enqueued == first.read and first.dead_lettered == 0
        assert stored_cursor(audit.engine, first.source) == first.cursor
        again = intake_once(audit.engine, source)  # nothing new since the cursor
        assert again.read == 0 and _events(audit.engine) == first.enqueued
        sim.advance(40)
        more = intake_once(audit.engine, source)
        assert more.enqueued > 0 and _events(audit.engine) == first.enqueued + more.enqueued


def test_bad_rows_become_dead_letters_with_their_reason_never_dropped(tmp_path, audit):
    sim = OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=4)
    sim.populate(20)
    bad = {kind: sim.inject(kind, 1)[0] for kind in ("unknown_status", "missing_field", "malformed_date")}
    mapping = DossierMapping.shipped("onestop_sandbox")
    with SqlSource(sim.db.engine, mapping) as source:
        summary = intake_once(audit.engine, source)
    assert summary.outcomes["MAPPING_UNKNOWN_CODE"] >= 1
    assert summary.outcomes["MAPPING_MISSING_FIELD"] >= 1
    assert summary.outcomes["MAPPING_MALFORMED_VALUE"] >= 1
    with Session(audit.engine) as s:
        letters = s.execute(select(OutboxEvent.partition_key, DeadLetter.reason_code)
                            .join(DeadLetter, DeadLetter.event_id == OutboxEvent.id)).all()
    by_dossier = {key: code for key, code in letters}
    assert by_dossier[bad["unknown_status"]] == "MAPPING_UNKNOWN_CODE"
    assert by_dossier[bad["missing_field"]] == "MAPPING_MISSING_FIELD"
    assert by_dossier[bad["malformed_date"]] == "MAPPING_MALFORMED_VALUE"


def test_file_drop_intake_moves_processed_files_aside(tmp_path, audit):
    sim = OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=5)
    sim.populate(15)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = export_files(sim.db, inbox, format="json")
    source = FileDropSource(inbox, DossierMapping.shipped("onestop_sandbox"))
    summary = intake_once(audit.engine, source)
    assert summary.enqueued == sim.db.count("hoso") + sim.db.count("hoso_buoc_xu_ly")
    assert not any(f.exists() for f in files)
    assert all((inbox / "processed" / f.name).exists() for f in files)


def test_every_change_reaches_the_portal_in_order(tmp_path, audit, conn_home, make_sandbox):
    sim = OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=6)
    sim.populate(40)
    with SqlSource(sim.db.engine, DossierMapping.shipped("onestop_sandbox")) as source:
        intake_once(audit.engine, source)
    sandbox = make_sandbox(procedures=300)
    portal = DvcPortalClient(SoapConnector(settings_for(conn_home, sandbox.base_url), "dvc_portal", audit=audit))
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_attempts=5)
    for _ in range(200):
        deliver_once(audit.engine, portal, worker_id="w1", batch_size=20, policy=policy)
        if _events(audit.engine, "pending") == 0 and _events(audit.engine, "claimed") == 0:
            break
    assert _events(audit.engine, "delivered") == _events(audit.engine)
    with Session(audit.engine) as s:
        sent = s.execute(select(OutboxEvent.partition_key, OutboxEvent.payload)
                         .where(OutboxEvent.kind == "dossier").order_by(OutboxEvent.id)).all()
    import json

    expected: dict[str, list[int]] = {}
    for key, payload in sent:
        expected.setdefault(key, []).append(json.loads(payload)["TrangThaiHoSo"])
    for row in sim.db.dossiers():
        code = row["so_ho_so"]
        received = [e.trang_thai for e in sandbox.store.dossier_history(code) if e.kind == "HoSo" and e.accepted]
        # the portal saw this dossier's snapshots exactly in the order they happened, none missing
        assert received == expected[code]
        assert sandbox.store.dossier(code)["trang_thai"] == expected[code][-1] == LOCAL_STATUSES[row["trang_thai"]]
    assert stats(audit.engine).as_dict()
    assert audit.verify().ok
