"""Reading the audit ledger: search, one entry with its signature re-verified, a dossier's timeline.

The ledger's columns say who exchanged what and when; *which dossier or procedure* a message was
about lives inside its body (a ``DongBoHoSoMC`` carries many dossiers, a ``CapNhatTienDoHoSoMC``
their steps, ``LayThuTuc`` a procedure code). Parsing bodies while appending would put an XML parse
on every exchange's hot path, so the codes go into a separate, derived **subject index**
(``audit_subject``) filled lazily: every search first indexes the entries appended since the last
one (inflate the stored body, parse it with the hardened parser, collect ``MaHoSo`` and
``MaTTHC``/``MATTHC``), in batches, then queries. The index is outside the hash chain and can be
dropped and rebuilt at any time (:func:`rebuild_index`); a body that does not parse is indexed as
``unparsed`` with the reason and never stops the indexing of the entries after it.

Batches are parsed without holding any lock and committed with a compare-and-set on the index's
cursor row (``audit_subject_state.last_seq``): a second indexer running at the same moment loses
the race, rolls back and moves on to the next batch, so no entry is indexed twice and the writers
of the ledger itself are never kept waiting behind a parse.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lxml import etree
from sqlalchemy import Engine, delete, insert, or_, select, union, update
from sqlalchemy.exc import IntegrityError

from ..errors import XmlRejected
from ..store.models import AuditEntry, AuditSubject, AuditSubjectState
from ..xmlsafe import parse_xml
from .masking import json_items as _json_items
from .trail import ENTRY_COLUMNS, _body_problem, _inflate

__all__ = [
    "EntryView",
    "EntryDetail",
    "IndexReport",
    "SearchQuery",
    "SignatureCheck",
    "TimelineItem",
    "dossier_timeline",
    "extract_subjects",
    "load_entry",
    "rebuild_index",
    "search",
    "update_index",
    "verify_entry_signature",
]

_LOG = AuditEntry.__table__
_SUBJECT = AuditSubject.__table__
_STATE = AuditSubjectState.__table__

#: element (or JSON key) local names → subject kind
SUBJECT_FIELDS = {"MaHoSo": "dossier", "MaTTHC": "procedure", "MATTHC": "procedure",
                  # the portal JSON adapter's own spellings of the same codes
                  "mahoso": "dossier", "maTTHC": "procedure"}
KINDS = ("dossier", "procedure", "unparsed")
_SUBJECT_TAGS = tuple("{*}" + name for name in SUBJECT_FIELDS) + tuple(SUBJECT_FIELDS)
_VALUE_LIMIT = 128
#: entries parsed per index batch: big enough to amortise the commit, small enough to commit often
INDEX_BATCH = 1000


# --- the subject index ------------------------------------------------------------------------
def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = unicodedata.normalize("NFC", value.strip())
    if not value:
        return None
    return value if len(value) <= _VALUE_LIMIT else value[: _VALUE_LIMIT - 1] + "…"


def extract_subjects(raw: bytes, operation: str = "") -> tuple[set[tuple[str, str]], str | None]:
    """``({(kind, value)}, problem)``: the dossier and procedure codes a stored body mentions.

    XML bodies (SOAP messages, signed envelopes) are parsed with the hardened parser; JSON bodies
    are the hub's own records (a dead letter discarded, an unmask), where a discarded event's
    ``partition_key`` is its dossier. An empty body (a timeout) mentions nothing and is no
    problem; anything that does not parse gives ``problem``, one line saying why.
    """
    found: set[tuple[str, str]] = set()
    head = raw.lstrip()[:1]
    if not head:
        return found, None
    if head in (b"{", b"["):
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return found, f"JSON body does not parse: {exc}"
        for key, value in _json_items(data):
            kind = SUBJECT_FIELDS.get(key)
            if kind is None and key == "partition_key" and operation == "outbox.discard":
                kind = "dossier"
            if kind and isinstance(value, str) and (clean := _clean(value)):
                found.add((kind, clean))
        return found, None
    try:
        root = parse_xml(raw, what="audit entry body")
    except XmlRejected as exc:
        return found, f"[{exc.code}] {exc}"
    for el in root.iter(*_SUBJECT_TAGS):
        clean = _clean(el.text)
        if clean:
            found.add((SUBJECT_FIELDS[etree.QName(el).localname], clean))
    return found, None




@dataclass(frozen=True)
class IndexReport:
    """What one :func:`update_index` call did."""

    indexed: int
    subjects: int
    unparsed: int
    last_seq: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"indexed": self.indexed, "subjects": self.subjects, "unparsed": self.unparsed,
                "last_seq": self.last_seq, "seconds": round(self.seconds, 3)}


def index_position(engine: Engine) -> tuple[int, int]:
    """``(last_seq, unparsed)`` of the subject index: ``(0, 0)`` before the first indexing."""
    with engine.connect() as conn:
        row = conn.execute(select(_STATE.c.last_seq, _STATE.c.unparsed).where(_STATE.c.id == 1)).one_or_none()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def update_index(engine: Engine, *, batch_size: int = INDEX_BATCH,
                 progress: Callable[[int, int], None] | None = None) -> IndexReport:
    """Index every entry appended since the last indexing; return what was done.

    ``progress(last_seq_indexed, head_seq)`` is called after each committed batch.
    """
    started = time.perf_counter()
    indexed = subjects = unparsed = 0
    last = 0
    while True:
        with engine.connect() as conn:
            state = conn.execute(select(_STATE.c.last_seq).where(_STATE.c.id == 1)).one_or_none()
            last = int(state[0]) if state else 0
            rows = conn.execute(
                select(_LOG.c.seq, _LOG.c.operation, _LOG.c.body, _LOG.c.body_size)
                .where(_LOG.c.seq > last).order_by(_LOG.c.seq).limit(batch_size)
            ).all()
        if not rows:
            break
        batch: list[dict[str, Any]] = []
        bad = 0
        for seq, operation, stored, size in rows:
            raw = _inflate(bytes(stored), int(size))
            if raw is None:
                found, problem = set(), "the stored body is not valid compressed data"
            else:
                found, problem = extract_subjects(raw, operation)
            if problem is not None:
                bad += 1
                found = {("unparsed", _clean(problem) or "unparsed")}
            batch.extend({"kind": kind, "value": value, "seq": seq} for kind, value in found)
        new_last = int(rows[-1][0])
        now = datetime.now(UTC)
        try:
            with engine.begin() as conn:
                if state is None:
                    conn.execute(insert(_STATE).values(id=1, last_seq=new_last, unparsed=bad, updated_at=now))
                else:
                    moved = conn.execute(
                        update(_STATE).where(_STATE.c.id == 1, _STATE.c.last_seq == last)
                        .values(last_seq=new_last, unparsed=_STATE.c.unparsed + bad, updated_at=now)
                    ).rowcount
                    if moved != 1:
                        raise _LostRace
                if batch:
                    conn.execute(insert(_SUBJECT), batch)
        except (_LostRace, IntegrityError):
            continue  # another indexer committed this batch first: carry on after it
        indexed += len(rows)
        subjects += len(batch)
        unparsed += bad
        last = new_last
        if progress is not None:
            progress(last, _head_seq(engine))
    return IndexReport(indexed, subjects, unparsed, last, time.perf_counter() - started)


class _LostRace(Exception):
    """The index cursor moved under us: roll the batch back."""


def _head_seq(engine: Engine) -> int:
    from ..store.models import AuditHead

    with engine.connect() as conn:
        return int(conn.execute(select(AuditHead.last_seq).where(AuditHead.id == 1)).scalar_one_or_none() or 0)


def rebuild_index(engine: Engine, *, batch_size: int = INDEX_BATCH,
                  progress: Callable[[int, int], None] | None = None) -> IndexReport:
    """Drop the subject index and build it again from the whole ledger."""
    with engine.begin() as conn:
        conn.execute(delete(_STATE))
        conn.execute(delete(_SUBJECT))
    return update_index(engine, batch_size=batch_size, progress=progress)


# --- entries ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EntryView:
    """An entry's recorded metadata (everything but the body): a row of ``ENTRY_COLUMNS`` of
    :mod:`.audit`, field for field."""

    seq: int
    recorded_at: datetime
    direction: str
    partner: str
    operation: str
    document_id: str | None
    correlation_id: str | None
    from_agency: str | None
    to_agency: str | None
    outcome: str
    latency_ms: float | None
    attempt: int
    body_sha256: str
    body_size: int
    error: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> EntryView:
        return cls(*row)

    def as_dict(self, mask: Callable[[str | None], str | None] = lambda s: s) -> dict[str, Any]:
        return {
            "seq": self.seq, "recorded_at": self.recorded_at.isoformat(), "direction": self.direction,
            "partner": self.partner, "operation": self.operation, "document_id": self.document_id,
            "correlation_id": self.correlation_id, "from_agency": self.from_agency, "to_agency": self.to_agency,
            "outcome": self.outcome, "latency_ms": self.latency_ms, "attempt": self.attempt,
            "body_sha256": self.body_sha256, "body_size": self.body_size, "error": mask(self.error),
        }


@dataclass(frozen=True)
class SearchQuery:
    """Filters of ``lienthong audit search``; they combine (AND). Times are aware datetimes,
    ``until`` exclusive. ``document`` matches ``document_id`` or ``correlation_id``, so a request
    and its replies show together."""

    dossier: str | None = None
    procedure: str | None = None
    partner: str | None = None
    operation: str | None = None
    outcome: str | None = None
    direction: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    document: str | None = None
    unparsed: bool = False
    limit: int | None = 50
    oldest_first: bool = False


def _subject_seqs(kind: str, value: str):
    return select(_SUBJECT.c.seq).where(_SUBJECT.c.kind == kind, _SUBJECT.c.value == value)


def _with_replies(kind: str, value: str):
    """Entries the index lists for (kind, value), and the replies to the requests among them (a
    reply that timed out or carries no code of its own still belongs to the dossier its request
    was about).

    Written as one ``seq IN (… UNION …)`` of two index lookups rather than ``seq IN … OR
    correlation_id IN …``: PostgreSQL cannot use an index for that OR and scans the whole ledger
    (77 ms at 100,000 entries, against about 1 ms this way).
    """
    request = _LOG.alias("request")
    replies = (
        select(_LOG.c.seq)
        .join(request, request.c.correlation_id == _LOG.c.correlation_id)
        .where(request.c.seq.in_(_subject_seqs(kind, value)), request.c.direction == "out",
               _LOG.c.direction == "in")
    )
    return _LOG.c.seq.in_(union(_subject_seqs(kind, value), replies).subquery().select())


def search(engine: Engine, query: SearchQuery, *, refresh_index: bool = True) -> list[EntryView]:
    """Entries matching ``query``, newest first (or oldest first), at most ``query.limit``.

    Filters on dossier or procedure first bring the subject index up to date (unless
    ``refresh_index`` is false), so entries appended a moment ago are found.
    """
    if refresh_index and (query.dossier or query.procedure or query.unparsed):
        update_index(engine)
    conditions = []
    if query.dossier:
        conditions.append(_with_replies("dossier", _clean(query.dossier) or ""))
    if query.procedure:
        conditions.append(_with_replies("procedure", _clean(query.procedure) or ""))
    if query.unparsed:
        conditions.append(_LOG.c.seq.in_(select(_SUBJECT.c.seq).where(_SUBJECT.c.kind == "unparsed")))
    for column, value in ((_LOG.c.partner, query.partner), (_LOG.c.operation, query.operation),
                          (_LOG.c.outcome, query.outcome), (_LOG.c.direction, query.direction)):
        if value:
            conditions.append(column == value)
    if query.since is not None:
        conditions.append(_LOG.c.recorded_at >= query.since)
    if query.until is not None:
        conditions.append(_LOG.c.recorded_at < query.until)
    if query.document:
        conditions.append(or_(_LOG.c.document_id == query.document, _LOG.c.correlation_id == query.document))
    stmt = select(*ENTRY_COLUMNS).where(*conditions)
    stmt = stmt.order_by(_LOG.c.seq if query.oldest_first else _LOG.c.seq.desc())
    if query.limit is not None:
        stmt = stmt.limit(query.limit)
    with engine.connect() as conn:
        return [EntryView.from_row(row) for row in conn.execute(stmt)]


@dataclass(frozen=True)
class EntryDetail:
    """One entry as ``audit show`` presents it: metadata, the exact stored bytes, and whether
    they still match the recorded digest (``body_problem`` is ``None`` when they do)."""

    entry: EntryView
    raw: bytes | None
    body_problem: str | None


def load_entry(engine: Engine, seq: int) -> EntryDetail | None:
    with engine.connect() as conn:
        row = conn.execute(select(*ENTRY_COLUMNS, _LOG.c.body).where(_LOG.c.seq == seq)).one_or_none()
    if row is None:
        return None
    entry = EntryView.from_row(row[:-1])
    raw, problem = _body_problem(bytes(row[-1]), entry.body_sha256, entry.body_size)
    return EntryDetail(entry, raw, problem)


# --- signatures -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignatureCheck:
    """The result of re-verifying an entry's XML-DSig signature.

    ``status``: ``valid``; ``invalid`` (``code`` and ``message`` name the failed check);
    ``unsigned`` (the body is not a signed message: a SOAP Fault, a record the hub wrote itself);
    ``absent`` (no body was recorded, e.g. a timeout).
    """

    status: str
    message: str
    signer_subject: str | None = None
    signer_agency: str | None = None
    code: str | None = None
    verified_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status == "valid"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "signer_subject": self.signer_subject,
                "signer_agency": self.signer_agency, "code": self.code,
                "verified_at": self.verified_at.isoformat() if self.verified_at else None}


def _signed_part(raw: bytes) -> tuple[bytes | etree._Element | None, str | None]:
    """The signed envelope inside a stored body, or ``(None, why it holds none)``."""
    from ...connectors.services import SOAP11_NS
    from ...connectors.soapframe import body_bytes

    inner = body_bytes(raw)
    if inner is not None:
        return inner, None  # framed by the hub or the sandbox: verify the exact inner bytes
    head = raw.lstrip()[:1]
    if head != b"<":
        return None, "the body is not XML (a record written by the hub itself, not a signed message)"
    root = parse_xml(raw, what="audit entry body")
    if root.tag == "{%s}Envelope" % SOAP11_NS:
        body = root.find("{%s}Body" % SOAP11_NS)
        if body is None or len(body) != 1:
            return None, "the SOAP message does not hold exactly one element in soap:Body"
        child = body[0]
        if child.tag == "{%s}Fault" % SOAP11_NS:
            code = (child.findtext(".//{urn:lienthong:fault:1}MaLoi") or child.findtext("faultcode") or "").strip()
            text = (child.findtext("faultstring") or "").strip()
            return None, f"the body is a SOAP Fault ({code}: {text}), which is not signed"
        return child, None
    return root, None


def verify_entry_signature(entry: EntryView, raw: bytes | None, trust_store: Any) -> SignatureCheck:
    """Re-run the hub's hardened XML-DSig verification on an entry's stored message.

    Certificates are checked at the time the entry was recorded, not today: the question an
    auditor asks years later is whether the message was validly signed when it was exchanged
    (the certificates may have expired since). The signer's agency must be the entry's sender.
    """
    from ...signing.verifier import Verifier
    from ..errors import HubError

    at = entry.recorded_at
    if not raw:
        why = f" ({entry.outcome}: {entry.error})" if entry.error else f" (outcome {entry.outcome})"
        return SignatureCheck("absent", "no message was recorded" + why)
    try:
        signed, why_not = _signed_part(raw)
        if signed is None:
            return SignatureCheck("unsigned", why_not or "no signed envelope")
        verified = Verifier(trust_store, now=lambda: at).verify(signed)
    except HubError as exc:
        return SignatureCheck("invalid", str(exc), code=exc.code, verified_at=at)
    if entry.from_agency and verified.signer_agency != entry.from_agency:
        return SignatureCheck(
            "invalid",
            f"signed by agency {verified.signer_agency}, but the entry records the message as sent by "
            f"{entry.from_agency}",
            verified.signer_subject, verified.signer_agency, code="WRONG_SENDER", verified_at=at)
    return SignatureCheck("valid", f"valid signature by {verified.signer_subject}",
                          verified.signer_subject, verified.signer_agency, verified_at=at)


# --- a dossier's timeline ---------------------------------------------------------------------------
@dataclass
class TimelineItem:
    """One exchange about a dossier: the request, its reply (if recorded), and what each said
    about this dossier (``records``: the elements of the message whose ``MaHoSo`` is the dossier,
    as ``{child: text}``; a step, the dossier's synced fields, the portal's answer for it)."""

    request: EntryView | None
    reply: EntryView | None
    request_records: list[dict[str, str]] = field(default_factory=list)
    reply_records: list[dict[str, str]] = field(default_factory=list)

    @property
    def first(self) -> EntryView:
        assert self.request is not None or self.reply is not None
        return self.request or self.reply  # type: ignore[return-value]

    @property
    def outcome(self) -> str:
        return (self.reply or self.request or self.first).outcome

    @property
    def status(self) -> str | None:
        """The ``TrangThaiHoSo`` carried (a synced dossier, a lookup's answer), else the ``TrangThai``
        of the last step pushed: the dossier's status as this exchange left it."""
        records = [*self.request_records, *self.reply_records]
        for record in records:
            if record.get("TrangThaiHoSo"):
                return record["TrangThaiHoSo"]
        steps = [r["TrangThai"] for r in records if r.get("TrangThai")]
        return steps[-1] if steps else None

    @property
    def steps(self) -> list[dict[str, str]]:
        return [r for r in self.request_records if "NoiDungXuLy" in r or "ThoiDiemXuLy" in r]

    @property
    def answer(self) -> str | None:
        """The partner's answer about this dossier: ``MaLoi``/``MoTa`` or a lookup's ``TonTai``."""
        for record in self.reply_records:
            if "MaLoi" in record:
                return f"{record['MaLoi']} {record.get('MoTa', '')}".strip()
            if "TonTai" in record:
                return "found" if record["TonTai"] in ("true", "1") else "not found"
        return None


def _records_about(raw: bytes | None, code: str) -> list[dict[str, str]]:
    """The elements of a message whose ``MaHoSo`` child is ``code``, flattened to leaf texts."""
    if not raw or raw.lstrip()[:1] != b"<":
        if raw and raw.lstrip()[:1] == b"{":
            try:
                data = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return []
            return [{k: str(v) for k, v in data.items() if not isinstance(v, (dict, list))}] \
                if isinstance(data, dict) else []
        return []
    try:
        root = parse_xml(raw, what="audit entry body")
    except XmlRejected:
        return []
    records = []
    for el in root.iter("{*}MaHoSo", "MaHoSo"):
        if _clean(el.text) != code:
            continue
        parent = el.getparent()
        if parent is None:
            continue
        record = {}
        for child in parent:
            if isinstance(child.tag, str) and len(child) == 0 and child.text is not None:
                record.setdefault(etree.QName(child).localname, unicodedata.normalize("NFC", child.text.strip()))
        records.append(record)
    return records


def dossier_timeline(engine: Engine, code: str, *, refresh_index: bool = True) -> tuple[list[TimelineItem], int]:
    """Every exchange about dossier ``code`` in ledger order, requests paired with their replies.

    Returns ``(items, unparsed)``: ``unparsed`` counts entries of the ledger whose body could not
    be read, which may hide messages about this dossier. A reply is paired with the request it
    answers: same partner, operation, correlation id and attempt, recorded after it.
    """
    if refresh_index:
        update_index(engine)
    code = _clean(code) or ""
    entries = search(engine, SearchQuery(dossier=code, limit=None, oldest_first=True), refresh_index=False)
    if not entries:
        return [], index_position(engine)[1]
    with engine.connect() as conn:
        bodies = {}
        seqs = [e.seq for e in entries]
        for start in range(0, len(seqs), 500):
            for seq, stored, size in conn.execute(
                    select(_LOG.c.seq, _LOG.c.body, _LOG.c.body_size).where(_LOG.c.seq.in_(seqs[start:start + 500]))):
                bodies[seq] = _inflate(bytes(stored), int(size))
    items: list[TimelineItem] = []
    open_requests: dict[tuple[str, str, str | None, int], TimelineItem] = {}
    for entry in entries:
        records = _records_about(bodies.get(entry.seq), code)
        key = (entry.partner, entry.operation, entry.correlation_id, entry.attempt)
        if entry.direction == "out":
            item = TimelineItem(request=entry, reply=None, request_records=records)
            open_requests[key] = item
            items.append(item)
            continue
        item = open_requests.pop(key, None)
        if item is not None:
            item.reply, item.reply_records = entry, records
        else:
            items.append(TimelineItem(request=None, reply=entry, reply_records=records))
    return items, index_position(engine)[1]
