"""``lienthong sync tthc`` and ``lienthong tthc``: the procedure catalogue and its local copy."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape

from .console import console, err_console, load_settings, parse_moment


def cmd_sync_tthc(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..flows.catalogue import open_catalogue, sync_catalogue
    from ..store import open_store

    settings = load_settings()
    store = open_store(settings)
    client = open_catalogue(settings, store)
    since = parse_moment(args.since, "--since")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=args.json) as bar:
        task = bar.add_task("listing the national catalogue", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "fetch":
                bar.update(task, description="fetching procedures", completed=done, total=total)

        from functools import partial

        from ..flows.catalogue import csdl_client

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
    from ..flows.catalogue import list_procedures
    from ..store import open_store

    rows = list_procedures(open_store(load_settings()).engine, agency=args.agency, field_code=args.field,
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
    from ...mappings.diff import diff_documents, format_diff
    from ..errors import ConfigurationError
    from ..flows.catalogue import procedure_history
    from ..store import open_store

    row, versions = procedure_history(open_store(load_settings()).engine, args.code)
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


def register(sub) -> None:
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
