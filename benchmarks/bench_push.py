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
* **freshness** p50/p95 from ``lienthong.hub.delivery.outbox.stats`` after each run. ``source_changed_at``
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
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchkit import SandboxProcess, dev_home, fresh_store, load_average, print_machine
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import Engine, select, text

TARGET_RATE = 5_000.0
BACKLOG = 200_000
BACKLOG_SECONDS = 60.0
SEED = 11


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


def intake(engine: Engine, onestop_engine: Engine) -> dict[str, Any]:
    from lienthong.connectors.sources.sql import SqlSource
    from lienthong.hub.flows.intake import intake_once
    from lienthong.mappings.dossier import DossierMapping

    mapping = DossierMapping.shipped("onestop_sandbox")
    t0 = time.perf_counter()
    with SqlSource(onestop_engine, mapping) as source:
        summary = intake_once(engine, source)
    seconds = time.perf_counter() - t0
    return {"read": summary.read, "enqueued": summary.enqueued, "dead": summary.dead_lettered,
            "batches": summary.batches, "seconds": seconds, "rate": summary.read / seconds if seconds else 0.0}


class NoAudit:
    """Stands in for the audit ledger to measure what recording costs (never used by the hub itself:
    the connector refuses to run without a ledger in production code paths)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record(self, **_: Any) -> int:
        return 0

    def body(self, seq: int) -> bytes:
        raise LookupError(seq)


_COUNTS = ("passes", "claimed", "delivered", "retried", "dead", "released", "lost", "messages", "lookups",
           "presumed_new", "resent")


def _worker(db_url: str, batch_size: int, worker_id: str, audit: bool, results: Any, until: Any = None,
            senders: int = 2) -> None:
    """One delivery worker (a process, as each mapped task of the status-push DAG is): passes until
    the outbox holds nothing pending or claimed (and, with ``until``, that event is set: the steady
    load is over); reports its counts and its own CPU time."""
    from lienthong.connectors.dvc_portal import DvcPortalClient
    from lienthong.connectors.transport import transport_for
    from lienthong.hub.audit import AuditTrail
    from lienthong.hub.delivery import outbox
    from lienthong.hub.delivery.engine import deliver_once
    from lienthong.hub.settings import Settings
    from lienthong.hub.store import make_engine

    settings = Settings.from_env()
    engine = make_engine(db_url)
    ledger = AuditTrail(engine) if audit else NoAudit(engine)
    portal = DvcPortalClient(transport_for(settings, "dvc_portal", audit=ledger))  # LIENTHONG_DVC_TRANSPORT
    totals = dict.fromkeys(_COUNTS, 0)
    reasons: dict[str, int] = {}
    stopped = None
    cpu0 = time.process_time()
    while True:
        summary = deliver_once(engine, portal, worker_id=worker_id, batch_size=batch_size,
                               sole_feed_since=settings.portal_sole_feed_since, senders=senders)
        totals["passes"] += 1
        for key in _COUNTS[1:]:
            totals[key] += getattr(summary, key)
        for code, count in summary.dead_reasons.items():
            reasons[code] = reasons.get(code, 0) + count
        if summary.stopped:
            stopped = summary.stopped
            break
        if summary.claimed == 0:
            depth = outbox.stats(engine).depth
            if depth["pending"] + depth["claimed"] == 0 and (until is None or until.is_set()):
                break
            time.sleep(0.01 if until is None else 0.05)  # held by another worker, or nothing yet
    engine.dispose()
    results.put({**totals, "reasons": reasons, "stopped": stopped, "cpu": time.process_time() - cpu0})


def deliver(db_url: str, batch_size: int, sandbox: SandboxProcess, *, workers: int, senders: int,
            audit: bool = True, label: str = "bench") -> dict[str, Any]:
    """``workers`` delivery processes until the outbox is drained; events/s counted on what was
    delivered, wall time from the first worker's start to the last one's end."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    sb0, t0 = sandbox.cpu_seconds(), time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(db_url, batch_size, f"{label}-b{batch_size}-w{i}", audit, results,
                                               None, senders))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    reports = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - t0
    totals: dict[str, Any] = {key: sum(r[key] for r in reports) for key in _COUNTS}
    reasons: dict[str, int] = {}
    for report in reports:
        for code, count in report["reasons"].items():
            reasons[code] = reasons.get(code, 0) + count
    totals.update(seconds=wall, rate=totals["delivered"] / wall if wall else 0.0,
                  hub_cpu=sum(r["cpu"] for r in reports), sandbox_cpu=sandbox.cpu_seconds() - sb0,
                  reasons=reasons, stopped=next((r["stopped"] for r in reports if r["stopped"]), None))
    return totals


