"""Intake: changes in the one-stop system become outbox events, with nothing lost on a crash.

For each batch a source yields, one transaction writes the mapped changes as pending outbox
events, the rows that could not be mapped as dead events with their dead letters (never dropped,
never guessed), **and the source's new cursor**. A crash before the commit re-reads the batch; a
crash after it resumes past it; re-reading a batch that was already committed adds nothing,
because every event carries its change's idempotency key.

Why the cursor belongs to a source, not to a mapping: a province reads several agencies'
databases with one vendor's mapping; a ministry moves its database to a new server or restores
it from a backup. The cursor is stored under the source's **identity** (explicit, or
``<mapping>@<location>``) with the **location** it was taken from, and before anything is read
the intake checks that it still fits (:func:`resolve_cursor`): the same location, the same
mapping, and a position the source can still have produced (:meth:`Source.check_cursor`). A
cursor that does not fit is refused with one line naming both sides; the operator then decides
with a :class:`CursorDecision` (reset: read from the start, what was taken in counts as
duplicates; adopt: keep the position, the source is a replica of the same data), and that
decision is written to the audit trail, with who and why, before it takes effect.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ...connectors.sources.base import (
    MAPPED,
    CursorDoesNotFit,
    Source,
    SourceCursorUnclaimed,
    SourceLocationChanged,
    SourceMappingChanged,
    check_source_id,
    derived_source_id,
)
from ..audit import ledger
from ..delivery.outbox import enqueue, enqueue_rejected
from ..dossiers import project
from ..errors import ConfigurationError
from ..store import write_transaction
from ..store.models import IntakeCursor

#: the audit ledger's partner and operations for an operator's cursor decision
DECISION_PARTNER = "hub"
DECISION_OPERATIONS = {"reset": "intake.reset_cursor", "adopt": "intake.adopt_cursor"}
_REMEDY = ("--reset-cursor re-reads the source from the start (what was already taken in counts as "
           "duplicates), --adopt-cursor keeps the position (the same data, e.g. a replica); "
           "either needs --reason and is recorded in the audit trail")


@dataclass(frozen=True)
class CursorDecision:
    """An operator's answer to a cursor that does not fit: ``reset`` or ``adopt``, why, and who."""

    action: Literal["reset", "adopt"]
    reason: str
    actor: str | None = None

    def __post_init__(self) -> None:
        if self.action not in DECISION_OPERATIONS:
            raise ConfigurationError(f"a cursor decision is 'reset' or 'adopt', not {self.action!r}")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ConfigurationError(f"--{self.action}-cursor needs --reason: the decision is recorded "
                                     "in the audit trail with who took it and why")


@dataclass
class IntakeSummary:
    #: the source's identity (the key its cursor is stored under)
    source: str
    mapping: str = ""
    location: str = ""
    batches: int = 0
    read: int = 0
    enqueued: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    #: changes whose idempotency key another change already had (another source's row with the
    #: same key, an id reused after a restore): enqueued under a key of their own, not lost
    key_reused: int = 0
    outcomes: Counter = field(default_factory=Counter)
    cursor: str | None = None
    #: the cursor in words (tables and positions, or the last file)
    position: str = ""
    #: the operator's decision applied before this run ({action, reason, actor, refused}), if any
    decision: dict | None = None
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

    from ...mappings.dossier import DossierMapping
    from ..store.models import Procedure

    with Session(engine) as session:
        has_catalogue = session.scalar(select(func.count()).select_from(Procedure)) > 0
        known = set(session.scalars(select(Procedure.code).where(Procedure.removed_at.is_(None))))
    check = (lambda code: code in known) if has_catalogue else None
    if Path(name_or_path).suffix in (".yaml", ".yml"):
        return DossierMapping.load(name_or_path, known_procedures=check)
    return DossierMapping.shipped(name_or_path, known_procedures=check)


def source_identity(source: Source, source_id: str | None = None) -> str:
    """The key the source's cursor is kept under: ``source_id`` when given, else derived from the
    mapping and the location (:func:`~lienthong.connectors.sources.base.derived_source_id`)."""
    if source_id:
        return check_source_id(source_id)
    return derived_source_id(source.name, source.location)


