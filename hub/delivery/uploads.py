"""The upload of one result event's file, and what the outbox records of it.

An outbox event of kind ``result`` names a file of the one-stop system (see
``connectors.sources.result_files``). Its upload, by the worker that holds the event:

1. the file is located (under the result folder, or fetched into the spool);
2. the first time, it is read once to fingerprint it (size, SHA-256) and the fingerprint is
   compared with what the one-stop system announced (``KichThuoc``: ``RESULT_SIZE_MISMATCH``;
   ``SHA256``: ``RESULT_FILE_CHANGED``); the fingerprint is then **committed** in
   ``result_uploads`` before the portal hears of the file. Every later attempt (a retry, the worker
   that takes the event over after a crash) announces that same fingerprint, so the portal finds
   its session and says how many bytes it holds: the upload resumes there, never from zero, and a
   file that changed in between is caught by its hash instead of uploaded as something else;
3. the bytes are streamed (:meth:`DvcPortalClient.stream_upload
   <lienthong.connectors.dvc_portal.DvcPortalClient.stream_upload>`), the hash computed while
   reading; the confirmed offset is written to ``result_uploads`` as it grows (at most once a
   second), which is also when the worker's lease is renewed;
4. once the portal confirmed the hash, :func:`finish` records the GiayToId and link, marks the event
   delivered and, when no snapshot of the dossier waits to be sent after the result, enqueues one
   (a copy of the dossier's latest) so that a snapshot listing the result reaches the portal;
   all in one transaction.

The dossier snapshots that follow a result list it (:func:`listings`): the engine fills their
``DanhSachGiayToKetQua`` from ``result_uploads`` when it sends them, with the GiayToId and the
link the portal returned.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, exists, insert, select, update

from ..errors import ResultFileChanged, ResultSizeMismatch
from ..store import write_transaction
from ..store.models import OutboxEvent, ResultUpload
from .outbox import ClaimedEvent, OutboxChange, enqueue

if TYPE_CHECKING:
    from ...connectors.dvc_portal import DvcPortalClient, UploadedResult
    from ...connectors.sources.result_files import ResultFiles

_EVENTS = OutboxEvent.__table__
_UPLOADS = ResultUpload.__table__
#: a result's upload is one "message" in the outbox; its DocumentId names the portal's session
DOCUMENT_PREFIX = "kq-"
#: the order of DanhSachGiayToKetQua's fields (dvc_portal.xsd, GiayToKetQua)
LISTING_FIELDS = ("TenGiayTo", "MaThanhPhanHoSo", "GiayToId", "DuongDanTepTinKetQua", "MaGiayToKetQua")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaseLost(Exception):
    """The worker no longer holds the event it is uploading (its lease ran out): stop sending."""


class ResultUploader:
    """Uploads result events' files for one worker (see the module docstring)."""

    def __init__(self, engine: Engine, portal: DvcPortalClient, files: ResultFiles, *,
                 chunk_size: int | None = None, progress_every: float = 1.0,
                 on_bytes: Callable[[int], Any] | None = None):
        from ...connectors.dvc_portal import DEFAULT_CHUNK_SIZE

        self.engine = engine
        self.portal = portal
        self.files = files
        self.chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
        self.progress_every = progress_every
        #: called with each confirmed chunk's size (the CLI's progress bar)
        self.on_bytes = on_bytes

    def upload(self, event: ClaimedEvent, *, keep: Callable[[], bool]) -> UploadedResult:
        """Upload ``event``'s file; ``keep()`` renews the lease and says whether it is still held.
        Raises the connector's errors, the result-file errors, or :class:`LeaseLost`."""
        payload = event.payload
        local = self.files.locate(payload, key=f"event-{event.id}")
        try:
            size, sha = self._fingerprint(event, local)
            if local.size != size:  # located just now; the fingerprint may be from an earlier attempt
                raise ResultFileChanged(f"result file {local.origin} has {local.size:,} bytes now, {size:,} when "
                                        "the hub first read it: it changed after it was announced")
            state = {"last": 0.0, "confirmed": None}

            def progress(stage: str, session: str, confirmed: int) -> None:
                previous = state["confirmed"]
                state["confirmed"] = confirmed
                if self.on_bytes is not None and previous is not None and confirmed > previous:
                    self.on_bytes(confirmed - previous)
                now = time.monotonic()
                if stage == "started" or now - state["last"] >= self.progress_every:
                    state["last"] = now
                    if not keep():
                        raise LeaseLost(f"event {event.id} was taken over while its file was uploading")
                    self._note(event.id, session=session, confirmed=confirmed, started=stage == "started")

            return self.portal.stream_upload(
                payload["MaHoSo"], lambda: open(local.path, "rb"), size=size, sha256=sha,
                file_name=payload["TenTep"], mime_type=payload.get("KieuTep") or "application/octet-stream",
                ma_giay_to_ket_qua=payload.get("MaGiayToKetQua"), chunk_size=self.chunk_size, on_progress=progress)
        finally:
            local.discard()

    def _fingerprint(self, event: ClaimedEvent, local: Any) -> tuple[int, str]:
        with self.engine.connect() as conn:
            row = conn.execute(select(_UPLOADS.c.size, _UPLOADS.c.sha256)
                               .where(_UPLOADS.c.event_id == event.id)).first()
        if row is not None:
            return int(row.size), row.sha256
        from ...connectors.dvc_portal import file_fingerprint

        with open(local.path, "rb") as fh:
            size, sha = file_fingerprint(fh)
        payload = event.payload
        declared_size, declared_sha = payload.get("KichThuoc"), payload.get("SHA256")
        # the hash says more than the size: a file whose bytes differ from the announced hash changed
        # (whatever its size); a size alone that differs is a size mismatch
        if declared_sha and declared_sha.lower() != sha:
            raise ResultFileChanged(f"result file {local.origin} hashes to {sha} ({size:,} bytes); the one-stop "
                                    f"system announced {declared_sha.lower()}"
                                    + (f" ({int(declared_size):,} bytes)" if declared_size is not None else "")
                                    + ": it changed after it was announced")
        if declared_size is not None and int(declared_size) != size:
            raise ResultSizeMismatch(f"result file {local.origin} has {size:,} bytes; the one-stop system "
                                     f"announced {int(declared_size):,}")
        now = _utcnow()
        with write_transaction(self.engine) as conn:
            stored = conn.execute(select(_UPLOADS.c.size, _UPLOADS.c.sha256)
                                  .where(_UPLOADS.c.event_id == event.id)).first()
            if stored is not None:  # another worker fingerprinted it meanwhile: its announcement stands
                return int(stored.size), stored.sha256
            conn.execute(insert(_UPLOADS).values(
                event_id=event.id, partition_key=event.partition_key, sha256=sha, size=size, session=None,
                confirmed=0, resumed=0, restarts=0, started_at=now, updated_at=now))
        return size, sha

    def _note(self, event_id: int, *, session: str, confirmed: int, started: bool) -> None:
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(_UPLOADS.c.confirmed, _UPLOADS.c.session)
                               .where(_UPLOADS.c.event_id == event_id)).first()
            if row is None:
                return
            values: dict[str, Any] = {"session": session, "confirmed": confirmed, "updated_at": _utcnow()}
            if started and confirmed > 0:
                values["resumed"] = _UPLOADS.c.resumed + 1
            if started and confirmed == 0 and row.confirmed > 0:
                values["restarts"] = _UPLOADS.c.restarts + 1
            conn.execute(update(_UPLOADS).where(_UPLOADS.c.event_id == event_id).values(**values))


