"""The audit ledger: every message that crossed the hub's boundary, exactly as it crossed it.

- :mod:`.trail`: the hash-chained log itself (append, verify, read one entry) and :func:`ledger`,
  the one :class:`AuditTrail` per store engine;
- :mod:`.seal`: signed checkpoints of the chain head, and tombstones for pruned ranges;
- :mod:`.archive`: sealed, verifiable export bundles of a range of the log;
- :mod:`.query`: the derived subject index (which dossiers and procedures an entry is about) and search;
- :mod:`.stats`: the monthly figures an auditor asks for;
- :mod:`.masking`: what personal data is masked when entries are shown;
- :mod:`.tsa`: RFC 3161 time-stamps on seals.

The ledger uses the store (:mod:`lienthong.hub.store`); the store does not know the ledger.
"""

from .trail import ENTRY_COLUMNS, GENESIS_HASH, AuditRecord, AuditTrail, ChainReport, entry_digest, ledger

__all__ = ["ENTRY_COLUMNS", "GENESIS_HASH", "AuditRecord", "AuditTrail", "ChainReport", "entry_digest", "ledger"]
