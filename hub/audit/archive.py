"""Export archives of the audit ledger, and their offline verification.

``lienthong audit export`` writes one self-contained zip that an inspector can check years later
on a machine holding nothing but the archive and the CA certificate
(``lienthong audit verify-archive OUT.zip --ca ca.pem``)::

    manifest.xml                  signed by the hub key: the range, the link to the previous
                                  archive, and SHA-256 + size of every other file
    entries.jsonl                 one JSON object per entry: every column, prev_hash, entry_hash
    messages/<seq>-<dir>-<op>.xml the exact bytes sent or received
    chain/after.jsonl             metadata only (no bodies) of the entries between the last
                                  exported one and the seal that anchors it
    seals/<n>.xml, seals/<n>.tsr  the seals covering the range (and the first one after it) and
                                  their RFC 3161 tokens
    certs/*.pem                   CA, hub, message signers and TSA certificates (informative: the
                                  verifier trusts only the CA it is given)
    README.txt                    what the archive is and how to check it

The verifier checks, and names the file or entry at the first failure: the manifest's signature
(a certificate chaining to the given CA, the hub's agency); every file's size and hash, and that
no file is missing or added; the hash chain from the anchor ``prev_hash``; each message's bytes
against its entry; every seal (signature, chaining, the hash it signed against the entries); the
time-stamp tokens; each message's own XML-DSig signature (requests by the hub, replies by the
national system); and, given the previous archive, the link to it.

Exports chain like the ledger: each manifest names the previous export's archive SHA-256 and its
last seq and entry hash, so a missing or substituted archive is evident from its successor. Every
export is recorded in ``audit_exports``, which is also what ``audit prune`` consults.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.hashes import SHA256
from lxml import etree
from sqlalchemy import Engine, func, insert, select

from ..errors import AuditChainBroken, ConfigurationError, HubError, SignatureError
from ..store.models import AuditEntry, AuditExport, AuditSeal
from .seal import (
    AUDIT_NS,
    SealInvalid,
    _iso,
    _q,
    _user,
    check_signer,
    create_seal,
    sha256_hex,
    verify_seal_document,
    verify_signed,
)
from .trail import ENTRY_COLUMNS, _body_problem, entry_digest

__all__ = ["ArchiveInvalid", "ArchiveReport", "ExportResult", "export_archive", "parse_when", "verify_archive"]

_LOG = AuditEntry.__table__
_SEALS = AuditSeal.__table__
_EXPORTS = AuditExport.__table__

MANIFEST = "manifest.xml"
ENTRIES = "entries.jsonl"
AFTER = "chain/after.jsonl"
#: outcomes of messages the hub sent or accepted: their signature must verify in an archive
SIGNED_OUTCOMES = frozenset({"sent", "ok"})
_SOAP_NS = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: the canonical fields of an entry, in the order of lienthong.hub.audit.trail.entry_digest
_FIELDS = (*(column.name for column in ENTRY_COLUMNS), "stored_body_sha256")


class ArchiveInvalid(AuditChainBroken):
    """An export archive does not verify; the message names the file or entry."""

    code = "AUDIT_ARCHIVE_INVALID"


def parse_when(value: str, *, end: bool = False) -> datetime:
    """A CLI time bound: ``YYYY-MM-DD`` (a whole UTC day: its start, or with ``end`` the start of
    the next day, so ``--to 2026-11-30`` includes the 30th) or an ISO-8601 time (UTC if no zone)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(0), tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO-8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _safe_name(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value)[:80] or "_"


def _entry_dict(row) -> dict:
    return {
        "seq": int(row.seq), "recorded_at": _iso(row.recorded_at), "direction": row.direction, "partner": row.partner,
        "operation": row.operation, "document_id": row.document_id, "correlation_id": row.correlation_id,
        "from_agency": row.from_agency, "to_agency": row.to_agency, "outcome": row.outcome,
        "latency_ms": row.latency_ms, "attempt": int(row.attempt), "body_sha256": row.body_sha256,
        "body_size": int(row.body_size), "error": row.error, "stored_body_sha256": sha256_hex(bytes(row.body)),
        "prev_hash": row.prev_hash, "entry_hash": row.entry_hash,
    }


def _digest_of(entry: dict, prev_hash: str) -> str:
    values = {k: entry[k] for k in _FIELDS}
    values["recorded_at"] = datetime.fromisoformat(values["recorded_at"])
    return entry_digest(prev_hash, **values)