def steady_load(db_url: str, onestop_path: Path, sandbox: SandboxProcess, *, rate: float, seconds: float,
                workers: int, senders: int, batch_size: int, period: float = 1.0) -> dict[str, Any]:
    """Freshness under a steady load: the one-stop system changes ``rate`` times a second for
    ``seconds``, an intake runs every ``period`` seconds, ``workers`` push continuously.

    The simulator's clock is simulated (whole seconds, days per dossier life), so each batch of
    changes is re-stamped with the real time it was committed (``cap_nhat_luc``, the column the
    mapping reads as the change time) before the intake reads it: freshness is then real time from
    the change in the source to the portal's acknowledgement, intake polling included."""
    from lienthong.connectors.sources.sql import SqlSource
    from lienthong.hub.delivery import outbox
    from lienthong.hub.flows.intake import intake_once
    from lienthong.mappings.dossier import DossierMapping
    from lienthong.sandbox.onestop import OneStopSimulator

    sim = OneStopSimulator(f"sqlite:///{onestop_path}", seed=SEED + 1, start=datetime.now(UTC))
    engine = fresh_store(db_url)
    mapping = DossierMapping.shipped("onestop_sandbox")
    ctx = multiprocessing.get_context("fork")
    results, until = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(db_url, batch_size, f"steady-w{i}", True, results, until, senders))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    produced = intakes = 0
    began = time.perf_counter()
    try:
        with SqlSource(sim.db.engine, mapping) as source:
            while (elapsed := time.perf_counter() - began) < seconds:
                due = int(rate * min(elapsed + period, seconds)) - produced
                if due > 0:
                    produced += sim.advance(due)
                    stamp = datetime.now(UTC).replace(tzinfo=None)
                    with sim.db.engine.begin() as conn:
                        for table in ("hoso", "hoso_buoc_xu_ly"):
                            conn.execute(text(f"UPDATE {table} SET cap_nhat_luc = :now WHERE cap_nhat_luc > :now"),
                                         {"now": stamp})
                intake_once(engine, source)
                intakes += 1
                time.sleep(max(0.0, period - (time.perf_counter() - began - elapsed)))
            intake_once(engine, source)
    finally:
        until.set()
        reports = [results.get() for _ in procs]
        for proc in procs:
            proc.join()
        sim.close()
    figures = outbox.stats(engine, window=timedelta(days=1), sample=10_000_000)
    engine.dispose()
    return {"produced": produced, "delivered": sum(r["delivered"] for r in reports), "intakes": intakes,
            "p50": figures.freshness_p50, "p95": figures.freshness_p95, "samples": figures.freshness_samples,
            "dead": figures.dead_letters, "left": {k: v for k, v in figures.depth.items() if v and k != "delivered"}}


