"""Mission step 2: push dossier statuses and processing history to the national portal.

The intake (:mod:`.intake`) has put every change in the outbox; this flow drains it. One call of
:func:`drain` is one worker: it runs delivery passes (:func:`lienthong.hub.delivery.deliver_once`)
until nothing is claimable, the breaker stops it, or one pass was asked for. Both the
``lienthong_status_push`` DAG (one mapped task per worker) and ``lienthong push status`` call it, so
a worker behaves the same wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..delivery import DeliverySummary, deliver_once

if TYPE_CHECKING:
    from ...connectors.dvc_portal import DvcPortalClient
    from ..settings import Settings
    from ..store import Store

#: the counts a worker adds up over its passes
COUNTS = ("claimed", "delivered", "retried", "dead", "messages", "lookups", "resent", "presumed_new",
          "uploads", "uploaded_bytes", "sent_bytes", "resumed_uploads")


@dataclass
class PushTotals:
    """What one worker did over all its passes."""

    worker_id: str
    passes: int = 0
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    messages: int = 0
    lookups: int = 0
    resent: int = 0
    presumed_new: int = 0
    uploads: int = 0
    uploaded_bytes: int = 0
    sent_bytes: int = 0
    resumed_uploads: int = 0
    breaker: str = "closed"
    #: why the last pass ended before finishing its claim (breaker open, ...), if it did
    stopped: str | None = None
    #: dead letters by reason code, over all passes
    dead_reasons: dict = field(default_factory=dict)

    def add(self, summary: DeliverySummary) -> None:
        self.passes += 1
        for key in COUNTS:
            setattr(self, key, getattr(self, key) + getattr(summary, key))
        self.breaker = summary.breaker
        self.stopped = summary.stopped
        for code, n in summary.dead_reasons.items():
            self.dead_reasons[code] = self.dead_reasons.get(code, 0) + n

    def counts(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in COUNTS}


def open_portal(settings: Settings, store: Store) -> DvcPortalClient:
    """The portal client the push speaks through: the configured transport, audited in ``store``."""
    from ...connectors.dvc_portal import DvcPortalClient
    from ...connectors.transport import transport_for
    from ..audit import ledger

    return DvcPortalClient(transport_for(settings, "dvc_portal", audit=ledger(store)))


def drain(store: Store, portal: DvcPortalClient, *, worker_id: str, batch_size: int = 50, senders: int = 2,
          sole_feed_since: datetime | None = None, once: bool = False,
          on_pass: Callable[[PushTotals], Any] | None = None, **options: Any) -> PushTotals:
    """Deliver until nothing is claimable (or the breaker stops the worker, or ``once``).
    ``options`` go to :func:`~lienthong.hub.delivery.deliver_once` (``kinds``, ``uploader``...)."""
    totals = PushTotals(worker_id=worker_id)
    while True:
        summary = deliver_once(store.engine, portal, worker_id=worker_id, batch_size=batch_size,
                               sole_feed_since=sole_feed_since, senders=senders, **options)
        totals.add(summary)
        if on_pass is not None:
            on_pass(totals)
        if once or summary.claimed == 0 or summary.stopped:
            return totals
