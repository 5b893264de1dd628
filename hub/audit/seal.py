"""Seals and tombstones: signed anchors that make the audit chain's history checkable.

The hash chain (``lienthong.hub.audit.trail``) shows that the ledger is internally consistent, but
someone with write access to the database can rewrite an entry and recompute every hash after
it. A **seal** closes that gap: a small XML checkpoint ::

    <AuditSeal xmlns="urn:lienthong:audit:1">
      <Number>7</Number> <HeadSeq>1200</HeadSeq> <HeadHash>…</HeadHash>
      <SealedAt>2026-11-23T09:00:00.000000+00:00</SealedAt> <PrevSealHash>…</PrevSealHash>
      <ds:Signature>…</ds:Signature>
    </AuditSeal>

signed (enveloped XML-DSig) with the hub key, the same profile and the same pinned algorithms as
every message the hub sends. Without the key nobody can make a seal, so a rewritten entry at or
before ``HeadSeq`` no longer matches the hash the seal signed. Seals are chained to each other
(``PrevSealHash`` = SHA-256 of the previous seal's exact bytes) and numbered, so a seal removed
from the middle shows too. When a TSA is configured (``LIENTHONG_TSA_URL``), the seal's signature
value is also time-stamped (RFC 3161, :mod:`lienthong.hub.audit.tsa`): an independent witness that the
seal, and so the ledger up to ``HeadSeq``, existed at that time.

A **tombstone** is written by ``lienthong audit prune`` in the same transaction that deletes
entries already exported: signed like a seal, it names the pruned range, the entry hash of the
last pruned entry (which the first remaining entry links to) and the export archives that hold
what was removed. :func:`verify_ledger` starts the chain walk from the newest tombstone.

Certificates are checked at the time the document claims (``SealedAt``, ``PrunedAt``), so a seal
stays verifiable after the hub's certificate has expired or been renewed; a time-stamp token is
what makes that claimed time independent of the hub.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lxml import etree
from sqlalchemy import Connection, Engine, delete, func, insert, select, text

from ..errors import AuditChainBroken, ConfigurationError, HubError, SignatureError
from ..store import SQLITE_BEGIN_OPTION
from ..store.models import GENESIS_HASH, AuditEntry, AuditExport, AuditSeal, AuditSubject, AuditTombstone
from .trail import AuditTrail, ChainReport

if TYPE_CHECKING:
    from ...signing.verifier import VerifiedDocument

__all__ = [
    "AUDIT_NS",
    "LedgerReport",
    "PrunePlan",
    "SealDocument",
    "SealInvalid",
    "TombstoneDocument",
    "create_seal",
    "plan_prune",
    "prune",
    "read_seal_document",
    "verify_ledger",
    "verify_seal_document",
]

AUDIT_NS = "urn:lienthong:audit:1"
_DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
_LOG = AuditEntry.__table__
_SEALS = AuditSeal.__table__
_TOMBS = AuditTombstone.__table__
_SUBJECTS = AuditSubject.__table__
_EXPORTS = AuditExport.__table__
#: PostgreSQL advisory lock key serialising seal/prune writers ("LTAUSEAL" in ASCII).
_PG_SEAL_LOCK_KEY = 0x4C544155534541


class SealInvalid(AuditChainBroken):
    """A seal or tombstone does not verify (signature, signer, chaining or contents)."""

    code = "AUDIT_SEAL_INVALID"


def _q(name: str) -> str:
    return f"{{{AUDIT_NS}}}{name}"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


# --- documents ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SealDocument:
    """The signed contents of one seal, as read from its verified XML."""

    number: int
    head_seq: int
    head_hash: str
    sealed_at: datetime
    prev_seal_hash: str
    seal_hash: str
    signature_value: bytes
    signer_subject: str = ""


@dataclass(frozen=True)
class TombstoneDocument:
    """The signed contents of one tombstone."""

    number: int
    first_seq: int
    last_seq: int
    last_hash: str
    pruned_at: datetime
    prev_tombstone_hash: str
    archives: tuple[str, ...]
    tombstone_hash: str


def _element(parent: etree._Element, name: str, value: object) -> etree._Element:
    el = etree.SubElement(parent, _q(name))
    el.text = str(value)
    return el


def seal_xml(number: int, head_seq: int, head_hash: str, sealed_at: datetime, prev_seal_hash: str) -> etree._Element:
    """The unsigned checkpoint document of a seal."""
    root = etree.Element(_q("AuditSeal"), nsmap={None: AUDIT_NS})
    _element(root, "Number", number)
    _element(root, "HeadSeq", head_seq)
    _element(root, "HeadHash", head_hash)
    _element(root, "SealedAt", _iso(sealed_at))
    _element(root, "PrevSealHash", prev_seal_hash)
    return root


def tombstone_xml(number: int, first_seq: int, last_seq: int, last_hash: str, pruned_at: datetime,
                  prev_tombstone_hash: str, archives: Sequence[tuple[str, int, int]]) -> etree._Element:
    """The unsigned tombstone document; ``archives`` are (sha256, first_seq, last_seq)."""
    root = etree.Element(_q("AuditTombstone"), nsmap={None: AUDIT_NS})
    _element(root, "Number", number)
    _element(root, "FirstSeq", first_seq)
    _element(root, "LastSeq", last_seq)
    _element(root, "LastHash", last_hash)
    _element(root, "PrunedAt", _iso(pruned_at))
    _element(root, "PrevTombstoneHash", prev_tombstone_hash)
    holder = etree.SubElement(root, _q("Archives"))
    for sha, first, last in archives:
        etree.SubElement(holder, _q("Archive"), sha256=sha, firstSeq=str(first), lastSeq=str(last))
    return root


def _parse(data: bytes, what: str) -> etree._Element:
    from ..xmlsafe import parse_xml

    try:
        return parse_xml(data, what=what)
    except HubError as exc:
        raise SealInvalid(f"{what} is not well-formed XML: {exc}") from None


def _claimed_time(root: etree._Element, tag: str, what: str) -> datetime:
    """The time a signed document claims, read before verification (to check certificates at it)."""
    value = root.findtext(_q(tag))
    try:
        moment = datetime.fromisoformat((value or "").strip())
    except ValueError:
        raise SealInvalid(f"{what} has no valid <{tag}> time: {value!r}") from None
    if moment.tzinfo is None:
        raise SealInvalid(f"{what} <{tag}> has no time zone: {value!r}")
    return moment


def check_signer(verified: VerifiedDocument, hub_agency: str | None, what: str) -> None:
    """The signer must be the hub (its certificate's agency code is ``hub_agency``), not merely
    someone the CA certified; ``None`` skips the check."""
    if hub_agency is not None and verified.signer_agency != hub_agency:
        raise SealInvalid(
            f"{what} is signed by agency {verified.signer_agency} ({verified.signer_subject}), not by the hub "
            f"({hub_agency})"
        )


def verify_signed(data: bytes, trust_store, hub_agency: str | None, *, tag: str, time_tag: str,
                  what: str) -> tuple[etree._Element, VerifiedDocument, bytes]:
    """Verify a hub-signed audit document; return (signed root, the verification, signature value).

    The certificate path is checked at the time the document claims; the signer must be the hub
    (see :func:`check_signer`). The bytes are parsed once, for the claimed time, the verification
    and the signature value alike.
    """
    from ...signing.verifier import Verifier

    if trust_store is None:
        raise SealInvalid(f"{what} cannot be checked: no trusted CA certificate is configured "
                          "(LIENTHONG_TRUST, or pki/ca.crt under LIENTHONG_HOME)")
    document = _parse(data, what)
    at = _claimed_time(document, time_tag, what)
    try:
        verified = Verifier(trust_store, now=lambda: at).verify(document)
    except SignatureError as exc:
        raise SealInvalid(f"{what} signature does not verify [{exc.code}]: {exc}") from None
    check_signer(verified, hub_agency, what)
    root = verified.root
    if root.tag != _q(tag):
        raise SealInvalid(f"{what} is a <{etree.QName(root).localname}>, not an <{tag}>")
    sig_value = document.findtext(f"{{{_DSIG_NS}}}Signature/{{{_DSIG_NS}}}SignatureValue") or ""
    return root, verified, base64.b64decode("".join(sig_value.split()))


def _int(root: etree._Element, name: str, what: str) -> int:
    value = (root.findtext(_q(name)) or "").strip()
    if not value.isdigit():
        raise SealInvalid(f"{what} <{name}> is not a number: {value!r}")
    return int(value)


def _hash(root: etree._Element, name: str, what: str) -> str:
    value = (root.findtext(_q(name)) or "").strip()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise SealInvalid(f"{what} <{name}> is not a SHA-256 hex digest: {value!r}")
    return value


def verify_seal_document(data: bytes, trust_store, hub_agency: str | None, *, what: str = "seal") -> SealDocument:
    """Verify one seal's signature and signer, and read its contents."""
    root, verified, sig = verify_signed(data, trust_store, hub_agency, tag="AuditSeal", time_tag="SealedAt", what=what)
    return SealDocument(
        number=_int(root, "Number", what), head_seq=_int(root, "HeadSeq", what), head_hash=_hash(root, "HeadHash", what),
        sealed_at=datetime.fromisoformat(root.findtext(_q("SealedAt")).strip()),
        prev_seal_hash=_hash(root, "PrevSealHash", what), seal_hash=sha256_hex(data), signature_value=sig,
        signer_subject=verified.signer_subject,
    )


def verify_tombstone_document(data: bytes, trust_store, hub_agency: str | None, *,
                              what: str = "tombstone") -> TombstoneDocument:
    root, _, _ = verify_signed(data, trust_store, hub_agency, tag="AuditTombstone", time_tag="PrunedAt", what=what)
    archives = tuple(a.get("sha256", "") for a in root.iter(_q("Archive")))
    return TombstoneDocument(
        number=_int(root, "Number", what), first_seq=_int(root, "FirstSeq", what), last_seq=_int(root, "LastSeq", what),
        last_hash=_hash(root, "LastHash", what), pruned_at=datetime.fromisoformat(root.findtext(_q("PrunedAt")).strip()),
        prev_tombstone_hash=_hash(root, "PrevTombstoneHash", what), archives=archives, tombstone_hash=sha256_hex(data),
    )


# --- writing seals ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SealResult:
    """What :func:`create_seal` did: the new seal, or why none was needed."""

    created: bool
    number: int
    head_seq: int
    head_hash: str
    sealed_at: datetime
    timestamped: bool = False
    reason: str = ""


def _writer(engine: Engine) -> Connection:
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    return conn


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SEAL_LOCK_KEY})


