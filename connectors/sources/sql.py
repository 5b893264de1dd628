"""Read dossier changes incrementally from the one-stop system's database (any SQLAlchemy URL).

The mapping file names the dossier table (or view) and the step table, their columns and their
cursor columns. Dossiers are read by keyset pagination on ``(cursor, tiebreak)``, for the shipped
mapping ``(cap_nhat_luc, so_ho_so)``: a dossier row is updated in place, so its change time moves
it to the end of the order, and the tiebreak makes rows changed in the same instant come out one
by one, none skipped or repeated. Steps are append-only and read by their ``id``. Pages are
bounded (``batch_size`` rows per table), so a backlog of a million rows never sits in memory.

Why the cursor value is kept exactly as the database returned it: on SQLite a ``TIMESTAMP``
column holds text, on PostgreSQL a timestamp; comparing the column with the very value it gave
back is exact on both, where a value re-formatted by the hub could differ in a microsecond part
and skip or repeat rows. :class:`SqlCursor` encodes it to text (times tagged) for the caller to
store.

Why the order of reads within a batch matters: a step must never reach the portal before its
dossier. The dossier page is read first; when it is full, the batch holds only dossiers (the
steps wait for the dossiers to catch up). Otherwise the steps are read, and then the dossier page
again, so any step in the batch has its dossier row (written before the step) in this batch or
an earlier one. Dossier items come first in the batch. Result documents (a mapping with a
``results`` section) are read like steps, before that second dossier read, for the same reason:
the one-stop system writes a dossier's row before (or with) its results, so every result in a
batch has its dossier in the batch or an earlier one.

Why ``settle_seconds``: keyset reading assumes rows become visible in cursor order. A writer that
holds a transaction open can commit a row whose change time (or id) is *older* than rows already
read; the cursor would then be past it and the change lost. With ``settle_seconds: N`` the source
only reads rows whose change time is at least N seconds old (by the hub's clock, in UTC), which
covers writers whose transactions last less than N seconds. 0 (the default) reads everything
committed, right for a single writer or short transactions.

The source only reads: on its own engine, SQLite connections are ``query_only`` and PostgreSQL
sessions ``default_transaction_read_only``; an engine passed in is used with plain SELECTs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from lienthong.hub.errors import ConfigurationError, FatalError
from lienthong.hub.store.engine import _sqlite_file  # the file behind a SQLite URL (None: in memory)
from lienthong.mappings.dossier import DOSSIER, RESULT, STEP, DossierMapping, TableMapping, json_safe
from sqlalchemy import DateTime, and_, bindparam, column, event, func, inspect, literal, or_, select, table
from sqlalchemy.engine import URL, Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchTableError, SQLAlchemyError

from .base import (
    SourceBatch,
    SourceBehindCursor,
    SourceItem,
    SourceKeysMoved,
    SourceUnavailable,
    map_rows,
    sql_location,
)

__all__ = ["CursorInvalid", "SqlCursor", "SqlSource"]

log = logging.getLogger(__name__)

_FRESH = "_lienthong_fresh"  # label of the computed "too recent to read yet" column


class CursorInvalid(FatalError):
    """A stored cursor text cannot be decoded: it was damaged or belongs to another source."""

    code = "SOURCE_CURSOR_INVALID"


# --------------------------------------------------------------------------------------------
# the cursor
# --------------------------------------------------------------------------------------------
def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"cannot keep a cursor value of type {type(value).__name__}")


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        ((tag, text),) = value.items()
        return {"$datetime": datetime.fromisoformat, "$date": date.fromisoformat, "$decimal": Decimal}[tag](text)
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise ValueError(f"unexpected cursor value {value!r}")


@dataclass(frozen=True, slots=True)
class SqlCursor:
    """Where the reading stopped: the (cursor, tiebreak) values of the last dossier and step read,
    and a fingerprint of each of those two rows (its key, version, cursor and dossier code), so a
    later run can tell that the row at that position is still the one that was read there."""

    dossiers: tuple[Any, Any] | None = None
    steps: tuple[Any, Any] | None = None
    dossiers_anchor: str | None = None
    steps_anchor: str | None = None
    #: the result documents' table (a mapping with a results section); absent from older cursors
    results: tuple[Any, Any] | None = None
    results_anchor: str | None = None

    def encode(self) -> str:
        """Text for the caller to store with the batch's events (JSON, times tagged)."""
        doc: dict[str, Any] = {"v": 2}
        names = ("dossiers", "steps", "results") if self.results is not None else ("dossiers", "steps")
        for name in names:
            position = getattr(self, name)
            doc[name] = None if position is None else [_encode_value(v) for v in position]
        doc["anchors"] = {name: getattr(self, f"{name}_anchor") for name in names}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, text: str | None) -> SqlCursor:
        """Version 2, or version 1 (no anchors: only the "newest row older than the cursor" check applies)."""
        if text is None or text == "":
            return cls()
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("v") not in (1, 2):
                raise ValueError("not a SQL source cursor (version 1 or 2)")
            positions: list[Any] = []
            for name in ("dossiers", "steps", "results"):
                raw = doc.get(name)
                if raw is None:
                    positions.append(None)
                    continue
                if not isinstance(raw, list) or len(raw) != 2:
                    raise ValueError(f"{name} must be a pair")
                positions.append(tuple(_decode_value(v) for v in raw))
            anchors = doc.get("anchors") or {}
            if not isinstance(anchors, dict):
                raise ValueError("anchors must be an object")
            for name in ("dossiers", "steps", "results"):
                if anchors.get(name) is not None and not isinstance(anchors[name], str):
                    raise ValueError(f"anchors.{name} must be a text")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CursorInvalid(f"stored SQL source cursor {text[:200]!r} cannot be read: {exc}") from None
        return cls(positions[0], positions[1], anchors.get("dossiers"), anchors.get("steps"),
                   positions[2], anchors.get("results"))


