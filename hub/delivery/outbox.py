"""The transactional outbox of dossier changes bound for the national portal.

The intake writes every change it reads (a dossier snapshot or a processing step) into the
``outbox`` table *in the same transaction* that moves its cursor, with :func:`enqueue`: a change is
then either recorded and its source position passed, or neither, and a crash between the two
cannot lose or double it. Delivery workers take work out with :func:`claim` and report back with
:func:`complete`, :func:`retry_later`, :func:`dead_letter` or :func:`release`.

Ordering. Events are partitioned by dossier code (``partition_key`` = MaHoSo); the table's id is
the global order and, within a partition, the order the portal must see the changes in. Two rules
keep "a later status is never overtaken by an earlier one":

* a partition is claimed by one worker at a time, and only from its **oldest undelivered event**,
  followed by the consecutive events after it; a later event is never claimable while an earlier
  one of the same dossier is ``pending`` (waiting, maybe for a retry), ``claimed`` or ``dead``;
* so a **dead event blocks its partition** until an operator replays it (it goes back to pending,
  in its place) or discards it (with a reason). Skipping it would let the portal show a status
  that the skipped change should have preceded, or a step of a dossier it never received; holding
  the dossier back is the honest failure, and ``lienthong status`` shows it.

Enqueuers are serialised (a transaction-scoped advisory lock on PostgreSQL; SQLite has a single
writer anyway) so ids are committed in the order they were assigned: otherwise a claim could see a
later id of a dossier before a concurrent transaction commits an earlier one.

Concurrency. A claim is one short transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL
(workers pass over partitions another is claiming instead of queueing behind it), ``BEGIN
IMMEDIATE`` on SQLite (the single writer lock). Claimed events carry ``claimed_by`` and a lease; a
worker that crashed or hung loses them when the lease expires and the next claim takes them over
(counting the lost try as an attempt, so an event that kills its worker every time ends in dead
letters instead of looping). Workers renew their lease (:func:`renew`) before each send and stop
on the events they no longer hold. Every state change of a claimed event checks ``claimed_by``,
so a worker that lost its lease cannot release, retry or dead-letter another worker's claim; a
success is recorded whoever holds the event, because a delivery the portal accepted is a fact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, exists, func, insert, select, text, update
from sqlalchemy.orm import Session

from ..store import write_transaction
from ..store.models import (
    OUTBOX_BLOCKING_STATES,
    OUTBOX_KINDS,
    OUTBOX_STATES,
    DeadLetter,
    OutboxEvent,
    ResultUpload,
)
from .retry import RetryPolicy

log = logging.getLogger(__name__)

__all__ = [
    "ClaimedEvent", "DeadLetterView", "DiscardedDeadLetter", "EnqueueResult", "OutboxChange", "OutboxClaim",
    "OutboxStats", "RetryOutcome", "assign", "audit_discard", "canonical_json", "claim", "complete", "dead_letter",
    "dead_letters", "delivered_dossiers", "discard", "enqueue", "enqueue_rejected", "first_enqueued_at",
    "message_events", "release", "renew", "replay", "retry_later", "stats", "unkeyed_partition",
]

_EVENTS = OutboxEvent.__table__
_DEAD = DeadLetter.__table__

#: key of the PostgreSQL advisory lock serialising enqueuers ("LTOUTBOX" in ASCII)
_PG_ENQUEUE_LOCK_KEY = 0x4C544F5554424F58
#: SQLite's default limit on bound parameters is 32766; stay far below it
_IN_CHUNK = 500

RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
LEASE_EXPIRED = "LEASE_EXPIRED"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None, what: str) -> datetime:
    if moment is None:
        return _utcnow()
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _seconds(value: float | timedelta, what: str) -> timedelta:
    delta = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    if delta <= timedelta(0):
        raise ValueError(f"{what} must be positive, got {value!r}")
    return delta


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def canonical_json(payload: Mapping[str, Any]) -> str:
    """The one JSON text of a payload (sorted keys, no spaces, UTF-8 kept): stored, and hashed into
    DocumentIds, so equal payloads are equal strings."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


# ================================================================================ enqueue
@dataclass(frozen=True)
class OutboxChange:
    """One mapped change as the intake hands it over.

    ``payload`` is the canonical dict of the intake contract: a DongBoHoSoMC ``HoSo`` for
    ``kind="dossier"``, a ``QuaTrinhXuLy`` for ``kind="step"`` (portal field names), a result
    document for ``kind="result"`` (``mappings.dossier.RESULT_FIELDS``: the file to upload).
    ``source_key`` is the idempotency key; ``source_changed_at`` is when the change happened in the
    source (UTC; defaults to the time of enqueueing). ``partition_key`` defaults to the payload's
    MaHoSo.
    """

    kind: str
    source_key: str
    payload: Mapping[str, Any]
    source_changed_at: datetime | None = None
    partition_key: str | None = None


@dataclass(frozen=True)
class EnqueueResult:
    inserted: int
    #: changes whose idempotency key was already in the outbox (read twice): ignored
    duplicates: int
    #: ids of the inserted events, in the order given
    ids: tuple[int, ...] = ()
    #: inserted changes whose key was already taken by another change (other content or dossier):
    #: they were given a key of their own (``<key>~<digest>``) instead of being lost as duplicates
    rekeyed: int = 0


def _as_change(obj: Any) -> OutboxChange:
    """Accept an :class:`OutboxChange`, a mapping with the same keys, or any object with those
    attributes (the intake's own change type)."""
    if isinstance(obj, OutboxChange):
        return obj
    if isinstance(obj, Mapping):
        get = obj.get
    else:
        def get(name: str, default: Any = None) -> Any:
            return getattr(obj, name, default)
    missing = [name for name in ("kind", "source_key", "payload") if get(name) is None]
    if missing:
        raise ValueError(f"outbox change {obj!r:.200} lacks {', '.join(missing)}")
    return OutboxChange(kind=get("kind"), source_key=get("source_key"), payload=get("payload"),
                        source_changed_at=get("source_changed_at"), partition_key=get("partition_key"))


