"""``lienthong audit search | show | dossier | stats``: reading the audit ledger from the command line.

:func:`register` adds the four commands to the ``audit`` sub-parser of ``lienthong.hub.cli``; the
work is done by :mod:`lienthong.hub.audit.query`, :mod:`~lienthong.hub.audit.masking` and :mod:`~lienthong.hub.audit.stats`, imported when a
command runs.

Personal data is masked in every output unless ``--unmask --reason "..."`` is given. Unmasking
first appends an ``AuditUnmask`` entry to the ledger (partner ``hub``, outcome ``ok``) whose body
says who asked (``LIENTHONG_OPERATOR``, else the OS user), on which host, why, with which command
and for which entries; only once that entry is committed is anything shown. So the ledger itself
answers "who looked at this citizen's data, and why".
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..console import EXIT_FAILURE, console, err_console, load_settings, parse_moment

#: partner and operation of the ledger entries that record an unmasking
UNMASK_PARTNER = "hub"
UNMASK_OPERATION = "AuditUnmask"


def operator_identity() -> dict[str, str]:
    """Who is reading: ``LIENTHONG_OPERATOR`` (a named person, set by the IT centre) and the OS user."""
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        os_user = f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return {"operator": os.environ.get("LIENTHONG_OPERATOR") or os_user, "os_user": os_user,
            "host": socket.gethostname()}


def check_unmask(args: argparse.Namespace) -> None:
    """Refuse ``--unmask`` without a reason (and a reason without ``--unmask``) before any work."""
    from ...errors import ConfigurationError

    reason = getattr(args, "reason", None)
    if args.unmask and (reason is None or not reason.strip()):
        raise ConfigurationError(
            '--unmask shows personal data and needs --reason "why you need it" (recorded in the audit trail)')
    if reason is not None and not args.unmask:
        raise ConfigurationError("--reason goes with --unmask (it says why personal data is shown)")


def record_unmask(store: Any, args: argparse.Namespace, command: str, seqs: list[int]) -> int:
    """Append the ``AuditUnmask`` entry for this command; return its seq. Runs before any output."""
    from ...audit import ledger

    body = {
        "action": "audit.unmask",
        **operator_identity(),
        "reason": args.reason.strip(),
        "command": command,
        "entries": seqs,
        "at": datetime.now(UTC).isoformat(),
    }
    raw = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return ledger(store).record(direction="out", partner=UNMASK_PARTNER, operation=UNMASK_OPERATION, raw=raw,
                              outcome="ok", document_id=uuid.uuid4().hex)


def refresh_index(store: Any, *, rebuild: bool = False):
    """Bring the subject index up to date, with a progress bar on stderr when that takes a while
    (the first search on a large ledger parses every entry: about 5,000-10,000 per second)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ...audit import ledger
    from ...audit.query import index_position, rebuild_index, update_index

    pending = ledger(store).head()[0] - (0 if rebuild else index_position(store.engine)[0])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=pending < 20_000) as bar:
        task = bar.add_task("indexing dossier and procedure codes", total=None)

        def progress(done: int, head: int) -> None:
            bar.update(task, completed=done, total=head)

        return (rebuild_index if rebuild else update_index)(store.engine, progress=progress)


