"""``lienthong keys``, ``sign``, ``verify``: the hub's signing key and certificates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .console import console, load_settings


def cmd_keys_init(args: argparse.Namespace) -> int:
    from ...signing.cli import cmd_keys_init as init

    settings = load_settings()
    files = init(settings)
    console.print(f"[green]PKI ready[/] in {settings.pki_dir}")
    for label, path in (("root CA", files.ca_cert), ("hub certificate", files.hub_cert),
                        ("national certificate", files.national_cert)):
        console.print(f"  {label:22} {path}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from ...signing.cli import cmd_sign as sign

    sys.stdout.buffer.write(sign(load_settings(), Path(args.file)))
    sys.stdout.buffer.flush()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ...signing.cli import cmd_verify as verify

    result = verify(load_settings(), Path(args.file))
    console.print(f"[green]valid signature[/] by {result.signer_subject} (agency {result.signer_agency})")
    return 0


def register(sub) -> None:
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
