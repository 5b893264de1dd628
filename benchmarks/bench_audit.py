"""How fast can the IT centre re-verify the audit chain?

Writes N audit entries (default 100,000) of a realistic size into a fresh store, then times
``AuditTrail.verify()`` over all of them. Baseline in the same run: plain ``hashlib.sha256`` over
the same stored bodies read with the same query, i.e. the floor for any verifier that must touch
every entry. The target for the hub is 100,000 entries in under 5 s.

Run: ``python benchmarks/bench_audit.py [--entries N] [--db-url URL]`` (default: a temporary SQLite
file; pass the PostgreSQL URL of a scratch database to measure PostgreSQL). Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import tempfile
import time
from pathlib import Path

from lienthong.hub.audit import AuditRecord, AuditTrail
from lienthong.hub.models import AuditEntry, Base
from lienthong.hub.store import make_engine, upgrade
from sqlalchemy import select, text


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--db-url", default=None)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-audit-")
    url = args.db_url or f"sqlite:///{tmp}/audit.db"
    engine = make_engine(url)
    if args.db_url:  # a scratch database: start from empty tables
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(engine)
    trail = AuditTrail(engine)

    body = ("<soap:Envelope>" + "Nguyễn Văn An, hồ sơ G09.20-20260609-0092637 " * 20).encode() + os.urandom(600)
    began = time.perf_counter()
    for start in range(0, args.entries, 10_000):
        trail.record_many(
            AuditRecord(direction="out", partner="dvc_portal", operation="DongBoHoSoMC", raw=body + b"%d" % i,
                        outcome="sent", document_id=f"doc-{i:010d}", correlation_id=f"doc-{i:010d}",
                        from_agency="000.00.00.G10", to_agency="000.00.00.G22", latency_ms=12.5)
            for i in range(start, min(start + 10_000, args.entries)))
    write_s = time.perf_counter() - began

    began = time.perf_counter()
    with engine.connect() as conn:
        for (stored,) in conn.execution_options(yield_per=2000).execute(select(AuditEntry.body)):
            hashlib.sha256(stored).digest()
    baseline_s = time.perf_counter() - began

    began = time.perf_counter()
    report = trail.verify()
    verify_s = time.perf_counter() - began
    assert report.ok and report.checked == args.entries, report

    print("== machine")
    print(f"  {platform.platform()} | {_cpu()} | {os.cpu_count()} cores | Python {platform.python_version()}")
    print(f"  store {engine.url.render_as_string(hide_password=True).split('@')[-1]}")
    print(f"== {args.entries:,} entries of {len(body):,} bytes")
    print(f"  recording (record_many, 10k per transaction)  {write_s:7.2f} s  {args.entries / write_s:10,.0f} entries/s")
    print(f"  baseline: read + SHA-256 every stored body    {baseline_s:7.2f} s  {args.entries / baseline_s:10,.0f} entries/s")
    print(f"  AuditTrail.verify()                           {verify_s:7.2f} s  {args.entries / verify_s:10,.0f} entries/s")
    print(f"  verify costs {verify_s / baseline_s:.1f}x the baseline; target 100,000 in < 5 s: "
          f"{'met' if verify_s * 100_000 / args.entries < 5 else 'NOT met'}")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
