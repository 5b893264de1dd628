"""The ``lienthong`` command: every flow of the hub, runnable without Airflow.

Commands import what they need when they run, so ``lienthong --help`` stays instant and a
broken optional component cannot stop the others. Errors of the hub's own tree are printed as
one clear line (``error [CODE]: message``) with a non-zero exit status; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .errors import HubError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _settings():
    from .settings import Settings

    return Settings.from_env()


# --- keys, sign, verify -----------------------------------------------------------------------
def cmd_keys_init(args: argparse.Namespace) -> int:
    from ..signing.cli import cmd_keys_init as init

    settings = _settings()
    files = init(settings)
    console.print(f"[green]PKI ready[/] in {settings.pki_dir}")
    for label, path in (("root CA", files.ca_cert), ("hub certificate", files.hub_cert),
                        ("national certificate", files.national_cert)):
        console.print(f"  {label:22} {path}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from ..signing.cli import cmd_sign as sign

    sys.stdout.buffer.write(sign(_settings(), Path(args.file)))
    sys.stdout.buffer.flush()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..signing.cli import cmd_verify as verify

    result = verify(_settings(), Path(args.file))
    console.print(f"[green]valid signature[/] by {result.signer_subject} (agency {result.signer_agency})")
    return 0


# --- store and audit ---------------------------------------------------------------------------
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .store import open_store

    settings = _settings()
    open_store(settings)
    console.print(f"store at {_redact(settings.db_url)} is at the latest schema")
    return 0


# --- sandbox and health -----------------------------------------------------------------------
def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from ..sandbox.server import main as sandbox_main

    return sandbox_main(args.sandbox_args)


def cmd_sandbox_onestop(args: argparse.Namespace) -> int:
    from ..sandbox.onestop import main as onestop_main

    return onestop_main(args.sandbox_args, prog="lienthong sandbox onestop")


def cmd_healthcheck(args: argparse.Namespace) -> int:
    from .flows.healthcheck import all_services, roundtrip

    settings = _settings()
    failed = 0
    for name in args.service or all_services():
        try:
            summary = roundtrip(settings, name)
            console.print(f"[green]ok[/]   {name:11} {summary['operation']:20} {summary['latency_ms']:8.1f} ms  "
                          f"signed by {summary['signer_agency']}")
        except HubError as exc:
            failed += 1
            err_console.print(f"[red]fail[/] {name:11} {escape('[' + exc.code + ']')} {escape(str(exc))}")
    return EXIT_FAILURE if failed else 0


# --- procedure catalogue ---------------------------------------------------------------------
def parse_moment(value: str | None, option: str, *, end: bool = False):
    """An ISO date or date-time given on the command line; without an offset it is UTC (the ledger's
    and the watermarks' own time). The one parser for every command's time options.

    A bare date given to an end bound (``--until 2026-11-22``) means the end of that day, so the
    day is included; ``--since 2026-11-22`` starts at its midnight.
    """
    from datetime import UTC, datetime, timedelta

    from .errors import ConfigurationError

    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"{option} {value!r} is not an ISO date or date-time (e.g. 2026-11-22 or 2026-11-22T08:00:00+07:00)"
        ) from None
    if end and len(value.strip()) == 10:
        moment += timedelta(days=1)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_sync_tthc(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..connectors.csdl_tthc import CsdlTthcClient
    from ..connectors.soap import SoapConnector
    from .audit import ledger
    from .flows.catalogue import sync_catalogue
    from .store import open_store

    settings = _settings()
    store = open_store(settings)
    client = CsdlTthcClient(SoapConnector(settings, "csdl_tthc", audit=ledger(store)))
    since = parse_moment(args.since, "--since")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=args.json) as bar:
        task = bar.add_task("listing the national catalogue", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "fetch":
                bar.update(task, description="fetching procedures", completed=done, total=total)

        from functools import partial

        from .flows.catalogue import csdl_client

        summary = sync_catalogue(store.engine, client, full=args.full, since=since, concurrency=args.concurrency,
                                 processes=args.processes, client_factory=partial(csdl_client, settings),
                                 progress=progress)
    if args.json:
        console.print_json(json.dumps(summary.as_dict(), ensure_ascii=False))
        return 0
    from rich.table import Table

    table = Table(title=f"Catalogue sync ({summary.mode}) in {summary.seconds:.1f} s", show_header=False)
    for label, value in (("listed", summary.listed), ("new", summary.new), ("changed", summary.changed),
                         ("unchanged", summary.unchanged), ("unpublished", summary.unpublished),
                         ("removed", summary.removed), ("quarantined", summary.quarantined),
                         ("retries", summary.retries), ("agencies / fields", f"{summary.agencies} / {summary.fields}"),
                         ("watermark", summary.watermark or "-")):
        table.add_row(label, str(value))
    console.print(table)
    if summary.quarantined:
        console.print(f"[yellow]{summary.quarantined} record(s) quarantined[/]: see the quarantine table for reasons")
    return 0


def cmd_tthc_list(args: argparse.Namespace) -> int:
    from .flows.catalogue import list_procedures
    from .store import open_store

    rows = list_procedures(open_store(_settings()).engine, agency=args.agency, field_code=args.field,
                           level=args.level, text=args.search, include_removed=args.all, limit=args.limit)
    if args.json:
        console.print_json(json.dumps([{"code": r.code, "name": r.name, "agency": r.publishing_agency,
                                        "levels": r.levels.split(","), "online_level": r.online_level,
                                        "published": r.published, "removed": r.removed_at is not None,
                                        "version": r.version} for r in rows], ensure_ascii=False))
        return 0
    from rich.table import Table

    table = Table(title=f"{len(rows)} procedure(s)")
    for col in ("code", "name", "agency", "level", "online", "v"):
        table.add_column(col, overflow="fold" if col == "name" else None, no_wrap=col != "name")
    for r in rows:
        state = "" if r.published else " [dim](unpublished)[/]"
        state += " [red](removed)[/]" if r.removed_at else ""
        table.add_row(r.code, escape(r.name) + state, r.publishing_agency or "", r.levels, r.online_level or "",
                      str(r.version))
    console.print(table)
    return 0


def cmd_tthc_show(args: argparse.Namespace) -> int:
    from ..mappings.diff import diff_documents, format_diff
    from .errors import ConfigurationError
    from .flows.catalogue import procedure_history
    from .store import open_store

    row, versions = procedure_history(open_store(_settings()).engine, args.code)
    if row is None:
        raise ConfigurationError(f"procedure {args.code} is not in the local catalogue (run 'lienthong sync tthc')")
    doc = json.loads(row.document)
    by_number = {v.version: v for v in versions}
    if args.diff:
        a, b = args.diff
        if a not in by_number or b not in by_number:
            raise ConfigurationError(f"{args.code} has versions {sorted(by_number)}; cannot diff {a} and {b}")
        lines = format_diff(diff_documents(json.loads(by_number[a].document), json.loads(by_number[b].document)))
        if args.json:
            console.print_json(json.dumps(lines, ensure_ascii=False))
        else:
            console.print(f"[bold]{args.code}[/] version {a} → {b}")
            for line in lines or ["(no difference)"]:
                console.print("  " + escape(line))
        return 0
    if args.json:
        console.print_json(json.dumps({"record": doc, "versions": [
            {"version": v.version, "kind": v.change_kind, "seen_at": v.seen_at.isoformat(),
             "national_updated_at": v.national_updated_at.isoformat() if v.national_updated_at else None,
             "changes": json.loads(v.changes)} for v in versions]}, ensure_ascii=False))
        return 0
    console.print(f"[bold]{row.code}[/] {escape(row.name)}")
    console.print(f"  agency {row.publishing_agency}  levels {row.levels}  online {row.online_level}  "
                  f"{'published' if row.published else 'unpublished'}"
                  f"{'  REMOVED ' + row.removed_at.isoformat() if row.removed_at else ''}")
    console.print_json(json.dumps(doc, ensure_ascii=False))
    from rich.table import Table

    table = Table(title="versions")
    for col in ("v", "kind", "seen", "national update", "changes"):
        table.add_column(col, overflow="fold" if col == "changes" else None)
    for v in versions:
        changes = json.loads(v.changes)
        table.add_row(str(v.version), v.change_kind, v.seen_at.strftime("%Y-%m-%d %H:%M"),
                      v.national_updated_at.strftime("%Y-%m-%d %H:%M") if v.national_updated_at else "",
                      escape("\n".join(changes[:8]) + (f"\n… {len(changes) - 8} more" if len(changes) > 8 else "")))
    console.print(table)
    return 0


# --- dossier intake, status push, operations -----------------------------------------------------
def _intake_specs(args: argparse.Namespace, settings) -> list:
    """The sources this ``lienthong intake`` names: one given on the command line (--sql/--inbox,
    with --source-id as its identity), one of the sources file (--source-id), or all of it (--all)."""
    from ..connectors.sources.config import SourceSpec, load_sources, sources_file
    from .errors import ConfigurationError

    if args.sql or args.inbox:
        if args.all:
            raise ConfigurationError("--all reads the sources file; do not give --sql or --inbox with it")
        return [SourceSpec(id=args.source_id, mapping=args.mapping or "onestop_sandbox", sql=args.sql,
                           inbox=args.inbox)]
    path = sources_file(args.sources, home=settings.home)
    if not (args.all or args.source_id):
        raise ConfigurationError("say what to read: --sql URL or --inbox DIR (one source), --source-id ID (one "
                                 "source of the sources file) or --all (every source of it)")
    if path is None:
        raise ConfigurationError("no sources file: give --sources FILE, set LIENTHONG_SOURCES, or write "
                                 f"{settings.home / 'sources.yaml'} (see docs/integration-engineers.md)")
    specs = load_sources(path)
    if args.source_id:
        chosen = [s for s in specs if s.id == args.source_id]
        if not chosen:
            raise ConfigurationError(f"{path}: no source has the identity {args.source_id!r} "
                                     f"(it lists: {', '.join(s.id for s in specs)})")
        return chosen
    return [s for s in specs if s.enabled]


def cmd_intake(args: argparse.Namespace) -> int:
    from .errors import ConfigurationError
    from .flows.intake import CursorDecision, run_source, source_states
    from .store import open_store

    settings = _settings()
    store = open_store(settings)
    if args.list:
        return _print_sources(source_states(store.engine), args.json)
    decision = None
    if args.reset_cursor or args.adopt_cursor:
        decision = CursorDecision("reset" if args.reset_cursor else "adopt", args.reason or "",
                                  actor=os.environ.get("USER"))
    elif args.reason:
        raise ConfigurationError("--reason goes with --reset-cursor or --adopt-cursor")
    specs = _intake_specs(args, settings)
    if decision is not None and len(specs) != 1:
        raise ConfigurationError(f"--{decision.action}-cursor is a decision about one source: name it with "
                                 "--source-id (or --sql/--inbox)")
    results, failed = [], 0
    for spec in specs:
        try:
            summary = run_source(store, spec, decision=decision)
        except HubError as exc:
            # one source failing does not stop the others; each is reported and the exit status says so
            failed += 1
            name = spec.id or spec.location
            results.append({"source": name, "ok": False, "code": exc.code, "error": str(exc)})
            if not args.json:
                err_console.print(f"[red]intake[/] {escape(name)}: {escape('[' + exc.code + ']')} {escape(str(exc))}",
                                  soft_wrap=True)
            continue
        results.append({"ok": True, **summary.as_dict()})
        if not args.json:
            _print_intake(summary)
    if args.json:
        payload = results if args.all else results[0]
        console.print_json(json.dumps(payload, ensure_ascii=False))
    return EXIT_FAILURE if failed else 0


def _print_intake(summary) -> None:
    console.print(f"[green]intake[/] {escape(summary.source)} ({escape(summary.mapping)} at "
                  f"{escape(summary.location)}): read {summary.read}, enqueued {summary.enqueued}, "
                  f"already known {summary.duplicates}, dead letters {summary.dead_lettered}"
                  + (f", key reused {summary.key_reused}" if summary.key_reused else ""), soft_wrap=True)
    if summary.decision:
        console.print(f"  [yellow]cursor {summary.decision['action']}[/] ({escape(summary.decision['reason'])}), "
                      "recorded in the audit trail")
    console.print(f"  position: {escape(summary.position)}", soft_wrap=True)
    for outcome, count in sorted(summary.outcomes.items()):
        console.print(f"  {outcome:32} {count}")
    for item in summary.quarantined:
        console.print(f"[yellow]quarantined[/] {escape(item['file'])}: {item['code']}: {escape(item['reason'])}")


def _print_sources(states, as_json: bool) -> int:
    if as_json:
        console.print_json(json.dumps([s.as_dict() for s in states], ensure_ascii=False))
        return 0
    console.print(_sources_table(states))
    return 0


def _sources_table(states):
    """The intake's sources: identity, where, how far, how the last run ended."""
    from rich.table import Table

    table = Table(title=f"{len(states)} intake source(s)")
    for col in ("source", "mapping", "location", "cursor", "last run"):
        table.add_column(col, overflow="fold")
    for st in states:
        last = st.last_run or {}
        when = _vn(st.last_run_at) if st.last_run_at else "-"
        if not st.last_run:
            outcome = "-"
        elif last.get("ok"):
            outcome = f"{when}: read {last.get('read', 0)}, enqueued {last.get('enqueued', 0)}"
        else:
            outcome = f"{when}: [red]refused[/] {escape(last.get('code', ''))}"
        table.add_row(escape(st.source), escape(st.mapping or "-"),
                      escape(st.location or "(unclaimed: stored before sources had identities)"),
                      escape(_cursor_words(st)), outcome)
    return table


def _cursor_words(state) -> str:
    """A stored cursor in words without opening its source (a SQL cursor's positions, a file name)."""
    if not state.cursor:
        return "start"
    from ..connectors.sources.sql import CursorInvalid, SqlCursor, _shown

    if state.kind == "sql" or state.cursor.lstrip().startswith("{"):
        try:
            position = SqlCursor.decode(state.cursor)
        except CursorInvalid:
            return state.cursor[:80]
        return f"dossiers {_shown(position.dossiers)}, steps {_shown(position.steps)}"
    return "last file " + state.cursor.split("|sha256:", 1)[0]


def _vn(moment) -> str:
    """A moment in Vietnam time, as operators read it."""
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%Y-%m-%d %H:%M:%S")


def cmd_push_status(args: argparse.Namespace) -> int:
    import socket

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .delivery.outbox import stats
    from .flows.status_push import drain, open_portal
    from .store import open_store

    settings = _settings()
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


def cmd_status(args: argparse.Namespace) -> int:
    from rich.table import Table
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from .audit import ledger
    from .delivery.outbox import stats
    from .flows.catalogue import sync_state
    from .flows.intake import source_states
    from .store import open_store
    from .store.models import BreakerState

    store = open_store(_settings())
    outbox = stats(store.engine).as_dict()
    with Session(store.engine) as session:
        breakers = {b.partner: b.state for b in session.scalars(select(BreakerState))}
    catalogue = sync_state(store.engine)
    head_seq, _ = ledger(store).head()
    sources = source_states(store.engine)
    data = {"outbox": outbox, "breakers": breakers, "audit_entries": head_seq,
            "sources": [st.as_dict() for st in sources],
            "catalogue": {"watermark": catalogue.watermark.isoformat() if catalogue and catalogue.watermark else None,
                          "last_run_at": catalogue.last_run_at.isoformat()
                          if catalogue and catalogue.last_run_at else None}}
    if args.json:
        console.print_json(json.dumps(data))
        return 0

    def secs(v):
        return "-" if v is None else f"{v:.1f} s"

    table = Table(title="Liên thông Hub status", show_header=False)
    for state, count in outbox["depth"].items():
        table.add_row(f"outbox {state}", str(count))
    table.add_row("oldest pending", secs(outbox["oldest_pending_age"]))
    table.add_row("dead letters (open)", str(outbox["dead_letters"]))
    table.add_row("freshness p50 / p95", f"{secs(outbox['freshness_p50'])} / {secs(outbox['freshness_p95'])} "
                                         f"({outbox['freshness_samples']} deliveries)")
    for partner, state in sorted(breakers.items()) or [("dvc_portal", "closed")]:
        table.add_row(f"breaker {partner}", state)
    table.add_row("catalogue watermark", data["catalogue"]["watermark"] or "-")
    table.add_row("audit entries", str(head_seq))
    console.print(table)
    if sources:
        console.print(_sources_table(sources))
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .audit import ledger
    from .delivery import outbox
    from .errors import ConfigurationError
    from .store import open_store

    store = open_store(_settings())
    if args.dlq_command == "list":
        letters = outbox.dead_letters(store.engine, open_only=not args.all, partition_key=args.dossier,
                                      limit=args.limit)
        if args.json:
            console.print_json(json.dumps([{**vars(d), "created_at": d.created_at.isoformat(),
                                            "replayed_at": d.replayed_at and d.replayed_at.isoformat(),
                                            "discarded_at": d.discarded_at and d.discarded_at.isoformat()}
                                           for d in letters], ensure_ascii=False, default=str))
            return 0
        table = Table(title=f"{len(letters)} dead letter(s)")
        for col in ("id", "dossier", "kind", "code", "reason", "when"):
            table.add_column(col, overflow="fold" if col == "reason" else None)
        for d in letters:
            table.add_row(str(d.id), d.partition_key, d.kind, d.reason_code, escape(d.reason[:200]),
                          d.created_at.strftime("%Y-%m-%d %H:%M"))
        console.print(table)
        return 0
    if args.dlq_command == "show":
        letters = {d.id: d for d in outbox.dead_letters(store.engine, open_only=False, limit=100000)}
        letter = letters.get(args.id)
        if letter is None:
            raise ConfigurationError(f"no dead letter {args.id}")
        console.print_json(json.dumps({**vars(letter), "created_at": letter.created_at.isoformat()},
                                      ensure_ascii=False, default=str))
        return 0
    if args.dlq_command == "replay":
        replayed = outbox.replay(store.engine, args.ids)
        console.print(f"replayed {len(replayed)} dead letter(s): "
                      "they are delivered in their dossier's order by the next push")
        return 0
    if not args.reason or not args.reason.strip():
        raise ConfigurationError("discarding a dead letter needs --reason: it is recorded in the audit trail")
    outbox.discard(store.engine, args.id, args.reason, actor=os.environ.get("USER"),
                   on_discarded=outbox.audit_discard(ledger(store)))
    console.print(f"discarded dead letter {args.id}; the reason is recorded in the audit trail")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .flows.demo import run_demo

    return run_demo(console, procedures=args.procedures)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url


def build_parser() -> argparse.ArgumentParser:
    from lienthong import __version__

    p = argparse.ArgumentParser(
        prog="lienthong",
        description="Liên thông Hub: signed SOAP/XML exchange with the national e-government systems.",
    )
    p.add_argument("--version", action="version", version=f"lienthong {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    keys = sub.add_parser("keys", help="signing keys and certificates")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    keys_sub.required = True
    keys_sub.add_parser("init", help="create the development PKI under $LIENTHONG_HOME/pki (idempotent)") \
        .set_defaults(func=cmd_keys_init)

    s = sub.add_parser("sign", help="sign an XML file with the hub key (enveloped XML-DSig) to stdout")
    s.add_argument("file")
    s.set_defaults(func=cmd_sign)
    v = sub.add_parser("verify", help="verify an XML file's signature against the trust store")
    v.add_argument("file")
    v.set_defaults(func=cmd_verify)

    db = sub.add_parser("db", help="the hub's store")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_sub.required = True
    db_sub.add_parser("upgrade", help="create or migrate the store to the latest schema").set_defaults(func=cmd_db_upgrade)

    audit = sub.add_parser("audit", help="the audit trail of every message exchanged")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit_sub.required = True
    from .cli_audit_integrity import register as register_audit_integrity  # verify, seal, export, prune

    register_audit_integrity(audit_sub)
    from .cli_audit_read import register as register_audit_read

    register_audit_read(audit_sub)

    sb = sub.add_parser("sandbox", help="the emulator of the national services")
    sb_sub = sb.add_subparsers(dest="sandbox_command", metavar="ACTION")
    sb_sub.required = True
    serve = sb_sub.add_parser("serve", help="serve CSDL TTHC, DVC portal and reporting (see --help)",
                              add_help=False)
    serve.set_defaults(func=cmd_sandbox_serve, passthrough=True)  # options parsed by the sandbox itself
    onestop = sb_sub.add_parser("onestop", help="fill, move and export the synthetic one-stop database (see --help)",
                                add_help=False)
    onestop.set_defaults(func=cmd_sandbox_onestop, passthrough=True)

    hc = sub.add_parser("healthcheck", help="one signed round trip to each configured national service")
    hc.add_argument("--service", action="append", choices=["csdl_tthc", "dvc_portal", "baocao"])
    hc.set_defaults(func=cmd_healthcheck)

    sync = sub.add_parser("sync", help="synchronise from a national service")
    sync_sub = sync.add_subparsers(dest="sync_command", metavar="SOURCE")
    sync_sub.required = True
    st = sync_sub.add_parser("tthc", help="the procedure catalogue from CSDL TTHC (incremental by default)")
    st.add_argument("--full", action="store_true", help="re-read everything and detect removed procedures")
    st.add_argument("--since", help="ISO date/time: changes since then (overrides the stored watermark)")
    st.add_argument("--concurrency", type=int, default=4, help="parallel LayThuTuc calls per process (default 4)")
    st.add_argument("--processes", type=int, default=0,
                    help="fetch in N worker processes (one core each; default 0: threads in this process)")
    st.add_argument("--json", action="store_true", help="machine-readable summary")
    st.set_defaults(func=cmd_sync_tthc)

    tthc = sub.add_parser("tthc", help="the local copy of the procedure catalogue")
    tthc_sub = tthc.add_subparsers(dest="tthc_command", metavar="ACTION")
    tthc_sub.required = True
    tl = tthc_sub.add_parser("list", help="list procedures (filters combine)")
    tl.add_argument("--agency", help="publishing or implementing agency code")
    tl.add_argument("--field", help="field (lĩnh vực) code")
    tl.add_argument("--level", help="BO, TINH, XA, …")
    tl.add_argument("--search", help="text in the name or code (diacritics matter)")
    tl.add_argument("--all", action="store_true", help="include removed procedures")
    tl.add_argument("--limit", type=int)
    tl.add_argument("--json", action="store_true")
    tl.set_defaults(func=cmd_tthc_list)
    ts = tthc_sub.add_parser("show", help="one procedure, its versions, or a diff between two versions")
    ts.add_argument("code")
    ts.add_argument("--diff", nargs=2, type=int, metavar=("A", "B"), help="readable diff from version A to B")
    ts.add_argument("--json", action="store_true")
    ts.set_defaults(func=cmd_tthc_show)

    it = sub.add_parser("intake", help="read dossier changes from the one-stop system into the outbox")
    it.add_argument("--sql", metavar="URL", help="the one-stop database (SQLAlchemy URL)")
    it.add_argument("--inbox", metavar="DIR", help="a folder of export files (JSON, CSV, XML)")
    it.add_argument("--mapping", default="onestop_sandbox",
                    help="source mapping of --sql/--inbox: a shipped name or a YAML file (default onestop_sandbox)")
    it.add_argument("--source-id", metavar="ID",
                    help="the source's identity: of --sql/--inbox (default: mapping@location), or one of the sources file")
    it.add_argument("--all", action="store_true", help="every enabled source of the sources file, one after another")
    it.add_argument("--sources", metavar="FILE",
                    help="the sources file (default LIENTHONG_SOURCES, else $LIENTHONG_HOME/sources.yaml)")
    decide = it.add_mutually_exclusive_group()
    decide.add_argument("--reset-cursor", action="store_true",
                        help="read the source from the start (a cursor that does not fit it; duplicates are absorbed)")
    decide.add_argument("--adopt-cursor", action="store_true",
                        help="keep the stored position for this source (a replica of the same data, a moved database)")
    it.add_argument("--reason", help="why (required with --reset-cursor / --adopt-cursor; recorded in the audit trail)")
    it.add_argument("--list", action="store_true", help="list the sources the hub has cursors for, and stop")
    it.add_argument("--json", action="store_true")
    it.set_defaults(func=cmd_intake)

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

    status = sub.add_parser("status", help="outbox depth, dead letters, breaker, freshness, catalogue, audit")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay, discard")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION")
    dlq_sub.required = True
    dl = dlq_sub.add_parser("list")
    dl.add_argument("--all", action="store_true", help="include replayed and discarded ones")
    dl.add_argument("--dossier", help="only this MaHoSo")
    dl.add_argument("--limit", type=int, default=100)
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=cmd_dlq)
    dshow = dlq_sub.add_parser("show")
    dshow.add_argument("id", type=int)
    dshow.set_defaults(func=cmd_dlq)
    dr = dlq_sub.add_parser("replay", help="back to pending, in their dossier's order (after a mapping fix)")
    dr.add_argument("ids", type=int, nargs="+")
    dr.set_defaults(func=cmd_dlq)
    dd = dlq_sub.add_parser("discard", help="give up on one, with a reason recorded in the audit trail")
    dd.add_argument("id", type=int)
    dd.add_argument("--reason", required=True)
    dd.set_defaults(func=cmd_dlq)

    demo = sub.add_parser("demo", help="keys, sandbox, one signed exchange per service, audit check")
    demo.add_argument("--procedures", type=int, default=300, help="size of the sandbox catalogue")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        args.sandbox_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except HubError as exc:
        err_console.print(f"[red]error[/] {escape('[' + exc.code + ']')}: {escape(str(exc))}", soft_wrap=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
