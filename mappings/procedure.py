"""The hub's canonical model of a procedure (TTHC) and the mapping from the national record.

The national catalogue (CSDL TTHC, ``LayThuTuc``) speaks upper-case field names and codes;
:func:`lienthong.connectors.csdl_tthc.thutuc_record` turns its reply into nested dicts with those
names. This module turns such a dict into :class:`Procedure`, the one shape the rest of the hub
(store, diffs, CLI, later flows) uses, and back into a JSON document for storage.

Rules the mapping keeps, and why:

* **Nothing is lost.** The hub is a copy of the source of truth; a value it drops cannot be
  audited or shown later. Every national field is either named by the model or kept, value for
  value, in the ``extra`` mapping of the record it appeared in (so a field the national side adds
  tomorrow is stored, not silently discarded). Derived values sit *next to* the raw ones:
  ``published`` beside the raw ``status``, the normalised ``online_level`` beside the raw MUCDO.
* **One spelling per text.** Partners send the same Vietnamese text composed (NFC) or decomposed
  (NFD); compared byte-wise they differ, so every text is normalised to NFC and trimmed.
  Diacritics are never stripped: "Thủy sản" and "Thuy san" are different words.
* **Fail loudly, name the field.** A record the model cannot represent raises a
  :class:`~lienthong.mappings.errors.MappingError` subclass naming the national field (with its
  position) and the procedure code, and the sync quarantines that one record.
* **Codes come from data.** Levels, channels, online levels and statuses are looked up in
  ``mappings/tables/*.yaml`` (see :mod:`lienthong.mappings.tables`), never in literals here.
* **A stable document and hash.** :meth:`Procedure.to_document` has a fixed key order and only
  JSON types (amounts as exact decimal text, times as UTC ISO 8601); :func:`content_hash` ignores
  ``updated_at`` so a re-publication with the same content reads as "unchanged".
"""

from __future__ import annotations

import copyreg
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from .errors import MalformedValue, MappingError, MissingField
from .tables import ADMINISTRATIVE_LEVEL, CHANNEL, ONLINE_LEVEL, PROCEDURE_STATUS, load_table

__all__ = [
    "Agency", "Channel", "Component", "Document", "Fee", "Field", "LegalBasis", "MappingError", "Procedure",
    "ProcessingTime", "Result", "canonical_json", "content_hash", "from_national",
]

#: national times without an offset are Vietnamese local time (the portal's convention)
NATIONAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

# shapes from schemas/csdl_tthc.xsd (MaTTHC, Ma) and schemas/edxml_envelope.xsd (AgencyCode)
PROCEDURE_CODE = re.compile(r"[0-9]\.[0-9]{6}")
CATALOGUE_CODE = re.compile(r"[0-9A-Za-z._\-/]{1,64}")
AGENCY_CODE = re.compile(r"(?=.{1,32}\Z)(?:(?:[0-9A-Z]{2,3}\.){1,3}[0-9A-Z]{2,3}|[GH][0-9]{2}(?:\.[0-9A-Z]{2,3}){0,3})")


# ``extra`` mappings are read-only views (MappingProxyType), which pickle cannot handle by itself;
# procedures travel between the catalogue sync's worker processes, so teach it: a proxy of a copy.
def _readonly(values: dict) -> Mapping[str, Any]:
    return MappingProxyType(values)


copyreg.pickle(MappingProxyType, lambda proxy: (_readonly, (dict(proxy),)))