def _last_seal(conn: Connection) -> tuple[int, str, int] | None:
    row = conn.execute(select(_SEALS.c.id, _SEALS.c.seal_hash, _SEALS.c.head_seq)
                       .order_by(_SEALS.c.id.desc()).limit(1)).one_or_none()
    return (int(row[0]), str(row[1]), int(row[2])) if row else None


def create_seal(engine: Engine, signer, *, force: bool = False, timestamper: Callable[[bytes], tuple[bytes, datetime]]
                | None = None, now: Callable[[], datetime] = _now) -> SealResult:
    """Seal the ledger's current head with ``signer`` (the hub's :class:`~lienthong.signing.Signer`).

    Nothing is written when the head has not moved since the last seal (unless ``force``): an
    hourly job on a quiet ledger need not pile up identical checkpoints. ``timestamper`` (see
    :func:`lienthong.hub.audit.tsa.timestamper_for`) turns the seal's signature value into an RFC 3161
    token; it runs before the write transaction, so a slow TSA never holds the ledger's lock.
    If another seal was written meanwhile the attempt is refused and can simply be re-run.
    """
    trail = AuditTrail(engine)
    head_seq, head_hash = trail.head()
    with engine.connect() as conn:
        last = _last_seal(conn)
    if last is not None and last[2] == head_seq and not force:
        return SealResult(False, last[0], head_seq, head_hash, now(),
                          reason=f"nothing new since seal {last[0]} (entry {head_seq})")
    number = (last[0] + 1) if last else 1
    prev_hash = last[1] if last else GENESIS_HASH
    _check_before_sealing(engine, trail, head_seq)
    sealed_at = now()
    document = signer.sign(seal_xml(number, head_seq, head_hash, sealed_at, prev_hash))
    token = tsa_time = None
    if timestamper is not None:
        from ..xmlsafe import parse_xml

        sig_text = parse_xml(document, what="seal").findtext(f"{{{_DSIG_NS}}}Signature/{{{_DSIG_NS}}}SignatureValue")
        token, tsa_time = timestamper(base64.b64decode("".join((sig_text or "").split())))
    with _writer(engine) as conn, conn.begin():
        _lock(conn)
        if _last_seal(conn) != last:
            raise AuditChainBroken("another seal was written while this one was being signed; run the seal again")
        conn.execute(insert(_SEALS).values(
            id=number, sealed_at=sealed_at, head_seq=head_seq, head_hash=head_hash, prev_seal_hash=prev_hash,
            document=document, seal_hash=sha256_hex(document), tsa_token=token, tsa_time=tsa_time))
    return SealResult(True, number, head_seq, head_hash, sealed_at, timestamped=token is not None)


