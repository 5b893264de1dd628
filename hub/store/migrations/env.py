"""Alembic environment for the hub's store.

Run programmatically: :func:`lienthong.hub.store.upgrade` passes an open connection (already in
a transaction, with the backend-specific locking and SQLite pragmas it needs) through
``config.attributes["connection"]``. Without one (a developer authoring a revision with
``alembic_config(url)``), an engine is made from ``sqlalchemy.url`` or the hub's settings. Logging
is left to the host application: this file never calls ``logging.config.fileConfig``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from lienthong.hub.store import make_engine, normalize_url
from lienthong.hub.store.models import Base, UTCDateTime
from sqlalchemy import Connection

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations describe the database, not Python-side conversions: render the UTC decorator as
    # the column type it stores, so revisions do not import the (changing) models module.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table (copy and rename).
        render_as_batch=sqlite,
        # The hub's SQLite engine emits BEGIN itself, so DDL there is transactional too.
        transactional_ddl=True,
        compare_type=True,
        render_item=_render_item,
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from lienthong.hub.settings import Settings

        url = Settings.from_env().db_url
    context.configure(
        url=normalize_url(url).render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from lienthong.hub.settings import Settings

        url = Settings.from_env().db_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
