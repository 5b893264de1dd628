"""The ``lienthong`` command: every flow of the hub, runnable without Airflow.

Commands import what they need when they run, so ``lienthong --help`` stays instant and a
broken optional component cannot stop the others. Errors of the hub's own tree are printed as
one clear line (``error [CODE]: message``) with a non-zero exit status; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
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


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .audit import AuditTrail
    from .store import open_store

    report = AuditTrail(open_store(_settings()).engine).verify()
    if args.json:
        console.print_json(json.dumps({"ok": report.ok, "checked": report.checked,
                                       "first_bad_seq": report.first_bad_seq, "reason": report.reason}))
    elif report.ok:
        console.print(f"[green]audit chain intact[/]: {report.checked} entries verified")
    else:
        err_console.print(f"[red]audit chain broken[/] at entry {report.first_bad_seq}: {escape(report.reason or '')}")
    return 0 if report.ok else EXIT_FAILURE


# --- sandbox and health -----------------------------------------------------------------------
def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from ..sandbox.server import main as sandbox_main

    return sandbox_main(args.sandbox_args)


def cmd_healthcheck(args: argparse.Namespace) -> int:
    from .healthcheck import all_services, roundtrip

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


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

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
    av = audit_sub.add_parser("verify", help="recompute the hash chain; exit 1 naming the first bad entry")
    av.add_argument("--json", action="store_true", help="machine-readable result")
    av.set_defaults(func=cmd_audit_verify)

    sb = sub.add_parser("sandbox", help="the emulator of the national services")
    sb_sub = sb.add_subparsers(dest="sandbox_command", metavar="ACTION")
    sb_sub.required = True
    serve = sb_sub.add_parser("serve", help="serve CSDL TTHC, DVC portal and reporting (see --help)",
                              add_help=False)
    serve.set_defaults(func=cmd_sandbox_serve, passthrough=True)  # options parsed by the sandbox itself

    hc = sub.add_parser("healthcheck", help="one signed round trip to each configured national service")
    hc.add_argument("--service", action="append", choices=["csdl_tthc", "dvc_portal", "baocao"])
    hc.set_defaults(func=cmd_healthcheck)

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