def document_id_of(uploaded: UploadedResult) -> str:
    return f"{DOCUMENT_PREFIX}{uploaded.session or uploaded.giay_to_id}"[:128]


def finish(engine: Engine, event: ClaimedEvent, uploaded: UploadedResult, *, now: datetime | None = None) -> bool:
    """Record the portal's GiayToId and link, mark the event delivered and, when no snapshot of its
    dossier follows it in the outbox, enqueue one that lists it; one transaction. Returns whether
    the event changed (False when it was already final)."""
    now = now or _utcnow()
    document_id = document_id_of(uploaded)
    with write_transaction(engine) as conn:
        conn.execute(update(_UPLOADS).where(_UPLOADS.c.event_id == event.id).values(
            giay_to_id=uploaded.giay_to_id, url=uploaded.url, confirmed=uploaded.size, session=uploaded.session,
            uploaded_at=now, updated_at=now))
        changed = conn.execute(update(_EVENTS).where(_EVENTS.c.id == event.id,
                                                     _EVENTS.c.state.in_(("pending", "claimed")))
                               .values(state="delivered", delivered_at=now, document_id=document_id, claimed_by=None,
                                       lease_expires_at=None, last_error_code=None, last_error=None)).rowcount
        # a snapshot still to be sent after the result lists it; when there is none (none behind it,
        # or those behind it went out before it: a result replayed after its dossier moved on), a
        # copy of the dossier's latest snapshot is enqueued to list it
        listing = exists().where(_EVENTS.c.partition_key == event.partition_key, _EVENTS.c.id > event.id,
                                 _EVENTS.c.kind == "dossier", _EVENTS.c.state.in_(("pending", "claimed", "dead")))
        if changed and not conn.execute(select(listing)).scalar():
            latest = conn.execute(select(_EVENTS.c.idempotency_key, _EVENTS.c.payload)
                                  .where(_EVENTS.c.partition_key == event.partition_key, _EVENTS.c.kind == "dossier",
                                         _EVENTS.c.state.in_(("pending", "claimed", "delivered")))
                                  .order_by(_EVENTS.c.id.desc()).limit(1)).first()
            if latest is not None:
                enqueue(conn, [OutboxChange(kind="dossier", source_key=relisting_key(latest.idempotency_key, event),
                                            payload=json.loads(latest.payload), partition_key=event.partition_key)],
                        now=now)
    return bool(changed)