@cache
def _fields_for(kind: str) -> frozenset[str]:
    # The canonical payload *is* the portal's record (the intake contract), so its field list is
    # the connector's; imported on first use to keep this module light for readers of the store.
    from ...connectors.dvc_portal import HOSO_FIELDS, QUATRINH_FIELDS
    from ...mappings.dossier import RESULT_FIELDS

    return frozenset({"dossier": HOSO_FIELDS, "step": QUATRINH_FIELDS, "result": RESULT_FIELDS}[kind])


def _row(change: OutboxChange, now: datetime, *, check_fields: bool, state: str = "pending") -> dict[str, Any]:
    key = change.source_key
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise ValueError(f"outbox change source_key must be a non-empty string of at most 255 characters, not {key!r}")
    where = f"outbox change {key}"
    if change.kind not in OUTBOX_KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(OUTBOX_KINDS)}, not {change.kind!r}")
    payload = change.payload
    if not isinstance(payload, Mapping):
        raise ValueError(f"{where}: payload must be a mapping, not {type(payload).__name__}")
    partition = change.partition_key if change.partition_key is not None else payload.get("MaHoSo")
    if not isinstance(partition, str) or not partition.strip() or len(partition) > 64:
        raise ValueError(f"{where}: MaHoSo (the partition key) must be a non-empty string of at most 64 "
                         f"characters, not {partition!r}")
    if check_fields:
        unknown = set(payload) - _fields_for(change.kind)
        if unknown:
            raise ValueError(f"{where}: {change.kind} payload has fields the portal does not know: "
                             f"{', '.join(sorted(unknown))}")
        if payload.get("MaHoSo") != partition:
            raise ValueError(f"{where}: payload MaHoSo {payload.get('MaHoSo')!r} differs from partition {partition!r}")
    try:
        body = canonical_json(payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: payload is not JSON-serialisable: {exc}") from None
    return {
        "partition_key": partition, "kind": change.kind, "idempotency_key": key, "payload": body,
        "source_changed_at": _aware(change.source_changed_at or now, f"{where}: source_changed_at"),
        "created_at": now, "state": state, "attempts": 0, "next_attempt_at": now,
    }


def _dialect(bind: Session | Connection) -> str:
    if isinstance(bind, Session):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def _insert_new(bind: Session | Connection, rows: list[dict[str, Any]]) -> tuple[list[int], int]:
    """INSERT the rows that are new changes, in order; returns their ids and how many were re-keyed.

    An idempotency key names a change *in its source*. The same key with visibly different
    content is a different change (another agency's database read with the same mapping, whose
    step ids are its own; ids reused after a one-stop database was restored): it is given a key
    of its own (:func:`_reused_key`) instead of being taken for a duplicate and lost. Only a row
    whose key, kind and dossier match an event's, and whose payload agrees with it on every field
    both carry, is a duplicate (ON CONFLICT DO NOTHING). The keys are compared before inserting,
    under the enqueue lock, so the rows keep the order they were given.
    """
    dialect = _dialect(bind)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
        # One enqueuer at a time until commit: ids then become visible in the order they were
        # assigned (see the module docstring). Held by the caller's transaction.
        bind.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_ENQUEUE_LOCK_KEY})
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # the store supports only these two (hub.store.normalize_url)
        raise ValueError(f"the outbox needs SQLite or PostgreSQL, not {dialect}")
    rekeyed = _rekey_reused(bind, rows)
    stmt = (dialect_insert(_EVENTS).on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(_EVENTS.c.id))
    if len(rows) == 1:
        return list(bind.execute(stmt, rows[0]).scalars()), rekeyed
    # executemany: SQLAlchemy batches the rows into multi-row INSERTs ("insertmanyvalues") from
    # one compiled statement; rows skipped by ON CONFLICT simply return no id
    return sorted(bind.execute(stmt, rows).scalars()), rekeyed


def _rekey_reused(bind: Session | Connection, rows: list[dict[str, Any]]) -> int:
    existing: dict[str, Any] = {}
    for part in _chunks([r["idempotency_key"] for r in rows]):
        for found in bind.execute(select(_EVENTS.c.idempotency_key, _EVENTS.c.kind, _EVENTS.c.partition_key,
                                         _EVENTS.c.payload).where(_EVENTS.c.idempotency_key.in_(part))):
            existing[found.idempotency_key] = found
    rekeyed = 0
    for row in rows:
        found = existing.get(row["idempotency_key"])
        if found is not None and not _same_change(found, row):
            row["idempotency_key"] = _reused_key(row)
            rekeyed += 1
    return rekeyed


def _same_change(found: Any, row: Mapping[str, Any]) -> bool:
    if found.kind != row["kind"] or found.partition_key != row["partition_key"]:
        return False
    if found.payload == row["payload"]:
        return True
    try:
        old, new = json.loads(found.payload), json.loads(row["payload"])
    except ValueError:
        return False
    if not isinstance(old, dict) or not isinstance(new, dict):
        return False
    # a field only one of them carries (a mapping that learnt a column) is no evidence either way
    return all(old[name] == new[name] for name in old.keys() & new.keys())


def _reused_key(row: Mapping[str, Any]) -> str:
    """``<key>~<digest of the change>``: stable, so reading the same row again finds it."""
    digest = hashlib.sha256("\0".join((row["kind"], row["partition_key"], row["payload"])).encode("utf-8"))
    suffix = "~" + digest.hexdigest()[:20]
    return row["idempotency_key"][:255 - len(suffix)] + suffix