def stored_cursor(engine: Engine, source_id: str) -> str | None:
    with Session(engine) as session:
        return session.scalar(select(IntakeCursor.cursor).where(IntakeCursor.source == source_id))


@dataclass(frozen=True)
class SourceState:
    """One source as the store knows it: identity, where and with what it was read, how far, the last run."""

    source: str
    mapping: str | None
    kind: str | None
    location: str | None
    cursor: str | None
    updated_at: datetime
    last_run_at: datetime | None
    last_run: dict | None

    @property
    def unclaimed(self) -> bool:
        """Stored before sources had identities: nobody knows which source it belongs to."""
        return self.location is None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "updated_at": self.updated_at.isoformat(),
                "last_run_at": self.last_run_at.isoformat() if self.last_run_at else None,
                "unclaimed": self.unclaimed}


def source_states(engine: Engine) -> list[SourceState]:
    """Every source the intake has a cursor for, by identity."""
    with Session(engine) as session:
        rows = session.scalars(select(IntakeCursor).order_by(IntakeCursor.source)).all()
    return [SourceState(r.source, r.mapping, r.kind, r.location, r.cursor or None, r.updated_at, r.last_run_at,
                        json.loads(r.last_run) if r.last_run else None) for r in rows]


def resolve_cursor(engine: Engine, source: Source, identity: str, decision: CursorDecision | None = None,
                   *, audit: Any = None) -> tuple[str | None, dict | None]:
    """The cursor to read ``source`` from, after checking that the stored one fits it.

    Refuses (raises a :class:`CursorDoesNotFit`) when the identity's cursor was taken from another
    location or with another mapping, when the source cannot have produced it (restored, keys
    moved), or when the identity has no cursor but one stored before identities existed may be its
    own. With ``decision`` the refusal is answered instead: ``reset`` starts from the beginning,
    ``adopt`` keeps the position (and claims a cursor stored before identities existed). The
    decision is recorded in ``audit`` first, then applied; returns the cursor and what was decided.
    """
    location, mapping = source.location, source.name
    with Session(engine) as session:
        row = session.get(IntakeCursor, identity)
        legacy = None
        if row is None:
            legacy = session.scalars(select(IntakeCursor).where(IntakeCursor.location.is_(None),
                                                                IntakeCursor.mapping == mapping)
                                     .order_by(IntakeCursor.source).limit(1)).first()
    where = f"intake source {identity} ({mapping} at {location})"
    candidate = row
    problem: CursorDoesNotFit | None = None
    if row is None and legacy is not None:
        candidate = legacy
    if candidate is not None and candidate.location is None:
        problem = SourceCursorUnclaimed(
            f"{where}: the cursor {candidate.source!r} of mapping {mapping} was stored before sources had "
            f"identities and may be this source's position ({source.describe_cursor(candidate.cursor)}) or "
            f"another's: nothing is read until you decide; {_REMEDY}")
    elif row is not None and row.location != location:
        problem = SourceLocationChanged(
            f"{where}: its cursor was taken from {row.location}, not from {location}: reading on from it could "
            f"skip changes; {_REMEDY}")
    elif row is not None and row.mapping and row.mapping != mapping:
        problem = SourceMappingChanged(
            f"{where}: its cursor was taken with mapping {row.mapping}, not {mapping}; {_REMEDY}")
    elif row is not None and row.cursor:
        try:
            source.check_cursor(row.cursor)
        except CursorDoesNotFit as exc:
            problem = type(exc)(f"{where}: {exc}; {_REMEDY}")

    if decision is None:
        if problem is not None:
            _note_refusal(engine, identity, problem)
            raise problem
        return (row.cursor or None) if row is not None else None, None

    if decision.action == "adopt" and problem is None:
        raise ConfigurationError(f"{where}: nothing to adopt: its cursor fits the source"
                                 if row is not None else f"{where}: nothing to adopt: it has no cursor yet")
    cursor = None if decision.action == "reset" else (candidate.cursor or None)
    decided = {"action": decision.action, "reason": decision.reason, "actor": decision.actor,
               "source": identity, "mapping": mapping, "location": location,
               "previous": None if candidate is None else {
                   "source": candidate.source, "location": candidate.location, "mapping": candidate.mapping,
                   "cursor": candidate.cursor},
               "refused": None if problem is None else {"code": problem.code, "message": str(problem)},
               "cursor": cursor}
    if audit is None:
        raise ConfigurationError(f"{where}: a cursor decision must be recorded in the audit trail: pass the audit ledger")
    body = json.dumps(decided, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    audit.record(direction="out", partner=DECISION_PARTNER, operation=DECISION_OPERATIONS[decision.action],
                 raw=body.encode("utf-8"), outcome="decided", correlation_id=identity, error=decision.reason)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        if candidate is not None and candidate.source != identity and decision.action == "adopt":
            conn.execute(delete(IntakeCursor).where(IntakeCursor.source == candidate.source))
        _put_cursor(conn, identity, source, cursor, now)
    return cursor, decided


def _put_cursor(conn: Any, identity: str, source: Source, cursor: str | None, now: datetime) -> None:
    values = {"cursor": cursor or "", "updated_at": now, "mapping": source.name, "kind": source.kind,
              "location": source.location}
    table = IntakeCursor.__table__
    if conn.execute(table.update().where(table.c.source == identity).values(**values)).rowcount == 0:
        conn.execute(table.insert().values(source=identity, **values))


def _note_refusal(engine: Engine, identity: str, problem: CursorDoesNotFit) -> None:
    """Keep the refusal on the identity's row, so ``lienthong status`` shows why it reads nothing."""
    table = IntakeCursor.__table__
    with write_transaction(engine) as conn:
        conn.execute(table.update().where(table.c.source == identity).values(
            last_run_at=datetime.now(UTC),
            last_run=json.dumps({"ok": False, "code": problem.code, "message": str(problem)}, ensure_ascii=False)))


def intake_once(engine: Engine, source: Source, *, source_id: str | None = None,
                decision: CursorDecision | None = None, audit: Any = None,
                max_batches: int | None = None) -> IntakeSummary:
    """Read everything the source has after its stored cursor; one transaction per batch.

    ``source_id`` is the source's identity (default: derived from the mapping and the location);
    ``decision`` answers a cursor that does not fit (recorded in ``audit`` first).
    """
    identity = source_identity(source, source_id)
    cursor, decided = resolve_cursor(engine, source, identity, decision, audit=audit)
    summary = IntakeSummary(source=identity, mapping=source.name, location=source.location, cursor=cursor,
                            decision=decided)
    rejected_files = getattr(source, "rejected", [])  # a file-drop source lists what it quarantined
    already_rejected = len(rejected_files)
    result_codes = _ResultCodes(engine)
    for batch in source.changes(summary.cursor):
        # BEGIN IMMEDIATE on SQLite: enqueue reads which keys exist before it writes
        with write_transaction(engine) as conn:
            changes, refused = arrange_results(conn, batch.changes, result_codes)
            result = enqueue(conn, changes)
            project(conn, changes)  # the hub's record of dossiers, with its events
            dead = known_dead = 0
            for rejected in [*(item.rejected() for item in batch.failures), *refused]:
                if enqueue_rejected(conn, rejected, reason_code=rejected["reason_code"],
                                    reason=rejected["reason"]) is not None:
                    dead += 1
                else:
                    known_dead += 1  # refused before (a file sent twice): already a dead letter
            _put_cursor(conn, identity, source, batch.cursor, datetime.now(UTC))
        source.ack(batch)  # only after the commit: a file is moved aside once its events are safe
        summary.batches += 1
        summary.read += len(batch)
        summary.enqueued += result.inserted
        # every row read is counted once: read == enqueued + duplicates + dead_lettered
        summary.duplicates += result.duplicates + known_dead
        summary.dead_lettered += dead
        summary.key_reused += result.rekeyed
        summary.outcomes.update(batch.outcomes())
        for rejected in refused:  # mapped, but refused by the hub's own checks of a result
            summary.outcomes[MAPPED] -= 1
            summary.outcomes[rejected["reason_code"]] += 1
        summary.cursor = batch.cursor
        if max_batches is not None and summary.batches >= max_batches:
            break
    summary.quarantined = [{"file": r.name, "code": r.code, "reason": r.reason}
                           for r in rejected_files[already_rejected:]]
    summary.position = source.describe_cursor(summary.cursor)
    _note_run(engine, identity, source, summary)
    return summary


# ------------------------------------------------------------------------------ result documents
#: a result whose dossier the hub has never read (neither in its batch nor in the outbox)
RESULT_DOSSIER_UNKNOWN = "RESULT_DOSSIER_UNKNOWN"
#: a result whose MaGiayToKetQua is not a result of the dossier's procedure in the catalogue
RESULT_CODE_UNKNOWN = "RESULT_CODE_UNKNOWN"


class _ResultCodes:
    """The result codes (KETQUATHUCHIEN/MAKETQUA) of each procedure in the local catalogue, read
    when first needed; ``None`` for a procedure the catalogue lacks (nothing to check against)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._codes: dict[str, frozenset[str] | None] = {}

    def __call__(self, procedure: str | None) -> frozenset[str] | None:
        if not procedure:
            return None
        if procedure not in self._codes:
            from ..store.models import Procedure

            with Session(self.engine) as session:
                document = session.scalar(select(Procedure.document).where(Procedure.code == procedure))
            codes = None
            if document is not None:
                codes = frozenset(r["code"] for r in json.loads(document).get("results", ()) if r.get("code"))
            self._codes[procedure] = codes
        return self._codes[procedure]


def arrange_results(conn: Any, changes: list[Any], result_codes: Any = None) -> tuple[list[Any], list[dict]]:
    """Put a batch's result documents where the portal needs them, and refuse the ones it cannot take.

    The portal takes a result file only for a dossier it holds, and counts it only once a snapshot
    of the dossier lists it (``DanhSachGiayToKetQua``). So, within its dossier's partition, a result
    goes *after* the dossier's first snapshot and *before* the next one: before the batch's snapshot
    of a dossier the outbox already has, after it for a dossier new to the outbox (the worker that
    uploads a result enqueues a snapshot listing it when none follows, see
    :mod:`lienthong.hub.flows.results_push`). Returns the ordered changes and the refused results
    as dead-letter records: a result of a dossier the hub has never read
    (``RESULT_DOSSIER_UNKNOWN``, in a partition of its own so it holds nothing up; replay it once
    the dossier is in), and one whose ``MaGiayToKetQua`` is not a result of the dossier's procedure
    (``RESULT_CODE_UNKNOWN``)."""
    from ...mappings.dossier import DOSSIER, RESULT
    from ..delivery.outbox import unkeyed_partition
    from ..store.models import DossierRecord, OutboxEvent

    results = [c for c in changes if c.kind == RESULT]
    if not results:
        return changes, []
    events, records = OutboxEvent.__table__, DossierRecord.__table__
    dossiers = sorted({c.ma_ho_so for c in results})
    known: dict[str, str | None] = {}  # dossier with a snapshot in the outbox -> its MaTTHC (the record's)
    for start in range(0, len(dossiers), 500):
        part = dossiers[start:start + 500]
        for partition in conn.execute(select(events.c.partition_key).distinct().where(
                events.c.partition_key.in_(part), events.c.kind == DOSSIER)).scalars():
            known[partition] = None  # a snapshot refused by the mapping: known, procedure unknown
        known.update(conn.execute(select(records.c.ma_ho_so, records.c.ma_tthc)
                                  .where(records.c.ma_ho_so.in_(part))).all())
    in_batch = {c.ma_ho_so: c.record.get("MaTTHC") for c in changes if c.kind == DOSSIER}
    refused: list[dict] = []
    waiting: dict[str, list[Any]] = {}
    for change in results:
        dossier = change.ma_ho_so
        procedure = in_batch.get(dossier) or known.get(dossier)
        if dossier not in in_batch and dossier not in known:
            refused.append(_refused(change, RESULT_DOSSIER_UNKNOWN, unkeyed_partition(change.source_key),
                                    f"result {change.source_key} names dossier {dossier}, which the hub has never "
                                    "read: the portal takes results only for dossiers it holds; replay it once the "
                                    "dossier has been taken in"))
            continue
        code = change.record.get("MaGiayToKetQua")
        allowed = result_codes(procedure) if (result_codes is not None and code) else None
        if allowed is not None and code not in allowed:
            refused.append(_refused(change, RESULT_CODE_UNKNOWN, dossier,
                                    f"result {change.source_key} of dossier {dossier}: MaGiayToKetQua {code} is not "
                                    f"a result of procedure {procedure} in the national catalogue (it lists: "
                                    f"{', '.join(sorted(allowed)) or 'none'})"))
            continue
        waiting.setdefault(dossier, []).append(change)
    ordered: list[Any] = []
    for change in changes:
        if change.kind == RESULT:
            continue
        own = waiting.pop(change.ma_ho_so, None) if change.kind == DOSSIER else None
        if own is None:
            ordered.append(change)
        elif change.ma_ho_so in known:
            ordered += [*own, change]
        else:
            ordered += [change, *own]
    for own in waiting.values():  # results of dossiers already in the outbox, without a snapshot here
        ordered += own
    return ordered, refused


def _refused(change: Any, code: str, partition: str, reason: str) -> dict:
    return {"kind": change.kind, "source_key": change.source_key, "payload": change.record,
            "partition_key": partition, "source_changed_at": change.source_changed_at,
            "reason_code": code, "reason": reason}


def _note_run(engine: Engine, identity: str, source: Source, summary: IntakeSummary) -> None:
    now = datetime.now(UTC)
    last = {"ok": True, "read": summary.read, "enqueued": summary.enqueued, "duplicates": summary.duplicates,
            "dead_lettered": summary.dead_lettered, "key_reused": summary.key_reused,
            "quarantined": len(summary.quarantined)}
    table = IntakeCursor.__table__
    with write_transaction(engine) as conn:
        if summary.batches == 0:  # nothing read: the row may not exist yet (a first run on an empty source)
            exists = conn.execute(select(table.c.source).where(table.c.source == identity)).first()
            if exists is None:
                _put_cursor(conn, identity, source, summary.cursor, now)
        conn.execute(table.update().where(table.c.source == identity)
                     .values(last_run_at=now, last_run=json.dumps(last)))


def run_source(store: Any, spec: Any, *, decision: CursorDecision | None = None) -> IntakeSummary:
    """One intake pass over the source ``spec`` describes (a
    :class:`~lienthong.connectors.sources.config.SourceSpec`): its mapping loaded against the
    local catalogue, the source opened, read, closed; decisions recorded in the store's ledger."""
    mapping = load_source_mapping(spec.mapping, store.engine)
    source = spec.open(mapping)
    try:
        return intake_once(store.engine, source, source_id=spec.id, decision=decision, audit=ledger(store))
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def dag_sources(params: dict, *, environ: Any = None) -> list:
    """The sources the intake DAG reads, from its params (see the DAG's documentation): the sources
    file's enabled ones (only ``source_id`` when given), or the single source of ``sql`` / ``inbox``
    (``LIENTHONG_ONESTOP_URL`` / ``LIENTHONG_INBOX``) when there is no sources file."""
    import os

    from ...connectors.sources.config import SourceSpec, load_sources, sources_file
    from ..settings import Settings

    env = os.environ if environ is None else environ
    path = sources_file(params.get("sources"), home=Settings.from_env(env).home, environ=env)
    wanted = params.get("source_id") or None
    if path is not None:
        specs = load_sources(path, environ=env)
        chosen = [s for s in specs if s.id == wanted] if wanted else [s for s in specs if s.enabled]
        if wanted and not chosen:
            raise ConfigurationError(f"{path}: no source has the identity {wanted!r} "
                                     f"(it lists: {', '.join(s.id for s in specs)})")
        return chosen
    sql = params.get("sql") or env.get("LIENTHONG_ONESTOP_URL")
    inbox = params.get("inbox") or env.get("LIENTHONG_INBOX")
    if bool(sql) == bool(inbox):
        raise ConfigurationError("configure the sources: a sources file (param sources, LIENTHONG_SOURCES or "
                                 "$LIENTHONG_HOME/sources.yaml), or exactly one of param sql / LIENTHONG_ONESTOP_URL "
                                 "and param inbox / LIENTHONG_INBOX")
    return [SourceSpec(id=wanted, mapping=params.get("mapping") or "onestop_sandbox", sql=sql or None,
                       inbox=inbox or None)]