def relisting_key(snapshot_key: str, event: ClaimedEvent) -> str:
    """The key of the snapshot enqueued to list result ``event``: the snapshot it copies, and the result."""
    suffix = f"+kq:{event.id}"
    return snapshot_key[:255 - len(suffix)] + suffix


def listings(engine: Engine, events: Iterable[ClaimedEvent]) -> dict[int, list[dict[str, Any]]]:
    """For each dossier snapshot among ``events``, the ``DanhSachGiayToKetQua`` entries of the results
    uploaded before it in its dossier (event id order); snapshots with none are absent."""
    snapshots = [e for e in events if e.kind == "dossier"]
    if not snapshots:
        return {}
    keys = sorted({e.partition_key for e in snapshots})
    uploaded: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    with engine.connect() as conn:
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            rows = conn.execute(select(_UPLOADS.c.event_id, _UPLOADS.c.partition_key, _UPLOADS.c.giay_to_id,
                                       _UPLOADS.c.url, _EVENTS.c.payload)
                                .join(_EVENTS, _EVENTS.c.id == _UPLOADS.c.event_id)
                                .where(_UPLOADS.c.partition_key.in_(part), _UPLOADS.c.uploaded_at.is_not(None),
                                       _EVENTS.c.state == "delivered")
                                .order_by(_UPLOADS.c.event_id)).all()
            for row in rows:
                uploaded.setdefault(row.partition_key, []).append((row.event_id, _listing(row)))
    found: dict[int, list[dict[str, Any]]] = {}
    for event in snapshots:
        entries = [entry for event_id, entry in uploaded.get(event.partition_key, ()) if event_id < event.id]
        if entries:
            found[event.id] = entries
    return found


def _listing(row: Any) -> dict[str, Any]:
    payload = json.loads(row.payload)
    entry = {"TenGiayTo": payload.get("TenGiayTo"), "MaThanhPhanHoSo": payload.get("MaThanhPhanHoSo"),
             "GiayToId": row.giay_to_id, "DuongDanTepTinKetQua": row.url,
             "MaGiayToKetQua": payload.get("MaGiayToKetQua")}
    return {k: entry[k] for k in LISTING_FIELDS if entry[k] is not None}


def with_listing(payload: Mapping[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``payload`` (a HoSo) with ``entries`` as its DanhSachGiayToKetQua, after any it already lists
    (a one-stop system that sends links of its own), without listing a GiayToId twice."""
    own = list(payload.get("DanhSachGiayToKetQua") or [])
    seen = {e.get("GiayToId") for e in own if isinstance(e, Mapping)}
    return {**payload, "DanhSachGiayToKetQua": own + [e for e in entries if e["GiayToId"] not in seen]}
