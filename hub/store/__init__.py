"""The hub's own database: the engine and session helpers (:mod:`.engine`), the tables
(:mod:`.models`) and the schema migrations (``migrations/``, Alembic).

The store knows nothing of what is kept in it: the audit ledger, the outbox and the flows use it,
never the other way round (``tests/test_architecture.py``).
"""

from .engine import (
    MIGRATIONS_DIR,
    SQLITE_BEGIN_OPTION,
    SQLITE_BUSY_TIMEOUT_MS,
    Store,
    alembic_config,
    close_stores,
    current_revision,
    head_revision,
    make_engine,
    normalize_url,
    open_store,
    session_factory,
    upgrade,
    write_transaction,
)

__all__ = [
    "MIGRATIONS_DIR", "SQLITE_BEGIN_OPTION", "SQLITE_BUSY_TIMEOUT_MS", "Store", "alembic_config", "close_stores",
    "current_revision", "head_revision", "make_engine", "normalize_url", "open_store", "session_factory", "upgrade",
    "write_transaction",
]