def _check_before_sealing(engine: Engine, trail: AuditTrail, head_seq: int) -> None:
    """Refuse to vouch for a ledger that does not verify since the last thing that vouched for it.

    A seal signs "the chain ends at entry N with hash H"; signing that over entries edited since
    the previous seal would turn the tampering into signed history. So the entries after the newest
    seal (or tombstone, whichever is later) are re-walked first, anchored on the hash that seal or
    tombstone recorded, which is an hour of entries for the hourly DAG; the first seal walks the
    whole ledger once.
    """
    with engine.connect() as conn:
        sealed = conn.execute(select(_SEALS.c.head_seq, _SEALS.c.head_hash)
                              .order_by(_SEALS.c.id.desc()).limit(1)).one_or_none()
        pruned = conn.execute(select(_TOMBS.c.last_seq, _TOMBS.c.last_hash)
                              .order_by(_TOMBS.c.id.desc()).limit(1)).one_or_none()
    anchors = [tuple(row) for row in (sealed, pruned) if row is not None]
    start, anchor = 1, None
    if anchors:
        vouched_seq, vouched_hash = max(anchors, key=lambda item: item[0])
        start, anchor = int(vouched_seq) + 1, str(vouched_hash)
    if start > head_seq:
        return
    report = trail.verify(start=start, anchor=anchor)
    if not report.ok:
        since = f"since entry {start - 1}, the last one sealed or pruned" if start > 1 else "from its first entry"
        raise AuditChainBroken(
            f"not sealing: the ledger does not verify {since}: {report.reason}",
            detail=f"first_bad_seq={report.first_bad_seq} (run 'lienthong audit verify')",
        )


