"""Code tables as data: load, validate and cache the YAML files in ``mappings/tables/``.

Why files and not constants: the national side changes its code tables (2025 brought merged
ministries and provinces and abolished the district level; Decree 42/2022 replaced the online
levels), and such a change should be a reviewed edit of one data file, not a hunt through code.

Why validate on load: a typo in a table (a missing label, a level that does not exist, a code
written twice) would otherwise surface as a wrong value in a stored procedure weeks later. Every
file is checked completely the first time it is read, and any problem is reported as a
:class:`~lienthong.mappings.errors.CodeTableError` naming the file and the key. YAML's silent
"last duplicate key wins" is refused for the same reason. A loaded table is cached for the life
of the process (``load_table.cache_clear()`` forgets it).

Each table has the same outer shape::

    fields: [NATIONALFIELD, ...]    # the national fields that carry these codes
    description: ...                # optional
    codes:                          # code -> entry; every entry has at least a non-empty label
      CODE: {label: ..., ...}
    unlisted: {label: ..., ...}     # optional: the entry used for a code the table does not list

and the per-table attributes of an entry are declared in ``_SPECS`` below.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .errors import CodeTableError, UnknownCode

ADMINISTRATIVE_LEVEL = "administrative_level"  # CAPTHUCHIEN / CAPDONVI
ONLINE_LEVEL = "online_level"  # MUCDO
CHANNEL = "channel"  # KENH
PROCEDURE_STATUS = "procedure_status"  # TRANGTHAI
DOSSIER_STATUS = "dossier_status"  # TrangThaiHoSo / TrangThai (portal dossiers and steps)
SUBJECT_TYPE = "subject_type"  # LoaiDoiTuong (portal dossiers)
SUBMISSION_PLACE = "submission_place"  # NoiNopHoSo (portal dossiers)
EDXML_DOCUMENT_TYPE = "edxml_document_type"  # MessageHeader/DocumentType/Type (the envelope)
EDXML_PRIORITY = "edxml_priority"  # MessageHeader/OtherInfo/Priority (the envelope)

Code = int | str


# --------------------------------------------------------------------------------------------
# what each table must contain
# --------------------------------------------------------------------------------------------
def _text(value: Any, doc: Mapping[str, Any]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty text"
    return None


def _boolean(value: Any, doc: Mapping[str, Any]) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _online_level(value: Any, doc: Mapping[str, Any]) -> str | None:
    levels = doc.get("levels")
    if not isinstance(levels, Mapping) or value not in levels:
        return f"must be one of the normalised levels declared under 'levels' ({', '.join(map(str, levels or ()))})"
    return None


@dataclass(frozen=True)
class _Spec:
    key: type  # int or str: the type of the codes as the national records carry them
    attributes: Mapping[str, Callable[[Any, Mapping[str, Any]], str | None]]
    sections: Mapping[str, Callable[[Any], str | None]] = field(default_factory=dict)


def _levels_section(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not value:
        return "must map each normalised level to its label"
    for key, label in value.items():
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            return f"level {key!r} must be a lower-case identifier"
        if not isinstance(label, str) or not label.strip():
            return f"level {key!r} needs a non-empty label"
    return None


_SPECS: dict[str, _Spec] = {
    ADMINISTRATIVE_LEVEL: _Spec(str, {"label": _text}),
    ONLINE_LEVEL: _Spec(str, {"label": _text, "level": _online_level, "legacy": _boolean},
                        sections={"levels": _levels_section}),
    CHANNEL: _Spec(int, {"label": _text}),
    PROCEDURE_STATUS: _Spec(int, {"label": _text, "published": _boolean}),
    DOSSIER_STATUS: _Spec(int, {"label": _text, "terminal": _boolean}),
    SUBJECT_TYPE: _Spec(int, {"label": _text, "confirmed": _boolean}),
    SUBMISSION_PLACE: _Spec(int, {"label": _text, "confirmed": _boolean}),
    EDXML_DOCUMENT_TYPE: _Spec(int, {"label": _text, "data_message": _boolean}),
    EDXML_PRIORITY: _Spec(int, {"label": _text, "default": _boolean}),
}

#: the tables of the national procedure catalogue (what :func:`load_all` checks by default)
TABLE_NAMES: tuple[str, ...] = (ADMINISTRATIVE_LEVEL, ONLINE_LEVEL, CHANNEL, PROCEDURE_STATUS)
#: the tables of the dossier push (source mapping files in ``mappings/sources/`` are checked against them)
DOSSIER_TABLE_NAMES: tuple[str, ...] = (DOSSIER_STATUS, SUBJECT_TYPE, SUBMISSION_PLACE)
#: the tables of the edXML header the hub writes (hub/envelope.py, schemas/README.md)
ENVELOPE_TABLE_NAMES: tuple[str, ...] = (EDXML_DOCUMENT_TYPE, EDXML_PRIORITY)
#: every table the hub ships, in a stable order
ALL_TABLE_NAMES: tuple[str, ...] = (*TABLE_NAMES, *DOSSIER_TABLE_NAMES, *ENVELOPE_TABLE_NAMES)

_STR_CODE = re.compile(r"[A-Z][A-Z0-9_]*")


# --------------------------------------------------------------------------------------------
# the loaded table
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CodeTable:
    """One validated code table: ``entries[code]`` is a read-only mapping with at least ``label``."""

    name: str
    source: str
    fields: tuple[str, ...]
    description: str | None
    entries: Mapping[Code, Mapping[str, Any]]
    unlisted: Mapping[str, Any] | None = None
    sections: Mapping[str, Any] = field(default_factory=dict)

    def _coerce(self, code: Any) -> Any:
        # "2" from an XML text and 2 from Python mean the same channel
        if _SPECS[self.name].key is int and isinstance(code, str) and code.strip().isdigit():
            return int(code)
        return code

    def __contains__(self, code: object) -> bool:
        return self._coerce(code) in self.entries

    def codes(self) -> tuple[Code, ...]:
        return tuple(self.entries)

    def entry(self, code: Any, *, field: str | None = None, procedure: str | None = None) -> Mapping[str, Any]:
        """The entry of ``code``, else the ``unlisted`` entry, else :class:`UnknownCode` naming ``field``."""
        found = self.entries.get(self._coerce(code))
        if found is not None:
            return found
        if self.unlisted is not None:
            return self.unlisted
        where = field or "/".join(self.fields)
        prefix = f"procedure {procedure}: " if procedure else ""
        raise UnknownCode(
            f"{prefix}{where}: unknown code {code!r}, not in code table {self.name} ({self.source}); "
            f"known codes: {', '.join(map(str, self.entries))}",
            field=where, procedure=procedure)

    def label(self, code: Any, **where: Any) -> str:
        return self.entry(code, **where)["label"]


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable key: let SafeLoader report it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)



def _nfc(value: Any) -> Any:
    """Labels are compared and displayed as NFC, whatever the editor of the file produced."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value.strip())
    return value


