"""How fast can the IT centre find the messages about one dossier in a large ledger?

Writes N audit entries (default 100,000) into a fresh store: real signed national messages (the
generated ``schemas/samples``, framed in SOAP as the connectors frame them) with their dossier
codes varied so that each dossier appears in about eight entries, as in production (a sync, its
steps, a lookup, a final sync, requests and replies). Then it times:

* **indexing**: :func:`lienthong.hub.audit.query.update_index` over the whole ledger (inflate,
  hardened parse, extract ``MaHoSo``/``MaTTHC``, insert), in entries/s; and the catch-up cost a
  search pays after 1,000 new entries;
* **search by dossier**: ``search(SearchQuery(dossier=...))`` for random dossiers, p50/p95 in ms,
  including the check that the index is up to date; and the full dossier timeline (which parses
  the entries it shows).

Baselines in the same run: the parse floor (inflate + ``parse_xml`` of every body, no database
writes) for the indexing rate; for the search, the obvious way without an index (inflate every
body and look for the code, one full scan) and a lookup on an indexed column (``--document``).

Run: ``python benchmarks/bench_audit_query.py [--entries N] [--db-url URL]`` (default: a temporary
SQLite file; pass the URL of a scratch PostgreSQL database to measure PostgreSQL). Not a test.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import fresh_store, machine_info  # noqa: E402
from lienthong.connectors.services import schemas_dir  # noqa: E402
from lienthong.connectors.soapframe import wrap_soap  # noqa: E402
from lienthong.hub.audit import AuditRecord, AuditTrail  # noqa: E402
from lienthong.hub.audit.query import SearchQuery, dossier_timeline, search, update_index  # noqa: E402
from lienthong.hub.store.models import AuditEntry  # noqa: E402
from lienthong.hub.xmlsafe import parse_xml  # noqa: E402
from sqlalchemy import select  # noqa: E402

SAMPLE_DOSSIER = b"000.00.04.G10-20260609-0000123"
SAMPLE_DOSSIER_2 = b"000.00.04.G10-20260528-0000087"
#: one exchange pattern per dossier pair: (partner, operation, direction, sample file)
PATTERN = [
    ("dvc_portal", "DongBoHoSoMC", "out", "dvc_portal.DongBoHoSoMC.request.xml"),
    ("dvc_portal", "DongBoHoSoMC", "in", "dvc_portal.DongBoHoSoMC.response.xml"),
    ("dvc_portal", "CapNhatTienDoHoSoMC", "out", "dvc_portal.CapNhatTienDoHoSoMC.request.xml"),
    ("dvc_portal", "CapNhatTienDoHoSoMC", "in", "dvc_portal.CapNhatTienDoHoSoMC.response.xml"),
    ("dvc_portal", "TraCuuHoSo", "out", "dvc_portal.TraCuuHoSo.request.xml"),
    ("dvc_portal", "TraCuuHoSo", "in", "dvc_portal.TraCuuHoSo.response.xml"),
    ("csdl_tthc", "LayThuTuc", "out", "csdl_tthc.LayThuTuc.request.xml"),
    ("csdl_tthc", "LayThuTuc", "in", "csdl_tthc.LayThuTuc.response.xml"),
]


def dossier_code(n: int) -> bytes:
    return b"000.00.04.G10-20261120-%07d" % n


def build_ledger(trail: AuditTrail, entries: int) -> tuple[int, float, int]:
    """Record ``entries`` entries; return (dossiers, seconds, mean body size)."""
    samples = [(p, o, d, wrap_soap((schemas_dir() / "samples" / f).read_bytes())) for p, o, d, f in PATTERN]
    rounds = -(-entries // len(samples))
    began = time.perf_counter()
    batch: list[AuditRecord] = []
    sizes = 0
    written = 0
    for r in range(rounds):
        # two dossiers per round (the samples carry two), each in 2 rounds -> ~8 entries per dossier
        first, second = dossier_code(r), dossier_code(r + 1)
        for partner, operation, direction, body in samples:
            if written == entries:
                break
            raw = body.replace(SAMPLE_DOSSIER, first).replace(SAMPLE_DOSSIER_2, second)
            doc = f"doc-{r:08d}-{operation}"
            batch.append(AuditRecord(direction=direction, partner=partner, operation=operation, raw=raw,
                                     outcome="sent" if direction == "out" else "ok", document_id=doc,
                                     correlation_id=doc, latency_ms=None if direction == "out" else 12.5))
            sizes += len(raw)
            written += 1
        if len(batch) >= 10_000:
            trail.record_many(batch)
            batch = []
    if batch:
        trail.record_many(batch)
    return rounds + 1, time.perf_counter() - began, sizes // max(written, 1)


def parse_floor(engine) -> float:
    began = time.perf_counter()
    with engine.connect() as conn:
        for stored, in conn.execution_options(yield_per=2000).execute(select(AuditEntry.body)):
            parse_xml(zlib.decompress(stored))
    return time.perf_counter() - began


def naive_search(engine, code: bytes) -> tuple[float, int]:
    began = time.perf_counter()
    found = 0
    with engine.connect() as conn:
        for stored, in conn.execution_options(yield_per=2000).execute(select(AuditEntry.body)):
            if code in zlib.decompress(stored):
                found += 1
    return time.perf_counter() - began, found


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        out.append((time.perf_counter() - began) * 1000.0)
    return out


def pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-p * len(ordered) // 100) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--db-url", default=None)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-audit-query-")
    url = args.db_url or f"sqlite:///{tmp}/audit.db"
    engine = fresh_store(url)  # a scratch PostgreSQL database starts from empty tables
    trail = AuditTrail(engine)

    print("== machine")
    for key, value in machine_info().items():
        print(f"  {key:22} {value}")
    print(f"  store {engine.url.render_as_string(hide_password=True).split('@')[-1]}")
    print(f"  run at {datetime.now(UTC).isoformat(timespec='seconds')}")

    dossiers, write_s, mean_size = build_ledger(trail, args.entries)
    print(f"== ledger: {args.entries:,} entries (real signed samples, mean {mean_size:,} bytes), ~{dossiers:,} dossiers")
    print(f"  recording (record_many, 10k per transaction)   {write_s:7.2f} s")

    floor_s = parse_floor(engine)
    began = time.perf_counter()
    report = update_index(engine)
    index_s = time.perf_counter() - began
    assert report.indexed == args.entries and report.unparsed == 0, report
    print("== indexing (derived subject index, MaHoSo/MaTTHC)")
    print(f"  baseline: inflate + parse_xml every body        {floor_s:7.2f} s  {args.entries / floor_s:10,.0f} entries/s")
    print(f"  update_index() over the whole ledger            {index_s:7.2f} s  {args.entries / index_s:10,.0f} entries/s"
          f"  ({report.subjects:,} index rows, {index_s / floor_s:.2f}x the parse floor)")

    rng = random.Random(7)
    codes = [dossier_code(rng.randrange(1, dossiers - 1)).decode() for _ in range(args.searches)]
    counts: list[int] = []

    pending = iter(codes)

    def one_search():
        counts.append(len(search(engine, SearchQuery(dossier=next(pending), limit=None))))

    search_ms = timed(one_search, args.searches)
    some_doc = codes[0]
    with engine.connect() as conn:
        document = conn.execute(select(AuditEntry.document_id).where(AuditEntry.seq == args.entries // 2)).scalar_one()
    doc_ms = timed(lambda: search(engine, SearchQuery(document=document, limit=None)), args.searches)
    timeline_ms = timed(lambda: dossier_timeline(engine, some_doc), 20)
    naive_s, naive_found = naive_search(engine, some_doc.encode())

    # catch-up: 1,000 new entries, then the next search indexes them first
    build_more = [AuditRecord(direction="out", partner="dvc_portal", operation="TraCuuHoSo", outcome="sent",
                              raw=wrap_soap((schemas_dir() / "samples" / "dvc_portal.TraCuuHoSo.request.xml")
                                            .read_bytes()).replace(SAMPLE_DOSSIER, dossier_code(i)))
                  for i in range(1000)]
    trail.record_many(build_more)
    began = time.perf_counter()
    search(engine, SearchQuery(dossier=some_doc))
    catch_up_ms = (time.perf_counter() - began) * 1000.0

    print(f"== search by dossier over {args.entries:,} entries ({args.searches} random dossiers, "
          f"{statistics.mean(counts):.1f} entries found on average)")
    print(f"  search(dossier=...)  p50 {pct(search_ms, 50):7.2f} ms  p95 {pct(search_ms, 95):7.2f} ms")
    print(f"  baseline: indexed column (DocumentId)  p50 {pct(doc_ms, 50):7.2f} ms  p95 {pct(doc_ms, 95):7.2f} ms")
    print(f"  baseline: no index (inflate every body, find the code)  {naive_s * 1000:9.0f} ms "
          f"({naive_found} found)")
    print(f"  dossier timeline (search + parse of its entries)  p50 {pct(timeline_ms, 50):7.2f} ms")
    print(f"  first search after 1,000 new entries (indexes them first)  {catch_up_ms:7.1f} ms")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
