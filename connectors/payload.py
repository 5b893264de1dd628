"""Small helpers to turn plain Python data into namespace-qualified payload elements and back.

The national payloads are record-shaped (ordered fields, repeated sub-records), so the connectors, the
sandbox and the sample generator describe them as ordered ``dict``/``list`` values and let :func:`element`
produce the XML in the order the XSD expects: a ``dict`` keeps its insertion order, a ``list``
value repeats the element, ``None`` omits it. Reading goes the other way with :func:`text` and
:func:`children`, always namespace-qualified so an unprefixed (unqualified) element is never
mistaken for a payload field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from lxml import etree


def _to_text(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the hub keeps UTC internally; never send an ambiguous time
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def iso_moment(moment: str) -> str:
    """A moment as ISO 8601: the portal's ``yyyyMMddHHmmss`` (Vietnam time) becomes
    ``yyyy-MM-ddTHH:mm:ss+07:00``; anything else is returned as it is."""
    if len(moment) == 14 and moment.isdigit():
        return f"{moment[:4]}-{moment[4:6]}-{moment[6:8]}T{moment[8:10]}:{moment[10:12]}:{moment[12:]}+07:00"
    return moment


def fill(parent: etree._Element, ns: str, content: Mapping[str, Any]) -> etree._Element:
    """Append the fields of ``content`` to ``parent`` as ``{ns}name`` children, in order.

    On the push's hot path (a 100-dossier message is ~2,500 fields): plain strings, the common
    case, skip the conversion, and the qualified names are built once per message.
    """
    sub = etree.SubElement
    qualified = _qualified(ns)
    for name, value in content.items():
        if value is None:
            continue
        tag = qualified.get(name) or qualified.setdefault(name, f"{{{ns}}}{name}")
        if type(value) is str:
            sub(parent, tag).text = value
            continue
        values = value if isinstance(value, list) else (value,)
        for item in values:
            if item is None:
                continue
            child = sub(parent, tag)
            if isinstance(item, Mapping):
                fill(child, ns, item)
            else:
                child.text = item if type(item) is str else _to_text(item)
    return parent


_QUALIFIED: dict[str, dict[str, str]] = {}


def _qualified(ns: str) -> dict[str, str]:
    """``{local name: "{ns}name"}`` for one namespace (a handful of namespaces, a few hundred names)."""
    names = _QUALIFIED.get(ns)
    if names is None:
        names = _QUALIFIED.setdefault(ns, {})
    return names


def element(ns: str, tag: str, content: Mapping[str, Any] | None = None, *, prefix: str | None = None) -> etree._Element:
    """A new ``{ns}tag`` element holding ``content`` (see :func:`fill`)."""
    root = etree.Element(f"{{{ns}}}{tag}", nsmap={prefix: ns} if prefix else None)
    return fill(root, ns, content or {})


def text(parent: etree._Element, ns: str, name: str, default: str | None = None) -> str | None:
    """Stripped text of the first ``{ns}name`` child, or ``default`` when absent or empty."""
    value = parent.findtext(f"{{{ns}}}{name}")
    if value is None:
        return default
    value = value.strip()
    return value if value else default


def children(parent: etree._Element, ns: str, name: str) -> list[etree._Element]:
    return parent.findall(f"{{{ns}}}{name}")


def to_dict(el: etree._Element, *, lists: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A record element as a dict keyed by local names (leaf text as ``str``, sub-records as dicts).

    A field that occurs more than once, or whose name is in ``lists``, becomes a list, so that a
    repeated field reads the same whether it carried one item or many. Used to keep what the
    sandbox received in a form tests can compare field by field.
    """
    grouped: dict[str, list[Any]] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        value: Any = to_dict(child, lists=lists) if len(child) else (child.text or "").strip()
        grouped.setdefault(name, []).append(value)
    return {k: (v if len(v) > 1 or k in lists else v[0]) for k, v in grouped.items()}