def enqueue(session: Session | Connection, changes: Iterable[Any], *, now: datetime | None = None) -> EnqueueResult:
    """Insert ``changes`` as pending events, in the given order, ignoring ones already enqueued.

    Runs in the caller's transaction (a ``Session`` or a ``Connection``): the intake commits the
    events together with its cursor. A change that is malformed (unknown kind, no MaHoSo, a field
    the portal does not know) raises ``ValueError`` naming its source key before anything is
    written: that is a mapping bug, not data to deliver. Changes the intake *can* describe but not
    map (unknown local codes…) go through :func:`enqueue_rejected` instead.
    """
    now = _aware(now, "now")
    rows, seen = [], set()
    duplicates = 0
    for raw in changes:
        row = _row(_as_change(raw), now, check_fields=True)
        if row["idempotency_key"] in seen:
            duplicates += 1
            continue
        seen.add(row["idempotency_key"])
        rows.append(row)
    if not rows:
        return EnqueueResult(0, duplicates)
    ids, rekeyed = _insert_new(session, rows)
    return EnqueueResult(inserted=len(ids), duplicates=duplicates + len(rows) - len(ids), ids=tuple(ids),
                         rekeyed=rekeyed)


def enqueue_rejected(session: Session | Connection, change: Any, *, reason_code: str, reason: str,
                     now: datetime | None = None) -> int | None:
    """Record a change the intake could not map as a **dead** event with its dead letter.

    Nothing is dropped or guessed: the event takes its place in its dossier's order and blocks it
    (later changes of that dossier wait) until an operator replays it with a corrected payload
    (``replay(..., payloads=...)``, e.g. after fixing the mapping) or discards it. The payload may
    be the raw source record; it is not checked against the portal's fields. A change that names
    no dossier at all (no ``partition_key``, no MaHoSo) gets a partition of its own
    (:func:`unkeyed_partition`), so it blocks nothing; replaying it with a corrected payload moves
    it into the partition of the payload's MaHoSo, in its original place in the global order.
    Returns the dead letter's id, or ``None`` when the change was already in the outbox.
    """
    now = _aware(now, "now")
    _check_reason(reason_code, reason)
    change = _as_change(change)
    if change.partition_key is None and not change.payload.get("MaHoSo") and isinstance(change.source_key, str):
        # A row so broken it names no dossier still gets recorded: in a partition of its own, so
        # it holds up no dossier; a corrected replay moves it into its dossier's partition.
        change = replace(change, partition_key=unkeyed_partition(change.source_key))
    row = _row(change, now, check_fields=False, state="dead")
    row.update(last_error_code=reason_code[:64], last_error=reason)
    ids, _ = _insert_new(session, [row])
    if not ids:
        return None
    result = session.execute(insert(_DEAD).values(
        event_id=ids[0], reason_code=reason_code[:64], reason=reason, created_at=now).returning(_DEAD.c.id))
    return int(result.scalar_one())


#: partition of a rejected row that names no dossier (see enqueue_rejected)
UNKEYED_PREFIX = "unkeyed:"


def unkeyed_partition(source_key: str) -> str:
    return UNKEYED_PREFIX + hashlib.sha256(source_key.encode("utf-8")).hexdigest()[:40]


def _check_reason(reason_code: str, reason: str) -> None:
    if not isinstance(reason_code, str) or not reason_code.strip():
        raise ValueError("a dead letter needs a reason code")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("a dead letter needs a reason")


# ================================================================================ claim
@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    partition_key: str
    kind: str
    idempotency_key: str
    payload: dict[str, Any]
    #: failed attempts so far (takeovers of an expired lease included)
    attempts: int
    source_changed_at: datetime
    created_at: datetime
    #: DocumentId of the message that last carried the event, set *before* that message was sent
    #: (see :func:`assign`): when it is set on an undelivered event, the portal may already hold
    #: that message, so the event must go again in exactly that message (same DocumentId).
    document_id: str | None = None
    #: ``payload`` exactly as stored (its canonical JSON), so DocumentIds hash it without re-encoding
    payload_json: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class OutboxClaim:
    """What one claim handed to ``worker_id``: events grouped by partition, oldest partition first,
    each partition's events in delivery order. Deliver a partition's events one after the other."""

    worker_id: str
    claimed_at: datetime
    lease_expires_at: datetime
    partitions: Mapping[str, tuple[ClaimedEvent, ...]] = field(default_factory=dict)
    #: ids taken over from a worker whose lease had expired
    taken_over: frozenset[int] = frozenset()

    @property
    def events(self) -> tuple[ClaimedEvent, ...]:
        return tuple(sorted((e for evs in self.partitions.values() for e in evs), key=lambda e: e.id))

    @property
    def event_ids(self) -> tuple[int, ...]:
        return tuple(e.id for e in self.events)

    def __len__(self) -> int:
        return sum(len(evs) for evs in self.partitions.values())

    def __bool__(self) -> bool:
        return bool(self.partitions)


