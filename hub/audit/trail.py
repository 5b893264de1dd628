"""The audit ledger: every message that crosses the hub, hash-chained and verifiable.

Each outbound request and inbound reply is recorded synchronously, with its exact bytes, before
the hub moves on, so the ledger is the evidence of what was exchanged with the national systems.
Entries form one chain::

    entry_hash(n) = SHA-256( prev_hash(n) ‖ canonical(n) )      prev_hash(n) = entry_hash(n-1)

where ``prev_hash(1)`` is sixty-four zeros and ``canonical(n)`` is a JSON array in a fixed field
order (see :func:`entry_digest`), without whitespace and with ASCII escapes, so every entry has
exactly one encoding and no two entries share one (each element is a typed JSON value; ``null``
and ``""`` differ). It holds the encoding version and every column of the entry: ``seq``, the
time in ISO-8601 UTC with microseconds, direction, partner, operation, identifiers, agencies,
outcome, latency, attempt, the SHA-256 and size of the raw body, error, and the SHA-256 of the
*stored* (compressed) body. A positional array rather than an object with sorted keys halves the
encoding cost, which dominates verification time. Hashing the stored bytes lets :meth:`verify`
prove a body untouched with one SHA-256 over the compressed blob, instead of decompressing every
body; the raw body's digest stays in the chain too, because that is what a partner's copy of the
message can be compared with.

Appends are serialised through the single ``audit_head`` row (``SELECT ... FOR UPDATE`` on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite, which takes the database write lock before the head is
read), so concurrent processes extend one chain and never fork it; ``seq`` runs from 1 without
gaps because it is allocated inside that transaction. The head also records the last hash, which
is how removal of the newest entries (invisible to the chain itself) is detected.

Every message exchange appends twice (request, reply), so an append is on the hot path: its three
statements (lock the head, insert, move the head) are compiled once per dialect and sent with
``exec_driver_sql``, with the columns' own bind processors applied. That stores exactly what a Core
``insert()`` would, keeps SQLAlchemy's transaction handling, events and error wrapping, and skips
the statement building and cache-key work that cost more than the database itself on SQLite.

The chain makes tampering *evident* to anyone who re-walks it; it does not stop someone with write
access from rewriting the whole chain consistently. Anchoring the head elsewhere (signed seals) is
what closes that gap.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import sqlite3
import threading
import weakref
import zlib
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, String, bindparam, insert, select, type_coerce, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable

from ..errors import AuditChainBroken
from ..store import SQLITE_BEGIN_OPTION
from ..store.models import GENESIS_HASH, AuditEntry, AuditHead

__all__ = ["AuditRecord", "AuditTrail", "ChainReport", "entry_digest", "GENESIS_HASH"]

_LOG = AuditEntry.__table__
_HEAD = AuditHead.__table__

#: Version of the canonical encoding, hashed into every entry so it can evolve without ambiguity.
CANONICAL_VERSION = 1
#: zlib level for stored bodies: XML compresses 5-10x at level 6 and costs little CPU per message.
COMPRESSION_LEVEL = 6
#: bodies from this size on are Huffman-coded only: they are result-file chunks (512 KiB of file
#: bytes as base64), which do not repeat, so matching finds nothing and costs 4x the time; Huffman
#: coding alone still takes base64's 6 bits per character (75 %) in a quarter of the CPU
LARGE_BODY = 256 * 1024

DIRECTIONS = frozenset({"out", "in"})
_OUTCOME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")

# Column length limits, applied before writing (PostgreSQL enforces them, SQLite would not, and
# both must store the same entries): the hub's own names are refused when too long, values taken
# from partners' messages are cut to fit (see _field).
_MAX_LEN = {
    "partner": 64,
    "operation": 128,
    "document_id": 128,
    "correlation_id": 128,
    "from_agency": 64,
    "to_agency": 64,
}

#: An entry's recorded metadata (everything but the stored body and the two hashes), in the
#: canonical order of entry_digest(). The one list: audit search reads these into its EntryView
#: and the export archive names its canonical fields after them.
ENTRY_COLUMNS = (
    _LOG.c.seq,
    _LOG.c.recorded_at,
    _LOG.c.direction,
    _LOG.c.partner,
    _LOG.c.operation,
    _LOG.c.document_id,
    _LOG.c.correlation_id,
    _LOG.c.from_agency,
    _LOG.c.to_agency,
    _LOG.c.outcome,
    _LOG.c.latency_ms,
    _LOG.c.attempt,
    _LOG.c.body_sha256,
    _LOG.c.body_size,
    _LOG.c.error,
)
# Columns fetched by verify(): the metadata, then the stored body and the two hashes (verify
# builds the canonical values by slicing the row).
_VERIFY_COLUMNS = (*ENTRY_COLUMNS, _LOG.c.body, _LOG.c.prev_hash, _LOG.c.entry_hash)

_json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False)


def entry_digest(
    prev_hash: str,
    *,
    seq: int,
    recorded_at: datetime,
    direction: str,
    partner: str,
    operation: str,
    document_id: str | None,
    correlation_id: str | None,
    from_agency: str | None,
    to_agency: str | None,
    outcome: str,
    latency_ms: float | None,
    attempt: int,
    body_sha256: str,
    body_size: int,
    error: str | None,
    stored_body_sha256: str,
) -> str:
    """The ``entry_hash`` of one entry: SHA-256 over ``prev_hash`` and the canonical encoding.

    The encoding is the compact ASCII JSON array ``[version, seq, recorded_at, direction, partner,
    operation, document_id, correlation_id, from_agency, to_agency, outcome, latency_ms, attempt,
    body_sha256, body_size, error, stored_body_sha256]``; ``recorded_at`` (timezone-aware) is
    written as ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` and ``latency_ms`` as a float (shortest
    round-trip repr). ``prev_hash`` is always 64 hex characters, so plain concatenation with the
    encoding is unambiguous. Changing any of this is a new ``CANONICAL_VERSION``.
    """
    return _digest(
        prev_hash,
        [
            CANONICAL_VERSION,
            seq,
            recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
            direction,
            partner,
            operation,
            document_id,
            correlation_id,
            from_agency,
            to_agency,
            outcome,
            latency_ms,
            attempt,
            body_sha256,
            body_size,
            error,
            stored_body_sha256,
        ],
    )


def _digest(prev_hash: str, canonical_values: list[Any]) -> str:
    return hashlib.sha256((prev_hash + _json_encoder.encode(canonical_values)).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One message to record (the input of :meth:`AuditTrail.record_many`).

    ``raw`` is the exact byte string that went on (or came off) the wire: for signed messages the
    signed document, so the ledger holds the evidence and not a re-serialisation of it.
    ``recorded_at`` defaults to the time of the append (taken while holding the ledger's lock, so
    times never go backwards along the chain on one clock); give it only when importing history.
    """

    direction: str
    partner: str
    operation: str
    raw: bytes
    outcome: str
    document_id: str | None = None
    correlation_id: str | None = None
    from_agency: str | None = None
    to_agency: str | None = None
    latency_ms: float | None = None
    attempt: int = 1
    error: str | None = None
    recorded_at: datetime | None = None


_RECORD_FIELDS = frozenset(f.name for f in fields(AuditRecord))


@dataclass(frozen=True)
class ChainReport:
    """The result of :meth:`AuditTrail.verify`.

    ``first_bad_seq`` is the position where the ledger first stops being the one that was written
    (the removed, inserted, edited or misplaced entry), ``reason`` says what is wrong there in one
    line. ``checked`` counts entries that verified before the first problem.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def raise_if_broken(self) -> ChainReport:
        """Raise :class:`AuditChainBroken` with the reason unless the chain verified."""
        if not self.ok:
            where = f" at entry {self.first_bad_seq}" if self.first_bad_seq is not None else ""
            raise AuditChainBroken(
                f"audit chain broken{where}: {self.reason}",
                detail=f"checked={self.checked} first_bad_seq={self.first_bad_seq}",
            )
        return self


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A validated record with its body already compressed and hashed (done outside the lock).

    ``values`` are its recorded metadata but ``seq`` and ``recorded_at``, which the append
    settles, keyed as in :func:`entry_digest` and the ``audit_log`` columns alike.
    """

    values: dict[str, Any]
    recorded_at: datetime | None
    body: bytes
    stored_body_sha256: str


def _name(name: str, value: Any) -> str:
    """``partner``/``operation``: the hub's own constants, so a bad value is a bug and refused."""
    if not isinstance(value, str):
        raise TypeError(f"audit {name} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"audit {name} must not be empty")
    limit = _MAX_LEN[name]
    if len(value) > limit:
        raise ValueError(f"audit {name} is {len(value)} characters long; the limit is {limit}: {value[:40]!r}…")
    if "\x00" in value or not value.isprintable():
        raise ValueError(f"audit {name} contains control characters: {value!r}")
    return value


def _field(name: str, value: Any) -> str | None:
    """Identifiers, agencies and error text, which often come from the partner's message.

    A hostile or broken message must never prevent its own recording (the connector records the
    reply in a ``finally``), so such values are made storable instead of refused: NULs (which
    PostgreSQL text cannot hold) and unpaired surrogates become U+FFFD, and values longer than
    their column are cut to fit, ending in ``…``. The exact bytes remain in the body.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"audit {name} must be a str or None, got {type(value).__name__}")
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    limit = _MAX_LEN.get(name)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def _prepare(record: AuditRecord) -> _Prepared:
    if record.direction not in DIRECTIONS:
        raise ValueError(f"audit direction must be 'out' or 'in', got {record.direction!r}")
    if not isinstance(record.outcome, str) or not _OUTCOME_RE.fullmatch(record.outcome):
        raise ValueError(
            f"audit outcome must be a short lower-case word such as 'sent', 'ok', 'fault', 'timeout', "
            f"'error' or 'rejected', got {record.outcome!r}"
        )
    raw = record.raw
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise TypeError(f"audit raw body must be bytes (the exact wire bytes), got {type(raw).__name__}")
    latency = record.latency_ms
    if latency is not None:
        if isinstance(latency, bool) or not isinstance(latency, (int, float)):
            raise TypeError(f"audit latency_ms must be a number, got {type(latency).__name__}")
        latency = float(latency)
        if not math.isfinite(latency) or latency < 0:
            raise ValueError(f"audit latency_ms must be a finite, non-negative number, got {latency!r}")
    attempt = record.attempt
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"audit attempt must be an integer >= 1, got {attempt!r}")
    recorded_at = record.recorded_at
    if recorded_at is not None:
        if not isinstance(recorded_at, datetime) or recorded_at.utcoffset() is None:
            raise ValueError(f"audit recorded_at must be a timezone-aware datetime, got {recorded_at!r}")
        recorded_at = recorded_at.astimezone(UTC)
    stored = _compress(raw)
    values = {
        "direction": record.direction,
        "partner": _name("partner", record.partner),
        "operation": _name("operation", record.operation),
        "document_id": _field("document_id", record.document_id),
        "correlation_id": _field("correlation_id", record.correlation_id),
        "from_agency": _field("from_agency", record.from_agency),
        "to_agency": _field("to_agency", record.to_agency),
        "outcome": record.outcome,
        "latency_ms": latency,
        "attempt": attempt,
        "body_sha256": hashlib.sha256(raw).hexdigest(),
        "body_size": len(raw),
        "error": _field("error", record.error),
    }
    return _Prepared(values, recorded_at, stored, hashlib.sha256(stored).hexdigest())


def _compress(raw: bytes) -> bytes:
    if len(raw) < LARGE_BODY:
        return zlib.compress(raw, COMPRESSION_LEVEL)
    packer = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_HUFFMAN_ONLY)
    return packer.compress(raw) + packer.flush()


def _as_record(entry: AuditRecord | Mapping[str, Any]) -> AuditRecord:
    if isinstance(entry, AuditRecord):
        return entry
    if isinstance(entry, Mapping):
        unknown = set(entry) - _RECORD_FIELDS
        if unknown:
            raise TypeError(f"unknown audit field(s) {sorted(unknown)}; expected some of {sorted(_RECORD_FIELDS)}")
        return AuditRecord(**entry)
    raise TypeError(f"expected an AuditRecord or a mapping, got {type(entry).__name__}")


def _inflate(stored: bytes, expected_size: int) -> bytes | None:
    """Decompress a stored body, reading at most one byte more than it should hold (a tampered
    row must not be able to make the verifier inflate gigabytes). ``None`` if it is not zlib data."""
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(stored, max(expected_size, 0) + 1)
        if len(data) <= expected_size:
            data += inflater.flush()
        return data
    except zlib.error:
        return None


def _body_problem(stored: bytes, body_sha256: str, body_size: int) -> tuple[bytes | None, str | None]:
    """``(raw, problem)``: the inflated body (``None`` if it does not inflate) and why it does not
    match its recorded digest and size (``None`` if it does)."""
    raw = _inflate(bytes(stored), body_size)
    if raw is None:
        return None, "the stored body is not valid compressed data"
    if len(raw) != body_size:
        more = "more than " if len(raw) > body_size else ""
        return raw, f"the body is {more}{len(raw)} bytes, the entry records {body_size}"
    if hashlib.sha256(raw).hexdigest() != body_sha256:
        return raw, "the body bytes do not match body_sha256"
    return raw, None


class _Unreadable:
    """Stands in the row stream for a row the driver could not even read (e.g. text columns holding
    invalid UTF-8 on SQLite): that row was written outside the hub, so it is reported as edited."""

    __slots__ = ("error",)

    def __init__(self, error: Exception):
        self.error = error


def _stream_rows(conn: Connection, start: int, batch_size: int) -> Generator[Sequence[Any], None, None]:
    """Entries from ``start`` on, in seq order, as plain driver tuples of ``_VERIFY_COLUMNS``,
    read in the caller's transaction in batches of ``batch_size`` (constant memory).

    The rows bypass SQLAlchemy's result processing, on purpose: it is a third of the cost of a
    verification, and its type conversions would raise on a row whose columns were overwritten
    with values of the wrong type, where the verifier must report an edit instead. So
    ``recorded_at`` arrives as the driver gives it (text on SQLite, an aware datetime on
    PostgreSQL). PostgreSQL rows come through a psycopg server-side cursor in binary format
    (bodies as raw bytes, not hex text). A row the driver cannot decode ends the stream with an
    :class:`_Unreadable` marker in its place.
    """
    stmt = select(*_VERIFY_COLUMNS).where(_LOG.c.seq >= start).order_by(_LOG.c.seq)
    compiled = stmt.compile(dialect=conn.dialect)
    if compiled.positional:
        params: Any = tuple(compiled.params[name] for name in compiled.positiontup or ())
    else:
        params = compiled.params
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    if conn.dialect.name == "postgresql":
        cursor = dbapi_conn.cursor(name=f"lienthong_audit_verify_{secrets.token_hex(4)}", binary=True)
        try:
            cursor.execute(compiled.string, params)
            while batch := cursor.fetchmany(batch_size):
                yield from batch
        finally:
            cursor.close()
        return
    # SQLite steps through rows lazily in C: iterating the cursor row by row costs nothing extra
    # and lets an unreadable row be pinned to its position.
    cursor = dbapi_conn.cursor()
    try:
        cursor.arraysize = batch_size
        iterator = iter(cursor.execute(compiled.string, params))
        while True:
            try:
                row = next(iterator)
            except StopIteration:
                return
            except sqlite3.DatabaseError as exc:
                yield _Unreadable(exc)  # type: ignore[misc]
                return
            yield row
    finally:
        cursor.close()


def _iso_utc(value: Any) -> str:
    """``recorded_at`` as hashed: ISO-8601 in UTC with microseconds. SQLite keeps the UTC time as
    text without a zone; PostgreSQL returns an aware datetime in the session's zone."""
    if isinstance(value, str):
        # Fast path for the form SQLAlchemy writes on SQLite, "YYYY-MM-DD HH:MM:SS.ffffff" (UTC).
        if len(value) == 26 and value[10] == " " and value[19] == "." and value[4] == value[7] == "-":
            return f"{value[:10]}T{value[11:]}+00:00"
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _explain_edit(prev_hash: str, entry_hash: str, values: list[Any], stored: bytes) -> str:
    """Why an entry that links correctly no longer matches its own hash (the failure path only).

    ``values`` are its canonical values as read. If the body does not match its recorded digest,
    either the body or the digest columns were changed: re-hashing with the digest of the body as
    stored tells which. Otherwise some other recorded field was edited (or the stored body was
    re-encoded), which the hash alone cannot pin to one column.
    """
    seq, body_sha256, body_size = values[1], values[13], values[14]
    raw, problem = _body_problem(stored, body_sha256, body_size)
    if problem is None:
        return f"entry {seq} edited: its metadata (recorded fields) no longer match its entry_hash"
    if raw is not None:
        candidate = list(values)
        candidate[13], candidate[14] = hashlib.sha256(raw).hexdigest(), len(raw)
        if _digest(prev_hash, candidate) == entry_hash:
            return f"entry {seq} edited: body_sha256/body_size were changed (the body itself is intact)"
    return f"entry {seq} body edited: {problem}"


def _plural(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first}..{last}"


class _DriverStatement:
    """A Core statement compiled once for one dialect, run with ``Connection.exec_driver_sql``.

    ``params`` turns a mapping of bind names to Python values into what the driver expects
    (a tuple in bind order for positional paramstyles, else the mapping), after applying the
    bind processors SQLAlchemy itself would apply for those columns (e.g. ``UTCDateTime`` → naive
    UTC text on SQLite), so the stored values are exactly those of ``conn.execute(stmt, ...)``.
    """

    __slots__ = ("sql", "_order", "_processors")

    def __init__(self, stmt: Executable, dialect: Dialect):
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self._order = tuple(compiled.positiontup or ()) if compiled.positional else None
        processors = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        self._processors = tuple(processors.items())

    def params(self, values: dict[str, Any]) -> Any:
        for name, processor in self._processors:
            values[name] = processor(values[name])
        if self._order is None:
            return values
        return tuple(values[name] for name in self._order)


@dataclass(frozen=True, slots=True)
class _AppendStatements:
    """The three statements of an append, for one dialect."""

    lock_head: _DriverStatement
    insert: _DriverStatement
    move_head: _DriverStatement

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _AppendStatements:
        return cls(
            lock_head=_DriverStatement(
                select(_HEAD.c.last_seq, _HEAD.c.last_hash).where(_HEAD.c.id == bindparam("head_id")).with_for_update(),
                dialect,
            ),
            insert=_DriverStatement(insert(_LOG).values({c.name: bindparam(c.name, type_=c.type) for c in _LOG.c}),
                                    dialect),
            move_head=_DriverStatement(
                update(_HEAD).where(_HEAD.c.id == bindparam("head_id"))
                .values(last_seq=bindparam("new_seq"), last_hash=bindparam("new_hash")),
                dialect,
            ),
        )


class AuditTrail:
    """Append to and verify the audit ledger in the store behind ``engine``.

    Every method uses its own connection and transaction; the object holds no state beyond the
    engine (and the append statements, compiled once for its dialect) and can be shared across
    threads. Do not call :meth:`record` while the same thread holds a write transaction on a
    SQLite store: the append waits for the database write lock, which that transaction holds,
    until the 30 s busy timeout fails it.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._statements: _AppendStatements | None = None  # compiled on the first append

    def _append_statements(self, conn: Connection) -> _AppendStatements:
        # Compiled after connecting, so dialect options that depend on the server are settled.
        statements = self._statements
        if statements is None:
            statements = self._statements = _AppendStatements.for_dialect(conn.dialect)
        return statements

    # --- writing --------------------------------------------------------------------------
    def record(
        self,
        *,
        direction: str,
        partner: str,
        operation: str,
        raw: bytes,
        outcome: str,
        document_id: str | None = None,
        correlation_id: str | None = None,
        from_agency: str | None = None,
        to_agency: str | None = None,
        latency_ms: float | None = None,
        attempt: int = 1,
        error: str | None = None,
        recorded_at: datetime | None = None,
    ) -> int:
        """Append one entry, committed before returning, and return its ``seq``.

        ``direction`` is ``"out"`` (the hub sent ``raw``) or ``"in"`` (the hub received it);
        ``outcome`` is a short word such as ``sent``, ``ok``, ``fault``, ``timeout``, ``error``,
        ``rejected``; ``correlation_id`` ties a reply to its request (the request's DocumentId).
        A wrong direction, outcome, partner, operation, type or number raises ``ValueError`` or
        ``TypeError`` before anything is written (those are bugs in the caller); identifiers,
        agencies and error text, which may come from a partner's message, are made storable
        rather than refused (see :func:`_field`).
        """
        record = AuditRecord(
            direction=direction,
            partner=partner,
            operation=operation,
            raw=raw,
            outcome=outcome,
            document_id=document_id,
            correlation_id=correlation_id,
            from_agency=from_agency,
            to_agency=to_agency,
            latency_ms=latency_ms,
            attempt=attempt,
            error=error,
            recorded_at=recorded_at,
        )
        return self.record_many([record])[0]

    def record_many(self, entries: Iterable[AuditRecord | Mapping[str, Any]], *, chunk_size: int = 1000) -> list[int]:
        """Append several entries in one transaction, chained in the given order; return their seqs.

        All or nothing: one invalid entry (checked before the ledger is locked) or a database error
        leaves the ledger unchanged. Entries are mappings with :class:`AuditRecord`'s fields or
        ``AuditRecord`` instances; those without ``recorded_at`` share the time of the append.
        Validation and compression happen before the lock is taken, so concurrent appenders wait
        only for the hashing and the inserts.
        """
        prepared = [_prepare(_as_record(entry)) for entry in entries]
        if not prepared:
            return []
        with self._write_connection() as conn, conn.begin():
            sql = self._append_statements(conn)
            last_seq, last_hash = self._lock_head(conn, sql)
            now = datetime.now(UTC)
            seq, prev = last_seq, last_hash
            rows: list[Any] = []
            for item in prepared:
                seq += 1
                values = {"seq": seq, "recorded_at": item.recorded_at or now, **item.values}
                entry_hash = entry_digest(prev, **values, stored_body_sha256=item.stored_body_sha256)
                rows.append(sql.insert.params({**values, "body": item.body, "prev_hash": prev, "entry_hash": entry_hash}))
                prev = entry_hash
            if len(rows) == 1:
                conn.exec_driver_sql(sql.insert.sql, rows[0])
            else:
                for start in range(0, len(rows), chunk_size):
                    conn.exec_driver_sql(sql.insert.sql, rows[start : start + chunk_size])
            conn.exec_driver_sql(sql.move_head.sql,
                                 sql.move_head.params({"new_seq": seq, "new_hash": prev, "head_id": 1}))
        return list(range(last_seq + 1, seq + 1))

    def _write_connection(self) -> Connection:
        conn = self.engine.connect()
        if self.engine.dialect.name == "sqlite":
            # Take SQLite's write lock at BEGIN: a deferred transaction would read the head under a
            # shared lock and could then fail to upgrade it (SQLITE_BUSY, not retried by the busy
            # handler) or, worse, let two writers read the same head.
            conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        return conn

    @staticmethod
    def _lock_head(conn: Connection, sql: _AppendStatements) -> tuple[int, str]:
        row = conn.exec_driver_sql(sql.lock_head.sql, sql.lock_head.params({"head_id": 1})).one_or_none()
        if row is None:
            raise AuditChainBroken(
                "the audit_head row is missing: the ledger cannot be extended safely "
                "(was the store migrated with lienthong's migrations, or was the row deleted?)"
            )
        return int(row[0]), str(row[1])

    # --- reading --------------------------------------------------------------------------
    def head(self) -> tuple[int, str]:
        """``(last_seq, last_hash)`` of the ledger: ``(0, GENESIS_HASH)`` when it is empty."""
        with self.engine.connect() as conn:
            row = conn.execute(select(_HEAD.c.last_seq, _HEAD.c.last_hash).where(_HEAD.c.id == 1)).one_or_none()
        if row is None:
            raise AuditChainBroken("the audit_head row is missing")
        return int(row[0]), str(row[1])

    def body(self, seq: int) -> bytes:
        """The exact bytes recorded as entry ``seq``, after checking them against ``body_sha256``.

        Raises ``LookupError`` for a seq the ledger never had, and :class:`AuditChainBroken` if the
        entry was removed or its stored body no longer matches its digest.
        """
        with self.engine.connect() as conn:
            row = conn.execute(
                select(_LOG.c.body, _LOG.c.body_sha256, _LOG.c.body_size).where(_LOG.c.seq == seq)
            ).one_or_none()
            if row is None:
                head = conn.execute(select(_HEAD.c.last_seq).where(_HEAD.c.id == 1)).scalar_one_or_none()
        if row is None:
            if head is not None and 1 <= seq <= head:
                raise AuditChainBroken(
                    f"audit entry {seq} is missing although the ledger's head is at {head}: it was removed"
                )
            end = head if head is not None else "an unknown seq"
            raise LookupError(f"no audit entry {seq} (the ledger ends at {end})")
        stored, body_sha256, body_size = row
        raw, problem = _body_problem(stored, body_sha256, body_size)
        if problem is not None or raw is None:
            raise AuditChainBroken(f"audit entry {seq} body does not match its record: {problem}")
        return raw

    # --- verification ---------------------------------------------------------------------
    def verify(self, *, start: int = 1, deep: bool = False, batch_size: int = 2000,
               anchor: str | None = None) -> ChainReport:
        """Re-walk the chain from ``start`` and report the first entry that is not as written.

        Streams rows in ``seq`` order in one read transaction (a consistent snapshot, so appends
        running meanwhile are neither half-seen nor blamed), in constant memory. For each entry it
        checks, in order: that it is not beyond the head; that no seq is missing; that it links to
        the entry before it; that its hash covers its fields and stored body. A broken link is
        explained from the neighbours (inserted, reordered, replaced, removed-and-renumbered). At
        the end the head is compared with the last entry, which reveals removed tail entries.

        ``deep=True`` additionally inflates every body and re-checks it against ``body_sha256``
        (slower; the chain already proves stored bodies unchanged).

        ``anchor`` is the ``entry_hash`` of entry ``start - 1`` when that entry is no longer in the
        log: after ``lienthong audit prune`` the signed tombstone (verified by the caller, see
        ``lienthong.hub.audit.seal``) carries the hash the remaining chain must link to.
        """
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise ValueError(f"start must be a positive seq, got {start!r}")
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                return self._verify(conn, start=start, deep=deep, batch_size=batch_size, anchor=anchor)

    @staticmethod
    def _check_row(
        row: Sequence[Any],
        following: Sequence[Any] | _Unreadable | None,
        expected: int,
        start: int,
        checked: int,
        head_seq: int,
        prev: str,
        prevprev: str | None,
        deep: bool,
    ) -> ChainReport | None:
        """The verdict on one row (``None``: it is the entry that belongs at ``expected``)."""
        seq, prev_hash, entry_hash = row[0], row[-2], row[-1]
        if not isinstance(seq, int):
            raise TypeError(f"seq is {seq!r}")
        if seq > head_seq:
            return ChainReport(
                False, checked, seq, f"entry {seq} was appended outside the ledger: the head ends at {head_seq}"
            )
        if seq != expected:
            before = f"jumps from {expected - 1} to {seq}" if expected > 1 else f"starts at {seq}"
            return ChainReport(
                False, checked, expected, f"{_plural(expected, seq - 1)} removed: the log {before}"
            )

        # The canonical values straight from the row: the first fifteen columns are selected in
        # canonical order, so no per-row keyword plumbing.
        stored = row[15]
        values = [CANONICAL_VERSION, *row[:15], hashlib.sha256(stored).hexdigest()]
        values[2] = _iso_utc(values[2])
        self_ok = entry_hash == _digest(prev_hash, values)
        if isinstance(following, _Unreadable):
            following = None

        if prev_hash != prev:
            if prevprev is not None and prev_hash == prevprev:
                target = f"entry {seq - 2}" if seq > 2 else "the start of the ledger"
                return ChainReport(
                    False, max(checked - 1, 0), seq - 1,
                    f"entry {seq - 1} was inserted: entries {seq - 1} and {seq} both link to {target}",
                )
            if following is not None and prev_hash == following[-1]:
                return ChainReport(
                    False, checked, seq,
                    f"entries {seq} and {following[0]} were reordered: entry {seq} links to the entry after it",
                )
            if following is not None and following[-2] == prev:
                return ChainReport(
                    False, checked, seq,
                    f"entry {seq} was inserted: entry {following[0]} links to entry {seq - 1}, not to it",
                )
            if self_ok and seq > 1 and (following is None or following[-2] == entry_hash):
                return ChainReport(
                    False, checked - 1 if seq - 1 >= start else checked, seq - 1,
                    f"entry {seq - 1} was replaced: entry {seq} links to a different entry {seq - 1} "
                    "(its contents and hash were rewritten)",
                )
            return ChainReport(
                False, checked, seq,
                f"entry {seq} does not link to entry {seq - 1} (prev_hash mismatch): entries were "
                "removed, inserted or moved and the log renumbered",
            )
        if not self_ok:
            return ChainReport(False, checked, seq, _explain_edit(prev_hash, entry_hash, values, stored))
        if deep:
            _, problem = _body_problem(stored, values[13], values[14])
            if problem is not None:
                return ChainReport(False, checked, seq, f"entry {seq} body does not match its digest: {problem}")
        return None

    def _verify(self, conn: Connection, *, start: int, deep: bool, batch_size: int,
                anchor: str | None = None) -> ChainReport:
        head_row = conn.execute(
            select(type_coerce(_HEAD.c.last_seq, String), _HEAD.c.last_hash).where(_HEAD.c.id == 1)
        ).one_or_none()
        if head_row is None:
            return ChainReport(False, 0, None, "the audit_head row is missing: the ledger's head was deleted")
        try:
            head_seq, head_hash = int(head_row[0]), str(head_row[1])
        except (TypeError, ValueError):
            return ChainReport(False, 0, None, f"the audit_head row was edited: last_seq is {head_row[0]!r}")
        if start > head_seq + 1:
            raise ValueError(f"start {start} is beyond the end of the ledger (last seq {head_seq})")

        # The hashes of the two entries before `start` anchor the walk (trusted: verify them with
        # an earlier start).
        prev: str = GENESIS_HASH
        prevprev: str | None = None
        if anchor is not None:
            prev = anchor
        elif start > 1:
            anchors = dict(
                conn.execute(
                    select(_LOG.c.seq, _LOG.c.entry_hash).where(_LOG.c.seq.in_([start - 2, start - 1]))
                ).all()
            )
            if start - 1 not in anchors:
                return ChainReport(False, 0, start - 1, f"entry {start - 1} removed: it is missing from the log")
            prev = anchors[start - 1]
            prevprev = anchors.get(start - 2, GENESIS_HASH if start == 2 else None)

        rows = _stream_rows(conn, start, batch_size)
        expected = start
        checked = 0
        try:
            row = next(rows, None)
            while row is not None:
                if isinstance(row, _Unreadable):
                    return ChainReport(
                        False, checked, expected,
                        f"entry {expected} edited: its row cannot be read back ({row.error}); "
                        "it was written outside the hub",
                    )
                following = next(rows, None)
                try:
                    verdict = self._check_row(row, following, expected, start, checked, head_seq, prev, prevprev, deep)
                except (TypeError, ValueError, AttributeError, OverflowError, UnicodeError) as exc:
                    # SQLite lets any column hold any type: a value the hub could never have
                    # written (text in seq, a NaN latency, a date that does not parse) is an edit.
                    verdict = ChainReport(
                        False, checked, expected,
                        f"entry {expected} edited: a column holds a value the hub never writes ({exc})",
                    )
                if verdict is not None:
                    return verdict
                prevprev, prev = prev, row[-1]
                expected += 1
                checked += 1
                row = following
        finally:
            rows.close()

        last = expected - 1
        if head_seq > last:
            return ChainReport(
                False, checked, last + 1,
                f"{_plural(last + 1, head_seq)} removed from the end: the head records {head_seq} "
                f"entries but the log ends at {last}",
            )
        if head_seq >= 1 and head_hash != prev:
            return ChainReport(
                False, max(checked - 1, 0), head_seq,
                f"entry {head_seq} was replaced: the head records a different hash for it",
            )
        return ChainReport(True, checked)


_LEDGERS: weakref.WeakKeyDictionary[Engine, AuditTrail] = weakref.WeakKeyDictionary()
_LEDGERS_LOCK = threading.Lock()


def ledger(store_or_engine: Any) -> AuditTrail:
    """The audit trail on a store (or an engine), one per engine in this process.

    The store does not know the ledger (it sits below it); code that holds a store asks here. One
    instance per engine keeps the append statements compiled once.
    """
    engine: Engine = getattr(store_or_engine, "engine", store_or_engine)
    with _LEDGERS_LOCK:
        trail = _LEDGERS.get(engine)
        if trail is None:
            trail = _LEDGERS[engine] = AuditTrail(engine)
        return trail
