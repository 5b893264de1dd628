"""How fast can the IT centre re-verify the audit ledger: chain, seals, and an export archive?

1. Chain: writes N audit entries (default 100,000) of a realistic size into a fresh store, sealing
   the head every ``--seal-every`` entries (signed with a development hub key), then times
   ``AuditTrail.verify()`` (chain only) and ``verify_ledger()`` (chain + every seal's XML-DSig
   signature, chaining and sealed hash). Baseline in the same run: plain ``hashlib.sha256`` over
   the same stored bodies read with the same query, i.e. the floor for any verifier that must
   touch every entry. Target: 100,000 entries in under 5 s.
2. Archive: ``--messages`` (default 2,000) real signed messages (DongBoHoSoMC requests signed by
   the hub, the sandbox's signed replies, SOAP-framed as on the wire) are recorded, sealed and
   exported; ``verify_archive()`` re-checks everything offline, every message's signature
   included. Baseline: the hardened ``Verifier`` alone over the same messages.

Run: ``python benchmarks/bench_audit.py [--entries N] [--seal-every K] [--messages M] [--db-url URL]``
(default: a temporary SQLite file, and also PostgreSQL in a scratch database when
``LIENTHONG_TEST_PG_URL`` is set; ``--db-url`` measures that store only). Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchkit import fresh_store, machine_info
from lienthong.hub.audit import AuditRecord, AuditTrail
from lienthong.hub.store import make_engine, normalize_url
from lienthong.hub.store.models import AuditEntry
from sqlalchemy import select, text

PASSWORD = "bench-only-throwaway"


def _row(label: str, seconds: float, rate: str) -> None:
    print(f"  {label:56} {seconds:7.2f} s  {rate}")


def _pki(tmp: Path):
    from lienthong.signing import Signer, TrustStore, init_dev_pki, load_identity

    files = init_dev_pki(tmp / "pki", "000.00.00.G10", "000.00.00.G22", PASSWORD)
    hub = Signer(load_identity(files.hub_p12, PASSWORD))
    return files, hub, TrustStore.from_paths([files.ca_cert])


def bench_chain(url: str, entries: int, seal_every: int, hub, trust) -> None:
    from lienthong.hub.audit.seal import create_seal, verify_ledger

    engine = fresh_store(url)
    trail = AuditTrail(engine)
    body = ("<soap:Envelope>" + "Nguyễn Văn An, hồ sơ G09.20-20260609-0092637 " * 20).encode() + os.urandom(600)
    write_s = seal_s = 0.0
    seals = 0
    chunk = min(seal_every, 10_000)
    for start in range(0, entries, chunk):
        began = time.perf_counter()
        trail.record_many(
            AuditRecord(direction="out", partner="dvc_portal", operation="DongBoHoSoMC", raw=body + b"%d" % i,
                        outcome="sent", document_id=f"doc-{i:010d}", correlation_id=f"doc-{i:010d}",
                        from_agency="000.00.00.G10", to_agency="000.00.00.G22", latency_ms=12.5)
            for i in range(start, min(start + chunk, entries)))
        write_s += time.perf_counter() - began
        if min(start + chunk, entries) % seal_every == 0 or start + chunk >= entries:
            began = time.perf_counter()
            seals += create_seal(engine, hub).created
            seal_s += time.perf_counter() - began

    began = time.perf_counter()
    with engine.connect() as conn:
        for (stored,) in conn.execution_options(yield_per=2000).execute(select(AuditEntry.body)):
            hashlib.sha256(stored).digest()
    baseline_s = time.perf_counter() - began

    began = time.perf_counter()
    report = trail.verify()
    chain_s = time.perf_counter() - began
    assert report.ok and report.checked == entries, report

    began = time.perf_counter()
    ledger = verify_ledger(engine, trust, hub.agency_code)
    full_s = time.perf_counter() - began
    assert ledger.ok and ledger.seals == seals and ledger.unsealed == 0, ledger
    walk_s, every_s = (_time_seals(engine, trust, hub.agency_code, entries, every) for every in (False, True))

    print(f"== chain: {entries:,} entries of {len(body):,} bytes, a seal every {seal_every:,} ({seals} seals), "
          f"store {engine.url.render_as_string(hide_password=True).split('@')[-1]}")
    _row(f"recording (record_many, {chunk:,} per transaction)", write_s, f"{entries / write_s:10,.0f} entries/s")
    _row(f"sealing ({seals} seals)", seal_s, f"{seal_s / max(seals, 1) * 1000:10.1f} ms/seal")
    _row("baseline: read + SHA-256 every stored body", baseline_s, f"{entries / baseline_s:10,.0f} entries/s")
    _row("AuditTrail.verify() (chain only)", chain_s, f"{entries / chain_s:10,.0f} entries/s")
    _row(f"verify_ledger() (chain + {seals} seals)", full_s, f"{entries / full_s:10,.0f} entries/s")
    _row("  of which the seals: newest signature + SHA-256 walk", walk_s, f"{walk_s / max(seals, 1) * 1000:10.2f} ms/seal")
    _row("  the seals with every signature (audit verify --deep)", every_s,
         f"{every_s / max(seals, 1) * 1000:10.2f} ms/seal")
    print(f"  chain costs {chain_s / baseline_s:.1f}x the baseline; target 100,000 in < 5 s: "
          f"{'met' if full_s * 100_000 / entries < 5 else 'NOT met'}")
    engine.dispose()


def _time_seals(engine, trust, agency: str, entries: int, every: bool) -> float:
    """The seal part of verify_ledger() alone (the chain is timed on its own above)."""
    from lienthong.hub.audit.seal import _verify_seals

    began = time.perf_counter()
    result = _verify_seals(engine, trust, agency, start=1, anchor=None, head_seq=entries, check_timestamp=None,
                           all_signatures=every)
    assert result[3] is None, result
    return time.perf_counter() - began


def _signed_exchanges(files, hub, pairs: int) -> list[AuditRecord]:
    """``pairs`` DongBoHoSoMC requests signed by the hub and the sandbox's signed replies."""
    from lienthong.connectors.payload import element
    from lienthong.connectors.services import SERVICES
    from lienthong.connectors.soapframe import body_bytes, wrap_soap
    from lienthong.hub.envelope import Party, build_envelope
    from lienthong.sandbox.samples import _dossier
    from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer

    server = SandboxServer(SandboxConfig(store_path=MEMORY, pki_dir=files.ca_cert.parent, key_password=PASSWORD))
    me, national = Party("000.00.00.G10", "Bộ Nông nghiệp và Môi trường"), Party("000.00.00.G22", "Văn phòng Chính phủ")
    spec = SERVICES["dvc_portal"]
    records = []
    try:
        for i in range(pairs):
            dossier = _dossier()
            dossier["MaHoSo"] = f"000.00.04.G10-20261123-{i:07d}"
            payload = element(spec.namespace, "DongBoHoSoMC", {"isUpdating": False, "HoSo": [dossier]}, prefix="dvc")
            doc_id = f"G10-BENCH-{i:07d}"
            request = wrap_soap(hub.sign(build_envelope(sender=me, recipients=[national], subject="DongBoHoSoMC",
                                                        payload=payload, document_id=doc_id)))
            response = server.handle_soap(spec, "DongBoHoSoMC", request, base_url="http://localhost")
            if response.status != 200 or body_bytes(response.body) is None:
                raise RuntimeError(f"sandbox refused a benchmark request: {response.body[:400]!r}")
            records.append(AuditRecord(direction="out", partner="dvc_portal", operation="DongBoHoSoMC", raw=request,
                                       outcome="sent", document_id=doc_id, correlation_id=doc_id,
                                       from_agency=me.code, to_agency=national.code))
            records.append(AuditRecord(direction="in", partner="dvc_portal", operation="DongBoHoSoMC",
                                       raw=response.body, outcome="ok", correlation_id=doc_id,
                                       from_agency=national.code, to_agency=me.code, latency_ms=20.0))
    finally:
        server.close()
    return records