def claim(engine: Engine, worker_id: str, *, max_events: int = 200, lease: float | timedelta = 300.0,
          per_partition: int = 20, now: datetime | None = None, kinds: Sequence[str] | None = None) -> OutboxClaim:
    """Claim up to ``max_events`` events for ``worker_id`` for ``lease`` (seconds or a timedelta).

    A partition is claimable when its oldest undelivered event is ``pending`` and due
    (``next_attempt_at`` reached) or ``claimed`` under an expired lease (taken over). From each such
    partition, oldest first, the claim takes that event and then up to ``per_partition - 1`` of the
    consecutive events after it (stopping at anything not claimable). The budget goes to breadth
    first (one event from as many partitions as possible, so messages carry many dossiers), then
    to depth. Safe with any number of concurrent workers: see the module docstring.

    ``kinds`` restricts the claim to partitions whose oldest undelivered event is of one of those
    kinds, and each run to consecutive events of those kinds: the result upload (large files,
    minutes) and the status push (small messages, milliseconds) run in workers of their own, and a
    dossier passes from one to the other in its own order.
    """
    if not worker_id or len(worker_id) > 128:
        raise ValueError(f"worker_id must be 1..128 characters, not {worker_id!r}")
    if max_events < 1 or per_partition < 1:
        raise ValueError("max_events and per_partition must be at least 1")
    now = _aware(now, "now")
    expires = now + _seconds(lease, "lease")
    if kinds is not None:
        kinds = tuple(kinds)
        unknown = sorted(set(kinds) - set(OUTBOX_KINDS))
        if not kinds or unknown:
            raise ValueError(f"kinds must name outbox kinds ({', '.join(OUTBOX_KINDS)}), not {list(kinds)!r}")
    earlier = _EVENTS.alias("earlier")
    blocked = exists().where(earlier.c.partition_key == _EVENTS.c.partition_key, earlier.c.id < _EVENTS.c.id,
                             earlier.c.state.in_(OUTBOX_BLOCKING_STATES))
    # Two ordered range scans of the (state, id) index, each only over its own state, rather than
    # one scan with an OR: the table keeps every delivered event, and a claim must not walk them.
    due = (select(_EVENTS.c.id, _EVENTS.c.partition_key, _EVENTS.c.state)
           .where(_EVENTS.c.state == "pending", _EVENTS.c.next_attempt_at <= now, ~blocked)
           .order_by(_EVENTS.c.id).limit(max_events))
    expired = (select(_EVENTS.c.id, _EVENTS.c.partition_key, _EVENTS.c.state)
               .where(_EVENTS.c.state == "claimed", _EVENTS.c.lease_expires_at <= now, ~blocked)
               .order_by(_EVENTS.c.id).limit(max_events))
    if kinds is not None and set(kinds) != set(OUTBOX_KINDS):
        due = due.where(_EVENTS.c.kind.in_(kinds))
        expired = expired.where(_EVENTS.c.kind.in_(kinds))
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            # rows another worker is claiming right now are skipped, not waited for; a row it has
            # just claimed is re-checked against the WHERE clause and no longer qualifies
            due = due.with_for_update(skip_locked=True, of=_EVENTS)
            expired = expired.with_for_update(skip_locked=True, of=_EVENTS)
        heads = sorted([*conn.execute(expired).all(), *conn.execute(due).all()], key=lambda row: row.id)[:max_events]
        if not heads:
            return OutboxClaim(worker_id=worker_id, claimed_at=now, lease_expires_at=expires)
        chosen: dict[str, list[int]] = {row.partition_key: [row.id] for row in heads}
        taken_over = {row.id for row in heads if row.state == "claimed"}
        budget = max_events - len(heads)
        if budget > 0 and per_partition > 1:
            budget = _extend_runs(conn, chosen, taken_over, budget, per_partition, now, kinds)
        ids = [i for run in chosen.values() for i in run]
        for part in _chunks(ids):
            conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(part))
                         .values(state="claimed", claimed_by=worker_id, lease_expires_at=expires))
        if taken_over:
            # the previous holder's try counts: a poison event cannot loop forever through takeovers
            for part in _chunks(sorted(taken_over)):
                conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(part)).values(
                    attempts=_EVENTS.c.attempts + 1, last_error_code=LEASE_EXPIRED,
                    last_error="the previous worker's lease expired before it reported an outcome"))
            log.warning("worker %s took over %d event(s) whose lease had expired", worker_id, len(taken_over))
        rows = {}
        for part in _chunks(ids):
            for row in conn.execute(select(*_CLAIMED_COLUMNS).where(_EVENTS.c.id.in_(part))).mappings():
                rows[row["id"]] = row
    partitions = {
        key: tuple(_claimed_event(rows[i]) for i in run)
        for key, run in sorted(chosen.items(), key=lambda item: item[1][0])
    }
    return OutboxClaim(worker_id=worker_id, claimed_at=now, lease_expires_at=expires, partitions=partitions,
                       taken_over=frozenset(taken_over))


def _extend_runs(conn: Connection, chosen: dict[str, list[int]], taken_over: set[int], budget: int,
                 per_partition: int, now: datetime, kinds: Sequence[str] | None = None) -> int:
    """Add to each chosen partition the consecutive claimable events after its head, breadth first
    (the second event of every partition before the third of any); returns the budget left."""
    keys = list(chosen)
    runs: dict[str, list[Any]] = {key: [] for key in keys}
    stopped: set[str] = set()
    for part in _chunks(keys):
        query = (select(_EVENTS.c.id, _EVENTS.c.partition_key, _EVENTS.c.state, _EVENTS.c.next_attempt_at,
                        _EVENTS.c.lease_expires_at, _EVENTS.c.kind)
                 .where(_EVENTS.c.partition_key.in_(part), _EVENTS.c.state.in_(OUTBOX_BLOCKING_STATES))
                 .order_by(_EVENTS.c.partition_key, _EVENTS.c.id))
        for row in conn.execute(query):
            key = row.partition_key
            if row.id <= chosen[key][0] or key in stopped:
                continue
            due = row.state == "pending" and row.next_attempt_at <= now
            expired = row.state == "claimed" and row.lease_expires_at is not None and row.lease_expires_at <= now
            other = kinds is not None and row.kind not in kinds
            if not (due or expired) or other or len(runs[key]) >= per_partition - 1:
                stopped.add(key)  # a dead, live-claimed, not-yet-due or other-kind event ends the run
                continue
            runs[key].append(row)
    for depth in range(per_partition - 1):
        for key in keys:
            if budget <= 0:
                return budget
            if depth < len(runs[key]):
                row = runs[key][depth]
                chosen[key].append(row.id)
                if row.state == "claimed":
                    taken_over.add(row.id)
                budget -= 1
    return budget


