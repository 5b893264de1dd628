"""Intake: changes in the one-stop system become outbox events, with nothing lost on a crash.

For each batch a source yields, one transaction writes the mapped changes as pending outbox
events, the rows that could not be mapped as dead events with their dead letters (never dropped,
never guessed), **and the source's new cursor**. A crash before the commit re-reads the batch; a
crash after it resumes past it; re-reading a batch that was already committed adds nothing,
because every event carries its change's idempotency key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..connectors.sources.base import Source
from .models import IntakeCursor
from .outbox import enqueue, enqueue_rejected


@dataclass
class IntakeSummary:
    source: str
    batches: int = 0
    read: int = 0
    enqueued: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    outcomes: Counter = field(default_factory=Counter)
    cursor: str | None = None
    #: export files the source could not read at all and moved to quarantine in this run (file,
    #: code, reason): bad input too, so the run reports it rather than leaving it to a log line
    quarantined: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self) | {"outcomes": dict(self.outcomes)}


def load_source_mapping(name_or_path: str, engine: Engine):
    """A source mapping (shipped name or YAML path) that checks procedure codes against the local
    catalogue when the catalogue has been synced (an unknown MaTTHC then becomes a dead letter)."""
    from pathlib import Path

    from sqlalchemy import func

    from ..mappings.dossier import DossierMapping
    from .models import Procedure

    with Session(engine) as session:
        has_catalogue = session.scalar(select(func.count()).select_from(Procedure)) > 0
        known = set(session.scalars(select(Procedure.code).where(Procedure.removed_at.is_(None))))
    check = (lambda code: code in known) if has_catalogue else None
    if Path(name_or_path).suffix in (".yaml", ".yml"):
        return DossierMapping.load(name_or_path, known_procedures=check)
    return DossierMapping.shipped(name_or_path, known_procedures=check)


def stored_cursor(engine: Engine, source_name: str) -> str | None:
    with Session(engine) as session:
        return session.scalar(select(IntakeCursor.cursor).where(IntakeCursor.source == source_name))


def intake_once(engine: Engine, source: Source, *, max_batches: int | None = None) -> IntakeSummary:
    """Read everything the source has after the stored cursor; one transaction per batch."""
    summary = IntakeSummary(source=source.name, cursor=stored_cursor(engine, source.name))
    rejected_files = getattr(source, "rejected", [])  # a file-drop source lists what it quarantined
    already_rejected = len(rejected_files)
    for batch in source.changes(summary.cursor):
        with Session(engine) as session, session.begin():
            result = enqueue(session, batch.changes)
            dead = known_dead = 0
            for item in batch.failures:
                rejected = item.rejected()
                if enqueue_rejected(session, rejected, reason_code=rejected["reason_code"],
                                    reason=rejected["reason"]) is not None:
                    dead += 1
                else:
                    known_dead += 1  # refused before (a file sent twice): already a dead letter
            row = session.get(IntakeCursor, source.name)
            if row is None:
                session.add(IntakeCursor(source=source.name, cursor=batch.cursor, updated_at=datetime.now(UTC)))
            else:
                row.cursor, row.updated_at = batch.cursor, datetime.now(UTC)
        source.ack(batch)  # only after the commit: a file is moved aside once its events are safe
        summary.batches += 1
        summary.read += len(batch)
        summary.enqueued += result.inserted
        # every row read is counted once: read == enqueued + duplicates + dead_lettered
        summary.duplicates += result.duplicates + known_dead
        summary.dead_lettered += dead
        summary.outcomes.update(batch.outcomes())
        summary.cursor = batch.cursor
        if max_batches is not None and summary.batches >= max_batches:
            break
    summary.quarantined = [{"file": r.name, "code": r.code, "reason": r.reason}
                           for r in rejected_files[already_rejected:]]
    return summary
