"""``lienthong dlq``: dead letters: list, show, replay, discard."""

from __future__ import annotations

import argparse
import json
import os

from rich.markup import escape

from .console import console, load_settings


def cmd_dlq(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..audit import ledger
    from ..delivery import outbox
    from ..errors import ConfigurationError
    from ..store import open_store

    store = open_store(load_settings())
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


def register(sub) -> None:
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