#: what a worker needs of a claimed event (not the bookkeeping columns: each timestamp read back
#: costs a conversion, and a claim reads hundreds of rows)
_CLAIMED_COLUMNS = (_EVENTS.c.id, _EVENTS.c.partition_key, _EVENTS.c.kind, _EVENTS.c.idempotency_key,
                    _EVENTS.c.payload, _EVENTS.c.attempts, _EVENTS.c.source_changed_at, _EVENTS.c.created_at,
                    _EVENTS.c.document_id)


def _claimed_event(row: Mapping[str, Any]) -> ClaimedEvent:
    return ClaimedEvent(id=row["id"], partition_key=row["partition_key"], kind=row["kind"],
                        idempotency_key=row["idempotency_key"], payload=json.loads(row["payload"]),
                        attempts=row["attempts"], source_changed_at=row["source_changed_at"],
                        created_at=row["created_at"], document_id=row["document_id"], payload_json=row["payload"])


def _held(worker_id: str) -> Any:
    return and_(_EVENTS.c.state == "claimed", _EVENTS.c.claimed_by == worker_id)


def renew(engine: Engine, worker_id: str, event_ids: Iterable[int], *, lease: float | timedelta,
          now: datetime | None = None) -> set[int]:
    """Extend the lease on the events ``worker_id`` still holds; returns their ids. An id missing
    from the answer was taken over (or finished) by someone else: do not send it."""
    now = _aware(now, "now")
    expires = now + _seconds(lease, "lease")
    ids = sorted(set(event_ids))
    held: set[int] = set()
    with write_transaction(engine) as conn:
        for part in _chunks(ids):
            conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(part), _held(worker_id))
                         .values(lease_expires_at=expires))
            held.update(conn.execute(select(_EVENTS.c.id).where(_EVENTS.c.id.in_(part), _held(worker_id)))
                        .scalars())
    return held


def assign(engine: Engine, worker_id: str, event_ids: Iterable[int], *, document_id: str,
           renew_ids: Iterable[int] = (), lease: float | timedelta | None = None,
           now: datetime | None = None) -> set[int]:
    """Record that the events ``worker_id`` holds among ``event_ids`` are about to go out in the
    message ``document_id``; returns the ids it recorded (the events still held).

    Called, and committed, *before* the message is sent. This is what makes a resend after a crash
    the same message: whoever takes the events over (this worker after a retryable failure, another
    after this one died) finds the DocumentId on them and sends that message again, with the same
    events and the same ``isUpdating`` flag, instead of regrouping them into a new message the portal
    would apply a second time. When ``lease`` is given, the lease on ``renew_ids`` (the rest of the
    worker's claim) is extended in the same transaction, so marking costs no extra round trip.
    """
    now = _aware(now, "now")
    ids = sorted(set(event_ids))
    marked: set[int] = set()
    with write_transaction(engine) as conn:
        if lease is not None:
            expires = now + _seconds(lease, "lease")
            for part in _chunks(sorted(set(renew_ids) | set(ids))):
                conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(part), _held(worker_id))
                             .values(lease_expires_at=expires))
        for part in _chunks(ids):
            marked.update(conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(part), _held(worker_id))
                                       .values(document_id=document_id).returning(_EVENTS.c.id)).scalars())
    return marked


def message_events(engine: Engine, document_id: str) -> list[ClaimedEvent]:
    """Every event recorded (by :func:`assign`) as carried by the message ``document_id``, in id
    order and whatever their state: what a resend of that message must carry again."""
    with engine.connect() as conn:
        rows = conn.execute(select(*_CLAIMED_COLUMNS).where(_EVENTS.c.document_id == document_id)
                            .order_by(_EVENTS.c.id)).mappings().all()
    return [_claimed_event(row) for row in rows]


def first_enqueued_at(engine: Engine) -> datetime | None:
    """When the outbox received its first event (the hub's go-live as a feed), or ``None``."""
    with engine.connect() as conn:
        return conn.execute(select(_EVENTS.c.created_at).order_by(_EVENTS.c.id).limit(1)).scalar_one_or_none()


def complete(engine: Engine, event_ids: Iterable[int], *, document_id: str, now: datetime | None = None) -> int:
    """Mark events delivered by the message ``document_id``; returns how many changed.

    Accepted from any worker for a pending or claimed event: the portal accepted it, and that stays
    true even if this worker's lease ran out meanwhile. Final events are left alone.
    """
    now = _aware(now, "now")
    ids = sorted(set(event_ids))
    changed = 0
    with write_transaction(engine) as conn:
        for part in _chunks(ids):
            changed += conn.execute(
                update(_EVENTS).where(_EVENTS.c.id.in_(part), _EVENTS.c.state.in_(("pending", "claimed")))
                .values(state="delivered", delivered_at=now, document_id=document_id, claimed_by=None,
                        lease_expires_at=None, last_error_code=None, last_error=None)).rowcount
    return changed


def release(engine: Engine, worker_id: str, event_ids: Iterable[int]) -> int:
    """Give claimed events back as they were (no attempt counted, no delay): the worker did not
    try them (an earlier event of the dossier failed, the breaker is open, the run is stopping)."""
    ids = sorted(set(event_ids))
    changed = 0
    with write_transaction(engine) as conn:
        for part in _chunks(ids):
            changed += conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(part), _held(worker_id))
                                    .values(state="pending", claimed_by=None, lease_expires_at=None)).rowcount
    return changed


