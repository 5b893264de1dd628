"""Delivery of outbox events to the national portal: one pass of one worker.

:func:`deliver_once` claims a batch of events (see :mod:`lienthong.hub.delivery.outbox`) and pushes them
through the DVC portal connector, which builds, validates, signs, audits and verifies every
message. The pass works in **rounds**: round *k* sends the *k*-th claimed event of every claimed
dossier, so one message never carries two events of the same dossier and a dossier's next event
goes out only after the previous one was accepted. Within a round:

* dossier snapshots go in ``DongBoHoSoMC`` batches of up to ``batch_size``, one batch per
  ``isUpdating`` value. ``isUpdating`` is false only for a dossier the portal does not have yet:
  a dossier with a delivered snapshot in the outbox is known; one submitted (``NgayNopHoSo``) since
  the hub became the ministry's only feed to the portal (``sole_feed_since``, by default the
  outbox's first event) and never delivered is new, because nothing else can have sent it; any
  other is asked about once per pass with ``TraCuuHoSo`` (a backlog from before the hub), and once
  the portal has accepted a dossier it is "updating" from then on. If the portal still disagrees (``HOSO_DA_TON_TAI`` to a create: a previous message was
  processed but its reply was lost; ``HOSO_CHUA_TON_TAI`` to an update) the event is re-sent
  **once** with the flag the portal asked for, in a message of its own id; a second refusal is a
  dead letter.
* processing steps go in ``CapNhatTienDoHoSoMC`` batches;
* result files (events of kind ``result``, claimed only by workers given ``kinds=RESULT_KINDS``)
  are uploaded one per job, chunked and resumable (:mod:`lienthong.hub.delivery.uploads`); a
  dossier snapshot that follows uploaded results lists them in ``DanhSachGiayToKetQua`` with the
  GiayToId and link the portal returned.

Each message's DocumentId is derived from what it carries (:func:`message_document_id`): a hash of
the operation, the ``isUpdating`` flag and the sorted (idempotency key, payload) pairs, and it is
recorded on the message's events (:func:`outbox.assign <lienthong.hub.delivery.outbox.assign>`) *before*
the message is sent. An undelivered event that carries a DocumentId may already be applied by the
portal (the worker died, or the reply was lost), so whoever picks it up next sends **that message
again**: the same events (read back from the outbox, including those of other dossiers) under the
same DocumentId and flag, never a regrouping (which would be a new message, applied a second
time). The portal answers a repeated DocumentId with its first answer; the resending worker settles
the events it holds from that answer.

Outcomes, per event:

* ``MaLoi`` "0": delivered (``outbox.complete``, with the message's DocumentId);
* any other ``MaLoi`` (``TRANG_THAI_KHONG_HOP_LE``, ``THU_TU_KHONG_HOP_LE``, ...): a business
  rejection of that dossier: dead letter with the code, the portal's text, the signed request and
  the signed reply; the other dossiers of the batch are unaffected;
* a :class:`~lienthong.hub.errors.RetryableError` (timeout, 5xx, transient fault): every event of
  the message is retried later after the policy's backoff (or dead-lettered when its attempts are
  spent) and the breaker counts a failure;
* a :class:`~lienthong.hub.errors.FatalError` (a fault refusing the whole message, a reply that
  fails verification...): every event of the message goes to dead letters with the signed bytes
  and the reason. A request the hub itself refuses before sending (schema, unknown field) is
  retried one event per message, so a single bad dossier does not take its batch down with it;
* a hub misconfiguration (``ConfigurationError``, ``TlsError``, ``AuditChainBroken``) stops the
  pass and is raised: dead-lettering every event for a wrong URL would be worse than failing loud.

When an event does not get through, the events behind it in its dossier are released untouched.
While the breaker is open nothing is sent and the claimed events are released as they were
(no attempt counted). Before each message and each lookup the worker renews its lease if half of
it is gone, and drops the events it no longer holds.

The signed bytes of a dead letter come from the audit ledger (the connector records every request
and reply there before anything else happens), looked up by the message's DocumentId.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select

from ..envelope import VN_TZ
from ..errors import (
    AuditChainBroken,
    ConfigurationError,
    FatalError,
    HubError,
    PartnerFault,
    ResultFileError,
    RetryableError,
    SchemaViolation,
    TlsError,
    UnexpectedResponse,
)
from ..store.models import AuditEntry
from . import outbox, uploads
from .breaker import Admission, CircuitBreaker, Decision, admit
from .outbox import ClaimedEvent
from .retry import RetryPolicy

if TYPE_CHECKING:
    from ...connectors.dvc_portal import DvcPortalClient, ItemResult
    from .uploads import ResultUploader

log = logging.getLogger(__name__)

__all__ = ["DeliverySummary", "deliver_once", "message_document_id", "SYNC", "PROGRESS", "LOOKUP", "UPLOAD",
           "STATUS_KINDS", "RESULT_KINDS"]

SYNC, PROGRESS, LOOKUP = "DongBoHoSoMC", "CapNhatTienDoHoSoMC", "TraCuuHoSo"
#: the three operations of a result upload, named as one in summaries and dead letters
UPLOAD = "TaiTepKetQua"
#: what the status push delivers, and what the results push does: each kind in workers of its own
STATUS_KINDS = ("dossier", "step")
RESULT_KINDS = ("result",)
PARTNER = "dvc_portal"

#: errors that say the hub, not the message, is broken: stop and raise, leave the events pending
_HALT = (ConfigurationError, TlsError, AuditChainBroken)
#: refused by the hub itself before anything was sent: retried one event per message
_LOCAL = (SchemaViolation, ValueError)
_FLIP = {(False, "HOSO_DA_TON_TAI"), (True, "HOSO_CHUA_TON_TAI")}
_TAGS = {(SYNC, False): "hs0", (SYNC, True): "hs1", (PROGRESS, None): "td"}
_TAG_MESSAGE = {tag: key for key, tag in _TAGS.items()}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def message_document_id(operation: str, events: Sequence[ClaimedEvent], *, is_updating: bool | None = None) -> str:
    """The DocumentId of the message carrying ``events``: the same events (keys and payloads),
    operation and flag give the same id, in any order; anything else gives another.

    Shape ``ob-<tag>-<40 hex digits>`` (160 bits of SHA-256), within the envelope's DocumentId
    pattern ``[A-Za-z0-9.,:_\\-]{8,128}``.
    """
    tag = _TAGS.get((operation, is_updating))
    if tag is None:
        raise ValueError(f"no outbox message is {operation} with isUpdating={is_updating!r}")
    if not events:
        raise ValueError("a message needs at least one event")
    digest = hashlib.sha256(f"lienthong-outbox-v1\n{operation}\n{is_updating}\n".encode())
    for key, body in sorted((e.idempotency_key, e.payload_json or outbox.canonical_json(e.payload)) for e in events):
        digest.update(key.encode("utf-8") + b"\x1f" + body.encode("utf-8") + b"\x1e")
    return f"ob-{tag}-{digest.hexdigest()[:40]}"


@dataclass
class DeliverySummary:
    """What one pass did (counts of events unless said otherwise)."""

    worker_id: str
    claimed: int = 0
    taken_over: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    #: given back untouched (behind a failed event, breaker open, pass stopped)
    released: int = 0
    #: taken over by another worker while this one held them (lease ran out)
    lost: int = 0
    #: messages attempted (DongBoHoSoMC and CapNhatTienDoHoSoMC), and TraCuuHoSo lookups
    messages: int = 0
    lookups: int = 0
    #: messages sent again under their recorded DocumentId (after a crash, a lost reply, a retry)
    resent: int = 0
    #: dossiers sent as new without a lookup (submitted since the hub became the only feed)
    presumed_new: int = 0
    #: result files uploaded, and their bytes (the file's size; resumed uploads send fewer)
    uploads: int = 0
    uploaded_bytes: int = 0
    #: bytes sent in chunks, and uploads that went on from the offset the portal reported
    sent_bytes: int = 0
    resumed_uploads: int = 0
    #: dead letters by reason code
    dead_reasons: dict[str, int] = field(default_factory=dict)
    #: why the pass ended before finishing its claim, if it did
    stopped: str | None = None
    breaker: str = "closed"

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


def deliver_once(engine: Engine, portal: DvcPortalClient, *, worker_id: str, batch_size: int = 50,
                 policy: RetryPolicy | None = None, breaker: CircuitBreaker | None = None,
                 clock: Callable[[], datetime] | None = None, max_events: int = 500,
                 per_partition: int = 20, lease: float | timedelta = 300.0,
                 sole_feed_since: datetime | None = None, senders: int = 2,
                 kinds: Sequence[str] | None = STATUS_KINDS, uploader: ResultUploader | None = None) -> DeliverySummary:
    """Claim up to ``max_events`` outbox events and deliver them; returns what happened.

    ``batch_size`` is the most dossiers (or steps) one message carries. ``policy`` decides retry
    delays and when to give up (default :class:`RetryPolicy()`); ``breaker`` is the portal's
    circuit breaker (default: the shared ``dvc_portal`` breaker in this store, on ``clock``).
    ``lease`` must comfortably exceed the time of a round of messages (it is renewed before each
    message once half spent) and the connector's operation timeout. ``sole_feed_since``: dossiers
    submitted since then reach the portal only through this hub (default: when the outbox received
    its first event), so one never delivered is sent as new without a ``TraCuuHoSo``. Safe to run
    in several threads and processes at once; call it again (e.g. on a schedule) to drain the outbox.
    ``senders``: messages of one round (different dossiers) in flight at once, so signing one
    overlaps waiting for the portal's answer to another.
    ``kinds``: the outbox kinds this worker claims (default :data:`STATUS_KINDS`; ``None``: all);
    result events need ``uploader`` (:class:`~lienthong.hub.delivery.uploads.ResultUploader`).
    """
    if senders < 1:
        raise ValueError("senders must be at least 1")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if (lease.total_seconds() if isinstance(lease, timedelta) else lease) <= 0:
        raise ValueError("lease must be positive")
    clock = clock or _utcnow
    run = _Pass(engine, portal, worker_id=worker_id, batch_size=batch_size, policy=policy or RetryPolicy(),
                breaker=breaker or CircuitBreaker(engine, PARTNER, clock=clock), clock=clock,
                lease=lease if isinstance(lease, timedelta) else timedelta(seconds=lease),
                sole_feed_since=sole_feed_since, senders=senders, kinds=kinds, uploader=uploader)
    return run.run(max_events=max_events, per_partition=per_partition)


class _Pass:
    def __init__(self, engine: Engine, portal: DvcPortalClient, *, worker_id: str, batch_size: int,
                 policy: RetryPolicy, breaker: CircuitBreaker, clock: Callable[[], datetime], lease: timedelta,
                 sole_feed_since: datetime | None = None, senders: int = 1,
                 kinds: Sequence[str] | None = None, uploader: ResultUploader | None = None):
        self.engine = engine
        self.kinds = tuple(kinds) if kinds is not None else None
        self.uploader = uploader
        #: DanhSachGiayToKetQua of the claimed snapshots that follow uploaded results (event id -> entries)
        self.listed: dict[int, list[dict[str, Any]]] = {}
        self.portal = portal
        self.worker_id = worker_id
        self.batch_size = batch_size
        self.policy = policy
        self.breaker = breaker
        self.clock = clock
        self.lease = lease
        self.summary = DeliverySummary(worker_id=worker_id)
        self.reasons: Counter[str] = Counter()
        #: MaHoSo -> does the portal hold it (this pass's knowledge)
        self.known: dict[str, bool] = {}
        #: events already re-sent with the flipped isUpdating flag
        self.flipped: set[int] = set()
        #: event id -> delivered | retry | dead | lost (absent: not tried yet)
        self.outcome: dict[int, str] = {}
        #: ids this worker holds and has not settled
        self.active: set[int] = set()
        self.lease_until = datetime.min.replace(tzinfo=UTC)
        self.stop_reason: str | None = None
        self.sole_feed_since = sole_feed_since
        self.senders = senders
        #: guards the pass's bookkeeping and store writes when several senders run (see _run_jobs)
        self.lock = threading.RLock()
        #: NgayNopHoSo (portal format) from which a never-delivered dossier is new; "" = unknown yet
        self._new_from: str | None = ""
        #: recorded DocumentIds this pass has already sent again (never twice in one pass)
        self.resumed: set[str] = set()

    # --- the pass ---------------------------------------------------------------------------
    def run(self, *, max_events: int, per_partition: int) -> DeliverySummary:
        current = self.breaker.current()
        if admit(current, self.clock(), self.breaker.config)[0] is Decision.REJECT:
            self.summary.stopped = "breaker open"
            self.summary.breaker = current.state
            return self.summary
        if self.kinds is not None and "result" in self.kinds and self.uploader is None:
            raise ConfigurationError("a worker that uploads result files needs an uploader (the result folder)")
        claimed = outbox.claim(self.engine, self.worker_id, max_events=max_events, lease=self.lease,
                               per_partition=per_partition, now=self.clock(), kinds=self.kinds)
        if claimed and (self.kinds is None or "dossier" in self.kinds):
            # read once per pass, after the claim: a claimed snapshot's earlier results are all uploaded
            self.listed = uploads.listings(self.engine, claimed.events)
        self.summary.claimed = len(claimed)
        self.summary.taken_over = len(claimed.taken_over)
        self.active = set(claimed.event_ids)
        self.lease_until = claimed.lease_expires_at
        queues = {key: deque(events) for key, events in claimed.partitions.items()}
        try:
            while queues and self.stop_reason is None:
                self._round([queue[0] for queue in queues.values()])
                behind: list[int] = []
                for key in list(queues):
                    queue = queues[key]
                    result = self.outcome.get(queue[0].id)
                    if result == "delivered":
                        queue.popleft()
                        if queue:
                            continue
                    elif result is None and self.stop_reason is not None:
                        continue  # not tried: released below with the rest
                    else:  # not delivered: what follows in this dossier must wait (an untried head too)
                        behind.extend(e.id for e in queue if e.id in self.active)
                    del queues[key]
                self._release(behind)
        finally:
            leftover = [e.id for queue in queues.values() for e in queue if e.id in self.active]
            self._release(leftover)
            self.summary.dead_reasons = dict(self.reasons)
            self.summary.stopped = self.stop_reason
            self.summary.breaker = self.breaker.current().state
        return self.summary

    def _round(self, heads: list[ClaimedEvent]) -> None:
        spent = [e for e in heads if e.attempts >= self.policy.max_attempts]
        if spent:  # taken over from crashed workers too often: do not send again blindly
            self._dead(spent, outbox.RETRIES_EXHAUSTED,
                       f"gave up after {self.policy.max_attempts} attempt(s) (the last by workers whose lease expired)",
                       evidence=(None, None))
        heads = [e for e in heads if e.id not in self.outcome]
        unsettled: dict[str, list[ClaimedEvent]] = {}
        for event in heads:
            if event.document_id and event.document_id not in self.resumed:
                unsettled.setdefault(event.document_id, []).append(event)
        for document_id, held in unsettled.items():
            if self.stop_reason is not None:
                return
            self._resume(document_id, held)
        heads = [e for e in heads if e.id not in self.outcome]
        dossiers = [e for e in heads if e.kind == "dossier"]
        steps = [e for e in heads if e.kind == "step"]
        results = [e for e in heads if e.kind == "result"]
        jobs: list[Callable[[], None]] = []
        if dossiers:
            self._decide_updating(dossiers)
            for flag in (False, True):
                group = [e for e in dossiers if e.id not in self.outcome and self.known.get(e.partition_key) is flag]
                jobs += [partial(self._sync, chunk, is_updating=flag) for chunk in _chunks(group, self.batch_size)]
        jobs += [partial(self._progress, chunk) for chunk in _chunks(steps, self.batch_size)]
        if results and self.uploader is None:
            self.stop_reason = "no uploader: result events are for the results push"
            return
        jobs += [partial(self._upload, event) for event in results]
        self._run_jobs(jobs)

    def _run_jobs(self, jobs: list[Callable[[], None]]) -> None:
        """The messages of one round: each carries other dossiers, so they may go out together.

        With ``senders`` > 1 they run on that many threads; the exchange (signing, the portal's
        answer, verification) is where a message spends its time, and it releases the pass's
        lock. The round ends when all are settled, so a dossier's next event still waits for its
        previous one. The first error that stops the pass is raised once all have finished."""
        if self.senders <= 1 or len(jobs) <= 1:
            for job in jobs:
                job()
            return
        futures = [_sender_pool(self.senders).submit(job) for job in jobs]
        wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]

    # --- resending a recorded message ---------------------------------------------------------
    def _resume(self, document_id: str, held: list[ClaimedEvent]) -> None:
        """Send the recorded message ``document_id`` again, exactly: all of its events (those this
        worker holds and those of other dossiers, whatever their state now), same DocumentId, same
        flag; settle the held ones from the answer (the portal's first answer, if it had the message)."""
        self.resumed.add(document_id)
        operation, is_updating = _TAG_MESSAGE.get(document_id[3:].split("-", 1)[0], (None, None))
        carry = outbox.message_events(self.engine, document_id) if operation else []
        if not carry or message_document_id(operation, carry, is_updating=is_updating) != document_id:
            # Not one of ours, or its events changed since (one of them was re-sent with the other
            # flag after the portal answered it): the portal answered that message, so sending the
            # held events in a new one applies nothing twice.
            log.warning("message %s cannot be rebuilt from the outbox; its %d unsettled event(s) go in a new message",
                        document_id, len(held))
            return
        self.summary.resent += 1
        if operation == SYNC:
            self._sync(held, is_updating=bool(is_updating), carry=carry, document_id=document_id)
        else:
            self._progress(held, carry=carry, document_id=document_id)

    # --- isUpdating ------------------------------------------------------------------------
    def _new_since(self) -> str | None:
        """``NgayNopHoSo`` (the portal's yyyyMMddHHmmss, Vietnam time) from which a dossier the hub
        never delivered cannot be on the portal: the hub has been its only feed since then."""
        if self._new_from == "":
            since = self.sole_feed_since or outbox.first_enqueued_at(self.engine)
            self._new_from = None if since is None else since.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")
        return self._new_from

    def _decide_updating(self, dossiers: list[ClaimedEvent]) -> None:
        unknown = [e for e in dossiers if e.partition_key not in self.known]
        if unknown:
            for key in outbox.delivered_dossiers(self.engine, {e.partition_key for e in unknown}):
                self.known[key] = True
            new_from = self._new_since()
            if new_from is not None:
                for event in unknown:
                    submitted = event.payload.get("NgayNopHoSo")
                    if event.partition_key not in self.known and isinstance(submitted, str) and submitted >= new_from:
                        self.known[event.partition_key] = False
                        self.summary.presumed_new += 1
        for event in unknown:
            key = event.partition_key
            if key in self.known or event.id in self.outcome:
                continue
            if self.stop_reason is not None:
                return
            if not self._hold([event]):  # a lookup can take a while: keep the lease, skip what is lost
                continue
            admission = self._admit()
            if not admission:
                return
            self.summary.lookups += 1
            try:
                found = self.portal.lookup(key)
            except _HALT as exc:
                self._halt(exc, admission)
                raise
            except RetryableError as exc:
                self.breaker.record_failure()
                self._retry([event], exc, operation=LOOKUP, document_id=None)
                continue
            except FatalError as exc:
                self.breaker.record_success()  # the portal answered
                self._dead([event], _code(exc), f"{LOOKUP} {key} failed: {exc}", evidence=(None, None))
                continue
            self.breaker.record_success()
            self.known[key] = bool(found["TonTai"])

    # --- sending --------------------------------------------------------------------------
    def _sync(self, events: list[ClaimedEvent], *, is_updating: bool, carry: list[ClaimedEvent] | None = None,
              document_id: str | None = None) -> None:
        doc_id, results, events = self._send(SYNC, events, is_updating, carry=carry, document_id=document_id)
        if results is None:
            return
        with self.lock:
            flips = self._settle(SYNC, events, results, doc_id, is_updating=is_updating)
            for event in flips:
                self.known[event.partition_key] = not is_updating
                self.flipped.add(event.id)
        for chunk in _chunks(flips, self.batch_size):
            self._sync(chunk, is_updating=not is_updating)

    def _progress(self, events: list[ClaimedEvent], *, carry: list[ClaimedEvent] | None = None,
                  document_id: str | None = None) -> None:
        doc_id, results, events = self._send(PROGRESS, events, None, carry=carry, document_id=document_id)
        if results is not None:
            with self.lock:
                self._settle(PROGRESS, events, results, doc_id, is_updating=None)

    def _send(self, operation: str, events: list[ClaimedEvent], is_updating: bool | None, *,
              carry: list[ClaimedEvent] | None = None,
              document_id: str | None = None) -> tuple[str, list[ItemResult] | None, list[ClaimedEvent]]:
        """One message; returns its DocumentId, the per-item results (``None`` when the message as a
        whole did not go through: its events are settled here) and the events still held.

        A new message (``document_id`` None) carries ``events`` and is recorded on them before it is
        sent; a resend carries ``carry`` (the recorded message's events) under ``document_id``.

        Only the exchange itself (build, sign, audit, POST, verify) runs outside the pass's lock,
        so several senders overlap one message's signing with another's wait for the portal."""
        with self.lock:
            if self.stop_reason is not None:
                return "", None, []
            if document_id is None:
                # _assign renews the lease (when due) in the transaction that marks the events.
                # In id order: a resend rebuilds the message from the outbox in id order, and the
                # portal compares the content of a repeated DocumentId byte for byte (a round's
                # heads are in partition order, which after the first round is not id order).
                events = sorted((e for e in events if e.id in self.active), key=lambda e: e.id)
                doc_id = ""
                while events:
                    doc_id = message_document_id(operation, events, is_updating=is_updating)
                    marked = self._assign(events, doc_id)
                    if len(marked) == len(events):
                        break
                    # some were taken over meanwhile: the message carries the rest, under the id of
                    # what it carries (a resend must be able to rebuild it from the outbox)
                    events = marked
                if not events:
                    return "", None, []
            else:
                doc_id = document_id
                events = self._hold(events)
            if not events:
                return "", None, []
            admission = self._admit()
            if not admission:
                return "", None, []
            attempt = 1 + max(e.attempts for e in events)
            payloads = [self._payload(e) for e in (carry or events)]
            self.summary.messages += 1
        try:
            if operation == SYNC:
                results = self.portal.sync_dossiers(payloads, is_updating=bool(is_updating), document_id=doc_id,
                                                    attempt=attempt)
            else:
                results = self.portal.update_progress(payloads, document_id=doc_id, attempt=attempt)
        except BaseException as exc:
            with self.lock:
                return self._failed(operation, events, is_updating, carry, doc_id, admission, exc)
        with self.lock:
            self.breaker.record_success()
        return doc_id, results, events

    def _payload(self, event: ClaimedEvent) -> dict[str, Any]:
        """What goes on the wire for ``event``: a snapshot behind uploaded results lists them."""
        entries = self.listed.get(event.id)
        if entries is None and event.kind == "dossier" and event.document_id:
            # an event of a recorded message resent for another worker: not in this pass's claim
            entries = uploads.listings(self.engine, [event]).get(event.id)
        return uploads.with_listing(event.payload, entries) if entries else event.payload

    # --- result files -------------------------------------------------------------------------
    def _upload(self, event: ClaimedEvent) -> None:
        """Upload one result event's file (see :mod:`.uploads`); settle the event from the outcome."""
        assert self.uploader is not None
        with self.lock:
            if self.stop_reason is not None or not self._hold([event]):
                return
            admission = self._admit()
            if not admission:
                return
            self.summary.messages += 1

        def keep() -> bool:
            with self.lock:
                return bool(self._hold([event]))

        try:
            done = self.uploader.upload(event, keep=keep)
        except uploads.LeaseLost:
            with self.lock:
                if admission.probe:
                    self.breaker.release_probe()
                self._lost([event.id])
            return
        except ResultFileError as exc:  # the one-stop system's file, not the portal: no breaker verdict
            with self.lock:
                if admission.probe:
                    self.breaker.release_probe()
                self._dead([event], exc.code, f"{UPLOAD} {event.partition_key}: {exc}", evidence=(None, None))
            return
        except BaseException as exc:
            with self.lock:
                self._failed(UPLOAD, [event], None, None, "", admission, exc)
            return
        with self.lock:
            self.breaker.record_success()
            if uploads.finish(self.engine, event, done, now=self.clock()):
                self.summary.delivered += 1
            self._settled(event.id, "delivered")
            self.summary.uploads += 1
            self.summary.uploaded_bytes += done.size
            self.summary.sent_bytes += done.sent
            self.summary.resumed_uploads += done.resumed_from > 0

    def _failed(self, operation: str, events: list[ClaimedEvent], is_updating: bool | None,
                carry: list[ClaimedEvent] | None, doc_id: str, admission: Admission,
                exc: BaseException) -> tuple[str, None, list[ClaimedEvent]]:
        """Settle the events of a message that did not go through (or raise what must stop the pass)."""
        try:
            raise exc
        except _HALT as exc:
            self._halt(exc, admission)
            raise
        except RetryableError as exc:
            self.breaker.record_failure()
            self._retry(events, exc, operation=operation, document_id=doc_id)
            return doc_id, None, events
        except _LOCAL as exc:
            if admission.probe:
                self.breaker.release_probe()
            if len(events) > 1 or carry is not None:  # (an upload is always one event)
                # find the culprit: each event alone (each its own message and DocumentId; a message
                # the hub refuses to send never reached the portal, so this applies nothing twice)
                log.warning("%s of %d events refused before sending (%s); sending them one by one",
                            operation, len(events), exc)
                for event in events:
                    if operation == SYNC:
                        self._sync([event], is_updating=bool(is_updating))
                    else:
                        self._progress([event])
                return doc_id, None, events
            code = exc.code if isinstance(exc, HubError) else "INVALID_PAYLOAD"
            self._dead(events, code, f"{operation} {events[0].partition_key} refused by the hub: {exc}",
                       operation=operation, document_id=doc_id)
            return doc_id, None, events
        except FatalError as exc:
            self.breaker.record_success()  # the partner is up: it answered, if not as hoped
            self._dead(events, _code(exc), f"{operation} refused: {exc}", operation=operation, document_id=doc_id,
                       evidence=_carried_evidence(exc))
            return doc_id, None, events

    def _settle(self, operation: str, events: list[ClaimedEvent], results: list[ItemResult], doc_id: str,
                *, is_updating: bool | None) -> list[ClaimedEvent]:
        """Apply per-item answers; returns the events to re-send with the flipped isUpdating."""
        answers: dict[str, ItemResult] = {}
        for item in results:
            answers.setdefault(item.ma_ho_so, item)
        delivered, flips, missing = [], [], []
        rejected: list[tuple[ClaimedEvent, ItemResult]] = []
        for event in events:
            answer = answers.get(event.partition_key)
            if answer is None:
                missing.append(event)
            elif answer.accepted:
                delivered.append(event)
            elif (is_updating, answer.ma_loi) in _FLIP and event.id not in self.flipped:
                flips.append(event)
            else:
                rejected.append((event, answer))
        if delivered:
            outbox.complete(self.engine, [e.id for e in delivered], document_id=doc_id, now=self.clock())
            for event in delivered:
                self._settled(event.id, "delivered")
                self.summary.delivered += 1
                if event.kind == "dossier":
                    self.known[event.partition_key] = True
        if rejected:
            evidence = self._evidence(operation, doc_id)
            for event, answer in rejected:
                self._dead([event], answer.ma_loi,
                           f"{operation} {event.partition_key}: the portal answered {answer.ma_loi}: {answer.mo_ta}",
                           document_id=doc_id, evidence=evidence)
        if missing:
            names = ", ".join(e.partition_key for e in missing[:5])
            self._retry(missing, UnexpectedResponse(f"the {operation} reply has no KetQua for {names}"),
                        operation=operation, document_id=doc_id)
        return flips

    # --- outcomes ---------------------------------------------------------------------------
    def _retry(self, events: list[ClaimedEvent], exc: HubError, *, operation: str, document_id: str | None) -> None:
        request = response = None
        if document_id and any(e.attempts + 1 >= self.policy.max_attempts for e in events):
            request, response = _carried_evidence(exc) or self._evidence(operation, document_id)
        result = outbox.retry_later(self.engine, self.worker_id, [e.id for e in events], error_code=exc.code,
                                    error=str(exc), policy=self.policy, now=self.clock(), document_id=document_id,
                                    request_bytes=request, response_bytes=response)
        for event_id in result.rescheduled:
            self._settled(event_id, "retry")
            self.summary.retried += 1
        for event_id in result.exhausted:
            self._settled(event_id, "dead")
            self.summary.dead += 1
            self.reasons[outbox.RETRIES_EXHAUSTED] += 1
        self._lost([e.id for e in events if e.id not in self.outcome])

    def _dead(self, events: list[ClaimedEvent], code: str, reason: str, *, operation: str | None = None,
              document_id: str | None = None, evidence: tuple[bytes | None, bytes | None] | None = None) -> None:
        if evidence is None:
            evidence = self._evidence(operation, document_id) if operation and document_id else (None, None)
        letters = outbox.dead_letter(self.engine, self.worker_id, [e.id for e in events], reason_code=code,
                                     reason=reason, document_id=document_id, request_bytes=evidence[0],
                                     response_bytes=evidence[1], now=self.clock())
        for event_id in letters:
            self._settled(event_id, "dead")
            self.summary.dead += 1
            self.reasons[code] += 1
        self._lost([e.id for e in events if e.id not in self.outcome])

    def _settled(self, event_id: int, result: str) -> None:
        self.outcome[event_id] = result
        self.active.discard(event_id)

    def _lost(self, ids: list[int]) -> None:
        for event_id in ids:
            if event_id not in self.outcome:
                self._settled(event_id, "lost")
                self.summary.lost += 1

    def _release(self, ids: list[int]) -> None:
        ids = [i for i in ids if i in self.active]
        if not ids:
            return
        self.summary.released += outbox.release(self.engine, self.worker_id, ids)
        for event_id in ids:
            self.active.discard(event_id)

    # --- guards -----------------------------------------------------------------------------
    def _hold(self, events: list[ClaimedEvent]) -> list[ClaimedEvent]:
        """Renew the lease when half of it is gone; keep only the events still held."""
        now = self.clock()
        if self.lease_until - now <= self.lease / 2:
            held = outbox.renew(self.engine, self.worker_id, self.active, lease=self.lease, now=now)
            lost = sorted(self.active - held)
            if lost:
                log.warning("worker %s lost %d event(s) to another worker (lease expired)", self.worker_id, len(lost))
            self._lost(lost)
            self.lease_until = now + self.lease
        return [e for e in events if e.id in self.active]

    def _assign(self, events: list[ClaimedEvent], document_id: str) -> list[ClaimedEvent]:
        """Record ``document_id`` on the events before their message goes out (renewing the lease
        in the same transaction when it is due); keep only the events still held."""
        now = self.clock()
        renew = self.lease_until - now <= self.lease / 2
        marked = outbox.assign(self.engine, self.worker_id, [e.id for e in events], document_id=document_id,
                               renew_ids=self.active if renew else (), lease=self.lease if renew else None, now=now)
        if renew:
            self.lease_until = now + self.lease
        lost = [e.id for e in events if e.id not in marked]
        if lost:
            log.warning("worker %s lost %d event(s) to another worker (lease expired)", self.worker_id, len(lost))
            self._lost(lost)
        return [e for e in events if e.id in marked]

    def _admit(self) -> Admission | None:
        admission = self.breaker.admit()
        if not admission.allowed:
            self.stop_reason = "breaker open"
            return None
        if admission.probe:
            log.info("circuit breaker of %s half-open: worker %s probes", self.breaker.partner, self.worker_id)
        return admission

    def _halt(self, exc: HubError, admission: Admission) -> None:
        if admission.probe:  # the probe learnt nothing about the partner
            self.breaker.release_probe()
        self.stop_reason = f"{exc.code}: {exc}"
        log.error("delivery stopped by %s; claimed events are released", exc.code)

    def _evidence(self, operation: str | None, document_id: str | None) -> tuple[bytes | None, bytes | None]:
        """The signed request and the reply of the latest exchange of message ``document_id``,
        as the audit ledger recorded them (``None`` where nothing was sent or received)."""
        if not operation or not document_id:
            return None, None
        audit = self.portal.transport.audit
        partner = self.portal.transport.spec.name
        log_table = AuditEntry.__table__
        base = select(log_table.c.seq).where(log_table.c.partner == partner, log_table.c.operation == operation)
        try:
            with audit.engine.connect() as conn:
                out_seq = conn.execute(base.where(log_table.c.direction == "out", log_table.c.document_id == document_id)
                                       .order_by(log_table.c.seq.desc()).limit(1)).scalar_one_or_none()
                in_seq = conn.execute(base.where(log_table.c.direction == "in", log_table.c.correlation_id == document_id)
                                      .order_by(log_table.c.seq.desc()).limit(1)).scalar_one_or_none()
            request = audit.body(out_seq) if out_seq is not None else None
            response = audit.body(in_seq) if in_seq is not None else None
        except (LookupError, AuditChainBroken) as exc:
            log.error("cannot read the evidence of message %s from the audit ledger: %s", document_id, exc)
            return None, None
        return request or None, response or None


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _sender_pool(size: int) -> ThreadPoolExecutor:
    """The process's pool of ``size`` sender threads, kept across passes: each thread keeps its
    own HTTP session to the portal (see ``lienthong.connectors.soap.SoapConnector``), so connections (and TLS sessions) are
    reused from one pass to the next instead of opened per round. Keyed by process id too: a pool
    inherited through ``fork`` has no threads in the child."""
    key = (os.getpid(), size)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="lienthong-send")
        return pool


def _carried_evidence(exc: HubError) -> tuple[bytes | None, bytes | None] | None:
    """The signed request and the partner's answer the connector attached to ``exc`` (see
    ``lienthong.connectors.port``), or ``None`` when it attached none: then the ledger is asked."""
    request = getattr(exc, "request_bytes", None)
    if request is None:
        return None
    return request, getattr(exc, "response_bytes", None) or None


def _code(exc: HubError) -> str:
    if isinstance(exc, PartnerFault) and exc.fault_code:
        return exc.fault_code
    return exc.code


def _chunks(items: list[ClaimedEvent], size: int) -> list[list[ClaimedEvent]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
