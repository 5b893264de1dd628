"""Dossier status push, end to end: events per second from a change in the one-stop system to the
national portal's acknowledgement.

Every piece is the real one: the synthetic one-stop database (``OneStopSimulator``, SQLite) is
read by ``SqlSource`` through the shipped ``onestop_sandbox`` mapping; ``intake_once`` writes the
mapped changes to the outbox (with the intake cursor, one transaction per batch); ``deliver_once``
claims them and pushes them through ``DvcPortalClient`` / ``SoapConnector`` (build, XSD-validate,
sign, audit, POST, verify the signed reply) to the sandbox portal, started as a separate process
(``python -m lienthong.sandbox``) with a development PKI made for the run. An event counts once the
portal has acknowledged it (``MaLoi`` 0) and the outbox has marked it delivered.

Sections printed:

* **machine**, and the raw RSA-2048 PKCS#1 v1.5 / SHA-256 sign rate measured in this run: at batch
  size 1 every event is its own signed message, so that rate is the ceiling for batch size 1 (the
  hub also signs the ``TraCuuHoSo`` lookups that decide ``isUpdating``, so it cannot even reach it);
* **intake**: changes per second from the one-stop database into the outbox;
* **delivery** at batch sizes 1, 10 and 100 (``--batches``): a fresh hub store per batch size,
  the same one-stop database, hence the same events; ``deliver_once`` called until a pass claims
  nothing. Events/s, messages, lookups, dead letters, CPU of the hub and of the sandbox;
* **freshness** p50/p95 from ``lienthong.hub.outbox.stats`` after each run. ``source_changed_at``
  is the one-stop system's own (simulated) time of the change; the simulation is placed so that
  its history ends shortly before the run, so the figure is mostly the age of that history (a
  backlog), not the hub's latency. The hub's own part (outbox enqueue to acknowledgement) is
  printed beside it;
* **targets**: >= 5,000 events/s at batch 100; a 200,000-event backlog drained in < 60 s
  (extrapolated from the batch-100 rate unless ``--events`` is at least 200,000).

Run: ``python benchmarks/bench_push.py [--events 5000] [--batches 1,10,100] [--db-url URL]``.
``--db-url`` names a scratch PostgreSQL database for the hub store: its hub tables are dropped and
recreated for every batch size. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchkit import SandboxProcess, load_average, machine_info
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import Engine, select, text

HUB_AGENCY = "000.00.00.G10"
NATIONAL_AGENCY = "000.00.00.G22"
TARGET_RATE = 5_000.0
BACKLOG = 200_000
BACKLOG_SECONDS = 60.0
SEED = 11


# ------------------------------------------------------------------------------------------------
# machine
# ------------------------------------------------------------------------------------------------
def machine_lines() -> list[str]:
    info = machine_info()
    return [f"{key:10} {value}" for key, value in info.items()]


# ------------------------------------------------------------------------------------------------
# pieces
# ------------------------------------------------------------------------------------------------
def rsa_sign_rate(identity: Any, seconds: float = 1.5) -> float:
    """Raw RSA-2048 PKCS#1 v1.5 / SHA-256 signatures per second over a ~2 KB message."""
    key = identity.private_key
    message = os.urandom(2048)
    for _ in range(20):
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for _ in range(20):
            key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        n += 20
    return n / elapsed


