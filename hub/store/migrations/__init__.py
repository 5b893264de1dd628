"""Alembic migrations of the hub's store (``env.py``, ``versions/``).

Run them with :func:`lienthong.hub.store.upgrade` (or ``lienthong db upgrade``); author new ones
with :func:`lienthong.hub.store.alembic_config` and ``alembic.command.revision``. No ``alembic.ini``
is needed: the configuration is built in code so it works from an installed wheel.
"""