def _shown(position: tuple[Any, Any] | None) -> str:
    if position is None:
        return "the start"
    value, tie = position
    text = value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)
    return text if tie is None else f"({text}, {tie})"


# --------------------------------------------------------------------------------------------
# the source
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Page:
    rows: list[dict[str, Any]]
    full: bool  # as many rows as asked: there may be more
    position: tuple[Any, Any] | None  # of the last row, or the position read from
    anchor: str | None = None  # fingerprint of the last row (None when no row was read)


class _Reader:
    """The SELECT of one table, built once."""

    def __init__(self, mapping: TableMapping, file: str, *, settle_column: str | None):
        if mapping.table is None:
            raise ConfigurationError(f"{file}: {mapping.kind}s: no table named (needed by a SQL source)")
        self.mapping = mapping
        self.names = mapping.columns()
        self.t = table(mapping.table, *(column(c) for c in self.names), schema=mapping.schema)
        self.cursor = self.t.c[mapping.cursor]
        self.tiebreak = self.t.c[mapping.tiebreak] if mapping.tiebreak else None
        self.settle_column = self.t.c[settle_column] if settle_column else None
        # rows too recent are filtered out when the order *is* their change time; otherwise the
        # page is cut before the first one (filtering would let the cursor pass it by)
        self.cut_at_fresh = settle_column is not None and settle_column != mapping.cursor

    @property
    def label(self) -> str:
        return f"{self.mapping.schema}.{self.mapping.table}" if self.mapping.schema else self.mapping.table

    def fingerprint(self, row: dict[str, Any]) -> str:
        """What identifies the row read at a position: its key, version, cursor values, change time
        and dossier code. Another row at the same position (an id reused after a restore, a copy
        with other keys) differs in at least one of them; the row's other columns may be edited
        in place without changing it."""
        m = self.mapping
        values = [json_safe(row.get(c)) for c in (m.key, m.version, m.cursor, m.tiebreak, m.changed_at) if c]
        values.append(m.ma_ho_so(row))
        text = json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def _at_or_after(self, position: tuple[Any, Any]):
        after, tie = position
        if self.tiebreak is None:
            return self.cursor >= after
        return and_(self.cursor >= after, or_(self.cursor > after, self.tiebreak >= tie))

    def reaches(self, conn: Connection, position: tuple[Any, Any]) -> bool:
        """Whether the table holds a row at or after ``position`` (else it is behind the cursor)."""
        return conn.execute(select(literal(1)).select_from(self.t).where(self._at_or_after(position))
                            .limit(1)).first() is not None

    def newest(self, conn: Connection) -> tuple[Any, Any] | None:
        order = [self.cursor.desc()] if self.tiebreak is None else [self.cursor.desc(), self.tiebreak.desc()]
        row = conn.execute(select(*[self.t.c[c] for c in self.names]).where(self.cursor.is_not(None))
                           .order_by(*order).limit(1)).mappings().first()
        if row is None:
            return None
        return row[self.mapping.cursor], row[self.mapping.tiebreak] if self.tiebreak is not None else None

    def row_at(self, conn: Connection, position: tuple[Any, Any]) -> dict[str, Any] | None:
        after, tie = position
        where = self.cursor == after if self.tiebreak is None else and_(self.cursor == after, self.tiebreak == tie)
        row = conn.execute(select(*[self.t.c[c] for c in self.names]).where(where).limit(1)).mappings().first()
        return dict(row) if row is not None else None

    def statement(self, position: tuple[Any, Any] | None, limit: int, horizon: datetime | None):
        cut_at_fresh = self.cut_at_fresh
        columns = [self.t.c[c] for c in self.names]
        if horizon is not None and cut_at_fresh:
            # computed by the database, so the comparison follows the column's own type
            columns.append((self.settle_column > bindparam("horizon", horizon, type_=DateTime())).label(_FRESH))
        stmt = select(*columns).where(self.cursor.is_not(None))
        if horizon is not None and not cut_at_fresh:
            stmt = stmt.where(self.settle_column <= bindparam("horizon", horizon, type_=DateTime()))
        if position is not None:
            after, tie = position
            if self.tiebreak is None:
                stmt = stmt.where(self.cursor > after)
            else:
                # (cursor, tiebreak) > (after, tie), written so an index on cursor is used
                stmt = stmt.where(and_(self.cursor >= after,
                                       or_(self.cursor > after, self.tiebreak > tie)))
        order = [self.cursor] if self.tiebreak is None else [self.cursor, self.tiebreak]
        return stmt.order_by(*order).limit(limit)

    def read(self, conn: Connection, position: tuple[Any, Any] | None, limit: int,
             horizon: datetime | None) -> _Page:
        result = conn.execute(self.statement(position, limit, horizon))
        rows = [dict(r) for r in result.mappings()]
        full = len(rows) >= limit
        if horizon is not None and self.cut_at_fresh:
            for i, row in enumerate(rows):
                if row.pop(_FRESH):
                    # a row too recent to be sure older ones are all committed: stop before it
                    del rows[i:]
                    full = False
                    break
            for row in rows:
                row.pop(_FRESH, None)
        if not rows:
            return _Page(rows, full, position)
        last = rows[-1]
        position = (last[self.mapping.cursor], last[self.mapping.tiebreak] if self.tiebreak is not None else None)
        return _Page(rows, full, position, self.fingerprint(last))