@dataclass(frozen=True)
class RetryOutcome:
    #: back to pending, due at their next_attempt_at
    rescheduled: tuple[int, ...] = ()
    #: out of attempts: now dead, with these dead letters
    exhausted: tuple[int, ...] = ()
    dead_letter_ids: tuple[int, ...] = ()


def retry_later(engine: Engine, worker_id: str, event_ids: Iterable[int], *, error_code: str, error: str,
                policy: RetryPolicy, now: datetime | None = None, rng: Callable[[], float] | None = None,
                document_id: str | None = None, request_bytes: bytes | None = None,
                response_bytes: bytes | None = None) -> RetryOutcome:
    """Count a failed attempt on each event and schedule the next after ``policy``'s delay.

    An event whose attempts reach ``policy.max_attempts`` goes to dead letters instead
    (``RETRIES_EXHAUSTED``, with the last error and whatever evidence is given). Only events
    ``worker_id`` still holds are touched.
    """
    now = _aware(now, "now")
    ids = sorted(set(event_ids))
    delay = (lambda n: policy.delay(n, rng)) if rng is not None else policy.delay
    rescheduled, exhausted = [], []
    with write_transaction(engine) as conn:
        held = []
        for part in _chunks(ids):
            held.extend(conn.execute(select(_EVENTS.c.id, _EVENTS.c.attempts)
                                     .where(_EVENTS.c.id.in_(part), _held(worker_id))).all())
        updates = []
        for event_id, attempts in held:
            attempts += 1
            if attempts >= policy.max_attempts:
                exhausted.append(event_id)
            else:
                rescheduled.append(event_id)
                updates.append({"b_id": event_id, "b_attempts": attempts,
                                "b_next": now + timedelta(seconds=delay(attempts))})
        if updates:
            conn.execute(update(_EVENTS).where(_EVENTS.c.id == bindparam("b_id"))
                         .values(state="pending", attempts=bindparam("b_attempts"),
                                 next_attempt_at=bindparam("b_next"), claimed_by=None, lease_expires_at=None,
                                 last_error_code=error_code[:64], last_error=error), updates)
        dead_ids: list[int] = []
        if exhausted:
            conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(exhausted))
                         .values(attempts=_EVENTS.c.attempts + 1))
            reason = f"gave up after {policy.max_attempts} attempt(s); last error {error_code}: {error}"
            dead_ids = _kill(conn, exhausted, reason_code=RETRIES_EXHAUSTED, reason=reason, document_id=document_id,
                             request_bytes=request_bytes, response_bytes=response_bytes, now=now)
    return RetryOutcome(tuple(sorted(rescheduled)), tuple(sorted(exhausted)), tuple(dead_ids))


def dead_letter(engine: Engine, worker_id: str, event_ids: Iterable[int], *, reason_code: str, reason: str,
                document_id: str | None = None, request_bytes: bytes | None = None,
                response_bytes: bytes | None = None, now: datetime | None = None) -> dict[int, int]:
    """Move events ``worker_id`` holds to dead letters with the reason and the evidence; returns
    ``{event id: dead letter id}`` (events no longer held are left alone and absent). Each event
    blocks its dossier until replayed or discarded."""
    _check_reason(reason_code, reason)
    now = _aware(now, "now")
    ids = sorted(set(event_ids))
    with write_transaction(engine) as conn:
        held: list[int] = []
        for part in _chunks(ids):
            held.extend(conn.execute(select(_EVENTS.c.id).where(_EVENTS.c.id.in_(part), _held(worker_id))).scalars())
        dead_ids = _kill(conn, held, reason_code=reason_code, reason=reason, document_id=document_id,
                         request_bytes=request_bytes, response_bytes=response_bytes, now=now)
    return dict(zip(held, dead_ids, strict=True))


def _kill(conn: Connection, ids: list[int], *, reason_code: str, reason: str, document_id: str | None,
          request_bytes: bytes | None, response_bytes: bytes | None, now: datetime) -> list[int]:
    if not ids:
        return []
    for part in _chunks(ids):
        conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(part)).values(
            state="dead", claimed_by=None, lease_expires_at=None, last_error_code=reason_code[:64],
            last_error=reason))
    rows = [{"event_id": i, "reason_code": reason_code[:64], "reason": reason, "document_id": document_id,
             "request_bytes": request_bytes, "response_bytes": response_bytes, "created_at": now} for i in ids]
    dead_ids = []
    for row in rows:  # one by one: RETURNING with executemany is not portable, and dead letters are rare
        dead_ids.append(int(conn.execute(insert(_DEAD).values(**row).returning(_DEAD.c.id)).scalar_one()))
    return dead_ids


# ================================================================================ operators
def _open_letters(conn: Connection, ids: list[int]) -> dict[int, Any]:
    found = {}
    for part in _chunks(ids):
        query = (select(_DEAD.c.id, _DEAD.c.event_id, _DEAD.c.replayed_at, _DEAD.c.discarded_at, _EVENTS.c.state)
                 .join(_EVENTS, _EVENTS.c.id == _DEAD.c.event_id).where(_DEAD.c.id.in_(part)))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        found.update({row.id: row for row in conn.execute(query)})
    missing = sorted(set(ids) - set(found))
    if missing:
        raise LookupError(f"no dead letter {', '.join(map(str, missing))}")
    closed = sorted(i for i, row in found.items()
                    if row.replayed_at is not None or row.discarded_at is not None or row.state != "dead")
    if closed:
        raise ValueError(f"dead letter(s) {', '.join(map(str, closed))} already replayed or discarded")
    return found


