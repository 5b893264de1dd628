"""``lienthong healthcheck``: one signed round trip to each national service."""

from __future__ import annotations

import argparse

from rich.markup import escape

from ..errors import HubError
from .console import EXIT_FAILURE, console, err_console, load_settings


def cmd_healthcheck(args: argparse.Namespace) -> int:
    from ..flows.healthcheck import all_services, roundtrip

    settings = load_settings()
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


def register(sub) -> None:
    hc = sub.add_parser("healthcheck", help="one signed round trip to each configured national service")
    hc.add_argument("--service", action="append", choices=["csdl_tthc", "dvc_portal", "baocao"])
    hc.set_defaults(func=cmd_healthcheck)