def bench_archive(tmp: Path, messages: int, files, hub, trust) -> None:
    from lienthong.hub.audit.archive import _message_root, export_archive, verify_archive
    from lienthong.hub.audit.seal import create_seal
    from lienthong.signing import Verifier

    engine = fresh_store(f"sqlite:///{tmp / 'archive.db'}")
    trail = AuditTrail(engine)
    began = time.perf_counter()
    records = _signed_exchanges(files, hub, messages // 2)
    make_s = time.perf_counter() - began
    trail.record_many(records)
    create_seal(engine, hub)
    out = tmp / "export.zip"
    began = time.perf_counter()
    export_archive(engine, hub, out, ca_paths=[files.ca_cert])
    export_s = time.perf_counter() - began

    raws = [r.raw for r in records]
    began = time.perf_counter()
    for raw in raws:
        Verifier(trust).verify(_message_root(raw, "message"))
    baseline_s = time.perf_counter() - began

    began = time.perf_counter()
    structure = verify_archive(out, files.ca_cert, check_signatures=False)
    structure_s = time.perf_counter() - began
    began = time.perf_counter()
    report = verify_archive(out, files.ca_cert)
    full_s = time.perf_counter() - began
    assert report.signatures_verified == len(records) == structure.entries, report

    n = len(records)
    print(f"== archive: {n:,} real signed messages (DongBoHoSoMC requests + sandbox replies, "
          f"{sum(map(len, raws)) / n:,.0f} bytes on average), {out.stat().st_size / 1e6:.1f} MB zip")
    _row("making the messages (sign + sandbox verify/sign)", make_s, "")
    _row("audit export", export_s, f"{n / export_s:10,.0f} messages/s")
    _row("baseline: Verifier.verify() alone per message", baseline_s, f"{n / baseline_s:10,.0f} messages/s")
    _row("verify_archive() without message signatures", structure_s, f"{n / structure_s:10,.0f} messages/s")
    _row("verify_archive() full re-verification", full_s,
         f"{n / full_s:10,.0f} messages/s ({full_s / baseline_s:.2f}x the baseline)")
    engine.dispose()


def _pg_scratch(admin_url: str) -> tuple[str, callable]:
    """A fresh database next to ``admin_url`` and a function dropping it."""
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"lienthong_bench_audit_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return normalize_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--seal-every", type=int, default=1_000, help="entries between seals (default 1,000)")
    ap.add_argument("--messages", type=int, default=2_000, help="signed messages in the export (default 2,000)")
    ap.add_argument("--db-url", default=None, help="measure the chain on this store only (a scratch database)")
    args = ap.parse_args()

    print("== machine")
    for key, value in machine_info().items():
        print(f"  {key:22} {value}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    files, hub, trust = _pki(tmp)
    if args.db_url:
        bench_chain(args.db_url, args.entries, args.seal_every, hub, trust)
    else:
        bench_chain(f"sqlite:///{tmp / 'audit.db'}", args.entries, args.seal_every, hub, trust)
        pg = os.environ.get("LIENTHONG_TEST_PG_URL")
        if pg:
            url, drop = _pg_scratch(pg)
            try:
                bench_chain(url, args.entries, args.seal_every, hub, trust)
            finally:
                drop()
    if args.messages:
        bench_archive(tmp, args.messages, files, hub, trust)
    return 0


if __name__ == "__main__":
    sys.exit(main())
