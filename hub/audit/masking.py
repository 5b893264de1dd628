"""Personal-data masking for every view of the audit ledger.

The ledger keeps the exact bytes of every message, and those bytes name citizens: the dossier
owner (``ChuHoSo``), their identity-document number (``SoGiayToChuHoSo``, ``DinhDanhCHS/SoDinhDanh``,
CMND/CCCD), phone and e-mail. An auditor reading the ledger rarely needs them, so every view
(search table, ``audit show``, dossier timeline, JSON output) shows masked values unless the
reader asks for them with a reason, which is itself recorded (see ``lienthong.hub.cli.audit.read``).

Masking keeps enough to recognise a record without identifying a person:

* names: the first letter of each word and at most three stars (``Nguyễn Văn An`` → ``N*** V** A*``),
  so the length of a name does not leak either;
* numbers (phones, ID numbers): the first two and last two digits (``0912345678`` → ``09******78``),
  separators kept (``0243 823 1456`` → ``02** *** **56``);
* e-mail: the first letter of the mailbox and the domain (``an.nguyen@example.vn`` → ``a***@example.vn``).

A value that appears in a personal-data field is also masked wherever else it appears in the same
view (the owner's name repeated in ``TrichYeuHoSo`` or ``GhiChu``, a phone number in a step's
text), and e-mail addresses, Vietnamese phone numbers and 9/12-digit identity numbers are masked
in free text even when no field named them. Officials' names (``NguoiXuLy``, ``NguoiTiepNhanBoSung``)
act in an official capacity and are part of the processing record: they are not masked.

All text is NFC-normalised first, so a name typed with combining diacritics matches the same name
typed precomposed. Masking never touches the stored bytes: it works on a copy made for display,
and signature verification always runs on the exact stored message.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from copy import deepcopy
from typing import Any

from lxml import etree

__all__ = [
    "Masker",
    "NAME_FIELDS",
    "ID_FIELDS",
    "PHONE_FIELDS",
    "EMAIL_FIELDS",
    "mask_name",
    "mask_number",
    "mask_email",
]

#: Element (or JSON key) local names holding personal data, by how they are masked.
NAME_FIELDS = frozenset({"ChuHoSo", "HoTen", "HoVaTen", "TenChuHoSo", "TenCongDan"})
ID_FIELDS = frozenset({"SoGiayToChuHoSo", "SoDinhDanh", "MaDoiTuong", "CMND", "CCCD", "SoCMND", "SoCCCD",
                       "SoGiayTo"})
PHONE_FIELDS = frozenset({"SoDienThoai", "DienThoai", "Telephone"})
EMAIL_FIELDS = frozenset({"Email"})
_ALL_FIELDS = NAME_FIELDS | ID_FIELDS | PHONE_FIELDS | EMAIL_FIELDS

#: Elements whose text is never free text to scan: signatures and base64 file chunks (a run of
#: digits inside base64 is not a phone number, and rewriting it would only corrupt the display).
_OPAQUE = frozenset({"Signature", "DuLieu", "X509Certificate", "SignatureValue", "DigestValue"})

#: base64 file chunks longer than this are summarised in readable views
_LONG_BASE64 = 512

_EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Vietnamese phone numbers: 0 or +84 then 9-10 digits, optionally grouped by spaces, dots or dashes.
_PHONE_RE = re.compile(r"(?<![\w+])(?:\+84|0)(?:[ .-]?\d){8,10}(?![\w])")
# CMND (9 digits) and CCCD (12 digits) standing alone.
_IDNUM_RE = re.compile(r"(?<![\w.-])(?:\d{12}|\d{9})(?![\w-])")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def mask_name(name: str) -> str:
    """``Nguyễn Văn An`` → ``N*** V** A*``: first letter of each word, at most three stars."""
    words = _nfc(name).split()
    return " ".join(w[0] + "*" * min(len(w) - 1, 3) if len(w) > 1 else "*" for w in words)


def mask_number(value: str) -> str:
    """Keep the first two and last two letters or digits (``0912345678`` → ``09******78``).

    Separators stay where they are, so a grouped phone number keeps its shape. Values with fewer
    than six letters or digits are masked entirely: two plus two of five would reveal too much.
    """
    value = _nfc(value)
    positions = [i for i, c in enumerate(value) if c.isalnum()]
    keep = set(positions[:2] + positions[-2:]) if len(positions) >= 6 else set()
    return "".join(c if (i in keep or not c.isalnum()) else "*" for i, c in enumerate(value))


def mask_email(value: str) -> str:
    """``an.nguyen@example.vn`` → ``a***@example.vn``."""
    value = _nfc(value).strip()
    local, at, domain = value.partition("@")
    if not at or not local:
        return mask_number(value)
    return f"{local[0]}***@{domain}"


def _mask_for(field: str, value: str) -> str:
    if field in NAME_FIELDS:
        return mask_name(value)
    if field in EMAIL_FIELDS:
        return mask_email(value)
    return mask_number(value)


def _local(tag: Any) -> str | None:
    if not isinstance(tag, str):
        return None  # comments, processing instructions
    return tag.rsplit("}", 1)[-1]


class Masker:
    """Masks one view: learns the personal values it meets, then masks them everywhere.

    Keep one instance per view (one ``audit show``, one dossier timeline), so a name learned from
    the dossier's ``DongBoHoSoMC`` also masks the same name in a later step's text. ``enabled=False``
    (``--unmask``) returns everything unchanged, so callers need no second code path.
    """

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self._known: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None

    # --- learning ------------------------------------------------------------------------
    def learn(self, field: str, value: str | None) -> str | None:
        """Remember ``value`` of personal field ``field``; return its mask (or ``value`` unmasked)."""
        if value is None or not value.strip():
            return value
        value = _nfc(value.strip())
        masked = _mask_for(field, value)
        if len(value) >= 3 and self._known.get(value) != masked:
            self._known[value] = masked
            self._pattern = None
        return masked if self.enabled else value

    def learn_xml(self, root: etree._Element) -> None:
        for el in root.iter():
            name = _local(el.tag)
            if name in _ALL_FIELDS and el.text:
                self.learn(name, el.text)

    def learn_json(self, data: Any) -> None:
        for key, value in json_items(data):
            if key in _ALL_FIELDS and isinstance(value, str):
                self.learn(key, value)

    # --- masking -------------------------------------------------------------------------
    def text(self, text: str | None) -> str | None:
        """Free text: known values, e-mails, phone numbers and ID numbers masked."""
        if not self.enabled or not text:
            return text
        text = _nfc(text)
        if self._known:
            if self._pattern is None:
                alternatives = sorted(self._known, key=len, reverse=True)
                self._pattern = re.compile(
                    r"(?<!\w)(?:" + "|".join(re.escape(v) for v in alternatives) + r")(?!\w)")
            text = self._pattern.sub(lambda m: self._known[m.group(0)], text)
        text = _EMAIL_RE.sub(lambda m: mask_email(m.group(0)), text)
        text = _PHONE_RE.sub(lambda m: mask_number(m.group(0)), text)
        return _IDNUM_RE.sub(lambda m: mask_number(m.group(0)), text)

    def field(self, field: str, value: str | None) -> str | None:
        """A value taken from element/key ``field``: a personal field's mask, else masked free text."""
        if value is None:
            return None
        if field in _ALL_FIELDS:
            return self.learn(field, value)
        return self.text(value)

    def xml(self, root: etree._Element) -> etree._Element:
        """A masked copy of ``root`` (learning its personal fields first); ``root`` is untouched."""
        if not self.enabled:
            return root
        self.learn_xml(root)
        copy = deepcopy(root)
        self._mask_element(copy, opaque=False)
        return copy

    def _mask_element(self, el: etree._Element, *, opaque: bool) -> None:
        name = _local(el.tag)
        opaque = opaque or name in _OPAQUE
        if not opaque and el.text:
            el.text = self.field(name or "", el.text)
        for key, value in el.attrib.items():
            if not opaque:
                el.set(key, self.text(value) or "")
        for child in el:
            self._mask_element(child, opaque=opaque)
            if child.tail and not opaque:
                child.tail = self.text(child.tail)

    def json(self, data: Any) -> Any:
        """A masked copy of decoded JSON (learning its personal keys first)."""
        if not self.enabled:
            return data
        self.learn_json(data)
        return self._mask_json(data, None)

    def _mask_json(self, data: Any, key: str | None) -> Any:
        if isinstance(data, dict):
            return {k: self._mask_json(v, k) for k, v in data.items()}
        if isinstance(data, list):
            return [self._mask_json(v, key) for v in data]
        if isinstance(data, str):
            return self.field(key or "", data)
        return data

    def body_text(self, raw: bytes) -> str:
        """Any stored body as readable, masked text: pretty XML, indented JSON, or plain text."""
        from ..errors import XmlRejected
        from ..xmlsafe import parse_xml

        if not raw:
            return ""
        stripped = raw.lstrip()
        if stripped[:1] in (b"{", b"["):
            try:
                data = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                pass
            else:
                return json.dumps(self.json(data), ensure_ascii=False, indent=2)
        if stripped[:1] == b"<":
            try:
                root = parse_xml(raw, what="audit entry body")
            except XmlRejected:
                pass
            else:
                shown = self.xml(root)  # root itself when unmasked: a fresh parse, free to indent
                for el in shown.iter("{*}DuLieu", "DuLieu"):
                    # a result file's chunk is up to ~700,000 characters of base64: nobody reads it
                    if el.text and len(el.text) > _LONG_BASE64:
                        el.text = f"[{len(el.text):,} characters of base64 not shown; --raw gives the exact bytes]"
                etree.indent(shown, space="  ")
                return etree.tostring(shown, encoding="unicode")
        return self.text(raw.decode("utf-8", "replace")) or ""


def json_items(data: Any) -> Iterable[tuple[str, Any]]:
    """Every ``(key, value)`` pair in a JSON document, depth first (nested objects and lists too)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield key, value
            yield from json_items(value)
    elif isinstance(data, list):
        for value in data:
            yield from json_items(value)