def _store():
    from ...store import open_store

    return open_store(load_settings())


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} ms"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# --- audit search -----------------------------------------------------------------------------------
def cmd_audit_search(args: argparse.Namespace) -> int:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from ...audit.masking import Masker
    from ...audit.query import SearchQuery, search
    from ...errors import ConfigurationError

    check_unmask(args)
    if args.limit is not None and args.limit < 1:
        raise ConfigurationError(f"--limit must be at least 1, got {args.limit}")
    query = SearchQuery(
        dossier=args.dossier, procedure=args.procedure, partner=args.partner, operation=args.operation,
        outcome=args.outcome, direction=args.direction, since=parse_moment(args.since, "--since"),
        until=parse_moment(args.until, "--until", end=True), document=args.document, unparsed=args.unparsed,
        limit=args.limit, oldest_first=args.oldest_first,
    )
    store = _store()
    if args.reindex:
        report = refresh_index(store, rebuild=True)
        err_console.print(f"subject index rebuilt: {report.indexed} entries, {report.subjects} codes, "
                              f"{report.unparsed} unparsed body(ies) in {report.seconds:.1f} s")
    elif query.dossier or query.procedure or query.unparsed:
        refresh_index(store)
    entries = search(store.engine, query, refresh_index=False)
    masker = Masker(enabled=not args.unmask)
    if args.unmask:
        seq = record_unmask(store, args, "audit search " + " ".join(_argv_of(args)), [e.seq for e in entries])
        err_console.print(f"personal data shown; recorded as audit entry {seq}")
    if args.json:
        console.print_json(json.dumps([e.as_dict(masker.text) for e in entries], ensure_ascii=False))
        return 0
    order = "oldest first" if args.oldest_first else "newest first"
    table = Table(title=f"{len(entries)} audit entr{'y' if len(entries) == 1 else 'ies'} ({order})",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0))
    # Narrow terminals fold the wide cells (date over time, long ids) instead of dropping columns.
    for col, justify, width in (("seq", "right", 4), ("time (UTC)", "left", 10), ("dir", "left", 3),
                                ("partner", "left", 6), ("operation", "left", 8), ("DocumentId", "left", 8),
                                ("outcome", "left", 5), ("latency", "right", 7), ("size", "right", 7)):
        table.add_column(col, justify=justify, min_width=width, overflow="fold")  # type: ignore[arg-type]
    for e in entries:
        outcome = e.outcome if e.outcome in ("ok", "sent") else f"[red]{escape(e.outcome)}[/]"
        table.add_row(str(e.seq), _when(e.recorded_at), e.direction, escape(e.partner), escape(e.operation),
                      escape(e.document_id or ""), outcome, _ms(e.latency_ms), _size(e.body_size))
    console.print(table)
    if query.limit is not None and len(entries) == query.limit:
        console.print(f"[dim]showing the first {query.limit}; use --limit to see more[/]")
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The filters of a search as options, for the unmask record (what exactly was looked at)."""
    parts = []
    for name in ("dossier", "procedure", "partner", "operation", "outcome", "direction", "since", "until",
                 "document", "limit"):
        value = getattr(args, name, None)
        if value is not None:
            parts.append(f"--{name} {value}")
    for flag in ("unparsed", "oldest_first"):
        if getattr(args, flag, False):
            parts.append("--" + flag.replace("_", "-"))
    return parts


# --- audit show -------------------------------------------------------------------------------------
def cmd_audit_show(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ...audit import ledger
    from ...audit.masking import Masker
    from ...audit.query import SignatureCheck, load_entry, verify_entry_signature
    from ...errors import ConfigurationError, HubError

    check_unmask(args)
    if (args.raw or args.output) and not args.unmask:
        raise ConfigurationError("--raw/--output write the exact stored bytes, which hold personal data: "
                                 'add --unmask --reason "..."')
    store = _store()
    detail = load_entry(store.engine, args.seq)
    if detail is None:
        head = ledger(store).head()[0]
        if 1 <= args.seq <= head:
            raise ConfigurationError(f"audit entry {args.seq} is no longer in the store: pruned after an export "
                                     "(its archive holds it) or removed ('lienthong audit verify' tells which)")
        raise ConfigurationError(f"no audit entry {args.seq} (the ledger has entries 1..{head}"
                                 f"{'' if head else ', it is empty'})")
    entry = detail.entry
    if args.unmask:
        seq = record_unmask(store, args, f"audit show {args.seq}" + (" --raw" if args.raw or args.output else ""),
                            [args.seq])
        err_console.print(f"personal data shown; recorded as audit entry {seq}")
    if args.raw or args.output:
        if detail.raw is None:
            raise ConfigurationError(f"audit entry {args.seq}: {detail.body_problem}")
        if args.output:
            Path(args.output).write_bytes(detail.raw)
            err_console.print(f"wrote the {len(detail.raw)} bytes of entry {args.seq} to {args.output}")
        else:
            sys.stdout.buffer.write(detail.raw)
            sys.stdout.buffer.flush()
        if detail.body_problem:
            err_console.print(f"[red]warning[/]: {escape(detail.body_problem)}")
            return EXIT_FAILURE
        return 0

    try:
        from ....signing.cli import trust_store_for

        trust = trust_store_for(load_settings())
    except HubError as exc:
        signature = SignatureCheck("not_checked", f"cannot load the trust store: {exc}", code=exc.code)
    else:
        signature = verify_entry_signature(entry, detail.raw, trust) if detail.body_problem is None else \
            SignatureCheck("not_checked", "the stored body does not match its digest; its signature is not checked")
    masker = Masker(enabled=not args.unmask)
    body_text = masker.body_text(detail.raw or b"")
    body_check = {"ok": detail.body_problem is None, "problem": detail.body_problem, "sha256": entry.body_sha256,
                  "size": entry.body_size}
    failed = detail.body_problem is not None or signature.status == "invalid"
    if args.json:
        console.print_json(json.dumps({"entry": entry.as_dict(masker.text), "body_check": body_check,
                                           "signature": signature.as_dict(), "masked": not args.unmask,
                                           "body": body_text}, ensure_ascii=False))
        return EXIT_FAILURE if failed else 0
    meta = Table(title=f"audit entry {entry.seq}", show_header=False)
    rows = [("recorded at", entry.recorded_at.isoformat()), ("direction", entry.direction),
            ("partner / operation", f"{entry.partner} / {entry.operation}"),
            ("DocumentId", entry.document_id or "-"), ("correlation id", entry.correlation_id or "-"),
            ("from → to", f"{entry.from_agency or '-'} → {entry.to_agency or '-'}"),
            ("outcome", entry.outcome), ("latency", _ms(entry.latency_ms) or "-"), ("attempt", str(entry.attempt)),
            ("error", masker.text(entry.error) or "-"), ("body", f"{entry.body_size} bytes, sha256 {entry.body_sha256}")]
    for label, value in rows:
        meta.add_row(label, escape(value))
    console.print(meta)
    if detail.body_problem is None:
        console.print("[green]body intact[/]: the stored bytes match body_sha256")
    else:
        console.print(f"[red]body does not match its record[/]: {escape(detail.body_problem)}")
    colour = {"valid": "green", "invalid": "red"}.get(signature.status, "yellow")
    at = f" (certificates checked at {signature.verified_at.isoformat()})" if signature.verified_at else ""
    code = f" [{signature.code}]" if signature.code and signature.status == "invalid" else ""
    console.print(f"[{colour}]signature {signature.status}[/]{escape(code)}: {escape(signature.message)}{at}")
    if signature.signer_agency:
        console.print(f"  signer agency {escape(signature.signer_agency)}")
    console.print(f"\n[bold]message[/] ({'personal data masked' if not args.unmask else 'unmasked'}; "
                      "--raw --unmask for the exact bytes):")
    console.print(escape(body_text) or "[dim](empty)[/]", soft_wrap=True)
    return EXIT_FAILURE if failed else 0


# --- audit dossier ----------------------------------------------------------------------------------
def _status_label(code: str | None) -> str:
    if not code:
        return ""
    try:
        from ....mappings.tables import load_table

        return f"{code} {load_table('dossier_status').label(int(code))}"
    except Exception:  # noqa: BLE001 - an unknown code is shown as it was sent
        return code


def cmd_audit_dossier(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from ...audit.masking import Masker
    from ...audit.query import dossier_timeline
    from ...errors import ConfigurationError

    check_unmask(args)
    store = _store()
    refresh_index(store)
    items, unparsed = dossier_timeline(store.engine, args.code, refresh_index=False)
    if not items:
        hint = f" ({unparsed} ledger body(ies) could not be parsed: 'audit search --unparsed')" if unparsed else ""
        raise ConfigurationError(f"no audit entry mentions dossier {args.code}{hint}")
    masker = Masker(enabled=not args.unmask)
    for item in items:  # learn every personal value of the timeline before masking any text
        for record in [*item.request_records, *item.reply_records]:
            for key, value in record.items():
                masker.field(key, value)
    if args.unmask:
        seqs = sorted(e.seq for item in items for e in (item.request, item.reply) if e is not None)
        seq = record_unmask(store, args, f"audit dossier {args.code}", seqs)
        err_console.print(f"personal data shown; recorded as audit entry {seq}")

    def masked(records: list[dict[str, str]]) -> list[dict[str, str | None]]:
        return [{k: masker.field(k, v) for k, v in r.items()} for r in records]

    if args.json:
        out = []
        for item in items:
            out.append({
                "request": item.request.as_dict(masker.text) if item.request else None,
                "reply": item.reply.as_dict(masker.text) if item.reply else None,
                "operation": item.first.operation, "outcome": item.outcome, "status": item.status,
                "answer": masker.text(item.answer),
                "request_records": masked(item.request_records), "reply_records": masked(item.reply_records),
            })
        console.print_json(json.dumps({"dossier": args.code, "masked": not args.unmask, "unparsed": unparsed,
                                           "exchanges": out}, ensure_ascii=False))
        return 0
    # One block per exchange rather than a wide table: steps and answers are sentences, and the
    # timeline must stay readable in an 80-column terminal.
    console.print(f"[bold]dossier {escape(args.code)}[/]: {len(items)} exchange(s), in ledger order "
                      f"({'personal data masked' if not args.unmask else 'unmasked'})")
    for item in items:
        seqs = "/".join(str(e.seq) for e in (item.request, item.reply) if e is not None)
        outcome = item.outcome if item.outcome in ("ok", "sent") else f"[red]{escape(item.outcome)}[/]"
        latency = f"  {_ms(item.reply.latency_ms)}" if item.reply and item.reply.latency_ms is not None else ""
        if item.request is None:
            latency += "  [dim](reply without a recorded request)[/]"
        console.print(f"\n[bold]#{seqs}[/]  {_when(item.first.recorded_at)}  {escape(item.first.operation)}"
                          f"  {outcome}{latency}")
        console.print(f"      DocumentId {escape(item.first.document_id or '-')} (attempt {item.first.attempt})")
        if item.status:
            console.print(f"      status {escape(_status_label(item.status))}")
        for s in item.steps:
            text = masker.text(s.get("NoiDungXuLy", "")) or ""
            console.print(f"      step {escape(_status_label(s.get('TrangThai')))}"
                              f"{' at ' + escape(s['ThoiDiemXuLy']) if s.get('ThoiDiemXuLy') else ''}: {escape(text)}")
        if item.answer:
            console.print(f"      answer {escape(masker.text(item.answer) or '')}")
        error = (item.reply or item.first).error
        if error:
            console.print(f"      [red]error[/] {escape(masker.text(error) or '')}")
    if unparsed:
        console.print(f"[yellow]{unparsed} ledger body(ies) could not be parsed and may hide messages about "
                          "this dossier[/] ('lienthong audit search --unparsed')")
    return 0


# --- audit stats ------------------------------------------------------------------------------------
def cmd_audit_stats(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ...audit.stats import compute_stats
    from ...errors import ConfigurationError

    if args.json and args.csv:
        raise ConfigurationError("choose one of --json and --csv")
    stats = compute_stats(_store().engine, since=parse_moment(args.since, "--since"),
                          until=parse_moment(args.until, "--until", end=True))
    if args.json:
        console.print_json(json.dumps(stats.as_dict(), ensure_ascii=False))
        return 0
    if args.csv:
        sys.stdout.write(stats.to_csv())
        sys.stdout.flush()
        return 0
    since = stats.since.isoformat() if stats.since else "the first entry"
    until = stats.until.isoformat() if stats.until else "now"
    partners = Table(title=f"audit statistics from {since} to {until}: {stats.messages} messages, "
                           f"{stats.failures} failure(s)")
    for col in ("partner", "messages", "failures", "bytes out", "bytes in", "p50", "p95"):
        partners.add_column(col, justify="left" if col == "partner" else "right")
    for p in stats.partners:
        partners.add_row(p.partner, str(p.messages), str(p.failures) if not p.failures else f"[red]{p.failures}[/]",
                         _size(p.bytes_out), _size(p.bytes_in), _ms(p.latency_p50_ms), _ms(p.latency_p95_ms))
    console.print(partners)
    ops = Table(title="by operation (latency of replies)")
    for col in ("partner", "operation", "requests", "replies", "outcomes", "failures", "p50", "p95"):
        ops.add_column(col, justify="right" if col in ("requests", "replies", "failures", "p50", "p95") else "left")
    for o in stats.operations:
        ops.add_row(o.partner, o.operation, str(o.requests), str(o.replies),
                    ", ".join(f"{k} {v}" for k, v in sorted(o.outcomes.items())), str(o.failures),
                    _ms(o.latency_p50_ms), _ms(o.latency_p95_ms))
    console.print(ops)
    return 0


# --- registration -----------------------------------------------------------------------------------
def _unmask_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unmask", action="store_true",
                        help="show personal data (owner names, ID numbers, phones, e-mails); needs --reason "
                             "and is itself recorded in the audit trail")
    parser.add_argument("--reason", help="why personal data must be shown (recorded with --unmask)")


def register(audit_sub: Any) -> None:
    """Add ``search``, ``show``, ``dossier`` and ``stats`` to the ``lienthong audit`` sub-commands."""
    s = audit_sub.add_parser("search", help="find entries by dossier, procedure, partner, operation, outcome, "
                                            "time or DocumentId")
    s.add_argument("--dossier", metavar="MaHoSo", help="entries whose message mentions this dossier code "
                                                        "(and the replies to them)")
    s.add_argument("--procedure", metavar="MaTTHC", help="entries whose message mentions this procedure code")
    s.add_argument("--partner", help="csdl_tthc, dvc_portal, baocao, hub")
    s.add_argument("--operation", help="e.g. DongBoHoSoMC, CapNhatTienDoHoSoMC, LayThuTuc")
    s.add_argument("--outcome", help="sent, ok, fault, timeout, unavailable, rejected, error, …")
    s.add_argument("--direction", choices=["out", "in"])
    s.add_argument("--since", help="from this ISO date/time (UTC unless an offset is given)")
    s.add_argument("--until", help="before this ISO date/time; a bare date includes that whole day")
    s.add_argument("--document", metavar="DocumentId", help="a message id: the request and its replies")
    s.add_argument("--unparsed", action="store_true", help="only entries whose body could not be parsed")
    s.add_argument("--limit", type=int, default=50, help="at most this many entries (default 50)")
    s.add_argument("--oldest-first", action="store_true", help="ledger order (default: newest first)")
    s.add_argument("--reindex", action="store_true", help="rebuild the dossier/procedure index from the whole "
                                                          "ledger first")
    s.add_argument("--json", action="store_true", help="machine-readable entries")
    _unmask_options(s)
    s.set_defaults(func=cmd_audit_search)

    sh = audit_sub.add_parser("show", help="one entry: metadata, the stored message, its signature re-verified")
    sh.add_argument("seq", type=int)
    sh.add_argument("--raw", action="store_true", help="write the exact stored bytes to stdout (needs --unmask)")
    sh.add_argument("--output", metavar="FILE", help="write the exact stored bytes to FILE (needs --unmask)")
    sh.add_argument("--json", action="store_true")
    _unmask_options(sh)
    sh.set_defaults(func=cmd_audit_show)

    d = audit_sub.add_parser("dossier", help="the timeline of every message about one dossier, in order")
    d.add_argument("code", metavar="MaHoSo")
    d.add_argument("--json", action="store_true")
    _unmask_options(d)
    d.set_defaults(func=cmd_audit_dossier)

    st = audit_sub.add_parser("stats", help="counts by partner, operation and outcome; bytes; latency p50/p95; "
                                            "failures")
    st.add_argument("--since", help="from this ISO date/time (UTC unless an offset is given)")
    st.add_argument("--until", help="before this ISO date/time; a bare date includes that whole day")
    st.add_argument("--json", action="store_true")
    st.add_argument("--csv", action="store_true", help="one row per partner and operation")
    st.set_defaults(func=cmd_audit_stats)
