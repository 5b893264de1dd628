"""The hub's own database: engines, schema migrations and sessions.

The store is SQLite under ``LIENTHONG_HOME`` by default (embedded, nothing to install) and
PostgreSQL when ``LIENTHONG_DB_URL`` says so; the rest of the hub sees one SQLAlchemy engine and
must not care which. What differs is confined here:

* **SQLite** is opened in WAL mode (readers never block the writer), with foreign keys enforced
  and a 30 s busy timeout (several Airflow task processes share one file). SQLAlchemy, not the
  ``sqlite3`` driver, emits ``BEGIN``, so transactions really start where SQLAlchemy says (the
  driver's legacy mode would silently autocommit DDL and SELECTs). A connection can ask for
  ``BEGIN IMMEDIATE`` through the ``sqlite_begin`` execution option, taking the write lock up
  front: a read-then-write transaction (the audit ledger's append) then cannot interleave with
  another process's.
* **PostgreSQL** goes through psycopg 3; plain ``postgresql://`` URLs are accepted and rewritten.

The schema is owned by Alembic (``hub/store/migrations``) and upgraded programmatically by
:func:`upgrade`, which is safe to call from several processes at once.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config

    from ..settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Execution option naming the ``BEGIN`` flavour SQLite should use for the next transaction on a
#: connection: ``"DEFERRED"`` (default), ``"IMMEDIATE"`` or ``"EXCLUSIVE"``. Ignored elsewhere.
SQLITE_BEGIN_OPTION = "sqlite_begin"
_SQLITE_BEGIN_MODES = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Key of the PostgreSQL advisory lock held while migrating, so concurrent upgrades queue up
#: instead of racing to create the same tables. (Arbitrary constant: "LTHUBMIG" in ASCII.)
_PG_MIGRATION_LOCK_KEY = 0x4C544855424D4947

# Every engine made here, so a forked child can drop (without closing) the parent's pooled
# connections: a SQLite or PostgreSQL connection must never be used from two processes.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL and pin the driver the hub supports for it.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://`` (psycopg 3 is the only
    PostgreSQL driver the hub ships with); ``sqlite://`` stays on the standard ``sqlite3`` driver.
    Anything else is a configuration error, named with the URL (password hidden).
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL {_hide_password(url)!r}: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in {"postgresql", "postgres"}:
        if driver not in {"", "psycopg"}:
            raise ConfigurationError(
                f"database URL {parsed.render_as_string(hide_password=True)!r} asks for driver {driver!r}; "
                "the hub supports PostgreSQL through psycopg 3 only (postgresql+psycopg://)"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in {"", "pysqlite"}:
            raise ConfigurationError(
                f"database URL {parsed.render_as_string(hide_password=True)!r} asks for driver {driver!r}; "
                "the hub supports SQLite through the standard sqlite3 module only (sqlite:///path)"
            )
        return parsed
    raise ConfigurationError(
        f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path/to/hub.db or postgresql://user@host/dbname"
    )


def _hide_password(url: Any) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL may still hold a password: show only its scheme
        return str(url).split("://", 1)[0] + "://…"


def _sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or ``None`` for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):  # URI filename (``?uri=true``)
        path = database[5:].split("?", 1)[0]
        return Path(path) if path and path != ":memory:" else None
    return Path(database)


def make_engine(url: str | URL, **engine_kwargs: Any) -> Engine:
    """Create an engine for the hub's store, configured for safe concurrent use.

    SQLite: the database's parent directory is created; each connection gets WAL journaling,
    ``foreign_keys=ON`` and ``busy_timeout`` of 30 s, and transactions are begun by SQLAlchemy
    (``BEGIN`` or, with ``execution_options(sqlite_begin="IMMEDIATE")``, ``BEGIN IMMEDIATE``).
    PostgreSQL: psycopg 3 with ``pool_pre_ping`` so connections dropped by a restart or a
    firewall are replaced instead of failing the next task.
    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        file = _sqlite_file(parsed)
        if file is not None:
            file.expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **engine_kwargs)
        _install_sqlite_hooks(engine, in_memory=file is None)
    else:
        engine_kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(parsed, **engine_kwargs)
    _ENGINES.add(engine)
    return engine


