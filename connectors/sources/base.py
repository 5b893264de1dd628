"""What every source of one-stop dossier changes gives the hub: batches of mapped changes.

A *source* reads changes from the ministry's one-stop system (its SQL database, its export
files) and maps each row with a :class:`~lienthong.mappings.dossier.DossierMapping`. It hands
them out as :class:`SourceBatch` objects, each with the cursor value that comes *after* it.

Why the source never stores its position itself: the hub must turn every change into an outbox
event exactly once. If the source remembered "read up to here" on its own, a crash between
that and the outbox commit would lose the batch (or repeat it). So the caller writes the batch's
events and the batch's ``cursor`` in **one transaction**, and passes the last committed cursor
back to :meth:`Source.changes` next time. After that commit it calls :meth:`Source.ack` (the
file-drop source moves the file aside then; the SQL source has nothing to do). If the caller
fails before committing, it stops iterating and starts again from its last committed cursor.

A row that cannot be mapped does not stop the batch: it is an item with ``error`` set (a
specific :class:`~lienthong.mappings.errors.MappingError` with a stable ``code``), which the
caller turns into a dead letter with the raw row, in the same transaction. Nothing is dropped.

Why a source has an identity and a location: the cursor is progress *in one source*. Two
agencies' databases read with the same mapping, a database moved to a new server or restored
from a backup, are different positions in different data; a cursor kept under the mapping's name
would let one resume from another's place and silently skip what lies before it. So every source
says where it reads (:attr:`Source.location`: the database URL without credentials, the inbox
folder's absolute path), the caller stores the cursor under the source's identity (given by the
operator, or :func:`derived_source_id` of the mapping and the location) together with that
location, and before reading asks the source whether the stored cursor still fits it
(:meth:`Source.check_cursor`): a cursor ahead of everything the source holds (a restore), or
pointing at a row that is no longer the row read there (keys reused), is refused with a
:class:`CursorDoesNotFit` naming both sides, never read past.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lienthong.hub.errors import ConfigurationError, FatalError, RetryableError
from lienthong.mappings.dossier import DOSSIER, STEP, DossierMapping, MappedChange, json_safe
from lienthong.mappings.errors import MappingError

__all__ = [
    "DOSSIER", "MAPPED", "STEP", "CursorDoesNotFit", "Source", "SourceBatch", "SourceBehindCursor", "SourceCursorUnclaimed",
    "SourceItem", "SourceKeysMoved", "SourceLocationChanged", "SourceMappingChanged", "SourceUnavailable",
    "check_source_id", "derived_source_id", "inbox_location", "map_rows", "sql_location",
]

#: the outcome counted for a row mapped without error
MAPPED = "mapped"


class SourceUnavailable(RetryableError):
    """The source system cannot be read right now (database down, connection lost): try later."""

    code = "SOURCE_UNAVAILABLE"


class CursorDoesNotFit(FatalError):
    """The stored cursor does not belong to the source as it is now: reading on from it could skip
    changes. The run reads nothing until an operator decides: ``--reset-cursor`` (read the source
    from the start; what was taken in before counts as duplicates) or ``--adopt-cursor`` (keep the
    position: the source is a replica of the same data). Both are recorded in the audit trail."""

    code = "SOURCE_CURSOR_DOES_NOT_FIT"


class SourceLocationChanged(CursorDoesNotFit):
    """The identity's cursor was taken from another location (database, inbox folder)."""

    code = "SOURCE_LOCATION_CHANGED"


class SourceMappingChanged(CursorDoesNotFit):
    """The identity's cursor was taken with another mapping (its columns and cursor may differ)."""

    code = "SOURCE_MAPPING_CHANGED"


class SourceBehindCursor(CursorDoesNotFit):
    """The source's newest row is older than the cursor: restored from an older backup, or emptied."""

    code = "SOURCE_BEHIND_CURSOR"


class SourceKeysMoved(CursorDoesNotFit):
    """The row at the cursor's position is not the row that was read there: keys moved backwards
    (a restore followed by new writes that reused ids, or a copy whose keys differ)."""

    code = "SOURCE_KEYS_MOVED"


class SourceCursorUnclaimed(CursorDoesNotFit):
    """A cursor stored before sources had identities may be this source's: nobody can tell."""

    code = "SOURCE_CURSOR_UNCLAIMED"


#: query parameters that tune a connection without saying which data it reaches
_TUNING_PARAMETERS = frozenset({
    "application_name", "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "target_session_attrs",
    "client_encoding", "timeout", "check_same_thread",
})
#: a derived identity longer than this keeps the mapping name and a digest of the location
_MAX_ID = 128
_ID_RE = r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}"


