"""Dossier changes of a one-stop system, mapped to what the national portal receives.

A ministry's one-stop system (hệ thống một cửa điện tử) names things its own way: its own table
and column names, its own status codes (``DANG_XU_LY``), its own channel and owner-type codes,
local times as text. A *source mapping file* (YAML, ``mappings/sources/*.yaml``, format described
in ``mappings/sources/README.md`` and at the top of each shipped file) says how that system's
dossier rows and processing-step rows become the portal's ``DongBoHoSoMC/HoSo`` and
``CapNhatTienDoHoSoMC/QuaTrinhXuLy`` records. This module loads such a file and applies it.

Why the file is validated completely when loaded: a mapping is read once and then applied to
every change of every dossier. A typo in it (a status mapped to a national code that does not
exist, a column mapped twice, a misspelt key that YAML would happily ignore) would otherwise
surface as thousands of wrong or rejected events. So :meth:`DossierMapping.load` checks every key
and raises :class:`MappingFileError` whose message names the file and the key path, e.g.
``onestop_sandbox.yaml: statuses.DANG_XU_LY: 11 is not a TrangThaiHoSo (1..10)``.

Why everything is compiled at load time: the push targets thousands of events per second, so
mapping a row must be a short walk over precomputed closures (dict look-ups, one regex, no YAML,
no strptime on the usual date format): well under 100 µs per row.

Each bad input is a specific, counted outcome, never a silent drop or a guess:

* a local code with no mapping (status, channel, owner type): :class:`UnknownCode`
  (``MAPPING_UNKNOWN_CODE``), naming the code and the mapping file: the event goes to dead
  letters with that reason;
* a required field missing or blank: :class:`MissingField` (``MAPPING_MISSING_FIELD``);
* a malformed date, number, flag or a value the portal's schema refuses (an identifier of the
  wrong shape, a control character): :class:`MalformedValue` (``MAPPING_MALFORMED_VALUE``),
  unless the mapping says ``on_invalid: omit`` for that optional field (then the field is left
  out and the change carries an ``omitted`` adjustment);
* a text over the portal's limit: by default :class:`TextTooLong` (``MAPPING_TEXT_TOO_LONG``),
  or, where the mapping says ``too_long: truncate``, cut with an ellipsis and counted as a
  ``truncated`` adjustment. The shipped mapping truncates only ``TrichYeuHoSo`` (the dossier's
  summary, ≤ 1000 characters): refusing would keep the dossier's *status* off the portal (the
  thing the push exists for) because of a cosmetic summary, while the full text stays in the
  one-stop system. Identifiers and names are never truncated: a cut identifier is a wrong one;
* text not in Unicode NFC (Vietnamese typed with combining marks) is normalised: not an error,
  counted as a ``normalised`` adjustment;
* a procedure code the national catalogue does not know: :class:`UnknownProcedure`
  (``MAPPING_UNKNOWN_PROCEDURE``), when the caller gives ``known_procedures``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .errors import MalformedValue, MappingError, MissingField, UnknownCode
from .tables import CHANNEL, DOSSIER_STATUS, SUBJECT_TYPE, SUBMISSION_PLACE, CodeTable, _StrictLoader, load_table

__all__ = [
    "DOSSIER", "NORMALISED", "OMITTED", "PORTAL_TZ", "RESULT", "RESULT_FIELDS", "STEP", "TRUNCATED", "Adjustment", "DossierMapping",
    "FieldRule", "FileLayout", "MappedChange", "MappingFileError", "TableMapping", "TextTooLong",
    "UnknownProcedure", "shipped_mappings",
]

#: the portal's dates are Vietnamese local time
PORTAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

DOSSIER = "dossier"
STEP = "step"
#: a digitised result document of a dossier (a file to upload before the snapshot that lists it)
RESULT = "result"

# adjustments: a change that was mapped, but not value for value
NORMALISED = "normalised"  # text put in Unicode NFC
TRUNCATED = "truncated"  # text cut to the portal's limit (too_long: truncate)
OMITTED = "omitted"  # invalid optional value left out (on_invalid: omit)

#: a year outside this window is a placeholder or a typo, not a dossier date
YEAR_RANGE = (1900, 2199)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
class MappingFileError(MappingError):
    """A source mapping file is unreadable or invalid: ``source`` is the file, ``key`` the key path."""

    code = "MAPPING_FILE_INVALID"

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None, **kw):
        super().__init__(message, **kw)
        self.source = source
        self.key = key


class TextTooLong(MalformedValue):
    """A text is longer than the portal accepts and the mapping does not allow truncating it."""

    code = "MAPPING_TEXT_TOO_LONG"


class UnknownProcedure(UnknownCode):
    """The dossier's MaTTHC is not in the national procedure catalogue."""

    code = "MAPPING_UNKNOWN_PROCEDURE"


# --------------------------------------------------------------------------------------------
# what the portal accepts (schemas/dvc_portal.xsd); order = schema order
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Portal:
    type: str  # text | date | int | bool | code | list
    required: bool = False
    max_length: int | None = None
    pattern: str | None = None
    value_range: tuple[int, int] | None = None  # int fields
    codes: str | None = None  # code fields: the code map (and national table) they use
    personal: bool = False  # never quote the value in an error message (personal data)


_MA_HO_SO = r"[0-9A-Z]{2,3}(\.[0-9A-Z]{2,3}){0,3}-[0-9]{6,8}-[0-9]{4,10}"
_MA = r"[0-9A-Za-z._\-/]{1,64}"
_TEN = 2000
_VAN_BAN = 4000