def _frozen(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: _nfc(v) for k, v in entry.items()})


def _check_entry(source: str, where: str, entry: Any, spec: _Spec, doc: Mapping[str, Any]) -> None:
    if not isinstance(entry, Mapping):
        raise CodeTableError(f"{source}: {where}: must be a mapping of attributes (label: ...)", source=source)
    missing = [a for a in spec.attributes if a not in entry]
    if missing:
        raise CodeTableError(f"{source}: {where}: missing {', '.join(missing)}", source=source)
    unknown = [str(a) for a in entry if a not in spec.attributes]
    if unknown:
        raise CodeTableError(f"{source}: {where}: unknown attribute {', '.join(unknown)} "
                             f"(allowed: {', '.join(spec.attributes)})", source=source)
    for attr, check in spec.attributes.items():
        problem = check(entry[attr], doc)
        if problem:
            raise CodeTableError(f"{source}: {where}.{attr}: {problem}", source=source)


def parse_table(name: str, text: str, source: str) -> CodeTable:
    """Validate the YAML ``text`` of table ``name`` completely; ``source`` names the file in errors."""
    spec = _SPECS.get(name)
    if spec is None:
        raise CodeTableError(f"{source}: no code table is called {name!r} (known: {', '.join(ALL_TABLE_NAMES)})",
                             source=source)
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        raise CodeTableError(f"{source}: not valid YAML: {exc}", source=source) from exc
    if not isinstance(doc, Mapping):
        raise CodeTableError(f"{source}: must be a mapping with 'fields' and 'codes'", source=source)
    allowed = {"fields", "description", "codes", "unlisted", *spec.sections}
    unknown = [str(k) for k in doc if k not in allowed]
    if unknown:
        raise CodeTableError(f"{source}: unknown key {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})",
                             source=source)

    fields = doc.get("fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise CodeTableError(f"{source}: fields: must list the national fields that carry these codes",
                             source=source)
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise CodeTableError(f"{source}: description: must be a text", source=source)
    for section, check in spec.sections.items():
        if section not in doc:
            raise CodeTableError(f"{source}: {section}: missing", source=source)
        problem = check(doc[section])
        if problem:
            raise CodeTableError(f"{source}: {section}: {problem}", source=source)

    codes = doc.get("codes")
    if not isinstance(codes, Mapping) or not codes:
        raise CodeTableError(f"{source}: codes: must map each code to its entry", source=source)
    entries: dict[Code, Mapping[str, Any]] = {}
    for code, entry in codes.items():
        where = f"codes.{code}"
        if spec.key is int:
            if not isinstance(code, int) or isinstance(code, bool) or code < 0:
                raise CodeTableError(f"{source}: {where}: codes of this table are non-negative integers",
                                     source=source)
        elif not isinstance(code, str) or not _STR_CODE.fullmatch(code):
            raise CodeTableError(f"{source}: {where}: codes of this table are upper-case ASCII (e.g. TOAN_TRINH)",
                                 source=source)
        _check_entry(source, where, entry, spec, doc)
        entries[code] = _frozen(entry)

    unlisted = doc.get("unlisted")
    if unlisted is not None:
        _check_entry(source, "unlisted", unlisted, spec, doc)
        unlisted = _frozen(unlisted)

    sections = {s: doc[s] for s in spec.sections}
    if "levels" in sections:
        sections["levels"] = MappingProxyType({k: _nfc(v) for k, v in sections["levels"].items()})
    return CodeTable(name=name, source=source, fields=tuple(fields), description=_nfc(description),
                     entries=MappingProxyType(entries), unlisted=unlisted, sections=MappingProxyType(sections))


def read_table(path: str | Path, name: str | None = None) -> CodeTable:
    """Read and validate one table file (``name`` defaults to the file's stem). Not cached."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CodeTableError(f"{path}: cannot read code table: {exc}", source=str(path)) from exc
    return parse_table(name or path.stem, text, str(path))


@cache
def load_table(name: str) -> CodeTable:
    """The shipped table ``name`` (see :data:`ALL_TABLE_NAMES`), validated on first use and cached."""
    if name not in _SPECS:
        raise CodeTableError(f"no code table is called {name!r} (known: {', '.join(ALL_TABLE_NAMES)})")
    resource = resources.files("lienthong.mappings").joinpath("tables", f"{name}.yaml")
    try:
        text = resource.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CodeTableError(f"{resource}: cannot read code table: {exc}", source=str(resource)) from exc
    return parse_table(name, text, str(resource))


def load_all(names: Iterable[str] = TABLE_NAMES) -> dict[str, CodeTable]:
    """The shipped tables ``names`` (the catalogue's by default; :data:`ALL_TABLE_NAMES` for
    every one), validated: a cheap start-up or health check."""
    return {name: load_table(name) for name in names}
