"""``lienthong audit``: the audit trail of every message exchanged.

:mod:`.integrity` proves the trail whole (verify, seal, export, prune); :mod:`.read` finds and shows
what it holds (search, show, stats), masking personal data unless asked and recorded.
"""

from __future__ import annotations

from . import integrity, read


def register(sub) -> None:
    audit = sub.add_parser("audit", help="the audit trail of every message exchanged")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit_sub.required = True
    integrity.register(audit_sub)  # verify, seal, export, prune
    read.register(audit_sub)