# --- verification -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerReport:
    """The result of :func:`verify_ledger`: the chain, the seals, the tombstones, the tail.

    ``problem`` is the first failure in one line (``None`` when everything verified); ``where``
    names it (``entry 12``, ``seal 3``, ``tombstone 1``). ``unsealed`` counts entries after the
    last seal: not an error, but no signature vouches for them yet.
    """

    chain: ChainReport
    head_seq: int
    start: int
    pruned_through: int | None
    seals: int
    timestamps: int
    last_sealed_seq: int | None
    unsealed: int
    tombstones: int
    where: str | None = None
    problem: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: when the first entry after the last seal was recorded (None: everything is sealed)
    oldest_unsealed_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict:
        return {
            "ok": self.ok, "where": self.where, "problem": self.problem, "head_seq": self.head_seq,
            "entries_checked": self.chain.checked,
            # the names `audit verify --json` used before seals existed, kept for scripts reading them
            "checked": self.chain.checked, "reason": self.problem, "first_seq": self.start, "pruned_through": self.pruned_through,
            "first_bad_seq": self.chain.first_bad_seq, "seals_verified": self.seals,
            "timestamps_verified": self.timestamps, "last_sealed_seq": self.last_sealed_seq,
            "unsealed_entries": self.unsealed, "tombstones": self.tombstones, "warnings": list(self.warnings),
            "oldest_unsealed_at": _iso(self.oldest_unsealed_at) if self.oldest_unsealed_at else None,
        }


def _tombstone_anchor(conn: Connection, trust_store, hub_agency: str | None) -> tuple[int, str | None, int]:
    """(first seq still in the log, hash it must link to or None, tombstones verified)."""
    rows = conn.execute(select(_TOMBS.c.id, _TOMBS.c.document, _TOMBS.c.first_seq, _TOMBS.c.last_seq,
                               _TOMBS.c.last_hash).order_by(_TOMBS.c.id)).all()
    prev_hash, expected_first, number = GENESIS_HASH, 1, 0
    anchor: str | None = None
    for row in rows:
        number += 1
        what = f"tombstone {row.id}"
        try:
            anchor, prev_hash, expected_first = _check_tombstone(row, what, number, prev_hash, expected_first,
                                                                 trust_store, hub_agency)
        except SealInvalid as exc:
            exc.where = what
            raise
    return expected_first, anchor, number