def sql_location(url: Any) -> str:
    """Where a SQL source reads, as a stable text without credentials: the database URL with no user
    name, password or connection-tuning parameters, the driver named by its backend only, a SQLite
    file by its absolute path. Two URLs reaching the same database with other credentials or
    timeouts give the same location; another host, port, database or schema another one."""
    from sqlalchemy.engine import URL, Engine, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(url, Engine):
        url = url.url
    try:
        parsed: URL = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        shown = str(url).split("://", 1)[0] + "://…"
        raise ConfigurationError(f"invalid one-stop database URL {shown!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    query = {k: v for k, v in sorted(parsed.query.items()) if k not in _TUNING_PARAMETERS}
    database = parsed.database
    if backend == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        database = os.path.abspath(os.path.expanduser(database))
    # (URL.set ignores None, so the credentials are dropped with the tuple's own _replace)
    clean = parsed.set(drivername=backend, query=query)._replace(username=None, password=None, database=database)
    return clean.render_as_string(hide_password=False)


def inbox_location(inbox: str | Path) -> str:
    """Where a file-drop source reads: the inbox folder's absolute path (symbolic links resolved)."""
    return str(Path(inbox).expanduser().resolve())


def derived_source_id(mapping_name: str, location: str) -> str:
    """The identity of a source nobody named: ``<mapping>@<location>`` (a digest of the location
    when that is too long to be a key). Moving the database gives another identity, so a moved or
    copied source is read from its start (idempotency keys absorb what was taken in already); give
    the source an explicit identity to keep its position across a move (then the move is refused
    until ``--adopt-cursor``)."""
    text = f"{mapping_name}@{location}"
    if len(text) <= _MAX_ID:
        return text
    return f"{mapping_name}@sha256:{hashlib.sha256(location.encode('utf-8')).hexdigest()[:32]}"


def check_source_id(value: str, where: str = "source id") -> str:
    """An explicit source identity: 1-128 characters of letters, digits and ``. _ : @ / + -``."""
    import re

    if not isinstance(value, str) or not re.fullmatch(_ID_RE, value.strip()):
        raise ConfigurationError(f"{where} {value!r} must be 1 to 128 letters, digits or . _ : @ / + - "
                                 "(e.g. so-nnptnt-ha-noi)")
    return value.strip()


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One row read from the source: mapped (``change``) or not (``error``), never both.

    ``row`` is the raw record (column -> value) as read, kept for dead letters; ``source_key``
    and ``ma_ho_so`` are filled whenever the row carries them, even when mapping failed, so a
    dead letter can be keyed and found by dossier.
    """

    kind: str
    row: Mapping[str, Any]
    change: MappedChange | None = None
    error: MappingError | None = None
    source_key: str | None = None
    ma_ho_so: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raw_json(self) -> dict[str, Any]:
        """The raw row with JSON-safe values (times as ISO text): what a dead letter stores."""
        return {str(k): json_safe(v) for k, v in self.row.items()}

    def rejected(self) -> dict[str, Any]:
        """A failed row as the outbox's dead-letter intake takes it: ``kind``, ``source_key``,
        ``payload`` (the raw row), ``partition_key`` (the dossier code, None when the row has
        none), ``reason_code`` (the error's code) and ``reason`` (its message).

        A row without its key or version has no source key; it gets a stable one made from its
        content (``<kind>:raw:<sha256>``), so reading it twice still yields one dead letter.
        """
        if self.error is None:
            raise ValueError(f"{self.source_key}: the row was mapped; nothing to reject")
        payload = self.raw_json()
        key = self.source_key
        if key is None:
            text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            key = f"{self.kind}:raw:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:40]}"
        return {"kind": self.kind, "source_key": key, "payload": payload, "partition_key": self.ma_ho_so,
                "reason_code": self.error.code, "reason": str(self.error)}


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Rows read together, in the order their events must be written, and the cursor after them.

    Within a batch, dossier rows come before step rows: a processing step must never reach the
    portal before the dossier it belongs to. ``origin`` says what was read (tables or file name);
    ``file`` is the export file of a file-drop batch (None for SQL).
    """

    source: str
    cursor: str
    items: tuple[SourceItem, ...]
    origin: str
    file: Path | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def changes(self) -> list[MappedChange]:
        return [i.change for i in self.items if i.change is not None]

    @property
    def failures(self) -> list[SourceItem]:
        return [i for i in self.items if i.error is not None]

    def outcomes(self) -> Counter[str]:
        """Counts per outcome: ``mapped``, each error ``code`` (MAPPING_UNKNOWN_CODE...) and each
        adjustment kind (``normalised``, ``truncated``, ``omitted``): the intake's metrics."""
        counts: Counter[str] = Counter()
        for item in self.items:
            if item.error is not None:
                counts[item.error.code] += 1
            else:
                counts[MAPPED] += 1
                for adjustment in item.change.adjustments:
                    counts[adjustment.kind] += 1
        return counts


@runtime_checkable
class Source(Protocol):
    """A reader of one-stop dossier changes (see the module docstring for the cursor protocol)."""

    mapping: DossierMapping
    #: "sql" or "filedrop"
    kind: str

    @property
    def name(self) -> str:
        """The mapping's name (shared by every source read with that mapping)."""
        ...

    @property
    def location(self) -> str:
        """Where this source reads, without credentials (see :func:`sql_location`, :func:`inbox_location`)."""
        ...

    def check_cursor(self, cursor: str | None) -> None:
        """Raise a :class:`CursorDoesNotFit` when reading on from ``cursor`` could skip changes."""
        ...

    def describe_cursor(self, cursor: str | None) -> str:
        """The cursor's position in words, for status lines."""
        ...

    def changes(self, cursor: str | None = None) -> Iterator[SourceBatch]:
        """Batches of changes after ``cursor`` (None: from the beginning), until caught up."""
        ...

    def ack(self, batch: SourceBatch) -> None:
        """Called after the batch's events and cursor are committed."""
        ...


def map_rows(mapping: DossierMapping, kind: str, rows: Iterable[Mapping[str, Any]]) -> list[SourceItem]:
    """Map each row of ``kind``; a row that fails becomes an item carrying its error."""
    table = mapping.table(kind)
    mapper = {DOSSIER: mapping.map_dossier, STEP: mapping.map_step}.get(kind) or (lambda row: table.map(row))
    items: list[SourceItem] = []
    append = items.append
    for row in rows:
        try:
            change = mapper(row)
        except MappingError as exc:
            append(SourceItem(kind, row, None, exc, table.source_key(row), table.ma_ho_so(row)))
        else:
            append(SourceItem(kind, row, change, None, change.source_key, change.ma_ho_so))
    return items
