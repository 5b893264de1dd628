"""``lienthong intake``: one-stop sources into the outbox, one cursor per source."""

from __future__ import annotations

import argparse
import json
import os

from rich.markup import escape

from ..errors import HubError
from .console import EXIT_FAILURE, console, err_console, load_settings, vn


def _intake_specs(args: argparse.Namespace, settings) -> list:
    """The sources this ``lienthong intake`` names: one given on the command line (--sql/--inbox,
    with --source-id as its identity), one of the sources file (--source-id), or all of it (--all)."""
    from ...connectors.sources.config import SourceSpec, load_sources, sources_file
    from ..errors import ConfigurationError

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
    from ..errors import ConfigurationError
    from ..flows.intake import CursorDecision, run_source, source_states
    from ..store import open_store

    settings = load_settings()
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
    console.print(sources_table(states))
    return 0


def sources_table(states):
    """The intake's sources: identity, where, how far, how the last run ended."""
    from rich.table import Table

    table = Table(title=f"{len(states)} intake source(s)")
    for col in ("source", "mapping", "location", "cursor", "last run"):
        table.add_column(col, overflow="fold")
    for st in states:
        last = st.last_run or {}
        when = vn(st.last_run_at) if st.last_run_at else "-"
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
    from ...connectors.sources.sql import CursorInvalid, SqlCursor, _shown

    if state.kind == "sql" or state.cursor.lstrip().startswith("{"):
        try:
            position = SqlCursor.decode(state.cursor)
        except CursorInvalid:
            return state.cursor[:80]
        return f"dossiers {_shown(position.dossiers)}, steps {_shown(position.steps)}"
    return "last file " + state.cursor.split("|sha256:", 1)[0]


def register(sub) -> None:
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
