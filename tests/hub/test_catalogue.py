"""Catalogue sync against the real sandbox: complete, incremental, idempotent, resumable, explainable."""

from __future__ import annotations

import json

import pytest
from lienthong.connectors.csdl_tthc import CsdlTthcClient
from lienthong.connectors.soap import SoapConnector
from lienthong.hub.delivery.retry import RetryPolicy
from lienthong.hub.flows.catalogue import list_procedures, procedure_history, sync_catalogue, sync_state
from lienthong.hub.store.models import (
    CatalogueAgency,
    CatalogueField,
    Procedure,
    ProcedureVersion,
    QuarantinedRecord,
)
from lienthong.mappings.procedure import MappingError
from national_helpers import settings_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_attempts=8)


@pytest.fixture
def catalogue_env(conn_home, make_sandbox, audit):
    def make(**sandbox_options):
        server = make_sandbox(**sandbox_options)
        settings = settings_for(conn_home, server.base_url)
        client = CsdlTthcClient(SoapConnector(settings, "csdl_tthc", audit=audit))
        return server, client
    return make


def _count(engine, model) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_full_sync_stores_every_procedure_with_its_lists(catalogue_env, audit):
    server, client = catalogue_env(procedures=120)
    summary = sync_catalogue(audit.engine, client, full=True, retry=FAST_RETRY)
    assert summary.listed == 120
    assert summary.new + summary.quarantined == 120 and summary.quarantined == 0
    assert summary.changed == summary.unchanged == summary.removed == 0
    assert _count(audit.engine, Procedure) == 120
    assert _count(audit.engine, ProcedureVersion) == 120
    assert summary.agencies == _count(audit.engine, CatalogueAgency) > 0
    assert summary.fields == _count(audit.engine, CatalogueField) > 0
    assert sync_state(audit.engine).watermark is not None
    assert audit.verify().ok  # every exchange audited


def test_unchanged_upstream_writes_no_new_versions(catalogue_env, audit):
    _, client = catalogue_env(procedures=80)
    sync_catalogue(audit.engine, client, full=True, retry=FAST_RETRY)
    versions = _count(audit.engine, ProcedureVersion)
    full_again = sync_catalogue(audit.engine, client, full=True, retry=FAST_RETRY)
    assert full_again.unchanged == 80 and full_again.new == full_again.changed == 0
    incremental = sync_catalogue(audit.engine, client, retry=FAST_RETRY)
    assert incremental.new == incremental.changed == 0
    assert incremental.listed < 80  # only the safety-overlap window is re-read
    assert _count(audit.engine, ProcedureVersion) == versions


def test_vietnamese_text_is_kept_exactly(catalogue_env, audit):
    _, client = catalogue_env(procedures=60)
    sync_catalogue(audit.engine, client, full=True, retry=FAST_RETRY)
    rows = list_procedures(audit.engine, text="thủy sản")
    assert rows and all("thủy sản" in r.name.casefold() for r in rows)
    assert list_procedures(audit.engine, text="thuy san") == []  # diacritics are meaningful
    import unicodedata

    assert all(unicodedata.is_normalized("NFC", r.name) for r in list_procedures(audit.engine))


def test_transient_faults_are_retried_and_nothing_is_lost(catalogue_env, audit):
    _, client = catalogue_env(procedures=60, fail_rate=0.3, fault_seed=7)
    summary = sync_catalogue(audit.engine, client, full=True, retry=FAST_RETRY)
    assert summary.retries > 0
    assert summary.new == 60 and summary.quarantined == 0


class _CrashAfter:
    """Wraps a client so the sync dies (like kill -9 mid-run) after ``n`` procedure fetches."""

    def __init__(self, client, n):
        self.client, self.left = client, n

    def __getattr__(self, name):
        return getattr(self.client, name)

    def procedure_answer(self, code, **kw):
        if self.left <= 0:
            raise KeyboardInterrupt("simulated crash")
        self.left -= 1
        return self.client.procedure_answer(code, **kw)


def test_an_interrupted_sync_resumes_without_loss_or_duplicates(catalogue_env, audit):
    _, client = catalogue_env(procedures=100)
    with pytest.raises(KeyboardInterrupt):
        sync_catalogue(audit.engine, _CrashAfter(client, 65), full=True, batch_size=20, concurrency=1,
                       retry=FAST_RETRY)
    committed = _count(audit.engine, Procedure)
    assert committed == 60  # three whole batches; the fourth never committed
    mid_watermark = sync_state(audit.engine).watermark
    assert mid_watermark is not None
    summary = sync_catalogue(audit.engine, client, retry=FAST_RETRY)  # incremental resume from the watermark
    assert _count(audit.engine, Procedure) == 100
    with Session(audit.engine) as s:
        per_code = s.execute(select(ProcedureVersion.code, func.count()).group_by(ProcedureVersion.code)).all()
    assert all(n == 1 for _, n in per_code) and len(per_code) == 100
    assert summary.new == 40


class _Corrupting:
    """Makes the national record of one code unmappable (no TENTTHC), as a broken upstream would."""

    def __init__(self, client, code):
        self.client, self.code = client, code

    def __getattr__(self, name):
        return getattr(self.client, name)

    def procedure_answer(self, code, **kw):
        answer = self.client.procedure_answer(code, **kw)
        if code == self.code:
            del answer.result["ThuTuc"]["TENTTHC"]
        return answer