def _check_tombstone(row, what: str, number: int, prev_hash: str, expected_first: int, trust_store,
                     hub_agency: str | None) -> tuple[str, str, int]:
    doc = verify_tombstone_document(bytes(row.document), trust_store, hub_agency, what=what)
    if doc.number != row.id or doc.number != number:
        raise SealInvalid(f"{what}: tombstone {number} is missing (the signed document is number {doc.number})")
    if doc.prev_tombstone_hash != prev_hash:
        raise SealInvalid(f"{what} does not chain to tombstone {number - 1}: PrevTombstoneHash differs")
    if doc.first_seq != expected_first:
        raise SealInvalid(f"{what} prunes from entry {doc.first_seq}, but the previous prune ended at "
                          f"entry {expected_first - 1}")
    if (row.first_seq, row.last_seq, row.last_hash) != (doc.first_seq, doc.last_seq, doc.last_hash):
        raise SealInvalid(f"{what} row was edited: its columns differ from the signed document")
    return doc.last_hash, doc.tombstone_hash, doc.last_seq + 1


def verify_ledger(engine: Engine, trust_store, hub_agency: str | None, *, deep: bool = False,
                  check_timestamp: Callable[[bytes, bytes, datetime], datetime] | None = None,
                  all_signatures: bool = False, max_unsealed_age: timedelta | None = None,
                  now: Callable[[], datetime] = _now) -> LedgerReport:
    """Verify the chain (from the newest tombstone), every tombstone and every seal.

    ``hub_agency`` is the agency code seals and tombstones must be signed by (the hub's own).
    ``check_timestamp(token, signature_value, sealed_at)`` verifies a seal's RFC 3161 token (see
    :func:`lienthong.hub.audit.tsa.token_checker`); without it tokens are not checked, and a warning says so.
    ``all_signatures`` verifies every seal's XML-DSig signature instead of the newest one's (the
    seals' SHA-256 chain makes the newest one vouch for the rest; see :func:`_verify_seals`).
    ``max_unsealed_age`` turns an unsealed tail whose oldest entry is older than that into a
    failure: with the hourly seal DAG running, old unsealed entries mean seals were deleted (which
    nothing else in the database can show) or sealing has stopped.
    """
    trail = AuditTrail(engine)
    head_seq, _ = trail.head()
    empty = ChainReport(True, 0)
    base = dict(head_seq=head_seq, pruned_through=None, seals=0, timestamps=0, last_sealed_seq=None,
                unsealed=head_seq, tombstones=0)
    with engine.connect() as conn:
        try:
            start, anchor, tombstones = _tombstone_anchor(conn, trust_store, hub_agency)
        except SealInvalid as exc:
            return LedgerReport(chain=empty, start=1, where=getattr(exc, "where", "tombstone"), problem=str(exc), **base)
    base["pruned_through"] = start - 1 if tombstones else None
    base["tombstones"] = tombstones
    if start > head_seq + 1:
        return LedgerReport(chain=empty, start=start, where=f"tombstone {tombstones}",
                            problem=f"tombstone {tombstones} prunes through entry {start - 1} but the ledger's head is "
                                    f"at {head_seq}", **base)
    chain = trail.verify(start=start, deep=deep, anchor=anchor)
    seal_report = _verify_seals(engine, trust_store, hub_agency, start=start, anchor=anchor, head_seq=head_seq,
                                check_timestamp=check_timestamp, all_signatures=all_signatures)
    seals, timestamps, last_sealed, seal_where, seal_problem, warnings = seal_report
    base.update(seals=seals, timestamps=timestamps, last_sealed_seq=last_sealed,
                unsealed=head_seq - (last_sealed or 0))
    first_unsealed = max(last_sealed or 0, start - 1) + 1
    if first_unsealed <= head_seq:
        with engine.connect() as conn:
            base["oldest_unsealed_at"] = conn.execute(
                select(_LOG.c.recorded_at).where(_LOG.c.seq == first_unsealed)).scalar()
    if not chain.ok:
        where = f"entry {chain.first_bad_seq}" if chain.first_bad_seq is not None else "audit head"
        return LedgerReport(chain=chain, start=start, where=where, problem=chain.reason, warnings=warnings, **base)
    oldest = base.get("oldest_unsealed_at")
    if seal_problem is None and max_unsealed_age is not None and oldest is not None \
            and oldest < now() - max_unsealed_age:
        seal_where = "unsealed tail"
        seal_problem = (f"entries {first_unsealed}..{head_seq} are not sealed and the oldest was recorded "
                        f"{_iso(oldest)}, more than {max_unsealed_age} ago: seals were deleted, or sealing "
                        "(the lienthong_audit_seal DAG) has stopped")
    return LedgerReport(chain=chain, start=start, where=seal_where, problem=seal_problem, warnings=warnings, **base)