def replay(engine: Engine, dead_letter_ids: Iterable[int], *,
           payloads: Mapping[int, Mapping[str, Any]] | None = None, now: datetime | None = None) -> list[int]:
    """Send dead events again: each goes back to pending *in its place* (same id, so its dossier's
    order is kept and the events behind it follow), with its attempts reset. ``payloads`` may give
    a corrected payload per dead letter id (e.g. re-mapped after a mapping fix); it is checked like
    an enqueued one. All or nothing: an unknown id raises ``LookupError``, a closed one
    ``ValueError``. Returns the event ids put back."""
    now = _aware(now, "now")
    ids = sorted(set(dead_letter_ids))
    payloads = dict(payloads or {})
    stray = sorted(set(payloads) - set(ids))
    if stray:
        raise ValueError(f"payloads given for dead letters not being replayed: {stray}")
    with write_transaction(engine) as conn:
        letters = _open_letters(conn, ids)
        amended = {}
        for letter_id, payload in payloads.items():
            event = conn.execute(select(_EVENTS).where(_EVENTS.c.id == letters[letter_id].event_id)).mappings().one()
            unkeyed = event["partition_key"].startswith(UNKEYED_PREFIX)
            row = _row(OutboxChange(kind=event["kind"], source_key=event["idempotency_key"], payload=payload,
                                    partition_key=None if unkeyed else event["partition_key"]),
                       now, check_fields=True)
            amended[event["id"]] = row["payload"], row["partition_key"]
        event_ids = [letters[i].event_id for i in ids]
        for part in _chunks(event_ids):
            # document_id cleared: the portal answered the message that carried the event (or it never
            # left), and a replayed payload may be amended, so the replay is a new message
            conn.execute(update(_EVENTS).where(_EVENTS.c.id.in_(part), _EVENTS.c.state == "dead").values(
                state="pending", attempts=0, next_attempt_at=now, claimed_by=None, lease_expires_at=None,
                document_id=None))
        for event_id, (body, partition) in amended.items():
            conn.execute(update(_EVENTS).where(_EVENTS.c.id == event_id).values(payload=body, partition_key=partition))
        for part in _chunks(ids):
            conn.execute(update(_DEAD).where(_DEAD.c.id.in_(part)).values(replayed_at=now))
        # a replayed result is read afresh: the operator put its file right (or amended the payload),
        # so the fingerprint taken before is no longer what will be announced
        uploads = ResultUpload.__table__
        for part in _chunks(event_ids):
            conn.execute(uploads.delete().where(uploads.c.event_id.in_(part), uploads.c.uploaded_at.is_(None)))
    return sorted(event_ids)


@dataclass(frozen=True)
class DiscardedDeadLetter:
    """What :func:`discard` decided, handed to its ``on_discarded`` hook (for the audit ledger)."""

    dead_letter_id: int
    event_id: int
    partition_key: str
    idempotency_key: str
    reason_code: str
    document_id: str | None
    discard_reason: str
    actor: str | None
    discarded_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"dead_letter_id": self.dead_letter_id, "event_id": self.event_id,
                "partition_key": self.partition_key, "idempotency_key": self.idempotency_key,
                "reason_code": self.reason_code, "document_id": self.document_id,
                "discard_reason": self.discard_reason, "actor": self.actor,
                "discarded_at": self.discarded_at.isoformat()}


