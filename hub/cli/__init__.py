"""The ``lienthong`` command: every flow of the hub, runnable without Airflow.

Commands import what they need when they run, so ``lienthong --help`` stays instant and a
broken optional component cannot stop the others. Errors of the hub's own tree are printed as
one clear line (``error [CODE]: message``) with a non-zero exit status; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from ..errors import HubError
from . import audit, catalogue, db, demo, dlq, healthcheck, intake, keys, push, report, sandbox, status
from .console import EXIT_FAILURE, EXIT_USAGE, console, err_console, parse_moment

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "build_parser", "console", "err_console", "main", "parse_moment"]

#: the command groups, in the order ``lienthong --help`` lists them; each module adds its parsers
GROUPS = (keys, db, audit, sandbox, healthcheck, catalogue, intake, push, report, status, dlq, demo)


def build_parser() -> argparse.ArgumentParser:
    from lienthong import __version__

    p = argparse.ArgumentParser(
        prog="lienthong",
        description="Liên thông Hub: signed SOAP/XML exchange with the national e-government systems.",
    )
    p.add_argument("--version", action="version", version=f"lienthong {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in GROUPS:
        group.register(sub)
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
