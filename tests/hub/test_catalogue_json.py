"""The catalogue sync over the portal's JSON adapter (its dictionary services) stores exactly what
the sync over SOAP stores: the same procedures with the same content, agencies and fields."""

from __future__ import annotations

from lienthong.connectors.csdl_tthc import CsdlTthcClient
from lienthong.connectors.transport import transport_for
from lienthong.hub.audit import AuditTrail
from lienthong.hub.flows.catalogue import sync_catalogue
from lienthong.hub.store import make_engine, upgrade
from lienthong.hub.store.models import CatalogueAgency, CatalogueField, ProcedureVersion
from national_helpers import over_json, settings_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_catalogue import FAST_RETRY


def _store(path):
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def _content(engine):
    with Session(engine) as s:
        versions = sorted(s.execute(select(ProcedureVersion.code, ProcedureVersion.content_hash)).all())
        agencies = sorted(s.scalars(select(CatalogueAgency.code)).all())
        fields = sorted(s.scalars(select(CatalogueField.code)).all())
    return versions, agencies, fields


def test_a_sync_over_json_stores_what_a_sync_over_soap_stores(conn_home, make_sandbox, tmp_path):
    sandbox = make_sandbox(procedures=60)
    settings = settings_for(conn_home, sandbox.base_url)
    results = {}
    for name, chosen in (("soap", settings), ("json", over_json(settings, sandbox.base_url, "csdl_tthc"))):
        engine = _store(tmp_path / f"{name}.db")
        client = CsdlTthcClient(transport_for(chosen, "csdl_tthc", audit=AuditTrail(engine)))
        summary = sync_catalogue(engine, client, full=True, retry=FAST_RETRY)
        assert (summary.listed, summary.new, summary.quarantined) == (60, 60, 0), name
        results[name] = _content(engine)
        again = sync_catalogue(engine, client, retry=FAST_RETRY)  # incremental, from the watermark
        assert again.new == again.changed == 0, name
        engine.dispose()
    assert results["json"] == results["soap"]
    assert len(results["json"][0]) == 60 and results["json"][1] and results["json"][2]
