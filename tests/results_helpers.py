"""Helpers for the digitised-results tests: a one-stop system with result files, a hub that
takes them in, and pushes that run the status and the results workers until nothing moves."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lienthong.connectors.csdl_tthc import CsdlTthcClient
from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.soap import SoapConnector
from lienthong.connectors.sources.result_files import ResultFiles
from lienthong.connectors.sources.sql import SqlSource
from lienthong.hub.audit import AuditTrail
from lienthong.hub.delivery.engine import RESULT_KINDS, STATUS_KINDS, deliver_once
from lienthong.hub.delivery.retry import RetryPolicy
from lienthong.hub.delivery.uploads import ResultUploader
from lienthong.hub.flows.catalogue import sync_catalogue
from lienthong.hub.flows.intake import intake_once
from lienthong.hub.store.models import OutboxEvent
from lienthong.mappings.dossier import DossierMapping
from lienthong.sandbox.catalogue import Catalogue
from lienthong.sandbox.onestop import OneStopSimulator
from national_helpers import settings_for
from sqlalchemy import select

CATALOGUE_SIZE = 20
FAST = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=8.0, jitter=0.0, max_attempts=6)


class Clock:
    def __init__(self) -> None:
        # a second ahead: what the intake enqueued just now (with microseconds) is due
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def onestop(path: Path, *, dossiers: int = 30, changes: int = 300, seed: int = 3) -> OneStopSimulator:
    """A one-stop database of ``dossiers`` that lived ``changes`` changes (many reach 9/10)."""
    sim = OneStopSimulator(f"sqlite:///{path}", seed=seed, agencies=2, procedures=CATALOGUE_SIZE,
                           catalogue=Catalogue(CATALOGUE_SIZE, seed=1), arrivals_per_day=5)
    sim.populate(dossiers)
    sim.advance(changes)
    return sim


def mapping(engine=None) -> DossierMapping:
    from lienthong.hub.flows.intake import load_source_mapping

    return load_source_mapping("onestop_sandbox", engine) if engine is not None else DossierMapping.shipped(
        "onestop_sandbox")


def take_in(engine, onestop_url: str):
    with SqlSource(onestop_url, mapping(engine)) as source:
        return intake_once(engine, source)


def portal(engine, conn_home: Path, sandbox, **settings) -> DvcPortalClient:
    return DvcPortalClient(SoapConnector(settings_for(conn_home, sandbox.base_url, **settings), "dvc_portal",
                                         audit=AuditTrail(engine)))


def sync(engine, conn_home: Path, sandbox) -> None:
    client = CsdlTthcClient(SoapConnector(settings_for(conn_home, sandbox.base_url), "csdl_tthc",
                                          audit=AuditTrail(engine)))
    sync_catalogue(engine, client, full=True)


def uploader(engine, client: DvcPortalClient, root: Path, spool: Path, **kw) -> ResultUploader:
    return ResultUploader(engine, client, ResultFiles(root, spool=spool), **kw)


def push_all(engine, client: DvcPortalClient, up: ResultUploader, clock: Clock, *, passes: int = 80,
             policy: RetryPolicy = FAST) -> list:
    """Status and results workers in turn, the clock moved past backoffs, until neither claims."""
    summaries = []
    for _ in range(passes):
        status = deliver_once(engine, client, worker_id="status", policy=policy, clock=clock, kinds=STATUS_KINDS)
        results = deliver_once(engine, client, worker_id="results", policy=policy, clock=clock, kinds=RESULT_KINDS,
                               uploader=up, per_partition=1)
        summaries += [status, results]
        if status.claimed == 0 and results.claimed == 0 and not status.stopped and not results.stopped:
            return summaries
        clock.advance(10)
    raise AssertionError(f"outbox not drained after {passes} passes: {states(engine)}")


def states(engine, kind: str | None = None) -> Counter:
    query = select(OutboxEvent.state)
    if kind:
        query = query.where(OutboxEvent.kind == kind)
    with engine.connect() as conn:
        return Counter(conn.execute(query).scalars())


def accepted_snapshots(sandbox, ma: str) -> list[dict]:
    return [e.data for e in sandbox.store.dossier_history(ma) if e.kind == "HoSo" and e.accepted]
