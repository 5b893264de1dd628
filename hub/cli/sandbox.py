"""``lienthong sandbox``: the emulators of the national services and of a one-stop system."""

from __future__ import annotations

import argparse


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from ...sandbox.server import main as sandbox_main

    return sandbox_main(args.sandbox_args)


def cmd_sandbox_onestop(args: argparse.Namespace) -> int:
    from ...sandbox.onestop import main as onestop_main

    return onestop_main(args.sandbox_args, prog="lienthong sandbox onestop")


def register(sub) -> None:
    sb = sub.add_parser("sandbox", help="the emulator of the national services")
    sb_sub = sb.add_subparsers(dest="sandbox_command", metavar="ACTION")
    sb_sub.required = True
    serve = sb_sub.add_parser("serve", help="serve CSDL TTHC, DVC portal and reporting (see --help)",
                              add_help=False)
    serve.set_defaults(func=cmd_sandbox_serve, passthrough=True)  # options parsed by the sandbox itself
    onestop = sb_sub.add_parser("onestop", help="fill, move and export the synthetic one-stop database (see --help)",
                                add_help=False)
    onestop.set_defaults(func=cmd_sandbox_onestop, passthrough=True)
