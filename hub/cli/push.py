"""``lienthong push status`` / ``push results``: drain the outbox to the national portal (one worker)."""

from __future__ import annotations

import argparse
import json
import os

from rich.markup import escape

from .console import console, err_console, load_settings


def cmd_push_status(args: argparse.Namespace) -> int:
    import socket

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..delivery.outbox import stats
    from ..flows.status_push import drain, open_portal
    from ..store import open_store

    settings = load_settings()
    store = open_store(settings)
    worker = args.worker or f"{socket.gethostname()}:{os.getpid()}"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console,
                  transient=True, disable=args.json) as bar:
        task = bar.add_task("delivering", total=None)
        summary = drain(store, open_portal(settings, store), worker_id=worker, batch_size=args.batch_size,
                        senders=args.senders, sole_feed_since=settings.portal_sole_feed_since, once=args.once,
                        on_pass=lambda t: bar.update(task, description=f"delivered {t.delivered}, "
                                                                        f"retried {t.retried}, dead {t.dead}"))
    passes, totals = summary.passes, summary.counts()
    after = stats(store.engine).as_dict()
    if args.json:
        console.print_json(json.dumps({"passes": passes, **totals, "breaker": summary.breaker,
                                       "stopped": summary.stopped, "outbox": after}))
        return 0
    console.print(f"[green]push[/]: {totals['delivered']} delivered in {totals['messages']} messages "
                  f"({totals['lookups']} lookups, {totals['resent']} resent), {totals['retried']} to retry, {totals['dead']} dead letters; "
                  f"breaker {summary.breaker}" + (f"; stopped: {escape(summary.stopped)}" if summary.stopped else ""))
    console.print(f"outbox now: {after['depth']}")
    return 0


def cmd_push_results(args: argparse.Namespace) -> int:
    import socket
    from dataclasses import replace
    from pathlib import Path

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    from ..flows.results_push import backlog, drain, open_uploader
    from ..flows.status_push import open_portal
    from ..store import open_store

    settings = load_settings()
    if args.results_root:
        settings = replace(settings, results_root=Path(args.results_root).expanduser())
    store = open_store(settings)
    worker = args.worker or f"{socket.gethostname()}:{os.getpid()}:results"
    before = backlog(store.engine)
    portal = open_portal(settings, store)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True, disable=args.json) as bar:
        task = bar.add_task("uploading", total=before.bytes_waiting or None)

        def on_bytes(n: int) -> None:
            bar.advance(task, n)

        uploader = open_uploader(settings, store, portal, on_bytes=on_bytes)
        summary = drain(store, portal, uploader, worker_id=worker, senders=args.senders, once=args.once,
                        on_pass=lambda t: bar.update(task, description=f"{t.uploads} uploaded, {t.retried} to "
                                                                        f"retry, {t.dead} dead"))
    after = backlog(store.engine).as_dict()
    totals = summary.counts()
    if args.json:
        console.print_json(json.dumps({"passes": summary.passes, **totals, "dead_reasons": summary.dead_reasons,
                                       "breaker": summary.breaker, "stopped": summary.stopped, "results": after}))
        return 0
    reasons = ", ".join(f"{code} {n}" for code, n in sorted(summary.dead_reasons.items()))
    console.print(f"[green]push results[/]: {totals['uploads']} file(s) uploaded ({totals['uploaded_bytes'] / 1e6:,.1f} MB, "
                  f"{totals['sent_bytes'] / 1e6:,.1f} MB sent, {totals['resumed_uploads']} resumed), "
                  f"{totals['retried']} to retry, {totals['dead']} dead letters" + (f" ({escape(reasons)})" if reasons else "")
                  + f"; breaker {summary.breaker}" + (f"; stopped: {escape(summary.stopped)}" if summary.stopped else ""))
    console.print(f"results now: {after['pending']} pending, {after['in_flight']} in flight, {after['dead']} dead; "
                  f"{after['uploaded']} uploaded in all")
    return 0


def register(sub) -> None:
    push = sub.add_parser("push", help="deliver to a national service")
    push_sub = push.add_subparsers(dest="push_command", metavar="WHAT")
    push_sub.required = True
    ps = push_sub.add_parser("status", help="deliver pending dossier statuses and steps to the portal")
    ps.add_argument("--batch-size", type=int, default=50, help="dossiers per DongBoHoSoMC message (default 50)")
    ps.add_argument("--senders", type=int, default=2,
                    help="messages of different dossiers in flight at once (default 2; 1 = one at a time)")
    ps.add_argument("--worker", help="worker id (default host:pid)")
    ps.add_argument("--once", action="store_true", help="one claim only (default: until nothing is claimable)")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_push_status)
    pr = push_sub.add_parser("results", help="upload pending result files to the portal (chunked, resumable)")
    pr.add_argument("--senders", type=int, default=2, help="files of different dossiers uploading at once (default 2)")
    pr.add_argument("--results-root", help="the folder the one-stop system shares its result files in "
                                           "(default LIENTHONG_RESULTS_ROOT)")
    pr.add_argument("--worker", help="worker id (default host:pid:results)")
    pr.add_argument("--once", action="store_true", help="one claim only (default: until nothing is claimable)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_push_results)