def discard(engine: Engine, dead_letter_id: int, reason: str, *, actor: str | None = None,
            on_discarded: Callable[[DiscardedDeadLetter], None] | None = None,
            now: datetime | None = None) -> DiscardedDeadLetter:
    """Give up on a dead event for good, saying why (and who): its dossier's later events flow again.

    The event becomes ``discarded`` (never sent); the dead letter keeps the reason, the actor and
    the time. ``on_discarded`` runs after the commit with what was decided: pass
    ``audit_discard(ledger(store))`` (or your own) so the decision is in the audit ledger. It runs
    after, not inside, the transaction because the ledger appends in its own write transaction.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("discarding a dead letter needs a reason")
    if actor is not None and len(actor) > 128:
        raise ValueError("actor must be at most 128 characters")
    now = _aware(now, "now")
    with write_transaction(engine) as conn:
        letter = _open_letters(conn, [dead_letter_id])[dead_letter_id]
        row = conn.execute(select(_DEAD.c.reason_code, _DEAD.c.document_id, _EVENTS.c.partition_key,
                                  _EVENTS.c.idempotency_key)
                           .join(_EVENTS, _EVENTS.c.id == _DEAD.c.event_id)
                           .where(_DEAD.c.id == dead_letter_id)).one()
        conn.execute(update(_EVENTS).where(_EVENTS.c.id == letter.event_id, _EVENTS.c.state == "dead")
                     .values(state="discarded"))
        conn.execute(update(_DEAD).where(_DEAD.c.id == dead_letter_id)
                     .values(discarded_at=now, discard_reason=reason, discarded_by=actor))
    decided = DiscardedDeadLetter(dead_letter_id=dead_letter_id, event_id=letter.event_id,
                                  partition_key=row.partition_key, idempotency_key=row.idempotency_key,
                                  reason_code=row.reason_code, document_id=row.document_id,
                                  discard_reason=reason, actor=actor, discarded_at=now)
    if on_discarded is not None:
        on_discarded(decided)
    return decided


def audit_discard(audit: Any, *, partner: str = "dvc_portal") -> Callable[[DiscardedDeadLetter], None]:
    """A :func:`discard` hook that writes the decision into the audit ledger.

    The ledger records what crossed the boundary; a discard is the decision that something will
    *never* cross it, so it is recorded as an outbound entry of operation ``outbox.discard`` with
    outcome ``discarded`` and the decision as canonical JSON for its body, correlated by the
    event's idempotency key.
    """
    def hook(decided: DiscardedDeadLetter) -> None:
        body = json.dumps(decided.as_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        audit.record(direction="out", partner=partner, operation="outbox.discard", raw=body.encode("utf-8"),
                     outcome="discarded", document_id=decided.document_id,
                     correlation_id=decided.idempotency_key, error=decided.discard_reason)

    return hook


@dataclass(frozen=True)
class DeadLetterView:
    id: int
    event_id: int
    partition_key: str
    kind: str
    idempotency_key: str
    reason_code: str
    reason: str
    document_id: str | None
    created_at: datetime
    replayed_at: datetime | None
    discarded_at: datetime | None
    discard_reason: str | None
    has_request: bool
    has_response: bool


def dead_letters(engine: Engine, *, open_only: bool = True, partition_key: str | None = None,
                 limit: int = 100) -> list[DeadLetterView]:
    """Dead letters, oldest first (for ``lienthong`` commands and operators' tooling)."""
    query = (select(_DEAD.c.id, _DEAD.c.event_id, _EVENTS.c.partition_key, _EVENTS.c.kind, _EVENTS.c.idempotency_key,
                    _DEAD.c.reason_code, _DEAD.c.reason, _DEAD.c.document_id, _DEAD.c.created_at,
                    _DEAD.c.replayed_at, _DEAD.c.discarded_at, _DEAD.c.discard_reason,
                    _DEAD.c.request_bytes.is_not(None).label("has_request"),
                    _DEAD.c.response_bytes.is_not(None).label("has_response"))
             .join(_EVENTS, _EVENTS.c.id == _DEAD.c.event_id).order_by(_DEAD.c.id).limit(limit))
    if open_only:
        query = query.where(_DEAD.c.replayed_at.is_(None), _DEAD.c.discarded_at.is_(None))
    if partition_key is not None:
        query = query.where(_EVENTS.c.partition_key == partition_key)
    with engine.connect() as conn:
        return [DeadLetterView(**{**row, "has_request": bool(row["has_request"]),
                                  "has_response": bool(row["has_response"])})
                for row in conn.execute(query).mappings()]


def delivered_dossiers(engine: Engine, partition_keys: Iterable[str]) -> set[str]:
    """Which of these dossiers the portal is known to hold: a dossier snapshot of theirs was
    delivered (accepted with MaLoi 0). Saves a TraCuuHoSo per dossier already pushed."""
    keys = sorted(set(partition_keys))
    found: set[str] = set()
    with engine.connect() as conn:
        for part in _chunks(keys):
            found.update(conn.execute(
                select(_EVENTS.c.partition_key).distinct()
                .where(_EVENTS.c.partition_key.in_(part), _EVENTS.c.kind == "dossier",
                       _EVENTS.c.state == "delivered")).scalars())
    return found


# ================================================================================ status
@dataclass(frozen=True)
class OutboxStats:
    #: events per state (every state present, zeros included)
    depth: dict[str, int]
    #: seconds the oldest undelivered (pending or claimed) event has waited since it was enqueued
    oldest_pending_age: float | None
    #: open dead letters (neither replayed nor discarded)
    dead_letters: int
    #: seconds from the change in the source to its delivery, over events delivered in the window
    freshness_p50: float | None
    freshness_p95: float | None
    freshness_samples: int
    window_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"depth": dict(self.depth), "oldest_pending_age": self.oldest_pending_age,
                "dead_letters": self.dead_letters, "freshness_p50": self.freshness_p50,
                "freshness_p95": self.freshness_p95, "freshness_samples": self.freshness_samples,
                "window_seconds": self.window_seconds}


def _percentile(sorted_values: list[float], share: float) -> float | None:
    """Nearest-rank percentile: a value that actually occurred, no interpolation."""
    if not sorted_values:
        return None
    rank = math.ceil(round(share * len(sorted_values), 9))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def stats(engine: Engine, *, now: datetime | None = None, window: float | timedelta = timedelta(hours=24),
          sample: int = 10_000) -> OutboxStats:
    """What ``lienthong status`` shows about the outbox: depth by state, the age of the oldest
    waiting event, open dead letters, and freshness (p50/p95 of ``delivered_at -
    source_changed_at``) over at most ``sample`` events delivered in the last ``window``."""
    now = _aware(now, "now")
    span = _seconds(window, "window")
    with engine.connect() as conn:
        depth = dict.fromkeys(OUTBOX_STATES, 0)
        for state, count in conn.execute(select(_EVENTS.c.state, func.count()).group_by(_EVENTS.c.state)):
            depth[state] = int(count)
        oldest = conn.execute(select(func.min(_EVENTS.c.created_at))
                              .where(_EVENTS.c.state.in_(("pending", "claimed")))).scalar_one_or_none()
        open_letters = conn.execute(select(func.count()).select_from(_DEAD)
                                    .where(_DEAD.c.replayed_at.is_(None), _DEAD.c.discarded_at.is_(None))).scalar_one()
        recent = conn.execute(select(_EVENTS.c.delivered_at, _EVENTS.c.source_changed_at)
                              .where(_EVENTS.c.state == "delivered", _EVENTS.c.delivered_at >= now - span)
                              .order_by(_EVENTS.c.delivered_at.desc()).limit(sample)).all()
    ages = sorted(max(0.0, (delivered - changed).total_seconds()) for delivered, changed in recent)
    return OutboxStats(
        depth=depth,
        oldest_pending_age=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
        dead_letters=int(open_letters),
        freshness_p50=_percentile(ages, 0.50),
        freshness_p95=_percentile(ages, 0.95),
        freshness_samples=len(ages),
        window_seconds=span.total_seconds(),
    )