def read_seal_document(data: bytes, *, what: str = "seal") -> SealDocument:
    """A seal's contents *without* checking its signature (see :func:`_verify_seals` for why that
    is sound when the newest seal's signature is checked and the seals chain by SHA-256)."""
    root = _parse(data, what)
    if root.tag != _q("AuditSeal"):
        raise SealInvalid(f"{what} is a <{etree.QName(root).localname}>, not an <AuditSeal>")
    sig_text = root.findtext(f"{{{_DSIG_NS}}}Signature/{{{_DSIG_NS}}}SignatureValue") or ""
    return SealDocument(
        number=_int(root, "Number", what), head_seq=_int(root, "HeadSeq", what), head_hash=_hash(root, "HeadHash", what),
        sealed_at=_claimed_time(root, "SealedAt", what), prev_seal_hash=_hash(root, "PrevSealHash", what),
        seal_hash=sha256_hex(data), signature_value=base64.b64decode("".join(sig_text.split())))


def _verify_seals(engine: Engine, trust_store, hub_agency: str | None, *, start: int, anchor: str | None,
                  head_seq: int, check_timestamp, all_signatures: bool = False,
                  ) -> tuple[int, int, int | None, str | None, str | None, tuple[str, ...]]:
    """Walk the seals in order; ``(verified, timestamps, last sealed seq, where, problem, warnings)``.

    Seals chain by SHA-256 of their exact bytes, so once the *newest* seal's signature verifies,
    every earlier seal is authenticated through the chain: changing any byte of one breaks the
    link to it. Checking one XML-DSig signature instead of thousands (a year of hourly seals) keeps
    ``audit verify`` fast; the others are verified only where something is wrong, to say exactly
    what (a seal re-signed with a foreign key, a forged seal), or all of them with
    ``all_signatures``. Time-stamp tokens are checked for every seal (they are what prove each
    seal's time, and cost a fraction of a signature).
    """
    warnings: list[str] = []
    verified = timestamps = untimed = 0
    prev: SealDocument | None = None
    prev_data: bytes | None = None
    last_good_seq: int | None = None

    def authentic(data: bytes, what: str) -> SealDocument:
        return verify_seal_document(data, trust_store, hub_agency, what=what)

    with engine.connect() as conn:
        rows = conn.execute(select(_SEALS.c.id, _SEALS.c.document, _SEALS.c.head_seq, _SEALS.c.head_hash,
                                   _SEALS.c.seal_hash, _SEALS.c.tsa_token).order_by(_SEALS.c.id)).all()
        seqs = sorted({int(r.head_seq) for r in rows if int(r.head_seq) >= start})
        hashes: dict[int, str] = {}
        for i in range(0, len(seqs), 500):
            chunk = seqs[i:i + 500]
            hashes.update((int(q), str(h)) for q, h in conn.execute(
                select(_LOG.c.seq, _LOG.c.entry_hash).where(_LOG.c.seq.in_(chunk))).all())
    what = "seal"
    try:
        for expected, row in enumerate(rows, 1):
            what = f"seal {row.id}"
            if row.id != expected:
                raise SealInvalid(f"seal {expected} removed: the seals jump from {expected - 1} to {row.id}")
            data = bytes(row.document)
            doc = authentic(data, what) if all_signatures else read_seal_document(data, what=what)
            if doc.number != row.id:
                raise SealInvalid(f"{what} was moved: its signed number is {doc.number}")
            if doc.prev_seal_hash != (prev.seal_hash if prev else GENESIS_HASH):
                if prev is not None and prev_data is not None:  # which of the two was replaced?
                    what = f"seal {prev.number}"
                    authentic(prev_data, what)
                    what = f"seal {row.id}"
                authentic(data, what)
                raise SealInvalid(f"{what} does not chain to seal {row.id - 1}: its PrevSealHash is not the SHA-256 of "
                                  "that seal (a seal was replaced or removed)")
            if row.seal_hash != doc.seal_hash:
                authentic(data, what)  # the document replaced (re-signed, forged), or only the column?
                raise SealInvalid(f"{what} row was edited: seal_hash is not the SHA-256 of its document")
            if (int(row.head_seq), row.head_hash) != (doc.head_seq, doc.head_hash):
                authentic(data, what)
                raise SealInvalid(f"{what} row was edited: head_seq/head_hash differ from the signed document")
            if prev is not None and (doc.head_seq < prev.head_seq or doc.sealed_at < prev.sealed_at):
                raise SealInvalid(f"{what} is out of order: it seals entry {doc.head_seq} at {_iso(doc.sealed_at)} "
                                  f"after seal {prev.number} sealed entry {prev.head_seq}")
            if doc.head_seq > head_seq:
                authentic(data, what)
                raise SealInvalid(f"{what} sealed entry {doc.head_seq} but the ledger's head is at {head_seq}: entries "
                                  f"{head_seq + 1}..{doc.head_seq} were removed from the end")
            if doc.head_seq >= start:
                actual = hashes.get(doc.head_seq)
                if actual is None:
                    raise SealInvalid(f"{what} sealed entry {doc.head_seq}, which is missing from the log")
                if actual != doc.head_hash:
                    authentic(data, what)  # a forged seal is named as such, not as a rewrite
                    low = max(prev.head_seq + 1, start) if prev is not None and prev.head_seq >= start else start
                    raise SealInvalid(
                        f"{what} does not match the ledger: entry {doc.head_seq} now hashes to {actual[:16]}…, the seal "
                        f"signed {doc.head_hash[:16]}… on {_iso(doc.sealed_at)}: entries {low}..{doc.head_seq} were "
                        "rewritten after they were sealed")
            elif doc.head_seq == start - 1 and anchor is not None and doc.head_seq > 0 and doc.head_hash != anchor:
                raise SealInvalid(f"{what} sealed entry {doc.head_seq} with a hash other than the tombstone's")
            elif doc.head_seq == 0 and doc.head_hash != GENESIS_HASH:
                raise SealInvalid(f"{what} seals an empty ledger with a hash other than the genesis hash")
            if row.tsa_token is not None:
                if check_timestamp is not None:
                    try:
                        check_timestamp(bytes(row.tsa_token), doc.signature_value, doc.sealed_at)
                    except HubError as exc:
                        raise SealInvalid(f"{what} time-stamp does not verify [{exc.code}]: {exc}") from None
                    timestamps += 1
                else:
                    untimed += 1
            prev, prev_data = doc, data
            verified += 1
            last_good_seq = doc.head_seq
        if prev is not None and prev_data is not None and not all_signatures:
            what = f"seal {prev.number}"
            authentic(prev_data, what)  # the newest seal's signature vouches for all the chain before it
    except SealInvalid as exc:
        # a seal whose own signature failed does not count as verified
        good = verified - 1 if prev is not None and what == f"seal {prev.number}" else verified
        return max(good, 0), timestamps, last_good_seq, what, str(exc), tuple(warnings)
    if untimed:
        warnings.append(f"{untimed} seal time-stamp(s) not checked: no TSA trust configured")
    return verified, timestamps, last_good_seq, None, None, tuple(warnings)


