"""Small helpers to build and read national payload elements from plain Python values.

Payload schemas are sequences, so order matters: callers pass dicts in schema order (Python
dicts keep insertion order). ``None`` leaves an optional element out; a list repeats an element;
a dict nests one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from lxml import etree


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    return str(value)


def _fill(parent: etree._Element, ns: str, fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            child = etree.SubElement(parent, f"{{{ns}}}{name}")
            if isinstance(v, Mapping):
                _fill(child, ns, v)
            else:
                child.text = _text(v)


def build(ns: str, name: str, fields: Mapping[str, Any] | None = None, *, prefix: str = "tt") -> etree._Element:
    """``build(ns, "LayThuTuc", {"MATTHC": "1.005129"})`` → ``<tt:LayThuTuc><tt:MATTHC>…``."""
    root = etree.Element(f"{{{ns}}}{name}", nsmap={prefix: ns})
    _fill(root, ns, fields or {})
    return root


def to_python(el: etree._Element, *, lists: frozenset[str] = frozenset()) -> dict[str, Any] | str:
    """A payload element as nested dicts; names in ``lists`` (or repeated) become lists."""
    if len(el) == 0:
        return (el.text or "").strip()
    out: dict[str, Any] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue
        key = etree.QName(child).localname
        value = to_python(child, lists=lists)
        if key in out:
            if not isinstance(out[key], list):
                out[key] = [out[key]]
            out[key].append(value)
        elif key in lists:
            out[key] = [value]
        else:
            out[key] = value
    return out
