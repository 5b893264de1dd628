"""``lienthong status``: outbox, results, dead letters, breaker, freshness, sources, catalogue, audit at a glance."""

from __future__ import annotations

import argparse
import json

from .console import console, load_settings
from .intake import sources_table


def cmd_status(args: argparse.Namespace) -> int:
    from rich.table import Table
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from ..audit import ledger
    from ..delivery.outbox import stats
    from ..flows.catalogue import sync_state
    from ..flows.intake import source_states
    from ..flows.results_push import backlog
    from ..store import open_store
    from ..store.models import BreakerState

    store = open_store(load_settings())
    outbox = stats(store.engine).as_dict()
    with Session(store.engine) as session:
        breakers = {b.partner: b.state for b in session.scalars(select(BreakerState))}
    catalogue = sync_state(store.engine)
    head_seq, _ = ledger(store).head()
    sources = source_states(store.engine)
    results = backlog(store.engine).as_dict()
    data = {"outbox": outbox, "results": results, "breakers": breakers, "audit_entries": head_seq,
            "sources": [st.as_dict() for st in sources],
            "catalogue": {"watermark": catalogue.watermark.isoformat() if catalogue and catalogue.watermark else None,
                          "last_run_at": catalogue.last_run_at.isoformat()
                          if catalogue and catalogue.last_run_at else None}}
    if args.json:
        console.print_json(json.dumps(data))
        return 0

    def secs(v):
        return "-" if v is None else f"{v:.1f} s"

    def mb(n):
        return f"{n / 1e6:,.1f} MB"

    table = Table(title="Liên thông Hub status", show_header=False)
    for state, count in outbox["depth"].items():
        table.add_row(f"outbox {state}", str(count))
    table.add_row("oldest pending", secs(outbox["oldest_pending_age"]))
    table.add_row("dead letters (open)", str(outbox["dead_letters"]))
    table.add_row("freshness p50 / p95", f"{secs(outbox['freshness_p50'])} / {secs(outbox['freshness_p95'])} "
                                         f"({outbox['freshness_samples']} deliveries)")
    table.add_row("results pending / in flight / dead",
                  f"{results['pending']} / {results['in_flight']} / {results['dead']} "
                  f"({mb(results['bytes_waiting'])} waiting, {mb(results['bytes_confirmed'])} confirmed of uploads "
                  "under way)")
    table.add_row("results uploaded", f"{results['uploaded']} ({mb(results['uploaded_bytes'])}; "
                                      f"{results['resumed']} resumed, {results['restarts']} restarted from 0)")
    for partner, state in sorted(breakers.items()) or [("dvc_portal", "closed")]:
        table.add_row(f"breaker {partner}", state)
    table.add_row("catalogue watermark", data["catalogue"]["watermark"] or "-")
    table.add_row("audit entries", str(head_seq))
    console.print(table)
    if sources:
        console.print(sources_table(sources))
    return 0


def register(sub) -> None:
    status = sub.add_parser("status", help="outbox depth, dead letters, breaker, freshness, catalogue, audit")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
