"""What changed between two stored procedure documents, for people and for the version history.

A content hash says *that* a procedure changed; an operator needs to read *what* changed ("the
online fee went from 100 000 to 50 000 đồng"). :func:`diff_documents` compares two
:meth:`~lienthong.mappings.procedure.Procedure.to_document` dicts (or any JSON-like values) and
returns one :class:`Change` per differing leaf or per added/removed sub-record.

Lists of records are matched by their natural key where the model has one (a channel by
``kenh``, a fee or document by ``code``...), so inserting a channel does not make every later
channel look changed and a path reads ``channels[kenh=2].times[0].fees[code=PLP-1].amount``.
Other lists (steps, processing times, components) are compared position by position. When a
keyed list holds a duplicate or missing key, keys cannot identify items and that list falls back
to positions. A keyed list whose items are the same but in another order yields one
``<path>#order`` change, so an empty diff always means equal documents.

Order of the result is stable: the documents' own key order, old items before added ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

#: list name -> the field identifying an item of that list (see Procedure.to_document)
NATURAL_KEYS: Mapping[str, str] = MappingProxyType({
    "channels": "kenh",
    "fees": "code",
    "documents": "code",
    "fields": "code",
    "agencies": "code",
    "results": "code",
    "legal_bases": "number",
})

Kind = Literal["added", "removed", "changed"]


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: ``old`` is None for "added", ``new`` is None for "removed"."""

    path: str
    kind: Kind
    old: Any = None
    new: Any = None


def diff_documents(old: Any, new: Any) -> list[Change]:
    """The changes that turn ``old`` into ``new`` (empty exactly when they are equal)."""
    out: list[Change] = []
    _diff(old, new, "", None, out)
    return out


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 == True in Python, but a stored document changing type is a change worth seeing
    return type(a) is type(b) and a == b


def _diff(old: Any, new: Any, path: str, name: str | None, out: list[Change]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key, value in old.items():
            if key in new:
                _diff(value, new[key], _join(path, key), key, out)
            else:
                out.append(Change(_join(path, key), "removed", value, None))
        for key, value in new.items():
            if key not in old:
                out.append(Change(_join(path, key), "added", None, value))
    elif isinstance(old, list) and isinstance(new, list):
        key = NATURAL_KEYS.get(name) if name else None
        if key and _keys(old, key) is not None and _keys(new, key) is not None:
            _diff_keyed(old, new, path, key, out)
        else:
            _diff_positional(old, new, path, out)
    elif not _same(old, new):
        out.append(Change(path, "changed", old, new))


def _keys(items: list[Any], key: str) -> list[Any] | None:
    """The natural keys of ``items`` in order, or None when they cannot identify the items."""
    keys = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get(key), str | int) or isinstance(item[key], bool):
            return None
        keys.append(item[key])
    return keys if len(set(keys)) == len(keys) else None


def _diff_keyed(old: list[Any], new: list[Any], path: str, key: str, out: list[Change]) -> None:
    old_by = {item[key]: item for item in old}
    new_by = {item[key]: item for item in new}
    for k, item in old_by.items():
        where = f"{path}[{key}={k}]"
        if k in new_by:
            _diff(item, new_by[k], where, None, out)
        else:
            out.append(Change(where, "removed", item, None))
    for k, item in new_by.items():
        if k not in old_by:
            out.append(Change(f"{path}[{key}={k}]", "added", None, item))
    old_order = [k for k in old_by if k in new_by]
    new_order = [k for k in new_by if k in old_by]
    if old_order != new_order:
        out.append(Change(f"{path}#order", "changed", old_order, new_order))


def _diff_positional(old: list[Any], new: list[Any], path: str, out: list[Change]) -> None:
    for i in range(max(len(old), len(new))):
        where = f"{path}[{i}]"
        if i >= len(new):
            out.append(Change(where, "removed", old[i], None))
        elif i >= len(old):
            out.append(Change(where, "added", None, new[i]))
        else:
            _diff(old[i], new[i], where, None, out)


# --------------------------------------------------------------------------------------------
# for people
# --------------------------------------------------------------------------------------------
def _show(value: Any, width: int) -> str:
    if value is None:
        text = "∅"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        # one line per change, and an empty text must stay visible
        text = value.replace("\r", "\\r").replace("\n", "\\n") if value else '""'
    elif isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def format_diff(changes: list[Change], *, width: int = 160) -> list[str]:
    """One line per change: ``+ path: new``, ``- path: old``, ``~ path: old → new``.

    Texts are shown as they are (Vietnamese with its diacritics, no ``\\u`` escapes); each value
    is cut to ``width`` characters so a whole added channel stays a readable line.
    """
    lines = []
    for c in changes:
        path = c.path or "(document)"
        if c.kind == "added":
            lines.append(f"+ {path}: {_show(c.new, width)}")
        elif c.kind == "removed":
            lines.append(f"- {path}: {_show(c.old, width)}")
        else:
            lines.append(f"~ {path}: {_show(c.old, width)} → {_show(c.new, width)}")
    return lines