HOSO_SPEC: Mapping[str, _Portal] = MappingProxyType({
    "MaHoSo": _Portal("text", True, 64, _MA_HO_SO),
    "MaTTHC": _Portal("text", True, 8, r"[0-9]\.[0-9]{6}"),
    "TenTTHC": _Portal("text", True, _TEN),
    "MaLinhVuc": _Portal("text", False, 64, _MA),
    "TenLinhVuc": _Portal("text", False, _TEN),
    "KenhThucHien": _Portal("code", True, codes="channels"),
    "ChuHoSo": _Portal("text", True, _TEN, personal=True),
    "SoGiayToChuHoSo": _Portal("text", False, 64, personal=True),
    "LoaiDoiTuong": _Portal("code", True, codes="subject_types"),
    "MaDoiTuong": _Portal("text", False, 64, _MA, personal=True),
    "Email": _Portal("text", False, 254, r"[^@\s]+@[^@\s]+", personal=True),
    "SoDienThoai": _Portal("text", False, 20, r"\+?[0-9 .\-]{6,20}", personal=True),
    "TrichYeuHoSo": _Portal("text", True, 1000),
    "NgayNopHoSo": _Portal("date"),
    "NgayTiepNhan": _Portal("date"),
    "NgayHenTra": _Portal("date"),
    "TrangThaiHoSo": _Portal("code", True, codes="statuses"),
    "NgayTra": _Portal("date"),
    "ThongTinTra": _Portal("text", False, _VAN_BAN),
    "HinhThuc": _Portal("int", value_range=(0, 99)),
    "NgayKetThucXuLy": _Portal("date"),
    "NgayTuChoi": _Portal("date"),
    "DonViXuLy": _Portal("text", False, _TEN),
    "GhiChu": _Portal("text", False, _VAN_BAN),
    # a code (the national encoding, as the portal's adapter takes it), not the place's name
    "NoiNopHoSo": _Portal("code", False, codes="submission_places"),
    "HoSoCoThanhPhanSoHoa": _Portal("bool"),
    "TaiKhoanDuocXacThucVoiVNeID": _Portal("bool"),
    "DuocThanhToanTrucTuyen": _Portal("int", value_range=(0, 2)),
    "DinhDanhCHS": _Portal("list"),
    "DSKetNoiCSDL": _Portal("list"),
    "TaiLieuNop": _Portal("list"),
    "DanhSachLePhi": _Portal("list"),
    "DanhSachHoSoBoSung": _Portal("list"),
    "DanhSachGiayToKetQua": _Portal("list"),
})

QUATRINH_SPEC: Mapping[str, _Portal] = MappingProxyType({
    "MaHoSo": _Portal("text", True, 64, _MA_HO_SO),
    "NguoiXuLy": _Portal("text", True, _TEN),
    "ChucDanh": _Portal("text", False, _TEN),
    "ThoiDiemXuLy": _Portal("date", True),
    "PhongBanXuLy": _Portal("text", False, _TEN),
    "NoiDungXuLy": _Portal("text", True, _VAN_BAN),
    "TrangThai": _Portal("code", True, codes="statuses"),
    "NgayBatDau": _Portal("date"),
    "NgayKetThucTheoQuyDinh": _Portal("date"),
})

#: a result document as the one-stop system announces it (section ``results``): the portal's
#: DanhSachGiayToKetQua names (TenGiayTo, MaThanhPhanHoSo, MaGiayToKetQua), the file's name and
#: type as BatDauTaiTepKetQua takes them, and where its bytes are: ``TepKetQua`` is a path relative
#: to the configured result root, or an http(s) URL the hub fetches; ``KichThuoc`` and ``SHA256``
#: are what the system says the file is, when it says (a file that differs is refused).
RESULT_SPEC: Mapping[str, _Portal] = MappingProxyType({
    "MaHoSo": _Portal("text", True, 64, _MA_HO_SO),
    "TenGiayTo": _Portal("text", True, _TEN),
    "MaThanhPhanHoSo": _Portal("text", False, 64, _MA),
    "MaGiayToKetQua": _Portal("text", False, 64, _MA),
    "TenTep": _Portal("text", True, 255, r"[^/\\\x00-\x1f\x7f]{1,255}"),
    "KieuTep": _Portal("text", False, 127, r"[A-Za-z0-9][A-Za-z0-9!#$&\-^_.+]{0,62}/[A-Za-z0-9][A-Za-z0-9!#$&\-^_.+]{0,62}"),
    "TepKetQua": _Portal("text", True, 2000),
    "KichThuoc": _Portal("int", value_range=(0, 2_147_483_648)),
    "SHA256": _Portal("text", False, 64, r"[0-9a-fA-F]{64}"),
})
RESULT_FIELDS = tuple(RESULT_SPEC)

#: code map key in the file -> (national code table, national field named in messages)
CODE_MAPS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "statuses": (DOSSIER_STATUS, "TrangThaiHoSo"),
    "channels": (CHANNEL, "KenhThucHien"),
    "subject_types": (SUBJECT_TYPE, "LoaiDoiTuong"),
    "submission_places": (SUBMISSION_PLACE, "NoiNopHoSo"),
})

_FIELD_TYPES = ("text", "date", "int", "bool", "code")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: characters XML 1.0 cannot carry: a text holding one could never be put in an envelope
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ELLIPSIS = "…"


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
class Adjustment(NamedTuple):
    """Something done to a value on the way (``kind`` is NORMALISED, TRUNCATED or OMITTED)."""

    kind: str
    field: str
    detail: str = ""


_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MappedChange:
    """One change of the one-stop system in the portal's terms.

    ``record`` is keyed by the portal's field names in schema order (HOSO_FIELDS for a dossier,
    QUATRINH_FIELDS for a step), absent optional fields left out: what
    ``DvcPortalClient.sync_dossiers`` / ``update_progress`` take. ``source_key`` identifies the
    change in the source (``hoso:<so_ho_so>:<phien_ban>``, ``buoc:<id>``, prefixed with the
    mapping's ``key_prefix``): the outbox's idempotency key. ``status`` is the national
    TrangThaiHoSo (dossier) or TrangThai (step). ``version`` is the dossier row's version
    (None for steps). ``extra`` holds the unmapped columns the mapping asks to carry along.
    ``source_changed_at`` is when the row changed in the source (its ``changed_at`` or dossier
    cursor column, as an aware UTC time; None when the row does not say). ``payload`` is
    ``record`` under the name the outbox uses, so a change can be enqueued as it is.
    """

    kind: str
    source_key: str
    ma_ho_so: str
    status: int
    record: dict[str, Any]
    version: int | None = None
    adjustments: tuple[Adjustment, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: _NO_EXTRA)
    source_changed_at: datetime | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return self.record


