"""Procedure catalogue sync from the national CSDL TTHC: stream, cursor, store.

Shaped like a Singer/Airbyte stream: :class:`ProcedureStream` yields what the national catalogue
lists (code + last-modified), :class:`CatalogueCursor` alone decides which watermark to save, and
:func:`sync_catalogue` fetches the full records with bounded concurrency, maps them to the
canonical model and stores them in batches.

Guarantees an integration engineer relies on:

* **no loss on a crash**: records are committed in batches ordered by their national
  modification time, and the watermark moves in the *same transaction* as the batch it covers,
  so an interrupted sync resumes from the last committed batch;
* **safety overlap**: an incremental sync asks for changes since ``watermark - overlap``, so a
  record the national side timestamps late is not missed; re-reading it writes nothing new;
* **no spurious versions**: a version is written only when the canonical content hash changes;
* **nothing deleted**: a procedure that disappears (full sync) is marked removed, an unpublished
  one keeps its record with ``published`` false; both are versions of their own;
* **bad data is quarantined, not fatal**: a record that fails its schema, its signature or the
  mapping is kept with the reason and the exact bytes received; the sync goes on and counts it.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ...connectors.csdl_tthc import CsdlTthcClient, ProcedureRef, thutuc_record
from ...mappings.diff import diff_documents, format_diff
from ...mappings.procedure import MappingError, Procedure, canonical_json, content_hash, from_national
from ..delivery.retry import RetryPolicy
from ..errors import FatalError, HubError
from ..store.models import (
    CatalogueAgency,
    CatalogueField,
    ProcedureLink,
    ProcedureVersion,
    QuarantinedRecord,
    SyncState,
)
from ..store.models import Procedure as ProcedureRow

STATE_NAME = "tthc"
SOURCE = "csdl_tthc"


class CatalogueEndpointChanged(FatalError):
    """The watermark was taken from another endpoint than the one configured now."""

    code = "CATALOGUE_ENDPOINT_CHANGED"


@dataclass
class SyncSummary:
    """What one sync did; printed by the CLI, returned by the DAG task, kept in ``sync_state``."""

    run_id: str
    mode: str
    since: str | None = None
    listed: int = 0
    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    unpublished: int = 0
    republished: int = 0
    removed: int = 0
    quarantined: int = 0
    retries: int = 0
    agencies: int = 0
    fields: int = 0
    watermark: str | None = None
    started_at: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ProcedureStream:
    """Pages through ``LayDanhSachTTHC``; yields each listed procedure once, oldest change first."""

    client: CsdlTthcClient
    page_size: int = 500
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_retry: Callable[[BaseException, int, float], None] | None = None

    def refs(self, since: datetime | None) -> list[ProcedureRef]:
        refs: dict[str, ProcedureRef] = {}
        page = 1
        while True:
            result = self.retry.call(lambda attempt, p=page: self.client.list_page(
                p, self.page_size, changed_since=since), on_retry=self.on_retry)
            for ref in result.items:
                refs[ref.code] = ref
            if not result.items or page * self.page_size >= result.total:
                break
            page += 1
        # Oldest change first: batches then commit in watermark order (see CatalogueCursor).
        return sorted(refs.values(), key=lambda r: (r.modified, r.code))


@dataclass
class CatalogueCursor:
    """Decides the watermark: where an incremental sync starts, and what a batch lets it advance to."""

    overlap: timedelta = timedelta(minutes=10)

    def start(self, stored: datetime | None, since: datetime | None) -> datetime | None:
        if since is not None:
            return since
        return stored - self.overlap if stored is not None else None

    @staticmethod
    def advance(current: datetime | None, batch: list[ProcedureRef]) -> datetime | None:
        """The watermark after committing ``batch`` (refs sorted oldest first, all earlier committed)."""
        newest = max((r.modified for r in batch), default=None)
        if newest is None:
            return current
        return newest if current is None or newest > current else current


@dataclass(frozen=True)
class _Fetched:
    ref: ProcedureRef
    procedure: Procedure | None = None
    raw: bytes | None = None
    error: HubError | MappingError | None = None


# --- fetching in worker processes ------------------------------------------------------------------
# One Python process keeps about one core busy (the GIL), and a LayThuTuc round trip costs the hub
# ~8 ms of CPU (signing, verifying, XSD, audit). ``processes=N`` spreads the fetching over N worker
# processes, each with its own connector (key loaded once per process) and ``concurrency`` threads;
# the parent keeps the only write path to the catalogue tables, so batching and the watermark work
# exactly as with threads. Audit entries are appended by every process to the one chained ledger.
_WORKER: dict = {}


def _worker_init(client_factory: Callable[[], CsdlTthcClient], retry: RetryPolicy, concurrency: int) -> None:
    _WORKER["client"] = client_factory()
    _WORKER["retry"] = retry
    _WORKER["pool"] = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tthc-fetch")


def _worker_fetch(refs: list[ProcedureRef]) -> tuple[list[_Fetched], int]:
    counter = [0]
    fetch = _Fetcher(_WORKER["client"], _WORKER["retry"], lambda *a: counter.__setitem__(0, counter[0] + 1))
    fetched = list(_WORKER["pool"].map(fetch, refs))
    return fetched, counter[0]


@dataclass
class _Fetcher:
    """Fetch and map one listed procedure; a fatal failure becomes a quarantine item, not an exception."""

    client: CsdlTthcClient
    retry: RetryPolicy
    on_retry: Callable[[BaseException, int, float], None]

    def __call__(self, ref: ProcedureRef) -> _Fetched:
        try:
            answer = self.retry.call(lambda attempt: self.client.procedure_answer(ref.code), on_retry=self.on_retry)
        except FatalError as exc:
            return _Fetched(ref, raw=getattr(exc, "response_bytes", None), error=_portable(exc))
        try:
            return _Fetched(ref, procedure=from_national(thutuc_record(answer.result)), raw=answer.response_bytes)
        except MappingError as exc:
            return _Fetched(ref, raw=answer.response_bytes, error=_portable(exc))
        except ValueError as exc:
            return _Fetched(ref, raw=answer.response_bytes, error=MappingError(str(exc)))


def _portable(exc: HubError) -> HubError:
    """The error as a plain HubError with the same code and message (safe to send between processes)."""
    return HubError(str(exc), code=exc.code)


def _now() -> datetime:
    return datetime.now(UTC)


class CatalogueSync:
    """One sync run against one store. Use :func:`sync_catalogue` unless you need the pieces."""

    def __init__(self, engine: Engine, client: CsdlTthcClient, *, concurrency: int = 4, batch_size: int = 200,
                 page_size: int = 500, retry: RetryPolicy | None = None, cursor: CatalogueCursor | None = None,
                 progress: Callable[[str, int, int], None] | None = None, processes: int = 0,
                 client_factory: Callable[[], CsdlTthcClient] | None = None):
        """``processes`` > 0 fetches in that many worker processes built by ``client_factory``
        (a picklable callable, e.g. ``functools.partial(csdl_client, settings)``)."""
        if processes > 0 and client_factory is None:
            raise ValueError("fetching in worker processes needs a picklable client_factory")
        self.engine = engine
        self.client = client
        self.processes = processes
        self.client_factory = client_factory
        self.concurrency = max(1, concurrency)
        self.batch_size = max(1, batch_size)
        self.retry = retry or RetryPolicy(initial_delay=0.2, max_delay=5.0, max_attempts=6)
        self.cursor = cursor or CatalogueCursor()
        self.stream = ProcedureStream(client, page_size=page_size, retry=self.retry, on_retry=self._count_retry)
        self.progress = progress or (lambda stage, done, total: None)
        self._retries = 0

    def _count_retry(self, error: BaseException, attempt: int, wait: float) -> None:
        self._retries += 1

    # --- fetching -----------------------------------------------------------------------------
    def _fetch(self, ref: ProcedureRef) -> _Fetched:
        return _Fetcher(self.client, self.retry, self._count_retry)(ref)

    # --- storing ------------------------------------------------------------------------------
    def _store_batch(self, session: Session, fetched: list[_Fetched], summary: SyncSummary, seen_at: datetime) -> None:
        """One batch in one transaction: quarantine, procedures, versions and links (bulk inserts)."""
        codes = [f.ref.code for f in fetched]
        current = {row.code: row for row in session.scalars(select(ProcedureRow).where(ProcedureRow.code.in_(codes)))}
        versions: list[dict] = []
        links: list[dict] = []
        relinked: list[str] = []
        for item in fetched:
            if item.error is not None:
                summary.quarantined += 1
                session.add(QuarantinedRecord(
                    source=SOURCE, record_key=item.ref.code,
                    reason_code=getattr(item.error, "code", "MAPPING_ERROR"), reason=str(item.error),
                    raw=item.raw, received_at=seen_at, sync_run=summary.run_id))
                continue
            version = self._store_procedure(session, current.get(item.ref.code), item.procedure, summary, seen_at)
            if version is not None:
                versions.append(version)
                relinked.append(item.procedure.code)
                links += [{"code": item.procedure.code, "kind": k, "target": t} for k, t in sorted(
                    {("field", f.code) for f in item.procedure.fields}
                    | {("agency", a.code) for a in item.procedure.agencies})]
        session.flush()  # procedures first: versions and links refer to them
        if versions:
            session.execute(insert(ProcedureVersion), versions)
        if relinked:
            session.execute(delete(ProcedureLink).where(ProcedureLink.code.in_(relinked)))
        if links:
            session.execute(insert(ProcedureLink), links)

    def _store_procedure(self, session: Session, row: ProcedureRow | None, proc: Procedure,
                         summary: SyncSummary, seen_at: datetime) -> dict | None:
        """Update the current row; return the new version's values, or None when nothing changed."""
        doc = proc.to_document()
        digest = content_hash(doc)
        if row is not None and row.content_hash == digest and row.removed_at is None:
            summary.unchanged += 1
            row.last_seen_at = seen_at
            return None
        if row is None:
            kind, changes = "new", []
            summary.new += 1
            row = ProcedureRow(code=proc.code, first_seen_at=seen_at, version=0)
            session.add(row)
        else:
            changes = format_diff(diff_documents(json.loads(row.document), doc))
            if row.removed_at is not None:
                kind = "restored"
            elif row.published and not proc.published:
                kind = "unpublished"
                summary.unpublished += 1
            elif not row.published and proc.published:
                kind = "republished"
                summary.republished += 1
            else:
                kind = "changed"
            if kind in ("changed", "restored"):
                summary.changed += 1
        row.name = proc.name
        row.publishing_agency = proc.publishing_agency
        row.published = proc.published
        row.levels = ",".join(proc.levels)
        row.online_level = proc.online_level
        row.content_hash = digest
        row.version += 1
        row.document = canonical_json(doc)
        row.national_updated_at = proc.updated_at
        row.last_seen_at = seen_at
        row.removed_at = None
        return {"code": proc.code, "version": row.version, "change_kind": kind, "content_hash": digest,
                "document": row.document, "changes": canonical_json(changes), "national_updated_at": proc.updated_at,
                "seen_at": seen_at, "sync_run": summary.run_id}

    def _state(self, session: Session) -> SyncState:
        state = session.get(SyncState, STATE_NAME)
        if state is None:
            state = SyncState(name=STATE_NAME)
            session.add(state)
        return state

    def _sync_lists(self, summary: SyncSummary, seen_at: datetime) -> None:
        agencies = self.retry.call(lambda attempt: self.client.agencies(), on_retry=self._count_retry)
        fields = self.retry.call(lambda attempt: self.client.fields(), on_retry=self._count_retry)
        with Session(self.engine) as session, session.begin():
            for a in agencies:
                session.merge(CatalogueAgency(code=a["MADONVI"], name=a["TENDONVI"], level=a.get("CAPDONVI"),
                                              last_seen_at=seen_at))
            for f in fields:
                session.merge(CatalogueField(code=f["MALINHVUC"], name=f["TENLINHVUC"], sector=f.get("MANGANH"),
                                             last_seen_at=seen_at))
        summary.agencies, summary.fields = len(agencies), len(fields)

    def _mark_removed(self, listed: set[str], summary: SyncSummary, seen_at: datetime) -> None:
        with Session(self.engine) as session, session.begin():
            gone = session.scalars(select(ProcedureRow).where(ProcedureRow.removed_at.is_(None))).all()
            for row in gone:
                if row.code in listed:
                    continue
                row.removed_at = seen_at
                row.version += 1
                summary.removed += 1
                session.add(ProcedureVersion(
                    code=row.code, version=row.version, change_kind="removed", content_hash=row.content_hash,
                    document=row.document, changes=canonical_json(["- no longer listed by the national catalogue"]),
                    national_updated_at=row.national_updated_at, seen_at=seen_at, sync_run=summary.run_id))

    @contextmanager
    def _fetcher_pool(self):
        """Yields ``fetch_batches(refs)``: an iterator of (batch refs, fetched) in batch order."""
        if self.processes <= 0:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="tthc-fetch") as pool:
                def batches(refs):
                    for start in range(0, len(refs), self.batch_size):
                        chunk = refs[start:start + self.batch_size]
                        yield chunk, list(pool.map(self._fetch, chunk))
                yield batches
            return
        ctx = multiprocessing.get_context("spawn")  # no forked SQLite/HTTP state in the workers
        with ProcessPoolExecutor(max_workers=self.processes, mp_context=ctx, initializer=_worker_init,
                                 initargs=(self.client_factory, self.retry, self.concurrency)) as pool:
            def batches(refs):
                # Each batch is cut in one slice per process; results come back in order.
                for start in range(0, len(refs), self.batch_size):
                    chunk = refs[start:start + self.batch_size]
                    step = -(-len(chunk) // self.processes)
                    parts = [chunk[i:i + step] for i in range(0, len(chunk), step)]
                    fetched: list[_Fetched] = []
                    for part_fetched, retries in pool.map(_worker_fetch, parts):
                        fetched += part_fetched
                        self._retries += retries
                    yield chunk, fetched
            yield batches

    # --- the run ------------------------------------------------------------------------------
    def run(self, *, full: bool = False, since: datetime | None = None) -> SyncSummary:
        started = time.perf_counter()
        seen_at = _now()
        summary = SyncSummary(run_id=uuid.uuid4().hex, mode="full" if full else "incremental",
                              started_at=seen_at.isoformat())
        endpoint = self.client.endpoint
        with Session(self.engine) as session:
            stored = session.get(SyncState, STATE_NAME)
            stored_watermark = stored.watermark if stored is not None else None
            stored_endpoint = stored.endpoint if stored is not None else None
        if not full and since is None and stored_watermark is not None and stored_endpoint not in (None, endpoint):
            raise CatalogueEndpointChanged(
                f"the catalogue watermark {stored_watermark.isoformat()} was taken from {stored_endpoint}, and the "
                f"catalogue is now read from {endpoint}: an incremental sync from it could skip that endpoint's "
                "procedures changed before it; run a full sync (lienthong sync tthc --full, or the DAG's mode "
                "full), which reads the whole catalogue and keeps the new endpoint with its watermark")
        start = None if full else self.cursor.start(stored_watermark, since)
        summary.since = start.isoformat() if start else None

        self._sync_lists(summary, seen_at)
        self.progress("list", 0, 0)
        refs = self.stream.refs(start)
        summary.listed = len(refs)
        watermark = stored_watermark
        done = 0
        self.progress("fetch", 0, len(refs))
        with self._fetcher_pool() as fetch_batches:
            for batch_refs, fetched in fetch_batches(refs):
                summary.fetched += sum(1 for f in fetched if f.procedure is not None)
                watermark = self.cursor.advance(watermark, batch_refs)
                with Session(self.engine) as session, session.begin():
                    self._store_batch(session, fetched, summary, seen_at)
                    state = self._state(session)
                    state.watermark = watermark  # same transaction as the batch: no loss on a crash
                    state.endpoint = endpoint
                done += len(batch_refs)
                self.progress("fetch", done, len(refs))
        if full:
            self._mark_removed({r.code for r in refs}, summary, seen_at)
        summary.retries = self._retries
        summary.watermark = watermark.isoformat() if watermark else None
        summary.seconds = round(time.perf_counter() - started, 3)
        with Session(self.engine) as session, session.begin():
            state = self._state(session)
            state.endpoint = endpoint
            state.last_run_at = seen_at
            if full:
                state.last_full_at = seen_at
            state.last_summary = canonical_json(summary.as_dict())
        return summary


def sync_catalogue(engine: Engine, client: CsdlTthcClient, *, full: bool = False, since: datetime | None = None,
                   **options) -> SyncSummary:
    """Run one catalogue sync (incremental by default) and return its summary."""
    return CatalogueSync(engine, client, **options).run(full=full, since=since)


# --- reading the catalogue (CLI, docs, later flows) ---------------------------------------------
def _fold(text: str) -> str:
    """Case-insensitive comparison that keeps diacritics: "Thủy sản" matches "thủy SẢN", not "thuy san"."""
    import unicodedata

    return unicodedata.normalize("NFC", text).casefold()


def list_procedures(engine: Engine, *, agency: str | None = None, field_code: str | None = None,
                    level: str | None = None, text: str | None = None, include_removed: bool = False,
                    limit: int | None = None) -> list[ProcedureRow]:
    """Procedures matching every filter given, ordered by code."""
    stmt = select(ProcedureRow).order_by(ProcedureRow.code)
    if not include_removed:
        stmt = stmt.where(ProcedureRow.removed_at.is_(None))
    if agency:
        linked = select(ProcedureLink.code).where(ProcedureLink.kind == "agency", ProcedureLink.target == agency)
        stmt = stmt.where((ProcedureRow.publishing_agency == agency) | ProcedureRow.code.in_(linked))
    if field_code:
        stmt = stmt.where(ProcedureRow.code.in_(
            select(ProcedureLink.code).where(ProcedureLink.kind == "field", ProcedureLink.target == field_code)))
    with Session(engine) as session:
        rows = list(session.scalars(stmt))
    if level:
        rows = [r for r in rows if level.upper() in r.levels.split(",")]
    if text:
        needle = _fold(text)
        rows = [r for r in rows if needle in _fold(r.name) or needle in r.code]
    return rows[:limit] if limit else rows


def procedure_history(engine: Engine, code: str) -> tuple[ProcedureRow | None, list[ProcedureVersion]]:
    with Session(engine) as session:
        row = session.get(ProcedureRow, code)
        versions = list(session.scalars(select(ProcedureVersion).where(ProcedureVersion.code == code)
                                        .order_by(ProcedureVersion.version)))
        return row, versions


def sync_state(engine: Engine) -> SyncState | None:
    with Session(engine) as session:
        return session.get(SyncState, STATE_NAME)


def open_catalogue(settings, store) -> CsdlTthcClient:
    """The catalogue client the sync reads through: the configured transport, audited in ``store``."""
    from ...connectors.transport import transport_for
    from ..audit import ledger

    return CsdlTthcClient(transport_for(settings, "csdl_tthc", audit=ledger(store)))


def csdl_client(settings) -> CsdlTthcClient:
    """A catalogue client for ``settings`` with its own store connection: the worker-process factory."""
    from ..store import open_store

    return open_catalogue(settings, open_store(settings))
