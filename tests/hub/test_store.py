"""The store: engine configuration per backend, migrations and the cached Store handle."""

from __future__ import annotations

import io
import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from lienthong.hub.audit import ledger
from lienthong.hub.errors import ConfigurationError
from lienthong.hub.settings import Settings
from lienthong.hub.store import (
    SQLITE_BEGIN_OPTION,
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
)
from lienthong.hub.store.models import GENESIS_HASH, AuditHead, Base
from sqlalchemy import inspect, select, text

HUB_TABLES = {"audit_log", "audit_head"}


# --- URLs and engines ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given",
    [
        "postgresql://hub:s3cret@db.example:5432/lienthong",
        "postgres://hub:s3cret@db.example:5432/lienthong",
        "postgresql+psycopg://hub:s3cret@db.example:5432/lienthong",
    ],
)
def test_postgresql_urls_are_pinned_to_psycopg3(given: str) -> None:
    engine = make_engine(given)  # lazy: nothing connects
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.url.database == "lienthong"
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://hub@db/lienthong", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://hub@db/lienthong", "psycopg 3 only"),
        ("sqlite+aiosqlite:///x.db", "sqlite3 module only"),
        ("not a url", "invalid database URL"),
    ],
)
def test_unsupported_urls_are_configuration_errors(url: str, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        make_engine(url)


def test_error_messages_do_not_leak_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        normalize_url("mysql://hub:s3cret@db/lienthong")
    assert "s3cret" not in str(info.value)


def test_sqlite_engine_creates_the_directory_and_sets_pragmas(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "deeper" / "hub.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert db.exists()
    finally:
        engine.dispose()


def test_sqlite_in_memory_engine_works() -> None:
    engine = make_engine("sqlite://")
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_transactions_really_begin(tmp_path: Path) -> None:
    """SQLAlchemy, not the sqlite3 driver, emits BEGIN: DDL and reads are inside the transaction."""
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        with engine.connect() as conn:
            with conn.begin() as tx:
                conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                tx.rollback()
            assert "t" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_sqlite_begin_immediate_takes_the_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                conn.exec_driver_sql("SELECT 1").all()  # no write yet, but the lock is already held
                other = sqlite3.connect(db, timeout=0, isolation_level=None)
                try:
                    with pytest.raises(sqlite3.OperationalError, match="locked"):
                        other.execute("BEGIN IMMEDIATE")
                finally:
                    other.close()
    finally:
        engine.dispose()


def test_sqlite_plain_transactions_do_not_take_the_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("SELECT 1").all()
            other = sqlite3.connect(db, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            finally:
                other.close()
    finally:
        engine.dispose()


def test_sqlite_autocommit_connections_begin_nothing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            assert not conn.connection.dbapi_connection.in_transaction
    finally:
        engine.dispose()


def test_unknown_sqlite_begin_mode_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        with engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN_OPTION: "EVENTUALLY"})
            with pytest.raises(ValueError, match="EVENTUALLY"):
                conn.begin()
    finally:
        engine.dispose()


# --- migrations -------------------------------------------------------------------------------
def test_upgrade_creates_the_schema_on_an_empty_database(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert HUB_TABLES <= set(inspect(conn).get_table_names())
            head = conn.execute(select(AuditHead.id, AuditHead.last_seq, AuditHead.last_hash)).all()
            assert [tuple(r) for r in head] == [(1, 0, GENESIS_HASH)]
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        upgrade(engine)
        upgrade(engine, "head")
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(select(AuditHead.last_seq)).scalars().all() == [0]
    finally:
        engine.dispose()


def test_models_match_the_migrations(engine) -> None:
    """Autogenerate finds nothing to do: the migrations create exactly what the models declare."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_upgrade_refuses_a_database_from_a_newer_release(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        with pytest.raises(ConfigurationError, match="'9999_future', which this version of lienthong does not know"):
            upgrade(engine)
    finally:
        engine.dispose()


def test_alembic_check_through_env_py_finds_nothing_to_generate(engine_url: str) -> None:
    """The developer path (``alembic_config(url)``, env.py making its own engine) sees the same."""
    command.check(alembic_config(engine_url))


@pytest.mark.parametrize(
    ("url", "dialect_sql"),
    [("postgresql://hub:p%40ss@db.example/lienthong", "BYTEA"), ("sqlite:////var/lib/lienthong/hub.db", "BLOB")],
)
def test_offline_sql_script_for_dbas(url: str, dialect_sql: str) -> None:
    """``upgrade --sql`` renders the schema as a script without connecting to anything."""
    buffer = io.StringIO()
    cfg = alembic_config(url)
    cfg.output_buffer = buffer
    command.upgrade(cfg, "head", sql=True)
    script = buffer.getvalue()
    assert "CREATE TABLE audit_log" in script and "CREATE TABLE audit_head" in script
    assert dialect_sql in script
    assert f"'{GENESIS_HASH}'" in script  # the seeded head row
    assert "p@ss" not in script and "p%40ss" not in script


def test_migrations_downgrade_to_base_and_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(connection=conn), "base")
        with engine.connect() as conn:
            assert not HUB_TABLES & set(inspect(conn).get_table_names())
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def _upgrade_in_child(url: str, barrier, results) -> None:
    try:
        engine = make_engine(url)
        barrier.wait(timeout=30)
        upgrade(engine)
        results.put(("ok", current_revision(engine)))
        engine.dispose()
    except BaseException as exc:  # report, do not hang the parent
        results.put(("error", repr(exc)))


def test_concurrent_upgrades_from_several_processes(db_url: str) -> None:
    """Workers opening a brand-new store together: one migrates, the others wait and find it done
    (on SQLite this also covers several connections switching a fresh file to WAL at once)."""
    ctx = multiprocessing.get_context("fork")
    workers = 5
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_upgrade_in_child, args=(db_url, barrier, results)) for _ in range(workers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert outcomes == [("ok", head_revision())] * workers
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(AuditHead.last_seq)).scalars().all() == [0]
    finally:
        engine.dispose()


# --- Store ------------------------------------------------------------------------------------
def test_open_store_defaults_to_sqlite_under_home(tmp_home: Path) -> None:
    store = open_store(Settings.from_env())
    assert isinstance(store, Store)
    assert store.engine.dialect.name == "sqlite"
    assert (tmp_home / "lienthong.db").exists()
    assert current_revision(store.engine) == head_revision()
    assert open_store(Settings.from_env()) is store  # cached per URL
    close_stores()
    assert open_store(Settings.from_env()) is not store


def test_open_store_on_each_backend(db_url: str, tmp_path: Path) -> None:
    store = open_store(Settings(home=tmp_path, db_url=db_url))
    assert current_revision(store.engine) == head_revision()
    seq = ledger(store).record(direction="out", partner="baocao", operation="GuiBaoCao", raw=b"<x/>", outcome="sent")
    assert seq == 1
    assert ledger(store).verify().ok


def test_open_store_reports_an_unusable_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unsupported database"):
        open_store(Settings(home=tmp_path, db_url="oracle://x@y/z"))


def test_sessions_keep_objects_usable_and_roll_back_on_error(engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        head = session.get(AuditHead, 1)
    assert head is not None and head.last_seq == 0  # still loaded after commit

    store = Store(url=str(engine.url), engine=engine, sessions=sessions)
    with pytest.raises(RuntimeError):
        with store.transaction() as session:
            session.execute(text("UPDATE audit_head SET last_seq = 5 WHERE id = 1"))
            raise RuntimeError("boom")
    with store.transaction() as session:
        assert session.get(AuditHead, 1).last_seq == 0