# --- prune --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrunePlan:
    """What ``prune --before`` would remove (``first_seq..last_seq``) and whether it may.

    ``uncovered`` lists seq ranges in the candidate range that no export holds: the prune is
    refused while it is not empty.
    """

    before: datetime
    first_seq: int
    last_seq: int
    last_hash: str | None
    archives: tuple[tuple[str, int, int], ...]
    uncovered: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        return max(self.last_seq - self.first_seq + 1, 0)

    def as_dict(self) -> dict:
        return {"before": _iso(self.before), "first_seq": self.first_seq, "last_seq": self.last_seq,
                "entries": self.count, "last_hash": self.last_hash,
                "archives": [{"sha256": a, "first_seq": f, "last_seq": la} for a, f, la in self.archives],
                "not_exported": [list(r) for r in self.uncovered]}


def _ranges_text(ranges: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in ranges)


def plan_prune(engine: Engine, before: datetime) -> PrunePlan:
    """The entries ``prune`` would remove: from the first still in the log up to (not including)
    the first entry recorded at or after ``before``, and which export archives hold them."""
    if before.tzinfo is None:
        raise ValueError("before must be timezone-aware")
    with engine.connect() as conn:
        first = conn.execute(select(func.min(_LOG.c.seq))).scalar()
        if first is None:
            return PrunePlan(before, 1, 0, None, (), ())
        keep = conn.execute(select(func.min(_LOG.c.seq)).where(_LOG.c.recorded_at >= before)).scalar()
        last = (int(keep) - 1) if keep is not None else int(conn.execute(select(func.max(_LOG.c.seq))).scalar())
        first = int(first)
        if last < first:
            return PrunePlan(before, first, first - 1, None, (), ())
        last_hash = conn.execute(select(_LOG.c.entry_hash).where(_LOG.c.seq == last)).scalar_one()
        exports = conn.execute(select(_EXPORTS.c.archive_sha256, _EXPORTS.c.first_seq, _EXPORTS.c.last_seq,
                                      _EXPORTS.c.last_hash)
                               .where(_EXPORTS.c.last_seq >= first, _EXPORTS.c.first_seq <= last)
                               .order_by(_EXPORTS.c.first_seq, _EXPORTS.c.id)).all()
    uncovered: list[tuple[int, int]] = []
    used: list[tuple[str, int, int]] = []
    cursor = first
    for sha, lo, hi, _ in exports:
        lo, hi = int(lo), int(hi)
        if hi < cursor:
            continue
        if lo > cursor:
            uncovered.append((cursor, min(lo - 1, last)))
        used.append((str(sha), lo, hi))
        cursor = max(cursor, hi + 1)
        if cursor > last:
            break
    if cursor <= last:
        uncovered.append((cursor, last))
    return PrunePlan(before, first, last, str(last_hash), tuple(used), tuple(uncovered))


