"""Helpers of the source-identity tests: one-stop databases of distinct agencies, and what the hub
must hold after reading them (every current row, mapped, exactly once)."""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

from lienthong.hub.delivery.outbox import canonical_json
from lienthong.hub.store.models import AuditEntry, OutboxEvent
from lienthong.mappings.dossier import DossierMapping
from lienthong.sandbox.onestop import OneStopDatabase, OneStopSimulator
from sqlalchemy import select
from sqlalchemy.orm import Session


@cache
def mapping() -> DossierMapping:
    return DossierMapping.shipped("onestop_sandbox")


@cache
def agency_codes(count: int = 4) -> tuple[str, ...]:
    """Agencies of the sandbox catalogue that handle published procedures (in-memory probe)."""
    sim = OneStopSimulator("sqlite://", seed=1, agencies=count, procedures=count * 3)
    try:
        return sim.agencies
    finally:
        sim.close()


def agency_db(path: Path, agency: int, *, seed: int, dossiers: int = 0) -> str:
    """A one-stop database of one agency (``agency`` indexes :func:`agency_codes`), populated."""
    url = f"sqlite:///{path}"
    sim = OneStopSimulator(url, seed=seed, agencies=[agency_codes()[agency]], procedures=6)
    try:
        if dossiers:
            sim.populate(dossiers)
    finally:
        sim.close()
    return url


def advance(url: str, agency: int, *, seed: int, changes: int) -> None:
    sim = OneStopSimulator(url, seed=seed, agencies=[agency_codes()[agency]], procedures=6)
    try:
        sim.advance(changes)
    finally:
        sim.close()


def rows(url: str) -> tuple[list[dict], list[dict]]:
    with OneStopDatabase(url, create=False) as db:
        return db.dossiers(), db.steps()


def expected(url: str) -> set[tuple[str, str]]:
    """(kind, canonical payload) of every row the database holds now, mapped."""
    dossiers, steps = rows(url)
    m = mapping()
    return ({("dossier", canonical_json(m.map_dossier(r).payload)) for r in dossiers}
            | {("step", canonical_json(m.map_step(r).payload)) for r in steps})


def change_count(url: str) -> int:
    dossiers, steps = rows(url)
    return len(dossiers) + len(steps)


def outbox(engine) -> list[tuple[str, str, str]]:
    """(kind, payload, idempotency key) of every outbox event, in order."""
    with Session(engine) as s:
        return [(k, p, key) for k, p, key in s.execute(
            select(OutboxEvent.kind, OutboxEvent.payload, OutboxEvent.idempotency_key).order_by(OutboxEvent.id))]


def assert_each_once(engine, *urls: str) -> None:
    """Every current row of every database is an outbox event, and no change is one twice."""
    events = outbox(engine)
    contents = [(k, p) for k, p, _ in events]
    assert len(contents) == len(set(contents)), "a change was enqueued twice"
    held = set(contents)
    for url in urls:
        missing = expected(url) - held
        assert not missing, f"{len(missing)} change(s) of {url} never reached the outbox, e.g. {sorted(missing)[:1]}"


def copy_db(source: Path, target: Path) -> None:
    """A file copy of a SQLite one-stop database (a backup, a replica); no writer is running."""
    for suffix in ("-wal", "-shm"):
        stale = target.with_name(target.name + suffix)
        if stale.exists():
            stale.unlink()
    shutil.copyfile(source, target)


def payload_field(payload: str, name: str):
    return json.loads(payload).get(name)


def audit_entries(engine, operation: str) -> list[int]:
    """The seqs of the audit entries of ``operation``."""
    with Session(engine) as s:
        return list(s.scalars(select(AuditEntry.seq).where(AuditEntry.operation == operation).order_by(AuditEntry.seq)))
