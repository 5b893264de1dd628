"""Shared fixtures for the whole suite.

* ``tmp_home``: a private ``LIENTHONG_HOME`` (and no ``LIENTHONG_*`` setting leaked from the
  developer's shell), so ``Settings.from_env()`` in a test only sees the test's own files.
* ``db_url``: the URL of an **empty** database (no tables), once per backend: a SQLite file
  always, and a PostgreSQL schema of its own when ``LIENTHONG_TEST_PG_URL`` is set (e.g.
  ``postgresql://postgres@127.0.0.1:5432/test``); without it the PostgreSQL variant is skipped.
  For tests about migrations or opening stores.
* ``engine``: an engine on a database **migrated to head and holding only the migrations' seed
  rows**, once per backend. Migrating is the slow part, so it happens once per test module and
  backend: SQLite tests get a copy of a migrated template file, PostgreSQL tests share the
  module's schema, truncated and re-seeded before each test. Tests that change the *schema*
  (downgrades, DDL) must use ``db_url`` instead. ``engine_url`` is the URL behind ``engine``
  (for child processes).

PostgreSQL isolation: every schema is uniquely named (``lt_test_<pid>_<random>``) and the URLs
handed to tests pin ``search_path`` to it (libpq ``options``) and tag their connections with the
schema name as ``application_name``. Teardown terminates any connection still tagged (a failed
test may leave one idle in a transaction, holding locks) and drops the schema with all it holds.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_ENV = "LIENTHONG_TEST_PG_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``LIENTHONG_HOME`` for this test, with every other ``LIENTHONG_*`` variable unset."""
    for name in list(os.environ):
        if name.startswith("LIENTHONG_") and name != PG_ENV:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "lienthong-home"
    home.mkdir()
    monkeypatch.setenv("LIENTHONG_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _close_cached_stores() -> Iterator[None]:
    """Drop the stores ``open_store`` cached during a test, so no pooled connection outlives it."""
    yield
    from lienthong.hub.store import close_stores

    close_stores()


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """``LIENTHONG_TEST_PG_URL`` normalised to psycopg 3, or skip the test."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    from lienthong.hub.store import normalize_url

    return normalize_url(base).render_as_string(hide_password=False)


class PgSchema:
    """A throw-away schema on the test server and a URL whose connections live only in it."""

    def __init__(self, admin_url: str):
        from lienthong.hub.store import make_engine
        from sqlalchemy.engine import make_url

        self.name = f"lt_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        self.admin = make_engine(admin_url, pool_size=1)
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
        base = make_url(admin_url)
        query = {**base.query, "options": f"-c search_path={self.name}", "application_name": self.name}
        self.url = base.set(query=query).render_as_string(hide_password=False)

    def terminate_clients(self, conn: Any) -> None:
        from sqlalchemy import text

        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE application_name = :name AND pid <> pg_backend_pid()"),
            {"name": self.name},
        )

    def drop(self) -> None:
        from lienthong.hub.store import close_stores

        close_stores()  # cached engines may hold pooled connections into the schema
        try:
            with self.admin.begin() as conn:
                self.terminate_clients(conn)
                conn.exec_driver_sql("SET LOCAL lock_timeout = '30s'")
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        finally:
            self.admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'hub.db'}"
        return
    schema = PgSchema(request.getfixturevalue("pg_admin_url"))
    try:
        yield schema.url
    finally:
        schema.drop()


class _MigratedTemplate:
    """One migrated database per module and backend, handed out clean to each test."""

    def __init__(self, backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
        from lienthong.hub.store import make_engine, upgrade

        self.backend = backend
        self.schema: PgSchema | None = None
        if backend == "sqlite":
            self.file = tmp_path_factory.mktemp("migrated") / "template.db"
            url = f"sqlite:///{self.file}"
        else:
            self.schema = PgSchema(request.getfixturevalue("pg_admin_url"))
            url = self.schema.url
        engine = make_engine(url)
        try:
            upgrade(engine)
            self.seed = self._snapshot(engine)
        finally:
            engine.dispose()  # on SQLite this also checkpoints the WAL into the template file

    @staticmethod
    def _snapshot(engine: Any) -> list[tuple[Any, list[dict]]]:
        """The rows the migrations seeded (the audit head, Alembic's version), table by table in
        foreign-key order."""
        from lienthong.hub.store.models import Base
        from sqlalchemy import Column, MetaData, String, Table, select

        version = Table("alembic_version", MetaData(), Column("version_num", String(32), primary_key=True))
        with engine.connect() as conn:
            return [
                (t, [dict(r) for r in conn.execute(select(t)).mappings()])
                for t in [*Base.metadata.sorted_tables, version]
            ]

    def url_for(self, tmp_path: Path) -> str:
        if self.backend == "sqlite":
            target = tmp_path / "db" / "hub.db"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.file, target)
            wal = self.file.with_name(self.file.name + "-wal")
            if wal.exists():  # normally checkpointed away when the template engine closed
                shutil.copyfile(wal, target.with_name(target.name + "-wal"))
            return f"sqlite:///{target}"
        assert self.schema is not None
        self._reset()
        return self.schema.url

    def _reset(self) -> None:
        """Empty every hub table and restore the seed rows, as if freshly migrated."""
        assert self.schema is not None
        from lienthong.hub.store import close_stores

        close_stores()
        with self.schema.admin.begin() as conn:
            self.schema.terminate_clients(conn)  # nothing of the last test may hold a lock
            conn.exec_driver_sql("SET LOCAL lock_timeout = '30s'")
            conn.exec_driver_sql(f'SET LOCAL search_path TO "{self.schema.name}"')
            tables = ", ".join(f'"{table.name}"' for table, _ in self.seed)
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
            for table, rows in self.seed:
                if rows:
                    conn.execute(table.insert(), rows)

    def close(self) -> None:
        if self.schema is not None:
            self.schema.drop()


@pytest.fixture(scope="module", params=BACKENDS)
def _migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_MigratedTemplate]:
    template = _MigratedTemplate(request.param, tmp_path_factory, request)
    try:
        yield template
    finally:
        template.close()


@pytest.fixture
def engine_url(_migrated: _MigratedTemplate, tmp_path: Path) -> str:
    """The URL of a database migrated to head, clean for this test (see the module docstring)."""
    return _migrated.url_for(tmp_path)


@pytest.fixture
def engine(engine_url: str):
    """An engine on ``engine_url``: schema at head, only the migrations' seed rows."""
    from lienthong.hub.store import make_engine

    eng = make_engine(engine_url)
    try:
        yield eng
    finally:
        eng.dispose()


# --- a PKI, a sandbox of the national services, an audit trail (connector and flow tests) -----------
# Imported here rather than at the top: most of the suite never needs them.
from lienthong.hub.audit import AuditTrail  # noqa: E402
from lienthong.hub.settings import Settings  # noqa: E402
from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer  # noqa: E402
from lienthong.signing import init_dev_pki  # noqa: E402
from national_helpers import PASSWORD  # noqa: E402


@pytest.fixture(scope="session")
def conn_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("connectors-home")
    init_dev_pki(home / "pki", "000.00.00.G10", "000.00.00.G22", PASSWORD)
    return home


@pytest.fixture
def audit(tmp_path) -> AuditTrail:
    from lienthong.hub.store import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    yield AuditTrail(engine)
    engine.dispose()


@pytest.fixture
def make_sandbox(conn_home):
    servers: list[SandboxServer] = []

    def make(**overrides) -> SandboxServer:
        options = {"port": 0, "store_path": MEMORY, "pki_dir": conn_home / "pki", "key_password": PASSWORD,
                   "procedures": 50, "seed": 1, **overrides}
        config = SandboxConfig(**options)
        server = SandboxServer(config)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def sandbox(make_sandbox) -> SandboxServer:
    return make_sandbox()


@pytest.fixture
def settings(conn_home, sandbox) -> Settings:
    from national_helpers import settings_for

    return settings_for(conn_home, sandbox.base_url)