class SqlSource:
    """Dossier changes read from a SQL database, batch by batch, from a caller-kept cursor.

    ``url`` is any SQLAlchemy URL (``postgresql://`` is read with psycopg 3) or an
    :class:`~sqlalchemy.engine.Engine` the caller owns. ``batch_size`` and ``settle_seconds``
    default to the mapping file's. ``clock`` returns the current UTC time (tests).
    """

    #: what kind of source this is (stored with its cursor)
    kind = "sql"

    def __init__(self, url: str | URL | Engine, mapping: DossierMapping, *, batch_size: int | None = None,
                 settle_seconds: float | None = None, clock: Callable[[], datetime] | None = None):
        if mapping.kind != "sql":
            raise ConfigurationError(f"{mapping.path}: source.kind is {mapping.kind!r}; SqlSource needs a sql mapping")
        self.mapping = mapping
        self.batch_size = batch_size or mapping.batch_size
        if self.batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        self.settle = timedelta(seconds=mapping.settle_seconds if settle_seconds is None else settle_seconds)
        self.clock = clock or (lambda: datetime.now(UTC))
        if self.settle and mapping.steps.changed_at is None:
            raise ConfigurationError(f"{mapping.path}: settle_seconds needs steps.changed_at")
        self._dossiers = _Reader(mapping.dossiers, mapping.file,
                                 settle_column=mapping.dossiers.changed_at or mapping.dossiers.cursor)
        self._steps = _Reader(mapping.steps, mapping.file, settle_column=mapping.steps.changed_at)
        self._results = (None if mapping.results is None else
                         _Reader(mapping.results, mapping.file, settle_column=mapping.results.changed_at))
        self._checked = False
        if isinstance(url, Engine):
            self.engine, self._owns_engine = url, False
        else:
            self.engine, self._owns_engine = _read_only_engine(url), True

    @property
    def name(self) -> str:
        return self.mapping.name

    @property
    def location(self) -> str:
        """The database without credentials (:func:`~.base.sql_location`)."""
        return sql_location(self.engine.url)

    def __repr__(self) -> str:
        return f"SqlSource({self.mapping.name!r}, {self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> SqlSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checks --------------------------------------------------------------------------------
    def check(self) -> dict[str, int]:
        """Check that both tables and every mapped column exist; count rows the cursor cannot see.

        Raises :class:`ConfigurationError` naming the mapping file, the table and the missing
        columns. Returns ``{"dossiers_without_cursor": n, "steps_without_cursor": m}``: rows whose
        cursor column is NULL are never read (logged as a warning when there are any).
        """
        counts: dict[str, int] = {}
        try:
            with self.engine.connect() as conn:
                inspector = inspect(conn)
                for reader, name in self._tables():
                    mapping = reader.mapping
                    try:
                        present = {c["name"] for c in inspector.get_columns(mapping.table, schema=mapping.schema)}
                    except NoSuchTableError:
                        present = set()
                    if not present:
                        raise ConfigurationError(
                            f"{self.mapping.file}: {name}.table: {reader.label} does not exist in "
                            f"{self.engine.url.render_as_string(hide_password=True)}")
                    missing = [c for c in reader.names if c not in present]
                    if missing:
                        raise ConfigurationError(
                            f"{self.mapping.file}: {name}: table {reader.label} has no column "
                            f"{', '.join(missing)} (it has: {', '.join(sorted(present))})")
                    blind = conn.execute(select(func.count()).select_from(reader.t)
                                         .where(reader.cursor.is_(None))).scalar_one()
                    counts[f"{name}_without_cursor"] = blind
                    if blind:
                        log.warning("%s: %d row(s) of %s have no %s and will never be read",
                                    self.mapping.file, blind, reader.label, mapping.cursor)
        except DBAPIError as exc:
            raise _classify(exc, self) from exc
        self._checked = True
        return counts

    def _tables(self) -> list[tuple[_Reader, str]]:
        tables = [(self._dossiers, "dossiers"), (self._steps, "steps")]
        if self._results is not None:
            tables.append((self._results, "results"))
        return tables

    # -- does a stored cursor fit? ---------------------------------------------------------------
    def check_cursor(self, cursor: str | None) -> None:
        """Refuse a cursor this database cannot have produced as it is now.

        * :class:`SourceBehindCursor`: a table has no row at or after the cursor's position (the
          database was restored from an older backup, or emptied);
        * :class:`SourceKeysMoved`: the row now at the cursor's position is not the row read there
          (a restore followed by new writes that reused ids, a copy whose keys differ). A dossier
          row updated since it was read has moved on, which is normal; only another row *at* the
          position is refused. Cursors written before anchors existed get the first check only.
        """
        position = SqlCursor.decode(cursor)
        if position.dossiers is None and position.steps is None and position.results is None:
            return
        if not self._checked:
            self.check()
        try:
            with self.engine.connect() as conn:
                _read_only_transaction(conn)
                for reader, name in self._tables():
                    at, anchor = getattr(position, name), getattr(position, f"{name}_anchor")
                    if at is None:
                        continue
                    if not reader.reaches(conn, at):
                        newest = reader.newest(conn)
                        raise SourceBehindCursor(
                            f"the newest row of {reader.label} is at {_shown(newest) if newest else 'nothing (empty)'} "
                            f"but the cursor is at {_shown(at)}: the database looks restored from an older "
                            "backup (or emptied), and reading on would skip every change written again below the cursor")
                    if anchor is not None:
                        row = reader.row_at(conn, at)
                        if row is not None and reader.fingerprint(row) != anchor:
                            raise SourceKeysMoved(
                                f"the row of {reader.label} at the cursor {_shown(at)} is not the row read there: "
                                "keys moved backwards (a restore followed by new writes, or a copy whose keys "
                                "differ), and reading on would skip the rows written again below the cursor")
                conn.rollback()
        except DBAPIError as exc:
            raise _classify(exc, self) from exc

    def describe_cursor(self, cursor: str | None) -> str:
        position = SqlCursor.decode(cursor)
        return ", ".join(f"{reader.label} at {_shown(getattr(position, name))}" for reader, name in self._tables())

    # -- reading -------------------------------------------------------------------------------
    def changes(self, cursor: str | None = None) -> Iterator[SourceBatch]:
        """Batches of changes after ``cursor`` until caught up (see the module docstring).

        Each batch's ``cursor`` is the text to commit with its events. The generator reads on
        from its own position; a caller that cannot commit a batch must stop and start again from
        its last committed cursor.
        """
        if not self._checked:
            self.check()
        position = SqlCursor.decode(cursor)
        limit = self.batch_size
        while True:
            horizon = self._horizon()
            try:
                with self.engine.connect() as conn:
                    _read_only_transaction(conn)
                    dossiers = self._dossiers.read(conn, position.dossiers, limit, horizon)
                    steps = results = None
                    if not dossiers.full:
                        steps = self._steps.read(conn, position.steps, limit, horizon)
                        if self._results is not None:
                            results = self._results.read(conn, position.results, limit, horizon)
                        if steps.rows or (results is not None and results.rows):
                            # read again: a step's (a result's) dossier row is written before
                            # it, so after this read every step and result above has its
                            # dossier in the batch or in an earlier one
                            dossiers = self._dossiers.read(conn, position.dossiers, limit, horizon)
                            if dossiers.full:
                                steps = results = None
                    conn.rollback()
            except DBAPIError as exc:
                raise _classify(exc, self) from exc
            rows_steps = steps.rows if steps is not None else []
            rows_results = results.rows if results is not None else []
            if not dossiers.rows and not rows_steps and not rows_results:
                return
            read_steps = steps is not None and bool(steps.rows)
            read_results = results is not None and bool(results.rows)
            position = SqlCursor(dossiers.position if dossiers.rows else position.dossiers,
                                 steps.position if read_steps else position.steps,
                                 dossiers.anchor if dossiers.rows else position.dossiers_anchor,
                                 steps.anchor if read_steps else position.steps_anchor,
                                 results.position if read_results else position.results,
                                 results.anchor if read_results else position.results_anchor)
            items: list[SourceItem] = map_rows(self.mapping, DOSSIER, dossiers.rows)
            items += map_rows(self.mapping, STEP, rows_steps)
            if rows_results:
                items += map_rows(self.mapping, RESULT, rows_results)
            yield SourceBatch(source=self.name, cursor=position.encode(), items=tuple(items),
                              origin="+".join(reader.label for reader, _ in self._tables()))
            more = (steps is not None and steps.full) or (results is not None and results.full)
            if not dossiers.full and not more:
                return

    def ack(self, batch: SourceBatch) -> None:
        """Nothing to do: the caller's committed cursor is the only state."""

    def _horizon(self) -> datetime | None:
        if not self.settle:
            return None
        now = self.clock()
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)  # the columns hold naive UTC
        return now - self.settle