# --- export -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportResult:
    path: Path
    archive_sha256: str
    first_seq: int
    last_seq: int
    entries: int
    seals: int
    prev_archive_sha256: str | None
    sealed_now: bool


def _seq_range(engine: Engine, start: datetime | None, end: datetime | None, from_seq: int | None,
               to_seq: int | None) -> tuple[int, int]:
    with engine.connect() as conn:
        if from_seq is not None or to_seq is not None:
            lo = from_seq if from_seq is not None else conn.execute(select(func.min(_LOG.c.seq))).scalar()
            hi = to_seq if to_seq is not None else conn.execute(select(func.max(_LOG.c.seq))).scalar()
        else:
            q = select(func.min(_LOG.c.seq), func.max(_LOG.c.seq))
            if start is not None:
                q = q.where(_LOG.c.recorded_at >= start)
            if end is not None:
                q = q.where(_LOG.c.recorded_at < end)
            lo, hi = conn.execute(q).one()
        if lo is None or hi is None or int(hi) < int(lo):
            span = f"{_iso(start) if start else 'the start'} .. {_iso(end) if end else 'now'}"
            raise ConfigurationError(f"no audit entries to export between {span}")
        lo, hi = int(lo), int(hi)
        present = conn.execute(select(func.count()).select_from(_LOG)
                               .where(_LOG.c.seq >= lo, _LOG.c.seq <= hi)).scalar_one()
        if present != hi - lo + 1:
            first_kept = conn.execute(select(func.min(_LOG.c.seq))).scalar()
            raise ConfigurationError(
                f"entries {lo}..{hi} are not all in the ledger (the log starts at {first_kept}): pruned entries are "
                "exported already; choose a range after the last prune")
    return lo, hi


def _certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _signer_certificate(raw: bytes) -> x509.Certificate | None:
    """The first X509Certificate of the message's signature (for certs/), read without trusting it."""
    start = raw.find(b"X509Certificate>")
    if start < 0:
        return None
    end = raw.find(b"</", start)
    text = raw[start + len(b"X509Certificate>"):end]
    try:
        import base64

        return x509.load_der_x509_certificate(base64.b64decode(b"".join(text.split())))
    except (ValueError, TypeError):
        return None