def build_onestop(path: Path, events: int) -> tuple[Any, dict[str, Any]]:
    """A one-stop database whose full read yields about ``events`` changes (dossiers + steps).

    The simulation is placed in time so that its last change lands shortly before now: a dry run
    from the default start measures the span, the real run starts that long (plus 10%) ago."""
    from lienthong.sandbox.onestop import OneStopSimulator

    def grow(sim: OneStopSimulator) -> None:
        while (have := sim.total_dossiers + sim.total_changes) < events:
            sim.advance(max(1, (events - have) // 2))

    dry_path = path.with_suffix(".dry.db")
    dry = OneStopSimulator(f"sqlite:///{dry_path}", seed=SEED)
    began = dry.clock
    grow(dry)
    span = dry.clock - began
    dry.close()
    dry_path.unlink(missing_ok=True)

    start = datetime.now(UTC) - span * 1.1 - timedelta(minutes=5)
    sim = OneStopSimulator(f"sqlite:///{path}", seed=SEED, start=start)
    t0 = time.perf_counter()
    grow(sim)
    info = {"dossiers": sim.total_dossiers, "steps": sim.total_changes, "seconds": time.perf_counter() - t0,
            "first": start, "last": sim.clock}
    return sim, info


def fresh_store(db_url: str) -> Engine:
    from lienthong.hub.models import Base
    from lienthong.hub.store import make_engine, upgrade

    engine = make_engine(db_url)
    if engine.dialect.name == "postgresql":  # a scratch database: start empty every time
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(engine)
    return engine


def intake(engine: Engine, onestop_engine: Engine) -> dict[str, Any]:
    from lienthong.connectors.sources.sql import SqlSource
    from lienthong.hub.intake import intake_once
    from lienthong.mappings.dossier import DossierMapping

    mapping = DossierMapping.shipped("onestop_sandbox")
    t0 = time.perf_counter()
    with SqlSource(onestop_engine, mapping) as source:
        summary = intake_once(engine, source)
    seconds = time.perf_counter() - t0
    return {"read": summary.read, "enqueued": summary.enqueued, "dead": summary.dead_lettered,
            "batches": summary.batches, "seconds": seconds, "rate": summary.read / seconds if seconds else 0.0}


def deliver(engine: Engine, settings: Any, batch_size: int, sandbox: SandboxProcess,
            worker_id: str) -> dict[str, Any]:
    """``deliver_once`` until a pass claims nothing; events/s counted on what was delivered."""
    from lienthong.connectors.dvc_portal import DvcPortalClient
    from lienthong.connectors.soap import SoapConnector
    from lienthong.hub.audit import AuditTrail
    from lienthong.hub.delivery import deliver_once

    portal = DvcPortalClient(SoapConnector(settings, "dvc_portal", audit=AuditTrail(engine)))
    totals = dict.fromkeys(("passes", "claimed", "delivered", "retried", "dead", "released", "lost",
                            "messages", "lookups"), 0)
    reasons: dict[str, int] = {}
    stopped = None
    sb0, cpu0, t0 = sandbox.cpu_seconds(), time.process_time(), time.perf_counter()
    while True:
        summary = deliver_once(engine, portal, worker_id=worker_id, batch_size=batch_size)
        if summary.claimed == 0:
            stopped = summary.stopped
            break
        totals["passes"] += 1
        for key in totals:
            if key != "passes":
                totals[key] += getattr(summary, key)
        for code, count in summary.dead_reasons.items():
            reasons[code] = reasons.get(code, 0) + count
        if summary.stopped:
            stopped = summary.stopped
            break
    wall = time.perf_counter() - t0
    totals.update(seconds=wall, rate=totals["delivered"] / wall if wall else 0.0,
                  hub_cpu=time.process_time() - cpu0, sandbox_cpu=sandbox.cpu_seconds() - sb0,
                  reasons=reasons, stopped=stopped)
    return totals


def hub_latency(engine: Engine) -> tuple[float | None, float | None]:
    """p50/p95 seconds from outbox enqueue (``created_at``) to acknowledgement (``delivered_at``)."""
    from lienthong.hub.models import OutboxEvent

    with engine.connect() as conn:
        rows = conn.execute(select(OutboxEvent.created_at, OutboxEvent.delivered_at)
                            .where(OutboxEvent.state == "delivered")).all()
    ages = sorted((d - c).total_seconds() for c, d in rows if c is not None and d is not None)
    if not ages:
        return None, None
    return statistics.median(ages), ages[min(len(ages) - 1, int(0.95 * len(ages)))]


def human(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000,
                        help="outbox events to push (dossier snapshots + steps, about; default 5000)")
    parser.add_argument("--batches", default="1,10,100", help="DongBoHoSoMC/CapNhatTienDoHoSoMC batch sizes")
    parser.add_argument("--db-url", default=None,
                        help="hub store (default a fresh temporary SQLite file per batch size); a scratch "
                             "PostgreSQL database has its hub tables dropped and recreated for each")
    parser.add_argument("--procedures", type=int, default=300,
                        help="sandbox catalogue size (must cover the simulator's catalogue: default 300)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if args.events < 10 or not batches or any(b < 1 for b in batches):
        parser.error("--events must be >= 10 and batch sizes >= 1")

    print("== machine")
    for line in machine_lines():
        print(f"  {line}")

    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        password = os.urandom(16).hex()
        from lienthong.signing.keys import load_identity
        from lienthong.signing.pki import init_dev_pki

        init_dev_pki(home / "pki", HUB_AGENCY, NATIONAL_AGENCY, password)
        os.environ.update(LIENTHONG_HOME=str(home), LIENTHONG_KEY_PASSWORD=password)
        from lienthong.hub.outbox import stats
        from lienthong.hub.settings import Settings

        identity = load_identity(Settings.from_env().signing_key_path, password.encode())
        sign_rate = rsa_sign_rate(identity)
        sim, info = build_onestop(tmp / "onestop.db", args.events)
        total = info["dossiers"] + info["steps"]
        if args.db_url:
            probe = fresh_store(args.db_url)
            store_label = probe.url.render_as_string(hide_password=True) + " (hub tables recreated per batch size)"
            probe.dispose()
        else:
            store_label = "SQLite file (WAL), a fresh one per batch size"
        # warm-up: imports, mapping load, statement caches, so the measured intakes are steady state
        warm = fresh_store(f"sqlite:///{tmp / 'warm-up.db'}")
        intake(warm, sim.db.engine)
        warm.dispose()
        print("== setup")
        print(f"  sandbox     own process per batch size (fresh in-memory portal each time), "
              f"{args.procedures} procedures")
        print(f"  hub store   {store_label}")
        print(f"  one-stop    SQLite, {info['dossiers']:,} dossiers + {info['steps']:,} steps = {total:,} changes "
              f"(simulated {info['first']:%Y-%m-%d %H:%M} .. {info['last']:%Y-%m-%d %H:%M} UTC; "
              f"generated in {info['seconds']:.1f} s)")
        print(f"  RSA-2048 sign (PKCS#1 v1.5, SHA-256, cryptography): {sign_rate:,.0f}/s "
              f"= ceiling for batch size 1 (one signature per event)")
        sys.stdout.flush()

        runs: list[tuple[int, dict[str, Any], dict[str, Any], Any, tuple]] = []
        try:
            for batch in batches:
                # a fresh portal per batch size: the same events must meet a portal that has never
                # seen these dossiers, or the second run's first snapshots would be out of order
                sandbox = SandboxProcess(home, password, args.procedures)
                try:
                    os.environ["LIENTHONG_DVC_URL"] = f"{sandbox.base_url}/dvc"
                    settings = Settings.from_env()
                    url = args.db_url or f"sqlite:///{tmp / f'hub-b{batch}.db'}"
                    engine = fresh_store(url)
                    taken = intake(engine, sim.db.engine)
                    pushed = deliver(engine, settings, batch, sandbox, worker_id=f"bench-b{batch}")
                    runs.append((batch, taken, pushed, stats(engine), hub_latency(engine)))
                    engine.dispose()
                finally:
                    sandbox.stop()
        finally:
            sim.close()

    print("== intake (one-stop SQLite → SqlSource → mapping → outbox, cursor in the same transaction)")
    for batch, taken, *_ in runs:
        print(f"  store for batch {batch:>3}: {taken['read']:,} changes in {taken['seconds']:.2f} s = "
              f"{taken['rate']:,.0f} changes/s  (enqueued {taken['enqueued']:,}, dead letters {taken['dead']}, "
              f"{taken['batches']} source batch(es))")
    print("== delivery (outbox → signed DongBoHoSoMC / CapNhatTienDoHoSoMC → sandbox acknowledgement)")
    print(f"  {'batch':>5} {'events':>7} {'seconds':>8} {'events/s':>9} {'messages':>9} {'lookups':>8} "
          f"{'signed/s':>8} {'dead':>5} {'retried':>7} {'hub cpu ms/ev':>13} {'sandbox cpu ms/ev':>17}")
    for batch, _taken, p, _st, _lat in runs:
        n = max(1, p["delivered"])
        print(f"  {batch:>5} {p['delivered']:>7,} {p['seconds']:>8.1f} {p['rate']:>9,.1f} {p['messages']:>9,} "
              f"{p['lookups']:>8,} {(p['messages'] + p['lookups']) / p['seconds']:>8.1f} {p['dead']:>5} {p['retried']:>7} {p['hub_cpu'] / n * 1000:>13.2f} "
              f"{p['sandbox_cpu'] / n * 1000:>17.2f}")
        if p["reasons"] or p["stopped"]:
            print(f"        dead letters {p['reasons']}, stopped: {p['stopped']}")
        if batch == 1:
            print(f"        batch 1 reaches {p['rate'] / sign_rate:.1%} of the raw sign ceiling ({sign_rate:,.0f}/s)")
    print("  (signed/s: signed exchanges per second, messages + TraCuuHoSo lookups; a fresh store knows no")
    print("   dossier, so each dossier costs one lookup before its first snapshot, whatever the batch size)")
    print("== freshness after each run (outbox.stats: delivered_at - source_changed_at) and hub latency")
    for batch, _taken, _p, st, (lat50, lat95) in runs:
        left = {k: v for k, v in st.depth.items() if v and k != "delivered"}
        print(f"  batch {batch:>3}: freshness p50 {human(st.freshness_p50)}, p95 {human(st.freshness_p95)} "
              f"({st.freshness_samples:,} samples); hub enqueue→ack p50 {human(lat50)}, p95 {human(lat95)}; "
              f"left in outbox {left or 'nothing'}, open dead letters {st.dead_letters}")
    print("  (freshness counts from the simulated change time: it is the age of the one-stop history")
    print("   replayed as a backlog, not the hub's latency; enqueue→ack is the hub's part)")

    print("== targets")
    top = [r for r in runs if r[0] == 100] or [max(runs, key=lambda r: r[0])]
    batch, _taken, p, *_ = top[0]
    rate = p["rate"]
    met = "met" if rate >= TARGET_RATE else "NOT met"
    print(f"  >= {TARGET_RATE:,.0f} events/s at batch {batch}: {rate:,.1f} events/s → {met}")
    if rate > 0:
        drain = BACKLOG / rate
        measured = p["delivered"] >= BACKLOG
        how = "measured" if measured else f"EXTRAPOLATED from {p['delivered']:,} events at batch {batch}, not measured"
        met = "met" if drain < BACKLOG_SECONDS else "NOT met"
        print(f"  {BACKLOG:,}-event backlog drained in < {BACKLOG_SECONDS:.0f} s: ~{drain:,.0f} s ({how}) → {met}")
    else:
        print(f"  {BACKLOG:,}-event backlog drained in < {BACKLOG_SECONDS:.0f} s: nothing delivered → NOT met")
    print(f"== load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
