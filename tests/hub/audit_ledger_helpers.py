"""Shared recipe for the audit integrity tests (seals, archives, prune, tamper fixtures).

A plain module (conftest modules are not importable by name). Everything here is deterministic:
fixed times, fixed document ids, so the fixtures in tests/fixtures/audit_tamper/ are rebuilt
identically on every run, relative to the session's development PKI (times start just after its
certificates became valid, since signatures are checked at the time they were made).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from lienthong.connectors.soapframe import wrap_soap
from lienthong.hub.audit import AuditTrail
from lienthong.hub.settings import Settings
from lienthong.hub.store import make_engine, upgrade
from lienthong.signing import Signer, SigningIdentity, TrustStore, load_identity
from lienthong.signing.cli import signer_for, trust_store_for
from lienthong.signing.pki import create_ca, issue_certificate
from lxml import etree
from national_helpers import PASSWORD, settings_for

HUB = "000.00.00.G10"
NATIONAL = "000.00.00.G22"


@dataclass
class Ledger:
    settings: Settings
    trail: AuditTrail
    signer: Signer
    national: Signer
    trust: TrustStore
    #: a start time after both certificates became valid (signatures are checked at recorded times)
    t0: datetime

    @property
    def engine(self):
        return self.trail.engine

    @property
    def ca(self) -> Path:
        return self.settings.pki_dir / "ca.crt"


def ledger(conn_home: Path, db_url: str) -> Ledger:
    """A migrated store at ``db_url`` with the session's development PKI."""
    settings = settings_for(conn_home, None)
    settings = Settings(**{**settings.__dict__, "db_url": db_url})
    engine = make_engine(db_url)
    upgrade(engine)
    national = Signer(load_identity(conn_home / "pki" / "national.p12", PASSWORD))
    hub = signer_for(settings)
    valid_from = max(hub.identity.certificate.not_valid_before_utc, national.identity.certificate.not_valid_before_utc)
    t0 = (valid_from + timedelta(minutes=10)).replace(second=0, microsecond=0)
    if (t0 + timedelta(minutes=30)).date() != t0.date():
        # a day's exchanges must not straddle midnight: tests prune and export by calendar date
        t0 = (t0 + timedelta(minutes=30)).replace(hour=0, minute=5)
    return Ledger(settings, AuditTrail(engine), hub, national, trust_store_for(settings), t0)


def signed_message(signer: Signer, seq_hint: int, operation: str) -> bytes:
    """A small signed document in the hub's profile, framed in SOAP like real traffic."""
    root = etree.Element("{urn:lienthong:test}Message", nsmap={None: "urn:lienthong:test"})
    etree.SubElement(root, "{urn:lienthong:test}Operation").text = operation
    etree.SubElement(root, "{urn:lienthong:test}Number").text = str(seq_hint)
    etree.SubElement(root, "{urn:lienthong:test}Owner").text = "Nguyễn Văn An"
    return wrap_soap(signer.sign(root))


def exchange(led: Ledger, pairs: int, *, start: datetime | None = None, step: timedelta = timedelta(minutes=1),
             operation: str = "NhanHoSo") -> list[int]:
    """``pairs`` request/reply exchanges, signed by the hub and the national system in turn."""
    start = start or led.t0
    records = []
    for i in range(pairs):
        at = start + step * (2 * i)
        doc_id = f"DOC-{i:05d}"
        records.append(dict(direction="out", partner="dvc_portal", operation=operation,
                            raw=signed_message(led.signer, 2 * i, operation), outcome="sent", document_id=doc_id,
                            correlation_id=doc_id, from_agency=HUB, to_agency=NATIONAL, recorded_at=at))
        records.append(dict(direction="in", partner="dvc_portal", operation=operation,
                            raw=signed_message(led.national, 2 * i + 1, operation), outcome="ok",
                            document_id=f"RE-{i:05d}", correlation_id=doc_id, from_agency=NATIONAL, to_agency=HUB,
                            latency_ms=12.5 + i, recorded_at=at + step))
    return led.trail.record_many(records)


def foreign_signer(agency: str = HUB) -> Signer:
    """A key for the same agency code, certified by a CA nobody pinned."""
    ca = create_ca(common_name="Not the ministry's CA")
    issued = issue_certificate(ca, None, agency, common_name=f"Impostor {agency}")
    return Signer(SigningIdentity.from_objects(issued.private_key, issued.certificate, (ca.certificate,)))


def clock(led: Ledger, days: int = 1):
    """A fake ``now`` that advances one minute per call, from ``days`` after the ledger's start."""
    state = {"t": led.t0 + timedelta(days=days)}

    def now() -> datetime:
        state["t"] += timedelta(minutes=1)
        return state["t"]

    return now


def rehash_from(engine, seq: int, **changes) -> None:
    """Edit entry ``seq`` (``changes`` are column values) and recompute every hash after it and the
    head, as an insider with database access but without the hub key would: the chain alone then
    verifies."""
    import hashlib

    from lienthong.hub.audit import ENTRY_COLUMNS, entry_digest
    from lienthong.hub.store.models import AuditEntry, AuditHead
    from sqlalchemy import select, update

    log = AuditEntry.__table__
    with engine.begin() as conn:
        if changes:
            conn.execute(update(log).where(log.c.seq == seq).values(**changes))
        prev = conn.execute(select(log.c.prev_hash).where(log.c.seq == seq)).scalar_one()
        rows = conn.execute(select(log).where(log.c.seq >= seq).order_by(log.c.seq)).all()
        for row in rows:
            values = {column.name: getattr(row, column.name) for column in ENTRY_COLUMNS}
            new_hash = entry_digest(prev, **values, stored_body_sha256=hashlib.sha256(row.body).hexdigest())
            conn.execute(update(log).where(log.c.seq == row.seq).values(prev_hash=prev, entry_hash=new_hash))
            prev = new_hash
        conn.execute(update(AuditHead.__table__).values(last_hash=prev))


def resign(document: bytes, signer: Signer) -> bytes:
    """The same audit document (seal, tombstone, manifest) signed again by ``signer``."""
    from lienthong.hub.xmlsafe import parse_xml

    root = parse_xml(document, what="document")
    for sig in root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        root.remove(sig)
    return signer.sign(root)