def _no_extra() -> Mapping[str, Any]:
    return MappingProxyType({})


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Field:
    """A field of activity (lĩnh vực): LINHVUCTHUCHIEN {MALINHVUC, TENLINHVUC}."""

    code: str
    name: str
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class Agency:
    """An implementing agency: COQUANTHUCHIEN {MADONVI, TENDONVI}."""

    code: str
    name: str
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class Fee:
    """A fee or charge (phí, lệ phí): PHILEPHI {MAPHILEPHI, SOTIEN, DONVI, MOTA}."""

    code: str
    amount: Decimal
    unit: str  # currency or unit as published, e.g. "Đồng", "Đồng/lần"
    description: str | None = None
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class ProcessingTime:
    """A processing time with its fees: THOIGIAN {THOIGIANGIAIQUYET, DONVITINH, MOTA, PHILEPHI[]}."""

    amount: Decimal
    unit: str  # e.g. "Ngày làm việc"
    description: str | None = None
    fees: tuple[Fee, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class Channel:
    """One way of carrying out the procedure: CACHTHUCTHUCHIEN {KENH, THOIGIAN[]}.

    Times and fees are per channel (online is often faster or cheaper), hence nested here.
    """

    kenh: int
    label: str  # from mappings/tables/channel.yaml
    times: tuple[ProcessingTime, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class Document:
    """A document of the dossier: GIAYTO {MAGIAYTO, TENGIAYTO, TENMAUDON, URL}."""

    code: str
    name: str
    form_name: str | None = None
    url: str | None = None
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class Component:
    """A group of dossier documents: THANHPHANHOSO {GIAYTO[]}.

    ``group`` is the group's name (TENTHANHPHANHOSO, e.g. "Trường hợp cấp lại") when the record
    names one; the current XSD does not, so it is usually None.
    """

    group: str | None
    documents: tuple[Document, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class Result:
    """A result of the procedure: KETQUATHUCHIEN {MAKETQUA, TENKETQUA}."""

    code: str
    name: str
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class LegalBasis:
    """A legal basis: CANCUPHAPLY {SOVANBAN (e.g. 26/2019/NĐ-CP), TENVANBAN}."""

    number: str
    title: str
    extra: Mapping[str, Any] = field(default_factory=_no_extra)


@dataclass(frozen=True, slots=True)
class Procedure:
    """One national procedure, as the hub stores and compares it (field order = document order)."""

    code: str  # MATTHC
    name: str  # TENTTHC
    publishing_agency: str  # MACOQUANCONGBO
    status: int  # TRANGTHAI, raw
    published: bool  # from mappings/tables/procedure_status.yaml
    levels: tuple[str, ...]  # CAPTHUCHIEN codes (BO, TINH, XA...), checked against administrative_level.yaml
    fields: tuple[Field, ...]
    agencies: tuple[Agency, ...]
    steps: tuple[str, ...]  # TRINHTUTHUCHIEN/TENTRINHTU, in order
    channels: tuple[Channel, ...]
    components: tuple[Component, ...]
    subjects: tuple[str, ...]  # DOITUONGTHUCHIEN
    results: tuple[Result, ...]
    legal_bases: tuple[LegalBasis, ...]
    requirements: str | None  # YEUCAU
    online_level: str  # normalised: toan_trinh | mot_phan | thong_tin (online_level.yaml)
    online_level_raw: str  # MUCDO as received, e.g. MUC_DO_4
    updated_at: datetime  # NGAYCAPNHAT, aware, UTC
    extra: Mapping[str, Any] = field(default_factory=_no_extra)  # national fields the model does not name

    def to_document(self) -> dict[str, Any]:
        """A JSON-able dict in canonical key order (the field order above).

        Decimals become exact text ("100000", "0.5"): a JSON number would pass through binary
        floating point in most readers. ``extra`` is always present at the top level and present
        in a nested record only when that record carried unnamed fields.
        """
        return _to_doc(self)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Procedure:
        """The procedure a :meth:`to_document` dict describes (``from_document(p.to_document()) == p``)."""
        try:
            return _procedure_from_doc(doc)
        except MappingError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            code = doc.get("code") if isinstance(doc, Mapping) else None
            what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise MalformedValue(f"procedure document {code or '(no code)'}: does not match the canonical model: {what}",
                                 procedure=code) from exc


# --------------------------------------------------------------------------------------------
# national record -> Procedure
# --------------------------------------------------------------------------------------------
def _clean(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def _fail(cls: type[MappingError], procedure: str | None, where: str, problem: str) -> MappingError:
    prefix = f"procedure {procedure}" if procedure else "national procedure record"
    return cls(f"{prefix}: {where}: {problem}", field=where, procedure=procedure)


def _decimal_text(value: Decimal) -> str:
    """Exact, canonical text of a decimal: 100000.00 and 1E+5 both read "100000"."""
    return "0" if value == 0 else format(value.normalize(), "f")


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=NATIONAL_TZ)).astimezone(UTC)


class _Reader:
    """One national (sub-)record being read.

    Knows its path (for error messages) and remembers which keys the model used, so whatever is
    left over becomes the record's ``extra`` instead of disappearing.
    """

    __slots__ = ("data", "path", "procedure", "used")

    def __init__(self, data: Mapping[str, Any], path: str, procedure: str | None):
        self.data, self.path, self.procedure, self.used = data, path, procedure, set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, cls: type[MappingError], key: str, problem: str) -> MappingError:
        return _fail(cls, self.procedure, self.where(key), problem)

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def _scalar(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _clean(value)
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return str(value)
        raise _fail(MalformedValue, self.procedure, where, f"expected a text, got {type(value).__name__}")

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self._scalar(self.raw(key), self.where(key)) or None
        if value is None and required:
            raise self.fail(MissingField, key, "is missing or blank")
        return value

    def code(self, key: str, pattern: re.Pattern[str], kind: str) -> str:
        value = self.text(key, required=True)
        if not pattern.fullmatch(value):
            raise self.fail(MalformedValue, key, f"{value!r} is not a well-formed {kind}")
        return value

    def _number(self, key: str) -> str:
        value = self.raw(key)
        if isinstance(value, float) and not isinstance(value, bool):
            value = repr(value)
        text = self._scalar(value, self.where(key))
        if not text:
            raise self.fail(MissingField, key, "is missing or blank")
        return text

    def decimal(self, key: str) -> Decimal:
        text = self._number(key)
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise self.fail(MalformedValue, key, f"{text!r} is not a number") from None
        if not value.is_finite() or value < 0:
            raise self.fail(MalformedValue, key, f"{text!r} must be a finite number, zero or more")
        return value

    def integer(self, key: str) -> int:
        text = self._number(key)
        if not re.fullmatch(r"[0-9]{1,9}", text):
            raise self.fail(MalformedValue, key, f"{text!r} is not a non-negative integer")
        return int(text)

    def moment(self, key: str) -> datetime:
        value = self.raw(key)
        if isinstance(value, datetime):
            return _utc(value)
        text = self._scalar(value, self.where(key))
        if not text:
            raise self.fail(MissingField, key, "is missing or blank")
        try:
            return _utc(datetime.fromisoformat(text))
        except ValueError:
            raise self.fail(MalformedValue, key, f"{text!r} is not an ISO 8601 date-time") from None

    def items(self, key: str) -> list[tuple[str, Any]]:
        """(path, item) of a repeated field; a single item (not wrapped in a list) counts as one."""
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            value = [value]
        return [(f"{self.where(key)}[{i}]", item) for i, item in enumerate(value)]

    def texts(self, key: str) -> tuple[str, ...]:
        return tuple(self._scalar(item, where) or "" for where, item in self.items(key))

    def records(self, key: str) -> list[_Reader]:
        out = []
        for where, item in self.items(key):
            if item is None or (isinstance(item, str) and not item.strip()):
                item = {}  # an empty element: a record with no fields
            if not isinstance(item, Mapping):
                raise _fail(MalformedValue, self.procedure, where, f"expected a record, got {type(item).__name__}")
            out.append(_Reader(item, where, self.procedure))
        return out

    def extra(self) -> Mapping[str, Any]:
        """The fields the model did not read, kept as plain JSON values (call after reading)."""
        return MappingProxyType({key: _plain(value, self.procedure, self.where(key))
                                 for key, value in self.data.items() if key not in self.used})


def _plain(value: Any, procedure: str | None, where: str) -> Any:
    """A national value the model does not name, as a JSON value (texts NFC, decimals exact)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, Decimal) and value.is_finite():
        return _decimal_text(value)
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(MalformedValue, procedure, where, f"field name {key!r} is not a text")
            out[key] = _plain(item, procedure, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, procedure, f"{where}[{i}]") for i, item in enumerate(value)]
    raise _fail(MalformedValue, procedure, where, f"cannot keep a value of type {type(value).__name__}")


def _fee(r: _Reader) -> Fee:
    return Fee(code=r.code("MAPHILEPHI", CATALOGUE_CODE, "fee code"), amount=r.decimal("SOTIEN"),
               unit=r.text("DONVI", required=True), description=r.text("MOTA"), extra=r.extra())


def _time(r: _Reader) -> ProcessingTime:
    return ProcessingTime(amount=r.decimal("THOIGIANGIAIQUYET"), unit=r.text("DONVITINH", required=True),
                          description=r.text("MOTA"), fees=tuple(_fee(f) for f in r.records("PHILEPHI")),
                          extra=r.extra())


def _channel(r: _Reader) -> Channel:
    kenh = r.integer("KENH")
    label = load_table(CHANNEL).label(kenh, field=r.where("KENH"), procedure=r.procedure)
    return Channel(kenh=kenh, label=label, times=tuple(_time(t) for t in r.records("THOIGIAN")), extra=r.extra())


def _document(r: _Reader) -> Document:
    return Document(code=r.code("MAGIAYTO", CATALOGUE_CODE, "document code"), name=r.text("TENGIAYTO", required=True),
                    form_name=r.text("TENMAUDON"), url=r.text("URL"), extra=r.extra())


def _component(r: _Reader) -> Component:
    return Component(group=r.text("TENTHANHPHANHOSO"), documents=tuple(_document(d) for d in r.records("GIAYTO")),
                     extra=r.extra())


def from_national(record: Mapping[str, Any]) -> Procedure:
    """Map one ``LayThuTuc`` record (national upper-case keys) to a :class:`Procedure`.

    Accepts what :func:`~lienthong.connectors.csdl_tthc.thutuc_record` produces (texts) and the
    same record with Python values (ints, Decimals, datetimes), as the sandbox builds it.
    Raises :class:`MissingField`, :class:`MalformedValue` or :class:`UnknownCode` (all
    :class:`MappingError`) naming the field and, when known, the procedure.
    """
    if not isinstance(record, Mapping):
        raise MalformedValue(f"national procedure record: expected a mapping of national fields, "
                             f"got {type(record).__name__}")
    r = _Reader(record, "", None)
    code = r.code("MATTHC", PROCEDURE_CODE, "procedure code (e.g. 1.005129)")
    r.procedure = code
    name = r.text("TENTTHC", required=True)
    publisher = r.code("MACOQUANCONGBO", AGENCY_CODE, "agency code (e.g. 000.00.00.G10)")
    status = r.integer("TRANGTHAI")
    status_entry = load_table(PROCEDURE_STATUS).entry(status, field=r.where("TRANGTHAI"), procedure=code)

    level_table = load_table(ADMINISTRATIVE_LEVEL)
    levels = []
    for where, value in r.items("CAPTHUCHIEN"):
        level = r._scalar(value, where) or ""
        level_table.entry(level, field=where, procedure=code)
        levels.append(level)

    fields_ = tuple(Field(f.code("MALINHVUC", CATALOGUE_CODE, "field code"), f.text("TENLINHVUC", required=True),
                          f.extra()) for f in r.records("LINHVUCTHUCHIEN"))
    agencies = tuple(Agency(a.code("MADONVI", AGENCY_CODE, "agency code"), a.text("TENDONVI", required=True),
                            a.extra()) for a in r.records("COQUANTHUCHIEN"))
    step_records = r.records("TRINHTUTHUCHIEN")
    steps = tuple(s.text("TENTRINHTU") or "" for s in step_records)
    channels = tuple(_channel(c) for c in r.records("CACHTHUCTHUCHIEN"))
    components = tuple(_component(p) for p in r.records("THANHPHANHOSO"))
    subjects = r.texts("DOITUONGTHUCHIEN")
    results = tuple(Result(k.code("MAKETQUA", CATALOGUE_CODE, "result code"), k.text("TENKETQUA", required=True),
                           k.extra()) for k in r.records("KETQUATHUCHIEN"))
    legal = tuple(LegalBasis(b.text("SOVANBAN", required=True), b.text("TENVANBAN", required=True), b.extra())
                  for b in r.records("CANCUPHAPLY"))
    requirements = r.text("YEUCAU")
    mucdo = r.text("MUCDO", required=True)
    online = load_table(ONLINE_LEVEL).entry(mucdo, field=r.where("MUCDO"), procedure=code)
    updated_at = r.moment("NGAYCAPNHAT")

    extra = dict(r.extra())
    if any(s.extra() for s in step_records):
        # the model keeps steps as plain texts; when they carry more, keep the whole list as received
        extra["TRINHTUTHUCHIEN"] = _plain(r.data["TRINHTUTHUCHIEN"], code, "TRINHTUTHUCHIEN")
    return Procedure(
        code=code, name=name, publishing_agency=publisher, status=status, published=status_entry["published"],
        levels=tuple(levels), fields=fields_, agencies=agencies, steps=steps, channels=channels,
        components=components, subjects=subjects, results=results, legal_bases=legal, requirements=requirements,
        online_level=online["level"], online_level_raw=mucdo, updated_at=updated_at, extra=MappingProxyType(extra),
    )


# --------------------------------------------------------------------------------------------
# Procedure <-> document
# --------------------------------------------------------------------------------------------
def _to_doc(value: Any) -> Any:
    if is_dataclass(value):
        out = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.name == "extra" and not item and not isinstance(value, Procedure):
                continue
            out[f.name] = _to_doc(item)
        return out
    if isinstance(value, tuple | list):
        return [_to_doc(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_doc(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _extra_from_doc(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    extra = doc.get("extra") or {}
    if not isinstance(extra, Mapping):
        raise TypeError("extra must be a mapping")
    return MappingProxyType(dict(extra))


def _decimal_from_doc(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"an amount must be decimal text, got {value!r}")
    return Decimal(value)


def _time_from_doc(d: Mapping[str, Any]) -> ProcessingTime:
    fees = tuple(Fee(f["code"], _decimal_from_doc(f["amount"]), f["unit"], f.get("description"), _extra_from_doc(f))
                 for f in d["fees"])
    return ProcessingTime(_decimal_from_doc(d["amount"]), d["unit"], d.get("description"), fees, _extra_from_doc(d))


def _procedure_from_doc(doc: Mapping[str, Any]) -> Procedure:
    updated_at = datetime.fromisoformat(doc["updated_at"])
    if updated_at.tzinfo is None:
        raise ValueError(f"updated_at {doc['updated_at']!r} has no UTC offset")
    return Procedure(
        code=doc["code"], name=doc["name"], publishing_agency=doc["publishing_agency"], status=int(doc["status"]),
        published=bool(doc["published"]), levels=tuple(doc["levels"]),
        fields=tuple(Field(f["code"], f["name"], _extra_from_doc(f)) for f in doc["fields"]),
        agencies=tuple(Agency(a["code"], a["name"], _extra_from_doc(a)) for a in doc["agencies"]),
        steps=tuple(doc["steps"]),
        channels=tuple(Channel(int(c["kenh"]), c["label"], tuple(_time_from_doc(t) for t in c["times"]),
                               _extra_from_doc(c)) for c in doc["channels"]),
        components=tuple(Component(p.get("group"), tuple(
            Document(d["code"], d["name"], d.get("form_name"), d.get("url"), _extra_from_doc(d)) for d in p["documents"]
        ), _extra_from_doc(p)) for p in doc["components"]),
        subjects=tuple(doc["subjects"]),
        results=tuple(Result(k["code"], k["name"], _extra_from_doc(k)) for k in doc["results"]),
        legal_bases=tuple(LegalBasis(b["number"], b["title"], _extra_from_doc(b)) for b in doc["legal_bases"]),
        requirements=doc.get("requirements"), online_level=doc["online_level"],
        online_level_raw=doc["online_level_raw"], updated_at=updated_at.astimezone(UTC),
        extra=_extra_from_doc(doc),
    )


# --------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------
def canonical_json(doc: Mapping[str, Any]) -> str:
    """The one text of a document: sorted keys, no blanks, real UTF-8 (not \\u escapes)."""
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def content_hash(procedure: Procedure | Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the procedure's document, ``updated_at`` excluded.

    The national catalogue bumps NGAYCAPNHAT on re-publication even when nothing else changed;
    leaving it out makes such a record "unchanged" instead of a new version. Accepts a
    :class:`Procedure` or a stored document.
    """
    doc = procedure.to_document() if isinstance(procedure, Procedure) else dict(procedure)
    doc.pop("updated_at", None)
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()