def test_a_bad_record_is_quarantined_with_its_bytes_and_the_rest_continues(catalogue_env, audit):
    _, client = catalogue_env(procedures=40)
    victim = client.list_page(1, 1).items[0].code
    summary = sync_catalogue(audit.engine, _Corrupting(client, victim), full=True, retry=FAST_RETRY)
    assert summary.quarantined == 1 and summary.new == 39
    with Session(audit.engine) as s:
        q = s.scalars(select(QuarantinedRecord)).one()
    assert q.record_key == victim and "TENTTHC" in q.reason
    assert q.raw and b"edXMLEnvelope" in q.raw  # the exact bytes received, for the investigation
    assert MappingError.__name__  # the reason comes from the mapping layer


def test_history_and_filters(catalogue_env, audit):
    _, client = catalogue_env(procedures=60)
    sync_catalogue(audit.engine, client, full=True, retry=FAST_RETRY)
    row, versions = procedure_history(audit.engine, list_procedures(audit.engine)[0].code)
    assert row is not None and [v.change_kind for v in versions] == ["new"]
    doc = json.loads(row.document)
    assert doc  # canonical record kept as JSON
    some_level = row.levels.split(",")[0]
    assert all(some_level in r.levels.split(",") for r in list_procedures(audit.engine, level=some_level))
    assert list_procedures(audit.engine, agency=row.publishing_agency)


@pytest.mark.slow
def test_incremental_sync_follows_what_changed_and_full_sync_finds_removals(catalogue_env, audit):
    server, client = catalogue_env(procedures=500, change_rate=0.02, add_rate=0.006, unpublish_rate=0.006,
                                   remove_rate=0.006)
    sync_catalogue(audit.engine, client, full=True, retry=FAST_RETRY, concurrency=4)
    server.advance_catalogue()
    expected = server.catalogue.changes(1)
    assert expected.changed and expected.added and expected.unpublished and expected.removed

    inc = sync_catalogue(audit.engine, client, retry=FAST_RETRY)
    # proportional to the change, not to the catalogue: what changed plus the few re-read in the overlap
    assert inc.listed - inc.unchanged == len(expected.listed)
    assert inc.unchanged <= 5
    assert inc.new == len(expected.added)
    assert inc.unpublished == len(expected.unpublished)
    assert inc.changed == len(expected.changed)
    assert inc.removed == 0  # a changed-since listing cannot show what is gone

    changed_code = expected.changed[0]
    row, versions = procedure_history(audit.engine, changed_code)
    assert [v.change_kind for v in versions] == ["new", "changed"]
    assert json.loads(versions[1].changes)  # readable lines of what changed
    unpublished = procedure_history(audit.engine, expected.unpublished[0])[0]
    assert unpublished.published is False  # kept, marked

    full = sync_catalogue(audit.engine, client, full=True, retry=FAST_RETRY)
    assert full.removed == len(expected.removed)
    gone, history = procedure_history(audit.engine, expected.removed[0])
    assert gone is not None and gone.removed_at is not None  # never deleted
    assert history[-1].change_kind == "removed"
    assert full.new == full.changed == 0
    assert expected.removed[0] not in {r.code for r in list_procedures(audit.engine)}
    assert expected.removed[0] in {r.code for r in list_procedures(audit.engine, include_removed=True)}


def test_fetching_in_worker_processes_gives_the_same_catalogue(conn_home, make_sandbox, tmp_path):
    """Processes fetch (each its own key load and connector), the parent alone writes the catalogue."""
    from functools import partial

    from lienthong.hub.audit import ledger
    from lienthong.hub.flows.catalogue import csdl_client
    from lienthong.hub.store import open_store

    server = make_sandbox(procedures=60)
    settings = settings_for(conn_home, server.base_url)
    from dataclasses import replace

    settings = replace(settings, db_url=f"sqlite:///{tmp_path / 'multi.db'}")
    store = open_store(settings)
    summary = sync_catalogue(store.engine, csdl_client(settings), full=True, processes=2, concurrency=2,
                             client_factory=partial(csdl_client, settings), batch_size=25, retry=FAST_RETRY)
    assert summary.listed == 60 and summary.new == 60 and summary.quarantined == 0
    assert _count(store.engine, ProcedureVersion) == 60
    report = ledger(store).verify()
    assert report.ok and report.checked >= 2 * 63  # every process appended to the one chain


def test_a_watermark_is_kept_with_its_endpoint_and_another_endpoint_needs_a_full_sync(catalogue_env, audit):
    from lienthong.hub.flows.catalogue import CatalogueEndpointChanged

    _, first = catalogue_env(procedures=60)
    sync_catalogue(audit.engine, first, retry=FAST_RETRY)
    assert sync_state(audit.engine).endpoint == first.endpoint
    # another national endpoint: its procedures changed before our watermark would never be read
    _, other = catalogue_env(procedures=90, seed=7)
    assert other.endpoint != first.endpoint
    with pytest.raises(CatalogueEndpointChanged) as refused:
        sync_catalogue(audit.engine, other, retry=FAST_RETRY)
    assert first.endpoint in str(refused.value) and other.endpoint in str(refused.value)
    assert "--full" in str(refused.value)
    full = sync_catalogue(audit.engine, other, full=True, retry=FAST_RETRY)
    assert full.listed == 90 and sync_state(audit.engine).endpoint == other.endpoint
    assert sync_catalogue(audit.engine, other, retry=FAST_RETRY).mode == "incremental"