# --------------------------------------------------------------------------------------------
# the compiled mapping
# --------------------------------------------------------------------------------------------
class _Bad(Exception):
    """Internal: a value failed; the table mapping turns it into the public error with context."""

    def __init__(self, error: type[MappingError], detail: str):
        self.error = error
        self.detail = detail


_ABSENT = object()
Transform = Callable[[Any, list], Any]


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one portal field is filled from one source column (as written in the file, checked)."""

    field: str
    column: str
    type: str
    required: bool
    max_length: int | None = None
    too_long: str = "refuse"  # refuse | truncate
    on_invalid: str = "refuse"  # refuse | omit
    codes: str | None = None


@dataclass(frozen=True, slots=True)
class FileLayout:
    """How the one-stop system's export files are laid out (section ``files``)."""

    dossiers: str  # JSON key, XML element and CSV file-name prefix of dossier records
    steps: str  # the same for processing steps
    xml_root: str
    formats: tuple[str, ...]
    encoding: str
    results: str | None = None  # the same for result documents (with a results section)


@dataclass(frozen=True, eq=False)
class TableMapping:
    """The mapping of one source table (dossiers or steps): where to read, what to fill."""

    kind: str
    file: str
    table: str | None
    schema: str | None
    key: str
    version: str | None
    cursor: str
    tiebreak: str | None
    changed_at: str | None
    fields: tuple[FieldRule, ...]
    extra: tuple[str, ...]
    key_prefix: str
    _plan: tuple[tuple[str, str, Transform], ...] = field(repr=False)
    _status_field: str = field(repr=False)
    _code_column: str = field(repr=False)
    _changed_column: str | None = field(repr=False, default=None)

    def columns(self) -> tuple[str, ...]:
        """Every column this mapping reads, each once: what a source must select or export."""
        seen: dict[str, None] = {}
        for name in (self.key, self.version, self.cursor, self.tiebreak, self.changed_at,
                     *(r.column for r in self.fields), *self.extra):
            if name:
                seen.setdefault(name)
        return tuple(seen)

    def field_columns(self) -> tuple[str, ...]:
        """The columns a record must carry (mapped fields, key, version, extra): an export file's."""
        seen: dict[str, None] = {}
        for name in (self.key, self.version, *(r.column for r in self.fields), *self.extra):
            if name:
                seen.setdefault(name)
        return tuple(seen)

    # -- identity ----------------------------------------------------------------------------
    def _key(self, row: Mapping[str, Any]) -> str:
        value = row.get(self.key)
        if isinstance(value, bool) or value is None:
            raise _Bad(MissingField, f"key column {self.key} is missing")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            value = value.strip()
            if value:
                return value
            raise _Bad(MissingField, f"key column {self.key} is blank")
        raise _Bad(MalformedValue, f"key column {self.key} holds a {type(value).__name__}, not a text or integer")

    def _version(self, row: Mapping[str, Any]) -> int | None:
        if self.version is None:
            return None
        value = row.get(self.version)
        number = _as_int(value)
        if number is None:
            if value is None or (isinstance(value, str) and not value.strip()):
                raise _Bad(MissingField, f"version column {self.version} is missing")
            raise _Bad(MalformedValue, f"version column {self.version}: {value!r} is not an integer")
        return number

    def _source_key(self, key: str, version: int | None) -> str:
        if self.kind == DOSSIER:
            return f"{self.key_prefix}hoso:{key}:{version}"
        if self.kind == RESULT:
            return f"{self.key_prefix}ketqua:{key}" + ("" if version is None else f":{version}")
        return f"{self.key_prefix}buoc:{key}"

    def source_key(self, row: Mapping[str, Any]) -> str | None:
        """The change's idempotency key, or None when the row lacks what it is made of."""
        try:
            return self._source_key(self._key(row), self._version(row))
        except _Bad:
            return None

    def ma_ho_so(self, row: Mapping[str, Any]) -> str | None:
        """The dossier code as the row carries it (stripped), or None: for dead letters."""
        value = row.get(self._code_column)
        if isinstance(value, str) and value.strip():
            return value.strip()
        return None

    # -- mapping -----------------------------------------------------------------------------
    def map(self, row: Mapping[str, Any],
            known_procedures: Callable[[str], bool] | None = None) -> MappedChange:
        notes: list[Adjustment] = []
        record: dict[str, Any] = {}
        name = column = None
        try:
            key = self._key(row)
            version = self._version(row)
            for name, column, transform in self._plan:
                value = transform(row.get(column), notes)
                if value is not _ABSENT:
                    record[name] = value
        except _Bad as bad:
            raise self._error(bad.error, bad.detail, row, name, column) from None
        if known_procedures is not None and self.kind == DOSSIER:
            code = record["MaTTHC"]
            if not known_procedures(code):
                column = next(r.column for r in self.fields if r.field == "MaTTHC")
                raise self._error(UnknownProcedure, f"procedure {code} is not in the national catalogue",
                                  row, "MaTTHC", column, procedure=code)
        extra = _NO_EXTRA
        if self.extra:
            extra = {c: _carried(row.get(c)) for c in self.extra}
        changed = _utc(row.get(self._changed_column)) if self._changed_column else None
        if "SHA256" in record:
            record["SHA256"] = record["SHA256"].lower()
        status = record[self._status_field] if self._status_field else 0
        return MappedChange(self.kind, self._source_key(key, version), record["MaHoSo"],
                            status, record, version, tuple(notes), extra, changed)

    def _error(self, cls: type[MappingError], detail: str, row: Mapping[str, Any], name: str | None,
               column: str | None, procedure: str | None = None) -> MappingError:
        code = self.ma_ho_so(row)
        if self.kind == DOSSIER:
            who = f"dossier {code or '(no dossier code)'}"
        elif self.kind == RESULT:
            item = row.get(self.key)
            who = f"result {item if item not in (None, '') else '(no id)'} of dossier {code or '(no dossier code)'}"
        else:
            step = row.get(self.key)
            who = f"step {step if step not in (None, '') else '(no id)'} of dossier {code or '(no dossier code)'}"
        where = f"{name} (column {column}): " if name else ""
        if procedure is None and self.kind == DOSSIER:
            procedure = _text_or_none(row.get(next((r.column for r in self.fields if r.field == "MaTTHC"), "")))
        exc = cls(f"{self.file}: {who}: {where}{detail}", field=name, procedure=procedure)
        exc.column = column
        exc.mapping_file = self.file
        exc.ma_ho_so = code
        exc.source_key = self.source_key(row)
        return exc


