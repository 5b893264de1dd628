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
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lienthong.hub.errors import RetryableError
from lienthong.mappings.dossier import DOSSIER, STEP, DossierMapping, MappedChange, json_safe
from lienthong.mappings.errors import MappingError

__all__ = ["DOSSIER", "STEP", "MAPPED", "Source", "SourceBatch", "SourceItem", "SourceUnavailable", "map_rows"]

#: the outcome counted for a row mapped without error
MAPPED = "mapped"


class SourceUnavailable(RetryableError):
    """The source system cannot be read right now (database down, connection lost): try later."""

    code = "SOURCE_UNAVAILABLE"


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

    @property
    def name(self) -> str: ...

    def changes(self, cursor: str | None = None) -> Iterator[SourceBatch]:
        """Batches of changes after ``cursor`` (None: from the beginning), until caught up."""
        ...

    def ack(self, batch: SourceBatch) -> None:
        """Called after the batch's events and cursor are committed."""
        ...


def map_rows(mapping: DossierMapping, kind: str, rows: Iterable[Mapping[str, Any]]) -> list[SourceItem]:
    """Map each row of ``kind``; a row that fails becomes an item carrying its error."""
    table = mapping.table(kind)
    mapper = mapping.map_dossier if kind == DOSSIER else mapping.map_step
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