def export_archive(engine: Engine, signer, out: Path, *, ca_paths=(), start: datetime | None = None,
                   end: datetime | None = None, from_seq: int | None = None, to_seq: int | None = None,
                   timestamper=None, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                   created_by: str | None = None) -> ExportResult:
    """Write the archive of the entries recorded in ``[start, end)`` (or ``from_seq..to_seq``) to
    ``out`` and register it in ``audit_exports``. The range is sealed first when no seal covers its
    last entry yet. Refuses to overwrite ``out``."""
    out = Path(out)
    if out.exists():
        raise ConfigurationError(f"{out} exists already; an export never overwrites a file")
    lo, hi = _seq_range(engine, start, end, from_seq, to_seq)
    sealed_now = False
    with engine.connect() as conn:
        anchor_seal = conn.execute(select(_SEALS.c.id).where(_SEALS.c.head_seq >= hi)
                                   .order_by(_SEALS.c.id).limit(1)).scalar()
    if anchor_seal is None:
        create_seal(engine, signer, force=True, timestamper=timestamper, now=now)
        sealed_now = True
    created_at = now()
    stamp = created_at.astimezone(UTC).timetuple()[:6]
    stamp = stamp if stamp[0] >= 1980 else _ZIP_TIME
    listed: dict[str, tuple[str, int]] = {}  # name -> (sha256, size), for the manifest

    def put(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, data)
        listed[name] = (sha256_hex(data), len(data))

    tmp = out.with_name(out.name + ".partial")
    signer_certs: dict[bytes, x509.Certificate] = {}
    first = last = None
    try:
        # Streamed: messages go into the zip as they are read, entry lines into a temporary file,
        # so a month of traffic never has to fit in memory. The manifest, which needs every hash,
        # is written last.
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
                tempfile.TemporaryFile() as entry_lines, engine.connect() as conn:
            put(zf, "README.txt", _readme(lo, hi, created_at).encode())
            prev = conn.execute(select(_EXPORTS).order_by(_EXPORTS.c.id.desc()).limit(1)).one_or_none()
            rows = conn.execution_options(yield_per=50).execute(
                select(_LOG).where(_LOG.c.seq >= lo, _LOG.c.seq <= hi).order_by(_LOG.c.seq))
            for row in rows:
                raw, problem = _body_problem(bytes(row.body), row.body_sha256, row.body_size)
                if problem is not None or raw is None:
                    raise AuditChainBroken(f"cannot export entry {row.seq}: {problem}; run 'lienthong audit verify'")
                entry = _entry_dict(row)
                entry["file"] = name = f"messages/{row.seq}-{row.direction}-{_safe_name(row.operation)}.xml"
                put(zf, name, raw)
                entry_lines.write(json.dumps(entry, ensure_ascii=False, sort_keys=True).encode() + b"\n")
                first = first or entry
                last = entry
                cert = _signer_certificate(raw)
                if cert is not None:
                    signer_certs.setdefault(cert.fingerprint(SHA256()), cert)
            rows.close()
            assert first is not None and last is not None  # _seq_range found the range complete
            entry_lines.seek(0)
            digest, size = hashlib.sha256(), 0
            info = zipfile.ZipInfo(ENTRIES, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as member:
                for chunk in iter(lambda: entry_lines.read(1 << 20), b""):
                    member.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            listed[ENTRIES] = (digest.hexdigest(), size)

            kept = []
            for seal in conn.execute(select(_SEALS).where(_SEALS.c.head_seq >= lo).order_by(_SEALS.c.id)):
                kept.append(seal)
                if seal.head_seq >= hi:
                    break
            anchor = kept[-1]
            after = b"".join(json.dumps(_entry_dict(r), sort_keys=True).encode() + b"\n" for r in conn.execute(
                select(_LOG).where(_LOG.c.seq > hi, _LOG.c.seq <= anchor.head_seq).order_by(_LOG.c.seq)))
            if after:
                put(zf, AFTER, after)
            tsa_certs: dict[bytes, x509.Certificate] = {}
            for seal in kept:
                put(zf, f"seals/{seal.id}.xml", bytes(seal.document))
                if seal.tsa_token is not None:
                    from .tsa import token_certificates

                    put(zf, f"seals/{seal.id}.tsr", bytes(seal.tsa_token))
                    for cert in token_certificates(bytes(seal.tsa_token)):
                        tsa_certs.setdefault(cert.fingerprint(SHA256()), cert)
            put(zf, "certs/hub.pem", _certificate_pem(signer.identity.certificate))
            for i, cert in enumerate(signer_certs.values(), 1):
                put(zf, f"certs/signer-{i}.pem", _certificate_pem(cert))
            for i, cert in enumerate(tsa_certs.values(), 1):
                put(zf, f"certs/tsa-{i}.pem", _certificate_pem(cert))
            ca_blob = b"".join(Path(p).read_bytes() for p in ca_paths)
            if ca_blob:
                put(zf, "certs/ca.pem", ca_blob)

            manifest = etree.Element(_q("AuditArchive"), nsmap={None: AUDIT_NS})
            etree.SubElement(manifest, _q("CreatedAt")).text = _iso(created_at)
            etree.SubElement(manifest, _q("Hub"), agency=signer.agency_code)
            etree.SubElement(manifest, _q("Range"), firstSeq=str(lo), lastSeq=str(hi), entries=str(hi - lo + 1),
                             anchorHash=first["prev_hash"], lastHash=last["entry_hash"], anchorSeal=str(anchor.id),
                             **({"from": _iso(start)} if start else {}), **({"to": _iso(end)} if end else {}))
            if prev is not None:
                etree.SubElement(manifest, _q("Previous"), archiveSha256=prev.archive_sha256,
                                 firstSeq=str(prev.first_seq), lastSeq=str(prev.last_seq), lastHash=prev.last_hash)
            listing = etree.SubElement(manifest, _q("Files"))
            for name in sorted(listed):
                etree.SubElement(listing, _q("File"), path=name, sha256=listed[name][0], size=str(listed[name][1]))
            info = zipfile.ZipInfo(MANIFEST, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, signer.sign(manifest))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        archive_sha = _file_sha256(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with engine.begin() as conn:
        conn.execute(insert(_EXPORTS).values(
            created_at=created_at, created_by=created_by or _user(), first_seq=lo, last_seq=hi, entry_count=hi - lo + 1,
            anchor_hash=first["prev_hash"], last_hash=last["entry_hash"], range_from=start, range_to=end,
            archive_sha256=archive_sha, prev_archive_sha256=prev.archive_sha256 if prev else None,
            file_name=str(out)))
    return ExportResult(out, archive_sha, lo, hi, hi - lo + 1, len(kept),
                        prev.archive_sha256 if prev else None, sealed_now)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _readme(lo: int, hi: int, created_at: datetime) -> str:
    return (
        f"Liên thông Hub audit export: entries {lo}..{hi}, written {_iso(created_at)}.\n\n"
        "Verify offline with only this file and the CA certificate:\n"
        "    lienthong audit verify-archive THIS.zip --ca ca.pem [--previous PREVIOUS.zip]\n\n"
        "manifest.xml is signed by the hub and lists the SHA-256 of every other file. entries.jsonl holds\n"
        "one JSON object per entry (the hash chain: entry_hash = SHA-256(prev_hash || canonical entry));\n"
        "messages/ holds the exact bytes exchanged; seals/ the hub's signed checkpoints of the chain (and\n"
        "RFC 3161 time-stamp tokens, .tsr); chain/after.jsonl links the last entry to the seal after it.\n"
    )


# --- offline verification -----------------------------------------------------------------------
@dataclass
class ArchiveReport:
    """What :func:`verify_archive` checked (it raises :class:`ArchiveInvalid` on the first failure)."""

    archive_sha256: str
    first_seq: int = 0
    last_seq: int = 0
    entries: int = 0
    files: int = 0
    seals: int = 0
    timestamps: int = 0
    signatures_verified: int = 0
    signatures_not_required: int = 0
    previous_checked: bool = False
    hub_agency: str = ""
    created_at: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ok": True, **{k: getattr(self, k) for k in self.__dataclass_fields__}}


def _load_ca(ca: Path | str):
    from ...signing.verifier import TrustStore

    return TrustStore.from_paths([ca])


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ConfigurationError(f"no such file: {path}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveInvalid(f"{path.name} is not a complete zip archive (truncated or damaged): {exc}") from None
    return zf


def _read_member(zf: zipfile.ZipFile, name: str, archive: str) -> bytes:
    try:
        return zf.read(name)
    except KeyError:
        raise ArchiveInvalid(f"{archive}: {name} is missing from the archive") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:  # CRC error, truncated data
        raise ArchiveInvalid(f"{archive}: {name} cannot be read (truncated or damaged): {exc}") from None


@dataclass(frozen=True)
class _Manifest:
    created_at: datetime
    hub: str
    first_seq: int
    last_seq: int
    entries: int
    anchor_hash: str
    last_hash: str
    anchor_seal: int
    previous: dict | None
    files: dict[str, tuple[str, int]]


def _read_manifest(zf: zipfile.ZipFile, trust_store, archive: str) -> _Manifest:
    data = _read_member(zf, MANIFEST, archive)
    try:
        root, verified, _ = verify_signed(data, trust_store, None, tag="AuditArchive", time_tag="CreatedAt",
                                          what=f"{archive}: manifest.xml")
    except SealInvalid as exc:
        raise ArchiveInvalid(str(exc)) from None
    hub_el, rng = root.find(_q("Hub")), root.find(_q("Range"))
    if hub_el is None or rng is None:
        raise ArchiveInvalid(f"{archive}: manifest.xml lacks <Hub> or <Range>")
    # the signer must be the hub the manifest names (read from the signed tree)
    check_signer(verified, hub_el.get("agency"), f"{archive}: manifest.xml")
    prev_el = root.find(_q("Previous"))
    files = {}
    for f in root.iter(_q("File")):
        files[f.get("path")] = (f.get("sha256"), int(f.get("size")))
    try:
        return _Manifest(
            created_at=datetime.fromisoformat(root.findtext(_q("CreatedAt"))), hub=hub_el.get("agency"),
            first_seq=int(rng.get("firstSeq")), last_seq=int(rng.get("lastSeq")), entries=int(rng.get("entries")),
            anchor_hash=rng.get("anchorHash"), last_hash=rng.get("lastHash"), anchor_seal=int(rng.get("anchorSeal")),
            previous=dict(prev_el.attrib) if prev_el is not None else None, files=files)
    except (TypeError, ValueError) as exc:
        raise ArchiveInvalid(f"{archive}: manifest.xml has a malformed <Range>: {exc}") from None


class _ChainWalk:
    """The hash chain of an entries file, checked one entry at a time (constant memory)."""

    def __init__(self, anchor: str, first_seq: int, name: str, archive: str):
        self.prev, self.expected, self.name, self.archive = anchor, first_seq, name, archive

    def step(self, entry: dict) -> None:
        archive, name, expected = self.archive, self.name, self.expected
        seq = entry.get("seq")
        if seq != expected:
            if isinstance(seq, int) and seq > expected:
                raise ArchiveInvalid(f"{archive}: {name}: entry {expected} is missing (the entries jump to {seq})")
            raise ArchiveInvalid(f"{archive}: {name}: entry {seq} is out of place (expected entry {expected}): "
                                 "entries were inserted or reordered")
        if entry.get("prev_hash") != self.prev:
            raise ArchiveInvalid(f"{archive}: {name}: entry {seq} does not link to entry {seq - 1} (prev_hash "
                                 "mismatch): entries were removed, inserted or reordered")
        try:
            recomputed = _digest_of(entry, self.prev)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveInvalid(f"{archive}: {name}: entry {seq} has a malformed field: {exc}") from None
        if recomputed != entry.get("entry_hash"):
            raise ArchiveInvalid(f"{archive}: {name}: entry {seq} metadata edited: its fields no longer match its "
                                 "entry_hash")
        self.prev, self.expected = entry["entry_hash"], expected + 1


def _message_root(raw: bytes, what: str):
    from ..xmlsafe import parse_xml

    root = parse_xml(raw, what=what)
    if etree.QName(root).namespace in _SOAP_NS and etree.QName(root).localname == "Envelope":
        body = next((c for c in root if isinstance(c.tag, str) and etree.QName(c).localname == "Body"), None)
        inner = [c for c in body if isinstance(c.tag, str)] if body is not None else []
        if len(inner) != 1 or etree.QName(inner[0]).localname == "Fault":
            return None
        return inner[0]
    return root


def verify_archive(path: Path | str, ca: Path | str, *, previous: Path | str | None = None,
                   check_signatures: bool = True, hub_agency: str | None = None) -> ArchiveReport:
    """Verify an export archive offline with only the CA certificate; raise :class:`ArchiveInvalid`
    naming the file or entry at the first problem, else return what was checked.

    The manifest, seals and requests must be signed by the agency the manifest names as the hub;
    ``hub_agency`` pins that agency (otherwise any agency the CA certified could pass off an archive
    of its own making as the ministry's: the report names the agency either way). Members are read
    as streams, one message at a time, so an archive of any size verifies in constant memory.
    """
    path = Path(path)
    trust = _load_ca(ca)
    archive = path.name
    report = ArchiveReport(archive_sha256=_file_sha256(path) if path.exists() else "")
    with _open_zip(path) as zf:
        manifest = _read_manifest(zf, trust, archive)
        if hub_agency is not None and manifest.hub != hub_agency:
            raise ArchiveInvalid(f"{archive} was written and signed by agency {manifest.hub}, not by {hub_agency}")
        report.hub_agency, report.created_at = manifest.hub, _iso(manifest.created_at)
        names = {i.filename for i in zf.infolist()}
        extra = sorted(names - set(manifest.files) - {MANIFEST})
        if extra:
            raise ArchiveInvalid(f"{archive}: {extra[0]} is not listed in the signed manifest (a file was added)")
        for name in sorted(manifest.files):
            if name not in names:
                raise ArchiveInvalid(f"{archive}: {name} is listed in the manifest but missing from the archive "
                                     "(truncated)")
            if not name.startswith("messages/"):  # messages are hashed as their entries are checked
                _match_manifest(manifest, name, *_member_digest(zf, name, archive), archive)
        report.files = len(manifest.files)

        seals = _archive_seals(zf, manifest, trust, report, archive)
        wanted = {doc.head_seq for doc in seals}
        hashes: dict[int, str] = {}
        walk = _ChainWalk(manifest.anchor_hash, manifest.first_seq, ENTRIES, archive)
        count = 0
        checked_messages: set[str] = set()
        if ENTRIES not in manifest.files:
            raise ArchiveInvalid(f"{archive}: {ENTRIES} is not in the archive")
        with zf.open(ENTRIES) as lines:
            for number, line in enumerate(lines, 1):
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    raise ArchiveInvalid(f"{archive}: {ENTRIES} line {number} is not JSON: {exc}") from None
                walk.step(entry)
                count += 1
                if entry["seq"] in wanted:
                    hashes[entry["seq"]] = entry["entry_hash"]
                checked_messages.add(_check_message(zf, entry, manifest, trust, report, archive, check_signatures))
        for name in sorted(set(manifest.files) - checked_messages):  # listed, yet no entry names them
            if name.startswith("messages/"):
                _match_manifest(manifest, name, *_member_digest(zf, name, archive), archive)
        if count != manifest.entries:
            raise ArchiveInvalid(f"{archive}: {ENTRIES} holds {count} entries, the manifest says {manifest.entries}")
        if count and (walk.expected - 1 != manifest.last_seq or walk.prev != manifest.last_hash):
            raise ArchiveInvalid(f"{archive}: the chain ends at entry {walk.expected - 1} with another hash than the "
                                 f"manifest's last entry {manifest.last_seq}")
        after = _ChainWalk(walk.prev, manifest.last_seq + 1, AFTER, archive)
        if AFTER in manifest.files:
            for number, line in enumerate(_read_member(zf, AFTER, archive).splitlines(), 1):
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    raise ArchiveInvalid(f"{archive}: {AFTER} line {number} is not JSON: {exc}") from None
                after.step(entry)
                hashes[entry["seq"]] = entry["entry_hash"]
    report.first_seq, report.last_seq, report.entries = manifest.first_seq, manifest.last_seq, count
    _match_seals(seals, hashes, manifest, archive)

    if previous is not None:
        _check_previous(Path(previous), manifest, trust, archive)
        report.previous_checked = True
    elif manifest.previous is not None:
        report.warnings.append(
            f"links to previous archive {manifest.previous.get('archiveSha256', '')[:16]}… (entries up to "
            f"{manifest.previous.get('lastSeq')}); give --previous to check the link")
    return report


def _match_manifest(manifest: _Manifest, name: str, actual_sha: str, actual_size: int, archive: str) -> None:
    sha, size = manifest.files[name]
    if actual_size != size or actual_sha != sha:
        raise ArchiveInvalid(f"{archive}: {name} does not match the manifest (SHA-256 {actual_sha[:16]}…, "
                             f"manifest {sha[:16]}…, {actual_size} vs {size} bytes): the file was changed or swapped")


def _member_digest(zf: zipfile.ZipFile, name: str, archive: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    try:
        with zf.open(name) as member:
            for chunk in iter(lambda: member.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:  # CRC error, truncated data
        raise ArchiveInvalid(f"{archive}: {name} cannot be read (truncated or damaged): {exc}") from None
    return digest.hexdigest(), size


def _check_message(zf: zipfile.ZipFile, entry: dict, manifest: _Manifest, trust, report: ArchiveReport,
                   archive: str, check_signatures: bool) -> str:
    """One entry's message: its bytes against the manifest and the entry, then its own XML-DSig
    signature. Returns the member's name (read once: this is also its manifest check)."""
    from ...signing.verifier import Verifier

    name = entry.get("file") or ""
    if name not in manifest.files:
        raise ArchiveInvalid(f"{archive}: entry {entry['seq']} names {name!r}, which is not in the archive")
    raw = _read_member(zf, name, archive)
    digest = sha256_hex(raw)
    _match_manifest(manifest, name, digest, len(raw), archive)
    if len(raw) != entry["body_size"] or digest != entry["body_sha256"]:
        raise ArchiveInvalid(f"{archive}: {name} (entry {entry['seq']}) payload edited: its bytes do not match the "
                             "entry's body_sha256/body_size")
    if not check_signatures:
        return name
    at = datetime.fromisoformat(entry["recorded_at"])
    try:
        root = _message_root(raw, name)
        if root is None:
            raise SignatureError("the message carries no signed document (empty, fault or not SOAP)")
        verified = Verifier(trust, now=lambda: at).verify(root)
        if entry.get("from_agency") and verified.signer_agency != entry["from_agency"]:
            raise SignatureError(f"signed by agency {verified.signer_agency}, but the entry records it as "
                                 f"from {entry['from_agency']}")
        report.signatures_verified += 1
    except HubError as exc:
        if entry["outcome"] in SIGNED_OUTCOMES:
            raise ArchiveInvalid(f"{archive}: {name} (entry {entry['seq']}, {entry['outcome']}) signature does "
                                 f"not verify [{exc.code}]: {exc}") from None
        report.signatures_not_required += 1
    return name


def _archive_seals(zf: zipfile.ZipFile, manifest: _Manifest, trust, report: ArchiveReport, archive: str) -> list:
    """Every seal of the archive, each signature verified, chained in order, time-stamps checked."""
    names = sorted((n for n in manifest.files if n.startswith("seals/") and n.endswith(".xml")),
                   key=lambda n: int(Path(n).stem) if Path(n).stem.isdigit() else -1)
    docs = []
    for name in names:
        try:
            doc = verify_seal_document(_read_member(zf, name, archive), trust, manifest.hub, what=f"{archive}: {name}")
        except SealInvalid as exc:
            raise ArchiveInvalid(str(exc)) from None
        if Path(name).stem != str(doc.number):
            raise ArchiveInvalid(f"{archive}: {name} holds seal {doc.number}")
        if docs:
            before = docs[-1]
            if doc.number != before.number + 1:
                raise ArchiveInvalid(f"{archive}: seal {before.number + 1} is missing between {before.number} and "
                                     f"{doc.number}")
            if doc.prev_seal_hash != before.seal_hash:
                raise ArchiveInvalid(f"{archive}: {name} does not chain to seal {before.number}")
        token_name = f"seals/{doc.number}.tsr"
        if token_name in manifest.files:
            from .tsa import token_checker

            try:
                token_checker(trust)(_read_member(zf, token_name, archive), doc.signature_value, doc.sealed_at)
            except HubError as exc:
                raise ArchiveInvalid(f"{archive}: {token_name} time-stamp does not verify [{exc.code}]: "
                                     f"{exc}") from None
            report.timestamps += 1
        docs.append(doc)
        report.seals += 1
    return docs


def _match_seals(seals: list, hashes: dict[int, str], manifest: _Manifest, archive: str) -> None:
    """Each seal signed the hash the archive's chain has at its entry; the last entry is anchored."""
    anchored = False
    for doc in seals:
        if doc.head_seq in hashes and hashes[doc.head_seq] != doc.head_hash:
            raise ArchiveInvalid(f"{archive}: seals/{doc.number}.xml signed another hash for entry {doc.head_seq} than "
                                 "the archive's chain: the entries were rewritten after they were sealed")
        if doc.head_seq >= manifest.last_seq and doc.head_seq in hashes:
            anchored = True
    if not anchored:
        raise ArchiveInvalid(f"{archive}: no seal in the archive anchors its last entry {manifest.last_seq} "
                             f"(seal {manifest.anchor_seal} expected)")


def _check_previous(prev_path: Path, manifest: _Manifest, trust, archive: str) -> None:
    link = manifest.previous
    if link is None:
        raise ArchiveInvalid(f"{archive} is the first export: it names no previous archive, yet {prev_path.name} was "
                             "given as its predecessor")
    sha = _file_sha256(prev_path) if prev_path.exists() else None
    if sha is None:
        raise ConfigurationError(f"no such file: {prev_path}")
    if sha != link.get("archiveSha256"):
        raise ArchiveInvalid(f"{archive}: linking broken: it names previous archive {link.get('archiveSha256', '')[:16]}…"
                             f" but {prev_path.name} has SHA-256 {sha[:16]}…")
    with _open_zip(prev_path) as zf:
        prev_manifest = _read_manifest(zf, trust, prev_path.name)
    if (str(prev_manifest.last_seq), prev_manifest.last_hash) != (link.get("lastSeq"), link.get("lastHash")):
        raise ArchiveInvalid(f"{archive}: linking broken: it records the previous archive ending at entry "
                             f"{link.get('lastSeq')}, but {prev_path.name} ends at entry {prev_manifest.last_seq} "
                             "with another hash")
    if manifest.first_seq == prev_manifest.last_seq + 1 and manifest.anchor_hash != prev_manifest.last_hash:
        raise ArchiveInvalid(f"{archive}: linking broken: its first entry {manifest.first_seq} does not link to the last "
                             f"entry of {prev_path.name}")

