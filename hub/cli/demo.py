"""``lienthong demo``: every flow end to end on the bundled sandbox."""

from __future__ import annotations

import argparse

from .console import console


def cmd_demo(args: argparse.Namespace) -> int:
    from ..flows.demo import run_demo

    return run_demo(console, procedures=args.procedures)


def register(sub) -> None:
    demo = sub.add_parser("demo", help="keys, sandbox, one signed exchange per service, audit check")
    demo.add_argument("--procedures", type=int, default=300, help="size of the sandbox catalogue")
    demo.set_defaults(func=cmd_demo)