def _text_or_none(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _utc(value: Any) -> datetime | None:
    """A source change time (database timestamp, or ISO text from an export) as aware UTC; the
    column holds UTC by contract, so a naive value is UTC. Unreadable: None (it is metadata; the
    change itself is still delivered)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _carried(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii() and not unicodedata.is_normalized("NFC", value):
            value = unicodedata.normalize("NFC", value)
        return value or None
    return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and (text.isdigit() or (text[:1] in "+-" and text[1:].isdigit())):
            return int(text)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return None


# --------------------------------------------------------------------------------------------
# value transforms (built once per field at load time)
# --------------------------------------------------------------------------------------------
def _absent(rule: FieldRule) -> Any:
    if rule.required:
        raise _Bad(MissingField, "is missing or blank")
    return _ABSENT


def _truncate(text: str, limit: int) -> str:
    cut = limit - 1
    # never leave a combining mark without its base letter
    while cut > 0 and unicodedata.combining(text[cut]):
        cut -= 1
    return text[:cut].rstrip() + _ELLIPSIS


def _text_transform(rule: FieldRule, spec: _Portal) -> Transform:
    limit = rule.max_length
    truncate = rule.too_long == "truncate"
    omit = rule.on_invalid == "omit"
    pattern = re.compile(spec.pattern) if spec.pattern else None
    shown = (lambda v: "the value (personal data, not shown)") if spec.personal else repr
    name = rule.field

    def text(value: Any, notes: list) -> Any:
        if value is None:
            return _absent(rule)
        if type(value) is not str:
            if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
                raise _Bad(MalformedValue, f"expected a text, got a {type(value).__name__}")
            value = str(value)
        value = value.strip()
        if not value:
            return _absent(rule)
        if not value.isascii() and not unicodedata.is_normalized("NFC", value):
            value = unicodedata.normalize("NFC", value)
            notes.append(Adjustment(NORMALISED, name))
        bad = _XML_INVALID.search(value)
        if bad:
            if omit:
                notes.append(Adjustment(OMITTED, name, "control character"))
                return _ABSENT
            raise _Bad(MalformedValue, f"contains the control character U+{ord(bad.group()):04X} "
                                       f"at position {bad.start()}, which XML cannot carry")
        if limit is not None and len(value) > limit:
            if truncate:
                notes.append(Adjustment(TRUNCATED, name, f"{len(value)} characters cut to {limit}"))
                value = _truncate(value, limit)
            else:
                raise _Bad(TextTooLong, f"is {len(value)} characters long, over the portal's limit of {limit}")
        if pattern is not None and not pattern.fullmatch(value):
            if omit:
                notes.append(Adjustment(OMITTED, name, "not in the portal's format"))
                return _ABSENT
            raise _Bad(MalformedValue, f"{shown(value)} does not have the portal's format {pattern.pattern}")
        return value

    return text


def _int_transform(rule: FieldRule, spec: _Portal, table: CodeTable | None, national: str | None) -> Transform:
    low, high = spec.value_range or (None, None)
    omit = rule.on_invalid == "omit"
    name = rule.field

    def integer(value: Any, notes: list) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return _absent(rule)
        number = _as_int(value)
        if number is None or (low is not None and not low <= number <= high):
            if omit:
                notes.append(Adjustment(OMITTED, name, "not a valid number"))
                return _ABSENT
            expected = f"an integer from {low} to {high}" if low is not None else "an integer"
            raise _Bad(MalformedValue, f"{value!r} is not {expected}")
        if table is not None and number not in table.entries:
            raise _Bad(UnknownCode, f"{number} is not a {national} ({_code_range(table)}; code table {table.name})")
        return number

    return integer


_TRUE = frozenset({"1", "true", "t", "yes", "y", "co", "có"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "khong", "không"})


def _bool_transform(rule: FieldRule) -> Transform:
    omit = rule.on_invalid == "omit"
    name = rule.field

    def flag(value: Any, notes: list) -> Any:
        # the national encoding of a flag is "1" / "0" (the portal's JSON adapter and the 766
        # scorecard read it so); both transports carry that (xs:boolean accepts it too)
        if value is None:
            return _absent(rule)
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int) and value in (0, 1):
            return str(value)
        if isinstance(value, str):
            text = unicodedata.normalize("NFC", value.strip().lower())
            if not text:
                return _absent(rule)
            if text in _TRUE:
                return "1"
            if text in _FALSE:
                return "0"
        if omit:
            notes.append(Adjustment(OMITTED, name, "not a yes/no value"))
            return _ABSENT
        raise _Bad(MalformedValue, f"{value!r} is not a yes/no value (true/false, 1/0)")

    return flag


def _code_transform(rule: FieldRule, codes: Mapping[Any, int], map_name: str, file: str) -> Transform:
    # keyed by text: a local code 4 written in the file matches "4" read from a CSV and 4 from SQL
    lookup: dict[str, int] = {str(local): national for local, national in codes.items()}
    known = ", ".join(map(str, codes))

    def code(value: Any, notes: list) -> Any:
        if type(value) is str:
            key: Any = value.strip()
            if not key:
                return _absent(rule)
            found = lookup.get(key)
        elif value is None:
            return _absent(rule)
        elif isinstance(value, int) and not isinstance(value, bool):
            key = value
            found = lookup.get(str(value))  # str keys cover int codes too (see above)
        else:
            key, found = value, None
        if found is None:
            raise _Bad(UnknownCode, f"unknown local code {key!r}: not in {map_name} of {file} (known: {known})")
        return found

    return code


_YMDHMS = ("Y", "m", "d", "H", "M", "S")
_DIRECTIVES = {"Y": r"(\d{4})", "m": r"(\d{2})", "d": r"(\d{2})", "H": r"(\d{2})", "M": r"(\d{2})", "S": r"(\d{2})"}


def _fast_format(fmt: str) -> tuple[re.Pattern[str], tuple[str, ...]] | None:
    """A regex for a format made only of %Y %m %d %H %M %S and literals (strptime is ~10× slower)."""
    parts: list[str] = []
    order: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            directive = fmt[i + 1:i + 2]
            if directive not in _DIRECTIVES or directive in order:
                return None
            parts.append(_DIRECTIVES[directive])
            order.append(directive)
            i += 2
        else:
            parts.append(re.escape(ch))
            i += 1
    if not {"Y", "m", "d"} <= set(order):
        return None
    return re.compile("".join(parts)), tuple(order)


def _date_transform(rule: FieldRule, zone: ZoneInfo, formats: tuple[str, ...]) -> Transform:
    same_zone = zone.key == PORTAL_TZ.key
    parsers: list[tuple[re.Pattern[str], tuple[str, ...]] | str] = []
    for fmt in formats:
        parsers.append(_fast_format(fmt) or fmt)
    omit = rule.on_invalid == "omit"
    name = rule.field
    shown_formats = " or ".join(formats)
    low, high = YEAR_RANGE

    def parse(text: str) -> datetime | None:
        for parser in parsers:
            if isinstance(parser, str):
                try:
                    return datetime.strptime(text, parser)
                except ValueError:
                    continue
            regex, order = parser
            m = regex.fullmatch(text)
            if m is None:
                continue
            try:
                if order == _YMDHMS:
                    return datetime(*map(int, m.groups()))
                parts = dict(zip(order, map(int, m.groups()), strict=True))
                return datetime(parts["Y"], parts["m"], parts["d"], parts.get("H", 0), parts.get("M", 0),
                                parts.get("S", 0))
            except ValueError:
                return None  # right shape, impossible date (30 February, hour 25): no other format helps
        return None

    def moment(value: Any, notes: list) -> Any:
        if value is None:
            return _absent(rule)
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return _absent(rule)
            when = parse(text)
        elif isinstance(value, datetime):
            when = value
        elif isinstance(value, date):
            when = datetime(value.year, value.month, value.day)
        else:
            when = None
        if when is None or not low <= when.year <= high:
            if omit:
                notes.append(Adjustment(OMITTED, name, "not a date"))
                return _ABSENT
            why = f"is not a date in {shown_formats}" if when is None else f"has a year outside {low}..{high}"
            raise _Bad(MalformedValue, f"{value!r} {why}")
        if when.tzinfo is None:
            if not same_zone:
                when = when.replace(tzinfo=zone).astimezone(PORTAL_TZ)
        else:
            when = when.astimezone(PORTAL_TZ)
        return (f"{when.year:04d}{when.month:02d}{when.day:02d}"
                f"{when.hour:02d}{when.minute:02d}{when.second:02d}")

    return moment


def _code_range(table: CodeTable) -> str:
    codes = sorted(c for c in table.entries if isinstance(c, int))
    if codes and codes == list(range(codes[0], codes[-1] + 1)):
        return f"{codes[0]}..{codes[-1]}"
    return ", ".join(map(str, table.entries))


# --------------------------------------------------------------------------------------------
# loading and checking a mapping file
# --------------------------------------------------------------------------------------------
class _Check:
    """Walks the YAML document; every problem raises MappingFileError naming the file and key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str) -> MappingFileError:
        prefix = f"{self.source}: {key}: " if key else f"{self.source}: "
        return MappingFileError(prefix + problem, source=self.source, key=key or None)

    def section(self, value: Any, key: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping with {', '.join(required)}")
        allowed = (*required, *optional)
        unknown = [str(k) for k in value if k not in allowed]
        if unknown:
            raise self.fail(_join(key, unknown[0]), f"unknown key (allowed here: {', '.join(allowed)})")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(_join(key, missing[0]), "missing")
        return dict(value)

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty text")
        return value.strip()

    def ident(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not _IDENT.fullmatch(value):
            raise self.fail(key, f"{value!r} is not a column or table name (letters, digits, _)")
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def number(self, value: Any, key: str, low: float, high: float, integer: bool = True) -> Any:
        ok_type = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type) or not low <= value <= high:
            kind = "an integer" if integer else "a number"
            raise self.fail(key, f"must be {kind} from {low} to {high}")
        return value


def _join(key: str, sub: Any) -> str:
    return f"{key}.{sub}" if key else str(sub)


_TOP_REQUIRED = ("source", "dossiers", "steps")
_TOP_OPTIONAL = ("description", "files", "results", *CODE_MAPS)
_SOURCE_REQUIRED = ("name", "kind", "time_zone")
_SOURCE_OPTIONAL = ("description", "date_formats", "batch_size", "settle_seconds", "key_prefix")
_TABLE_REQUIRED = ("key", "cursor", "fields")
_TABLE_OPTIONAL = ("table", "schema", "version", "changed_at", "extra")
_RULE_KEYS = ("column", "type", "required", "codes", "max_length", "too_long", "on_invalid")
DEFAULT_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S",)
DEFAULT_BATCH_SIZE = 500


class DossierMapping:
    """A validated source mapping file, compiled for fast row mapping.

    ``name`` and ``kind`` (``sql`` or ``filedrop``) come from the file's ``source`` section;
    ``dossiers`` and ``steps`` are the two :class:`TableMapping`; ``files`` the export layout
    (None when the file has no ``files`` section); ``statuses``/``channels``/``subject_types``
    the local → national code maps. ``known_procedures`` (``code -> bool``), when set, makes an
    unknown MaTTHC an :class:`UnknownProcedure`.
    """

    def __init__(self, *, path: str, name: str, kind: str, description: str | None, time_zone: ZoneInfo,
                 date_formats: tuple[str, ...], batch_size: int, settle_seconds: float, key_prefix: str,
                 dossiers: TableMapping, steps: TableMapping, files: FileLayout | None,
                 codes: Mapping[str, Mapping[Any, int]],
                 known_procedures: Callable[[str], bool] | None = None, results: TableMapping | None = None):
        self.path = path
        self.file = Path(path).name
        self.name = name
        self.kind = kind
        self.description = description
        self.time_zone = time_zone
        self.date_formats = date_formats
        self.batch_size = batch_size
        self.settle_seconds = settle_seconds
        self.key_prefix = key_prefix
        self.dossiers = dossiers
        self.steps = steps
        #: result documents (section ``results``), or None: the system announces no result files
        self.results = results
        self.files = files
        self.codes = codes
        self.known_procedures = known_procedures

    def __repr__(self) -> str:
        return f"DossierMapping({self.name!r}, kind={self.kind!r}, file={self.path!r})"

    @property
    def statuses(self) -> Mapping[Any, int]:
        return self.codes.get("statuses", _NO_EXTRA)

    @property
    def channels(self) -> Mapping[Any, int]:
        return self.codes.get("channels", _NO_EXTRA)

    @property
    def subject_types(self) -> Mapping[Any, int]:
        return self.codes.get("subject_types", _NO_EXTRA)

    def table(self, kind: str) -> TableMapping:
        if kind == DOSSIER:
            return self.dossiers
        if kind == STEP:
            return self.steps
        if kind == RESULT and self.results is not None:
            return self.results
        if kind == RESULT:
            raise ValueError(f"{self.file} has no results section")
        raise ValueError(f"kind must be {DOSSIER!r}, {STEP!r} or {RESULT!r}, not {kind!r}")

    # -- mapping rows --------------------------------------------------------------------------
    def map_dossier(self, row: Mapping[str, Any]) -> MappedChange:
        """A dossier row (column → value) as a portal HoSo record, or a specific MappingError."""
        return self.dossiers.map(row, self.known_procedures)

    def map_step(self, row: Mapping[str, Any]) -> MappedChange:
        """A processing-step row as a portal QuaTrinhXuLy record, or a specific MappingError."""
        return self.steps.map(row)

    def map(self, kind: str, row: Mapping[str, Any]) -> MappedChange:
        return self.table(kind).map(row, self.known_procedures)

    def source_key(self, kind: str, row: Mapping[str, Any]) -> str | None:
        return self.table(kind).source_key(row)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, known_procedures: Callable[[str], bool] | None = None) -> DossierMapping:
        """Read and validate the mapping file at ``path``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingFileError(f"{path}: cannot read mapping file: {exc}", source=str(path)) from exc
        return cls.parse(text, str(path), known_procedures=known_procedures)

    @classmethod
    def shipped(cls, name: str, *, known_procedures: Callable[[str], bool] | None = None) -> DossierMapping:
        """A mapping file shipped in ``mappings/sources/`` by its stem (e.g. ``onestop_sandbox``)."""
        resource = resources.files("lienthong.mappings").joinpath("sources", f"{name}.yaml")
        if not resource.is_file():
            raise MappingFileError(f"no shipped source mapping is called {name!r} "
                                   f"(shipped: {', '.join(shipped_mappings()) or 'none'})", source=str(resource))
        return cls.parse(resource.read_text(encoding="utf-8"), str(resource), known_procedures=known_procedures)

    @classmethod
    def parse(cls, text: str, source: str, *,
              known_procedures: Callable[[str], bool] | None = None) -> DossierMapping:
        """Validate the YAML ``text`` completely; ``source`` names the file in every error."""
        check = _Check(source)
        try:
            doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader that refuses duplicate keys
        except yaml.YAMLError as exc:
            raise check.fail("", f"not valid YAML: {exc}") from exc
        doc = check.section(doc, "", _TOP_REQUIRED, _TOP_OPTIONAL)
        file = Path(source).name

        src = check.section(doc["source"], "source", _SOURCE_REQUIRED, _SOURCE_OPTIONAL)
        name = check.text(src["name"], "source.name")
        if not re.fullmatch(r"[a-z][a-z0-9_\-]*", name):
            raise check.fail("source.name", f"{name!r} must be a lower-case identifier (letters, digits, _ and -)")
        kind = check.choice(src["kind"], "source.kind", ("sql", "filedrop"))
        zone_name = check.text(src["time_zone"], "source.time_zone")
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise check.fail("source.time_zone", f"{zone_name!r} is not an IANA time zone "
                                                 "(e.g. Asia/Ho_Chi_Minh)") from None
        formats = _date_formats(check, src.get("date_formats", list(DEFAULT_DATE_FORMATS)))
        batch_size = check.number(src.get("batch_size", DEFAULT_BATCH_SIZE), "source.batch_size", 1, 100_000)
        settle = check.number(src.get("settle_seconds", 0), "source.settle_seconds", 0, 86_400, integer=False)
        prefix = src.get("key_prefix", "")
        if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]*:?", prefix):
            raise check.fail("source.key_prefix", "must be a short text of letters, digits, . _ - (e.g. 'bo_nn:')")
        description = doc.get("description", src.get("description"))
        if description is not None and not isinstance(description, str):
            raise check.fail("description", "must be a text")

        codes = {m: _code_map(check, m, doc[m]) for m in CODE_MAPS if m in doc}
        common = {"file": file, "zone": zone, "formats": formats, "codes": codes, "prefix": prefix,
                  "source_kind": kind}
        dossiers = _table(check, "dossiers", doc["dossiers"], DOSSIER, HOSO_SPEC, **common)
        steps = _table(check, "steps", doc["steps"], STEP, QUATRINH_SPEC, **common)
        results = _table(check, "results", doc["results"], RESULT, RESULT_SPEC, **common) if "results" in doc else None

        files = _files(check, doc["files"], with_results=results is not None) if "files" in doc else None
        if kind == "filedrop" and files is None:
            raise check.fail("files", "missing (a filedrop source needs the layout of its export files)")
        # settling needs each table's change time: the dossiers' cursor column is one, the steps'
        # (an id) is not
        if settle and kind == "sql" and steps.changed_at is None:
            raise check.fail("steps.changed_at", "missing: settle_seconds needs the steps' change-time column")
        return cls(path=source, name=name, kind=kind, description=description, time_zone=zone,
                   date_formats=formats, batch_size=batch_size, settle_seconds=float(settle), key_prefix=prefix,
                   dossiers=dossiers, steps=steps, files=files, codes=MappingProxyType(codes),
                   known_procedures=known_procedures, results=results)


def _date_formats(check: _Check, value: Any) -> tuple[str, ...]:
    key = "source.date_formats"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise check.fail(key, "must list one or more strptime formats (e.g. '%Y-%m-%d %H:%M:%S')")
    sample = datetime(2026, 11, 23, 9, 5, 7)
    for i, fmt in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(fmt, str) or not all(d in fmt for d in ("%Y", "%m", "%d")):
            raise check.fail(where, f"{fmt!r} must be a strptime format with at least %Y, %m and %d")
        try:
            back = datetime.strptime(sample.strftime(fmt), fmt)
        except ValueError as exc:
            raise check.fail(where, f"{fmt!r} is not a usable date format: {exc}") from None
        if back.date() != sample.date() or "%z" in fmt or "%Z" in fmt:
            raise check.fail(where, f"{fmt!r} does not read back the date it writes (time zones belong in "
                                    "source.time_zone)")
    return tuple(value)


def _code_map(check: _Check, map_name: str, value: Any) -> Mapping[Any, int]:
    table_name, national = CODE_MAPS[map_name]
    table = load_table(table_name)
    if not isinstance(value, Mapping) or not value:
        raise check.fail(map_name, f"must map each local code to a {national} ({_code_range(table)})")
    result: dict[Any, int] = {}
    seen: dict[str, Any] = {}
    for local, code in value.items():
        where = f"{map_name}.{local}"
        if isinstance(local, bool) or not isinstance(local, (str, int)):
            raise check.fail(where, "local codes must be texts or integers (quote YAML words like NO, YES, ON, OFF)")
        if isinstance(local, str) and (not local.strip() or local != local.strip()):
            raise check.fail(where, "a local code must be non-blank, without surrounding spaces")
        if str(local) in seen:
            raise check.fail(where, f"the same local code as {seen[str(local)]!r}")
        seen[str(local)] = local
        if isinstance(code, bool) or not isinstance(code, int) or code not in table.entries:
            raise check.fail(where, f"{code!r} is not a {national} ({_code_range(table)})")
        result[local] = code
    return MappingProxyType(result)


def _files(check: _Check, value: Any, *, with_results: bool = False) -> FileLayout:
    files = check.section(value, "files", ("dossiers", "steps"), ("xml_root", "formats", "encoding", "results"))
    dossiers = check.ident(files["dossiers"], "files.dossiers")
    steps = check.ident(files["steps"], "files.steps")
    if dossiers == steps:
        raise check.fail("files.steps", f"must differ from files.dossiers ({dossiers!r})")
    xml_root = check.ident(files.get("xml_root", "xuat_du_lieu"), "files.xml_root")
    formats = files.get("formats", ["json", "csv", "xml"])
    if not isinstance(formats, list) or not formats:
        raise check.fail("files.formats", "must list one or more of json, csv, xml")
    for i, fmt in enumerate(formats):
        check.choice(fmt, f"files.formats[{i}]", ("json", "csv", "xml"))
    encoding = check.text(files.get("encoding", "utf-8"), "files.encoding")
    try:
        "".encode(encoding)
    except LookupError:
        raise check.fail("files.encoding", f"{encoding!r} is not a known text encoding") from None
    results = None
    if "results" in files:
        if not with_results:
            raise check.fail("files.results", "names result records, but the file has no results section")
        results = check.ident(files["results"], "files.results")
        if results in (dossiers, steps):
            raise check.fail("files.results", f"must differ from files.dossiers and files.steps ({results!r})")
    return FileLayout(dossiers, steps, xml_root, tuple(dict.fromkeys(formats)), encoding, results)


def _table(check: _Check, key: str, value: Any, kind: str, spec: Mapping[str, _Portal], *, file: str,
           zone: ZoneInfo, formats: tuple[str, ...], codes: Mapping[str, Mapping[Any, int]], prefix: str,
           source_kind: str) -> TableMapping:
    required = _TABLE_REQUIRED + (("version",) if kind == DOSSIER else ())
    optional = tuple(k for k in _TABLE_OPTIONAL if k not in required)
    section = check.section(value, key, required, optional)
    table = schema = None
    if "table" in section:
        table = check.ident(section["table"], f"{key}.table")
    elif source_kind == "sql":
        raise check.fail(f"{key}.table", "missing (a sql source reads this table or view)")
    if section.get("schema") is not None:
        schema = check.ident(section["schema"], f"{key}.schema")
    key_column = check.ident(section["key"], f"{key}.key")
    version = check.ident(section["version"], f"{key}.version") if "version" in section else None

    cursor = section["cursor"]
    if isinstance(cursor, str):
        cursor = {"column": cursor}
    cursor = check.section(cursor, f"{key}.cursor", ("column",), ("tiebreak",))
    cursor_column = check.ident(cursor["column"], f"{key}.cursor.column")
    tiebreak = check.ident(cursor["tiebreak"], f"{key}.cursor.tiebreak") if "tiebreak" in cursor else None
    if tiebreak == cursor_column:
        raise check.fail(f"{key}.cursor.tiebreak", "must be another column than the cursor column")
    changed_at = check.ident(section["changed_at"], f"{key}.changed_at") if "changed_at" in section else None

    fields = section["fields"]
    if not isinstance(fields, Mapping) or not fields:
        raise check.fail(f"{key}.fields", "must map portal field names to their source column")
    rules: dict[str, FieldRule] = {}
    used: dict[str, str] = {}
    for portal_name, raw in fields.items():
        where = f"{key}.fields.{portal_name}"
        if portal_name not in spec:
            raise check.fail(where, f"the portal has no such field (known: {', '.join(spec)})")
        portal = spec[portal_name]
        if portal.type == "list":
            raise check.fail(where, "is a list of sub-records on the portal; it cannot be filled from one column")
        if isinstance(raw, str):
            raw = {"column": raw, "type": portal.type}
        rule = _rule(check, where, portal_name, portal, raw, codes)
        if rule.column in used:
            raise check.fail(f"{where}.column", f"column {rule.column} is already mapped to {used[rule.column]}")
        used[rule.column] = portal_name
        rules[portal_name] = rule
    missing = [n for n, p in spec.items() if p.required and n not in rules]
    if missing:
        raise check.fail(f"{key}.fields.{missing[0]}", "missing: the portal requires this field")

    extra = section.get("extra", [])
    if not isinstance(extra, list):
        raise check.fail(f"{key}.extra", "must list source columns to carry along unmapped")
    extra_columns: list[str] = []
    for i, column in enumerate(extra):
        column = check.ident(column, f"{key}.extra[{i}]")
        if column in used:
            raise check.fail(f"{key}.extra[{i}]", f"column {column} is already mapped to {used[column]}")
        if column in extra_columns:
            raise check.fail(f"{key}.extra[{i}]", f"column {column} is listed twice")
        extra_columns.append(column)

    ordered = tuple(rules[n] for n in spec if n in rules)  # schema order, whatever the file's order
    plan = tuple((r.field, r.column, _transform(r, spec[r.field], zone, formats, codes, file)) for r in ordered)
    status_field = {DOSSIER: "TrangThaiHoSo", STEP: "TrangThai"}.get(kind, "")
    return TableMapping(kind=kind, file=file, table=table, schema=schema, key=key_column, version=version,
                        cursor=cursor_column, tiebreak=tiebreak, changed_at=changed_at, fields=ordered,
                        extra=tuple(extra_columns), key_prefix=prefix, _plan=plan, _status_field=status_field,
                        _code_column=rules["MaHoSo"].column,
                        _changed_column=changed_at or (cursor_column if kind == DOSSIER else None))


def _rule(check: _Check, where: str, name: str, portal: _Portal, raw: Any,
          codes: Mapping[str, Mapping[Any, int]]) -> FieldRule:
    rule = check.section(raw, where, ("column", "type"), tuple(k for k in _RULE_KEYS if k not in ("column", "type")))
    column = check.ident(rule["column"], f"{where}.column")
    kind = check.choice(rule["type"], f"{where}.type", _FIELD_TYPES)
    allowed = {"code": ("code", "int")}.get(portal.type, (portal.type,))
    if kind not in allowed:
        raise check.fail(f"{where}.type", f"{kind} does not fit {name}, which the portal takes as "
                                          f"{' or '.join(allowed)}")
    required = check.boolean(rule.get("required", portal.required), f"{where}.required")
    if portal.required and not required:
        raise check.fail(f"{where}.required", f"the portal requires {name}; it cannot be optional")

    map_name = None
    if kind == "code":
        map_name = check.choice(rule.get("codes"), f"{where}.codes", (portal.codes,))
        if map_name not in codes:
            raise check.fail(f"{where}.codes", f"names {map_name}, but the file has no {map_name} section")
    elif "codes" in rule:
        raise check.fail(f"{where}.codes", "only fields of type code look codes up")

    max_length = None
    if "max_length" in rule or "too_long" in rule:
        if kind != "text":
            key = "max_length" if "max_length" in rule else "too_long"
            raise check.fail(f"{where}.{key}", "only text fields have a length")
    if kind == "text":
        max_length = portal.max_length
        if "max_length" in rule:
            max_length = check.number(rule["max_length"], f"{where}.max_length", 1, portal.max_length or 1_000_000)
    too_long = check.choice(rule.get("too_long", "refuse"), f"{where}.too_long", ("refuse", "truncate"))
    if too_long == "truncate" and portal.pattern:
        raise check.fail(f"{where}.too_long", f"{name} is an identifier: a truncated one would be wrong")
    on_invalid = check.choice(rule.get("on_invalid", "refuse"), f"{where}.on_invalid", ("refuse", "omit"))
    if on_invalid == "omit" and required:
        raise check.fail(f"{where}.on_invalid", "omit is only for optional fields; a required one must be valid")
    return FieldRule(name, column, kind, required, max_length, too_long, on_invalid, map_name)


def _transform(rule: FieldRule, portal: _Portal, zone: ZoneInfo, formats: tuple[str, ...],
               codes: Mapping[str, Mapping[Any, int]], file: str) -> Transform:
    if rule.type == "text":
        return _text_transform(rule, portal)
    if rule.type == "date":
        return _date_transform(rule, zone, formats)
    if rule.type == "bool":
        return _bool_transform(rule)
    if rule.type == "code":
        assert rule.codes is not None
        return _code_transform(rule, codes[rule.codes], rule.codes, file)
    if portal.type == "code":  # an int column holding the national code itself
        table_name, national = CODE_MAPS[portal.codes]
        return _int_transform(rule, _Portal("int"), load_table(table_name), national)
    return _int_transform(rule, portal, None, None)


def shipped_mappings() -> tuple[str, ...]:
    """The stems of the mapping files shipped in ``mappings/sources/``."""
    folder = resources.files("lienthong.mappings").joinpath("sources")
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


def json_safe(value: Any) -> Any:
    """A source value as JSON can carry it (dead letters keep the raw row): times as ISO text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return json.loads(json.dumps(value, default=str))
