"""``lienthong demo``: every flow end to end on the bundled sandbox."""

from __future__ import annotations

import argparse

from .console import console


def cmd_demo(args: argparse.Namespace) -> int:
    from ..flows.demo import run_demo

    return run_demo(console, procedures=args.procedures, transport=args.transport)


def register(sub) -> None:
    demo = sub.add_parser("demo", help="keys, sandbox, one signed exchange per service, audit check")
    demo.add_argument("--procedures", type=int, default=300, help="size of the sandbox catalogue")
    demo.add_argument("--transport", choices=("soap", "json"), default="soap",
                      help="json: the catalogue sync and the status push through the portal's JSON adapter")
    demo.set_defaults(func=cmd_demo)