def prune(engine: Engine, signer, trust_store, before: datetime, *, now: Callable[[], datetime] = _now,
          created_by: str | None = None) -> tuple[PrunePlan, int]:
    """Remove exported entries recorded before ``before``; write the signed tombstone. Returns
    (the plan carried out, the tombstone number).

    Refused (:class:`AuditChainBroken` naming the seqs) when any of those entries is in no export,
    and when the ledger does not verify (pruning would destroy the evidence of the break).
    """
    plan = plan_prune(engine, before)
    if plan.count == 0:
        raise ConfigurationError(f"nothing to prune: no entry still in the ledger was recorded before {_iso(before)}")
    if plan.uncovered:
        raise AuditChainBroken(
            f"refusing to prune entries {plan.first_seq}..{plan.last_seq}: entries {_ranges_text(plan.uncovered)} are "
            "not in any export; run 'lienthong audit export' for them first", code="AUDIT_NOT_EXPORTED")
    report = verify_ledger(engine, trust_store, signer.agency_code)
    if not report.ok:
        raise AuditChainBroken(f"refusing to prune: the ledger does not verify ({report.where}: {report.problem})")
    archive_of_last = next(sha for sha, lo, hi in reversed(plan.archives) if lo <= plan.last_seq <= hi)
    pruned_at = now()
    user = created_by or _user()
    with _writer(engine) as conn, conn.begin():
        _lock(conn)
        last = conn.execute(select(_TOMBS.c.id, _TOMBS.c.tombstone_hash, _TOMBS.c.last_seq)
                            .order_by(_TOMBS.c.id.desc()).limit(1)).one_or_none()
        number = int(last.id) + 1 if last else 1
        prev_hash = str(last.tombstone_hash) if last else GENESIS_HASH
        if (int(last.last_seq) + 1 if last else 1) != plan.first_seq:
            raise AuditChainBroken("the ledger changed while the prune was planned; run it again")
        current = conn.execute(select(_LOG.c.entry_hash).where(_LOG.c.seq == plan.last_seq)).scalar_one_or_none()
        if current != plan.last_hash:
            raise AuditChainBroken("the ledger changed while the prune was planned; run it again")
        document = signer.sign(tombstone_xml(number, plan.first_seq, plan.last_seq, plan.last_hash, pruned_at,
                                             prev_hash, plan.archives))
        conn.execute(insert(_TOMBS).values(
            id=number, created_at=pruned_at, created_by=user, first_seq=plan.first_seq, last_seq=plan.last_seq,
            last_hash=plan.last_hash, archive_sha256=archive_of_last, prev_tombstone_hash=prev_hash,
            document=document, tombstone_hash=sha256_hex(document)))
        conn.execute(delete(_LOG).where(_LOG.c.seq >= plan.first_seq, _LOG.c.seq <= plan.last_seq))
        # the search index is derived from the removed bodies: it goes with them
        conn.execute(delete(_SUBJECTS).where(_SUBJECTS.c.seq >= plan.first_seq, _SUBJECTS.c.seq <= plan.last_seq))
    return plan, number


def _user() -> str:
    try:
        return getpass.getuser()[:128]
    except Exception:  # no login name in some containers
        return "unknown"