def _source_url(url: str | URL) -> URL:
    """Any SQLAlchemy URL (the one-stop system may run on another database than the hub); a bare
    ``postgresql://`` means psycopg 3, the PostgreSQL driver the hub ships with."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        shown = str(url).split("://", 1)[0] + "://…"
        raise ConfigurationError(f"invalid one-stop database URL {shown!r}: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _read_only_engine(url: str | URL) -> Engine:
    parsed = _source_url(url)
    if parsed.get_backend_name() == "sqlite":
        file = _sqlite_file(parsed)
        if file is not None and not file.expanduser().exists():
            # SQLite would create an empty database and the source would read "nothing new" forever
            raise ConfigurationError(f"one-stop database {file} does not exist")
        engine = create_engine(parsed)

        @event.listens_for(engine, "connect")
        def _sqlite_read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA query_only = ON")
                cursor.execute("PRAGMA busy_timeout = 30000")  # the one-stop system writes meanwhile
            finally:
                cursor.close()

        return engine
    engine = create_engine(parsed, pool_pre_ping=True)
    if parsed.get_backend_name() == "postgresql":
        @event.listens_for(engine, "connect")
        def _pg_read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SET default_transaction_read_only = on")
            finally:
                cursor.close()
            dbapi_connection.commit()

    return engine


def _read_only_transaction(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")


_MISSING_OBJECT = ("no such table", "no such column", "does not exist", "undefinedtable", "undefinedcolumn")


def _classify(exc: SQLAlchemyError, source: SqlSource) -> Exception:
    """A database error as the hub's error tree: a missing table or column is configuration
    (fatal); anything else while reading (connection refused or lost, lock timeout) is retryable."""
    text = str(exc).lower()
    where = source.engine.url.render_as_string(hide_password=True)
    if any(marker in text for marker in _MISSING_OBJECT):
        return ConfigurationError(f"{source.mapping.file}: the database {where} does not match the mapping: "
                                  f"{str(exc.orig if isinstance(exc, DBAPIError) else exc).strip()}")
    return SourceUnavailable(f"cannot read one-stop database {where}: "
                             f"{str(exc.orig if isinstance(exc, DBAPIError) else exc).strip()}")