def hub_latency(engine: Engine) -> tuple[float | None, float | None]:
    """p50/p95 seconds from outbox enqueue (``created_at``) to acknowledgement (``delivered_at``)."""
    from lienthong.hub.store.models import OutboxEvent

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
def over(transport: str, sandbox: SandboxProcess) -> None:
    """Point the delivery workers (which read the environment) at the sandbox over ``transport``:
    its SOAP service, or its emulation of the portal's JSON adapter."""
    os.environ["LIENTHONG_DVC_TRANSPORT"] = transport
    if transport == "json":
        os.environ.update(LIENTHONG_DVC_URL=f"{sandbox.base_url}/adapter", LIENTHONG_DVC_USERNAME="lienthong",
                          LIENTHONG_DVC_PASSWORD="sandbox-adapter", LIENTHONG_DVC_DSTCODE="000.00.00.G22")
    else:
        os.environ["LIENTHONG_DVC_URL"] = f"{sandbox.base_url}/dvc"


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
    parser.add_argument("--workers", type=int, default=2,
                        help="delivery worker processes, as the status-push DAG maps them (default 2)")
    parser.add_argument("--senders", type=int, default=2,
                        help="messages in flight per worker (deliver_once senders, default 2)")
    parser.add_argument("--transport", default="soap",
                        help="transports to push over, in the same run: soap, json or soap,json (default soap)")
    parser.add_argument("--no-audit-cost", action="store_true",
                        help="skip the run without the audit ledger (the cost of auditing)")
    parser.add_argument("--steady-rate", type=float, default=200.0,
                        help="changes per second in the steady-load phase (default 200)")
    parser.add_argument("--steady-seconds", type=float, default=30.0,
                        help="length of the steady-load phase, 0 to skip (default 30)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    transports = [t.strip() for t in args.transport.split(",") if t.strip()]
    if not transports or set(transports) - {"soap", "json"}:
        parser.error("--transport takes soap, json or soap,json")
    if args.events < 10 or not batches or any(b < 1 for b in batches):
        parser.error("--events must be >= 10 and batch sizes >= 1")

    print_machine()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp_name:
        tmp = Path(tmp_name)
        home, password = dev_home(tmp)
        from lienthong.signing.keys import load_identity

        os.environ.update(LIENTHONG_HOME=str(home), LIENTHONG_KEY_PASSWORD=password)
        from lienthong.hub.delivery.outbox import stats
        from lienthong.hub.settings import Settings
        from lienthong.hub.store import make_engine

        identity = load_identity(Settings.from_env().signing_key_path, password.encode())
        sign_rate = rsa_sign_rate(identity)
        sim, info = build_onestop(tmp / "onestop.db", args.events)
        # The one-stop system (and the hub with it) went live when the simulation starts: the portal
        # holds only what the hub sent, so no dossier needs a TraCuuHoSo before its first snapshot.
        os.environ["LIENTHONG_PORTAL_SOLE_FEED_SINCE"] = info["first"].isoformat()
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

        # (label, batch size, audited): every batch size with the ledger, then the largest again
        # without it, so the cost of auditing is measured in the same run
        plan = [(f"{tr} batch {b}" if len(transports) > 1 else f"batch {b}", b, True, tr)
                for tr in transports for b in batches]
        if not args.no_audit_cost:
            plan.append((f"batch {max(batches)}, no audit", max(batches), False, transports[0]))
        runs: list[dict[str, Any]] = []
        steady = None
        try:
            for label, batch, audited, transport in plan:
                # a fresh portal per run: the same events must meet a portal that has never seen
                # these dossiers, or the second run's first snapshots would be out of order
                sandbox = SandboxProcess(home, password, args.procedures)
                try:
                    over(transport, sandbox)
                    url = args.db_url or f"sqlite:///{tmp / f'hub-{len(runs)}.db'}"
                    engine = fresh_store(url)
                    taken = intake(engine, sim.db.engine)
                    engine.dispose()
                    pushed = deliver(url, batch, sandbox, workers=args.workers, senders=args.senders, audit=audited,
                                     label=f"r{len(runs)}")
                    engine = make_engine(url)
                    runs.append({"label": label, "batch": batch, "audited": audited, "transport": transport,
                                 "taken": taken, "pushed": pushed,
                                 "stats": stats(engine), "latency": hub_latency(engine)})
                    engine.dispose()
                finally:
                    sandbox.stop()
            if args.steady_seconds > 0:
                sandbox = SandboxProcess(home, password, args.procedures)
                try:
                    over(transports[0], sandbox)
                    url = args.db_url or f"sqlite:///{tmp / 'hub-steady.db'}"
                    steady = steady_load(url, tmp / "onestop-steady.db", sandbox, rate=args.steady_rate,
                                         seconds=args.steady_seconds, workers=args.workers, senders=args.senders,
                                         batch_size=max(batches))
                finally:
                    sandbox.stop()
        finally:
            sim.close()

    print("== intake (one-stop SQLite → SqlSource → mapping → outbox, cursor in the same transaction)")
    for run in runs:
        taken = run["taken"]
        print(f"  store for {run['label']:>20}: {taken['read']:,} changes in {taken['seconds']:.2f} s = "
              f"{taken['rate']:,.0f} changes/s  (enqueued {taken['enqueued']:,}, dead letters {taken['dead']}, "
              f"{taken['batches']} source batch(es))")
    print(f"== delivery (outbox → signed DongBoHoSoMC / CapNhatTienDoHoSoMC → sandbox acknowledgement), "
          f"{args.workers} worker process(es) × {args.senders} sender(s)")
    print(f"  {'run':>20} {'events':>7} {'seconds':>8} {'events/s':>9} {'messages':>9} {'lookups':>8} "
          f"{'signed/s':>8} {'dead':>5} {'retried':>7} {'hub cpu ms/ev':>13} {'sandbox cpu ms/ev':>17}")
    for run in runs:
        p = run["pushed"]
        n = max(1, p["delivered"])
        print(f"  {run['label']:>20} {p['delivered']:>7,} {p['seconds']:>8.1f} {p['rate']:>9,.1f} {p['messages']:>9,} "
              f"{p['lookups']:>8,} {(p['messages'] + p['lookups']) / p['seconds']:>8.1f} {p['dead']:>5} "
              f"{p['retried']:>7} {p['hub_cpu'] / n * 1000:>13.2f} {p['sandbox_cpu'] / n * 1000:>17.2f}")
        if p["reasons"] or p["stopped"]:
            print(f"        dead letters {p['reasons']}, stopped: {p['stopped']}")
        if run["batch"] == 1 and run["audited"] and run["transport"] == "soap":  # json carries no signature
            print(f"        batch 1 reaches {p['rate'] / sign_rate:.1%} of the raw sign ceiling ({sign_rate:,.0f}/s)")
    print("  (signed/s: signed exchanges per second, messages + TraCuuHoSo lookups. Every dossier here was")
    print("   submitted after the hub went live (LIENTHONG_PORTAL_SOLE_FEED_SINCE), so none needs a lookup)")
    audited = [r for r in runs if r["audited"] and r["batch"] == max(batches)]
    bare = [r for r in runs if not r["audited"]]
    if audited and bare:
        with_audit, without = audited[0]["pushed"]["rate"], bare[0]["pushed"]["rate"]
        cost = 1 - with_audit / without if without else float("nan")
        print(f"== audit cost at batch {max(batches)}: {with_audit:,.1f} events/s with the ledger, {without:,.1f} "
              f"without → auditing costs {cost:.1%} of throughput (target < 15%: {'met' if cost < 0.15 else 'NOT met'})")
    print("== freshness after each run (outbox.stats: delivered_at - source_changed_at) and hub latency")
    for run in runs:
        st, (lat50, lat95) = run["stats"], run["latency"]
        left = {k: v for k, v in st.depth.items() if v and k != "delivered"}
        print(f"  {run['label']:>20}: freshness p50 {human(st.freshness_p50)}, p95 {human(st.freshness_p95)} "
              f"({st.freshness_samples:,} samples); hub enqueue→ack p50 {human(lat50)}, p95 {human(lat95)}; "
              f"left in outbox {left or 'nothing'}, open dead letters {st.dead_letters}")
    print("  (a backlog replayed at once: freshness is the age of the simulated history, enqueue→ack the")
    print("   hub's part while draining it)")
    if steady is not None:
        print(f"== steady load: {args.steady_rate:,.0f} changes/s for {args.steady_seconds:.0f} s, intake every 1 s, "
              f"{args.workers} worker(s), batch {max(batches)}")
        print(f"  {steady['produced']:,} one-stop changes = {steady['delivered']:,} events delivered; freshness (change committed in "
              f"the source → portal acknowledgement) p50 {human(steady['p50'])}, p95 {human(steady['p95'])} "
              f"({steady['samples']:,} samples); left {steady['left'] or 'nothing'}, dead letters {steady['dead']}")

    print("== targets")
    top = [r for r in runs if r["audited"] and r["batch"] == 100] or [max(runs, key=lambda r: r["batch"])]
    batch, p = top[0]["batch"], top[0]["pushed"]
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
