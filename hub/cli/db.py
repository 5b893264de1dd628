"""``lienthong db``: the hub's store."""

from __future__ import annotations

import argparse

from .console import console, load_settings, redact


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from ..store import open_store

    settings = load_settings()
    open_store(settings)
    console.print(f"store at {redact(settings.db_url)} is at the latest schema")
    return 0


def register(sub) -> None:
    db = sub.add_parser("db", help="the hub's store")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_sub.required = True
    db_sub.add_parser("upgrade", help="create or migrate the store to the latest schema").set_defaults(func=cmd_db_upgrade)
