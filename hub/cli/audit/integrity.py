"""``lienthong audit verify|seal|export|exports|verify-archive|prune``: the ledger's integrity commands.

Registered on the ``audit`` sub-command by :func:`register` (called from :mod:`lienthong.hub.cli.audit`). Each
command prints a short human summary, or with ``--json`` one JSON object, and exits 1 with one
specific line naming the entry, seal, tombstone or archive file at fault.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..console import EXIT_FAILURE, console, err_console, load_settings

__all__ = ["register"]


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from ....signing.cli import trust_store_for
    from ...audit.seal import verify_ledger
    from ...audit.tsa import token_checker
    from ...errors import ConfigurationError
    from ...store import open_store

    settings = load_settings()
    store = open_store(settings)
    try:
        trust = trust_store_for(settings)
    except ConfigurationError:
        trust = None  # the chain can still be checked; any seal will say it cannot be
    report = verify_ledger(store.engine, trust, settings.agency_code, deep=args.deep, all_signatures=args.deep,
                           check_timestamp=token_checker(trust) if trust is not None else None,
                           max_unsealed_age=args.max_unsealed_age)
    if args.json:
        console.print_json(json.dumps(report.as_dict()))
        return 0 if report.ok else EXIT_FAILURE
    if not report.ok:
        err_console.print(f"[red]audit ledger does not verify[/] at {escape(report.where or '?')}: "
                          f"{escape(report.problem or '')}")
        return EXIT_FAILURE
    pruned = f" (entries up to {report.pruned_through} pruned, anchored by tombstone {report.tombstones})" \
        if report.pruned_through else ""
    console.print(f"[green]audit chain intact[/]: {report.chain.checked} entries verified{pruned}")
    stamps = f", {report.timestamps} time-stamped" if report.timestamps else ""
    console.print(f"[green]seals valid[/]: {report.seals} seals verified{stamps}")
    if report.unsealed:
        after = f"the last seal (entry {report.last_sealed_seq})" if report.last_sealed_seq is not None else "no seal yet"
        console.print(f"[yellow]unsealed tail[/]: {report.unsealed} entries after {after}; "
                      "run 'lienthong audit seal'")
    for warning in report.warnings:
        console.print(f"[yellow]note[/]: {escape(warning)}")
    return 0


def cmd_audit_seal(args: argparse.Namespace) -> int:
    from ....signing.cli import signer_for
    from ...audit.seal import create_seal
    from ...audit.tsa import timestamper_for
    from ...store import open_store

    settings = load_settings()
    result = create_seal(open_store(settings).engine, signer_for(settings), force=args.force,
                         timestamper=timestamper_for(settings))
    if args.json:
        console.print_json(json.dumps({"created": result.created, "seal": result.number, "head_seq": result.head_seq,
                                       "head_hash": result.head_hash, "timestamped": result.timestamped,
                                       "reason": result.reason or None}))
    elif result.created:
        stamped = " and time-stamped" if result.timestamped else ""
        console.print(f"[green]seal {result.number}[/] signed{stamped}: entry {result.head_seq} "
                      f"({result.head_hash[:16]}…)")
    else:
        console.print(f"no new seal: {result.reason}")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from ....signing.cli import signer_for
    from ...audit.archive import export_archive, parse_when
    from ...audit.tsa import timestamper_for
    from ...store import open_store

    settings = load_settings()
    result = export_archive(
        open_store(settings).engine, signer_for(settings), Path(args.out), ca_paths=settings.trust_anchor_paths,
        start=parse_when(args.date_from) if args.date_from else None,
        end=parse_when(args.date_to, end=True) if args.date_to else None,
        from_seq=args.from_seq, to_seq=args.to_seq, timestamper=timestamper_for(settings))
    data = {"archive": str(result.path), "sha256": result.archive_sha256, "first_seq": result.first_seq,
            "last_seq": result.last_seq, "entries": result.entries, "seals": result.seals,
            "previous_archive_sha256": result.prev_archive_sha256, "sealed_now": result.sealed_now}
    if args.json:
        console.print_json(json.dumps(data))
        return 0
    if result.sealed_now:
        console.print("sealed the ledger first: no seal covered the last exported entry yet")
    console.print(f"[green]exported[/] entries {result.first_seq}..{result.last_seq} ({result.entries}) with "
                  f"{result.seals} seal(s) to {result.path}")
    console.print(f"  archive SHA-256 {result.archive_sha256}")
    if result.prev_archive_sha256:
        console.print(f"  linked to the previous export {result.prev_archive_sha256}")
    return 0


def cmd_audit_verify_archive(args: argparse.Namespace) -> int:
    from ...audit.archive import verify_archive

    report = verify_archive(Path(args.archive), Path(args.ca), previous=Path(args.previous) if args.previous else None,
                            hub_agency=args.agency)
    if args.json:
        console.print_json(json.dumps(report.as_dict()))
        return 0
    table = Table(title=f"{Path(args.archive).name}: verified", show_header=False)
    for label, value in (
        ("entries", f"{report.first_seq}..{report.last_seq} ({report.entries}), hash chain intact"),
        ("files", f"{report.files} match the signed manifest (hub {report.hub_agency}, {report.created_at})"),
        ("seals", f"{report.seals} valid, {report.timestamps} time-stamp(s) valid"),
        ("message signatures", f"{report.signatures_verified} valid, {report.signatures_not_required} "
                               "unsigned or rejected messages (faults, timeouts) not required to verify"),
        ("previous archive", "link verified" if report.previous_checked else "not given"),
        ("archive SHA-256", report.archive_sha256),
    ):
        table.add_row(label, escape(value))
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]note[/]: {escape(warning)}")
    return 0


def cmd_audit_prune(args: argparse.Namespace) -> int:
    from ....signing.cli import signer_for, trust_store_for
    from ...audit.archive import parse_when
    from ...audit.seal import _ranges_text, plan_prune, prune
    from ...store import open_store

    settings = load_settings()
    engine = open_store(settings).engine
    before = parse_when(args.before)
    plan = plan_prune(engine, before)
    if not args.yes:
        if args.json:
            console.print_json(json.dumps({"dry_run": True, **plan.as_dict()}))
        elif plan.count == 0:
            console.print(f"nothing to prune: no entry still in the ledger was recorded before {args.before}")
        else:
            console.print(f"would remove entries {plan.first_seq}..{plan.last_seq} ({plan.count}) recorded before "
                          f"{args.before}")
            for sha, lo, hi in plan.archives:
                console.print(f"  exported in archive {sha[:16]}… (entries {lo}..{hi})")
            if plan.uncovered:
                err_console.print(f"[red]refused[/]: entries {_ranges_text(plan.uncovered)} are not in any export; run "
                                  "'lienthong audit export' for them first")
                return EXIT_FAILURE
            console.print("dry run: nothing removed; add --yes to prune and write the signed tombstone")
        return 0
    done, number = prune(engine, signer_for(settings), trust_store_for(settings), before)
    if args.json:
        console.print_json(json.dumps({"dry_run": False, "tombstone": number, **done.as_dict()}))
    else:
        console.print(f"[green]pruned[/] entries {done.first_seq}..{done.last_seq} ({done.count}); "
                      f"tombstone {number} signed (anchor {done.last_hash[:16]}…)")
    return 0


def cmd_audit_exports(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from ...store import open_store
    from ...store.models import AuditExport, AuditTombstone

    engine = open_store(load_settings()).engine
    exports, tombs = AuditExport.__table__, AuditTombstone.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(exports).order_by(exports.c.id)).all()
        pruned = conn.execute(select(tombs.c.id, tombs.c.created_at, tombs.c.first_seq, tombs.c.last_seq,
                                     tombs.c.archive_sha256).order_by(tombs.c.id)).all()
    if args.json:
        console.print_json(json.dumps({
            "exports": [{"id": r.id, "created_at": r.created_at.isoformat(), "created_by": r.created_by,
                         "first_seq": r.first_seq, "last_seq": r.last_seq, "entries": r.entry_count,
                         "archive_sha256": r.archive_sha256, "previous_archive_sha256": r.prev_archive_sha256,
                         "file": r.file_name} for r in rows],
            "tombstones": [{"id": t.id, "created_at": t.created_at.isoformat(), "first_seq": t.first_seq,
                            "last_seq": t.last_seq, "archive_sha256": t.archive_sha256} for t in pruned]}))
        return 0
    table = Table(title="audit exports (oldest first)")
    for column in ("#", "written (UTC)", "entries", "archive SHA-256", "file"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r.id), r.created_at.strftime("%Y-%m-%d %H:%M"), f"{r.first_seq}..{r.last_seq}",
                      r.archive_sha256[:16] + "…", escape(r.file_name))
    console.print(table if rows else "no exports yet: lienthong audit export --from DATE --to DATE OUT.zip")
    for t in pruned:
        console.print(f"tombstone {t.id}: entries {t.first_seq}..{t.last_seq} pruned on "
                      f"{t.created_at.strftime('%Y-%m-%d %H:%M')} (last in archive {t.archive_sha256[:16]}…)")
    return 0


def _duration(value: str):
    """``90m``, ``2h``, ``1d`` (or plain seconds) as a timedelta, for argparse."""
    from datetime import timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        amount = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration such as 90m, 2h or 1d") from None
    if amount <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: the age must be positive")
    return timedelta(seconds=amount * units[unit])


def register(audit_sub: argparse._SubParsersAction) -> None:
    """Add the integrity actions to ``lienthong audit``."""
    av = audit_sub.add_parser("verify", help="check the hash chain, every seal and tombstone; exit 1 naming the "
                                             "first entry or seal that fails")
    av.add_argument("--deep", action="store_true", help="also inflate every body and check it against its digest, "
                                                        "and verify every seal's signature (not only the newest)")
    av.add_argument("--max-unsealed-age", type=_duration, metavar="AGE",
                    help="fail when an entry older than AGE (e.g. 2h, 90m, 1d) is not sealed yet: seals deleted, "
                         "or sealing stopped")
    av.add_argument("--json", action="store_true", help="machine-readable result")
    av.set_defaults(func=cmd_audit_verify)

    seal = audit_sub.add_parser("seal", help="sign a checkpoint of the chain head with the hub key (and time-stamp "
                                             "it when LIENTHONG_TSA_URL is set)")
    seal.add_argument("--force", action="store_true", help="seal even when nothing was appended since the last seal")
    seal.add_argument("--json", action="store_true", help="machine-readable result")
    seal.set_defaults(func=cmd_audit_seal)

    ex = audit_sub.add_parser("export", help="write a self-contained, signed archive of a range for inspectors")
    ex.add_argument("out", metavar="OUT.zip")
    ex.add_argument("--from", dest="date_from", metavar="DATE", help="first day (YYYY-MM-DD, UTC) or ISO time")
    ex.add_argument("--to", dest="date_to", metavar="DATE", help="last day, included (YYYY-MM-DD) or ISO time, excluded")
    ex.add_argument("--from-seq", type=int, metavar="SEQ", help="first entry (instead of --from)")
    ex.add_argument("--to-seq", type=int, metavar="SEQ", help="last entry (instead of --to)")
    ex.add_argument("--json", action="store_true", help="machine-readable result")
    ex.set_defaults(func=cmd_audit_export)

    el = audit_sub.add_parser("exports", help="the archives written by audit export, and what prune removed")
    el.add_argument("--json", action="store_true", help="machine-readable list")
    el.set_defaults(func=cmd_audit_exports)

    va = audit_sub.add_parser("verify-archive", help="verify an export archive offline with only the CA certificate")
    va.add_argument("archive", metavar="ARCHIVE.zip")
    va.add_argument("--ca", required=True, metavar="CA.pem", help="the CA certificate the signatures must chain to")
    va.add_argument("--previous", metavar="PREV.zip", help="the previous export, to check the link between them")
    va.add_argument("--agency", metavar="CODE", help="the hub's agency code the archive must be signed by "
                                                     "(e.g. 000.00.00.G10)")
    va.add_argument("--json", action="store_true", help="machine-readable result")
    va.set_defaults(func=cmd_audit_verify_archive)

    pr = audit_sub.add_parser("prune", help="remove exported entries recorded before DATE behind a signed tombstone "
                                            "(dry run unless --yes)")
    pr.add_argument("--before", required=True, metavar="DATE", help="YYYY-MM-DD (UTC midnight) or ISO time")
    pr.add_argument("--yes", action="store_true", help="really prune (default: say what would go)")
    pr.add_argument("--json", action="store_true", help="machine-readable result")
    pr.set_defaults(func=cmd_audit_prune)