def _install_sqlite_hooks(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the driver (see _on_begin); PRAGMAs below then run immediately.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                mode = _set_wal(cursor)
                if str(mode).lower() != "wal":
                    log.warning("SQLite refused WAL journaling (mode is %s); concurrent readers will block", mode)
                # With WAL, NORMAL is durable across application crashes and much faster than FULL.
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return  # the caller asked for no transaction at all
        mode = str(options.get(SQLITE_BEGIN_OPTION, "DEFERRED")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION}={mode!r}: expected one of {sorted(_SQLITE_BEGIN_MODES)}")
        conn.exec_driver_sql("BEGIN" if mode == "DEFERRED" else f"BEGIN {mode}")


def _set_wal(cursor: Any) -> str:
    """Switch the database to WAL, retrying while another connection holds the lock.

    Switching a fresh file to WAL takes an exclusive lock and SQLite answers SQLITE_BUSY at once,
    without consulting the busy handler; several processes opening a new store together (workers
    starting up) would then fail spuriously. Retry with backoff for up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return str(cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _dispose_after_fork() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_dispose_after_fork)


# --- migrations -------------------------------------------------------------------------------
def alembic_config(url: str | URL | None = None, *, connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for the hub's migrations, built without an ini file.

    ``connection`` (used by :func:`upgrade`) makes ``env.py`` run on that connection inside its
    transaction; otherwise ``url`` (or ``LIENTHONG_DB_URL``/the default SQLite file) is used, which
    is how developers author revisions::

        from alembic import command
        from lienthong.hub.store import alembic_config
        command.revision(alembic_config("sqlite:///dev.db"), "add outbox", autogenerate=True)
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    # Revision files are named <rev>_<slug>.py, e.g. 0002_outbox.py; keep ids short and ordered.
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))  # ConfigParser interpolation
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str:
    """The newest migration shipped with this code (read once per process)."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise ConfigurationError(f"the hub's migrations have {len(heads)} heads {heads}; merge them into one")
    return heads[0]


def _is_known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:  # includes alembic's ResolutionError
        return False


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or ``None`` for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), idempotently.

    Safe to call concurrently from several processes: PostgreSQL migrations run under a
    transaction-scoped advisory lock, SQLite ones inside ``BEGIN IMMEDIATE``; the loser then finds
    the schema current and does nothing. The whole upgrade is one transaction on both backends,
    so a failed migration leaves the previous schema intact. On SQLite, foreign-key enforcement is
    suspended while tables are rebuilt (batch mode) and checked afterwards, as SQLite requires.
    """
    from alembic import command

    current = current_revision(engine)
    if revision == "head" and current == head_revision():
        return
    if current is not None and not _is_known_revision(current):
        raise ConfigurationError(
            f"the store {engine.url.render_as_string(hide_password=True)} is at schema revision {current!r}, "
            f"which this version of lienthong does not know (its newest is {head_revision()!r}): "
            "the database was migrated by a newer release; upgrade lienthong instead of downgrading the data"
        )
    backend = engine.dialect.name
    with engine.connect() as conn:
        if backend == "sqlite":
            # PRAGMA foreign_keys is a no-op inside a transaction, so set it before BEGIN, on the
            # driver connection (going through SQLAlchemy would begin the transaction first).
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")
            conn = conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        try:
            with conn.begin():
                if backend == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
                command.upgrade(alembic_config(connection=conn), revision)
                if backend == "sqlite":
                    violations = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if violations:
                        raise ConfigurationError(
                            f"migration to {revision} left {len(violations)} foreign-key violation(s), "
                            f"first: table {violations[0][0]} rowid {violations[0][1]} -> {violations[0][2]}; "
                            "rolled back"
                        )
        finally:
            if backend == "sqlite":
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")
    log.info("store %s upgraded to %s", engine.url.render_as_string(hide_password=True), revision)


# --- sessions and the Store handle ------------------------------------------------------------
@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On SQLite it takes the write lock at BEGIN (``BEGIN IMMEDIATE``), so a
    read-then-write (a claim, a breaker update, the intake's "which of these keys exist?") cannot
    interleave with another process's write, nor fail when its snapshot turns stale; on
    PostgreSQL callers take the row or advisory locks they need."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``. Objects stay usable after commit (``expire_on_commit=False``):
    the hub hands loaded rows to code that runs after the transaction ended (e.g. sending)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@dataclass(eq=False)
class Store:
    """An open, migrated store: the engine and its session factory (the audit ledger on it:
    :func:`lienthong.hub.audit.trail.ledger`)."""

    url: str = field(repr=False)  # may hold a password; the engine's repr hides it
    engine: Engine
    sessions: sessionmaker[Session] = field(repr=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction, committed on success and rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def open_store(settings: Settings) -> Store:
    """The store for ``settings.db_url``, migrated to the newest schema.

    Cached per URL in this process: engines own connection pools, and opening (and checking
    migrations) once per process rather than once per call keeps tasks and the CLI cheap.
    """
    key = normalize_url(settings.db_url).render_as_string(hide_password=False)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            engine = make_engine(key)
            try:
                upgrade(engine)
            except BaseException:
                engine.dispose()
                raise
            store = Store(url=key, engine=engine, sessions=session_factory(engine))
            _STORES[key] = store
        return store


def close_stores() -> None:
    """Dispose every store :func:`open_store` cached (tests, shutdown, after changing settings)."""
    with _STORES_LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.dispose()
