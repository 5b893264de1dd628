"""Mission step 2, digitised results: the one-stop system's result files onto the portal.

The portal (and the 766 scorecard's indicators 4.1 and 4.2) counts a dossier as having an
electronic result only when the file reached the portal's result store and a snapshot of the
dossier lists it in ``DanhSachGiayToKetQua``. The intake puts each result document the one-stop
system announces into the outbox as an event of kind ``result``, in its dossier's order: after the
dossier's first snapshot, before the snapshot that lists it (:func:`.intake.arrange_results`).
This flow uploads them: one call of :func:`drain` is one worker that claims only result events
(``kinds=RESULT_KINDS``), so large files never hold up the status push of other dossiers, and a
dossier's next snapshot becomes claimable by the status push the moment its result is on the
portal. Uploads are chunked, resumable and checked by SHA-256 end to end
(:mod:`lienthong.hub.delivery.uploads`); leases, takeover, the breaker, retries and dead letters
are the status push's (:mod:`lienthong.hub.delivery.engine`).

``lienthong push results`` and the ``lienthong_results_push`` DAG call :func:`drain`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select

from ..delivery.engine import RESULT_KINDS
from ..store.models import OutboxEvent, ResultUpload
from .status_push import PushTotals
from .status_push import drain as drain_outbox

if TYPE_CHECKING:
    from ...connectors.dvc_portal import DvcPortalClient
    from ..delivery.uploads import ResultUploader
    from ..settings import Settings
    from ..store import Store


def open_uploader(settings: Settings, store: Store, portal: DvcPortalClient, *,
                  on_bytes: Callable[[int], Any] | None = None, chunk_size: int | None = None) -> ResultUploader:
    """The uploader of this hub: result files under ``settings.results_root`` or fetched by URL
    into the hub's spool, sent through ``portal``."""
    from ...connectors.sources.result_files import ResultFiles
    from ..delivery.uploads import ResultUploader

    files = ResultFiles(settings.results_root, spool=settings.results_spool)
    return ResultUploader(store.engine, portal, files, on_bytes=on_bytes, chunk_size=chunk_size)


def drain(store: Store, portal: DvcPortalClient, uploader: ResultUploader, *, worker_id: str, senders: int = 2,
          once: bool = False, on_pass: Callable[[PushTotals], Any] | None = None) -> PushTotals:
    """Upload result files until none is claimable (or the breaker stops the worker, or ``once``).
    ``senders`` uploads (of different dossiers) run at once."""
    # a result is one upload: per_partition 1 keeps a claim to one file per dossier, so a worker
    # never sits on a dossier's second result while it streams the first one
    return drain_outbox(store, portal, worker_id=worker_id, senders=senders, once=once, on_pass=on_pass,
                        kinds=RESULT_KINDS, uploader=uploader, per_partition=1, max_events=max(senders * 2, 4))


@dataclass(frozen=True)
class ResultsBacklog:
    """What ``lienthong status`` says of the results: waiting, uploading, waiting bytes, dead."""

    pending: int
    in_flight: int
    bytes_waiting: int
    bytes_confirmed: int
    dead: int
    uploaded: int
    uploaded_bytes: int
    resumed: int
    restarts: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def backlog(engine: Any) -> ResultsBacklog:
    """Result events by state, with the bytes still to send (sizes known once a file was first read)."""
    events, uploads = OutboxEvent.__table__, ResultUpload.__table__
    with engine.connect() as conn:
        counts = dict(conn.execute(select(events.c.state, func.count()).where(events.c.kind == "result")
                                   .group_by(events.c.state)).all())
        row = conn.execute(
            select(func.coalesce(func.sum(case((uploads.c.uploaded_at.is_(None), uploads.c.size - uploads.c.confirmed),
                                               else_=0)), 0),
                   func.coalesce(func.sum(case((uploads.c.uploaded_at.is_(None), uploads.c.confirmed), else_=0)), 0),
                   func.count(uploads.c.uploaded_at),
                   func.coalesce(func.sum(case((uploads.c.uploaded_at.is_not(None), uploads.c.size), else_=0)), 0),
                   func.coalesce(func.sum(uploads.c.resumed), 0), func.coalesce(func.sum(uploads.c.restarts), 0))
        ).one()
        # files not read yet: the size the one-stop system announced (0 when it announced none)
        unread = conn.execute(select(events.c.payload).where(
            events.c.kind == "result", events.c.state.in_(("pending", "claimed")),
            ~select(uploads.c.event_id).where(uploads.c.event_id == events.c.id).exists())).scalars()
        announced = sum(_announced_size(payload) for payload in unread)
    return ResultsBacklog(pending=int(counts.get("pending", 0)), in_flight=int(counts.get("claimed", 0)),
                          bytes_waiting=int(row[0]) + announced, bytes_confirmed=int(row[1]), dead=int(counts.get("dead", 0)),
                          uploaded=int(row[2]), uploaded_bytes=int(row[3]), resumed=int(row[4]),
                          restarts=int(row[5]))


def _announced_size(payload: str) -> int:
    try:
        size = json.loads(payload).get("KichThuoc")
    except (ValueError, AttributeError):
        return 0
    return size if isinstance(size, int) and size > 0 else 0
