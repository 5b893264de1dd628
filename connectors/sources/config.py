"""The sources file: every one-stop database or export inbox the hub reads, each with its identity.

A province reads the one-stop systems of many agencies, often from the same vendor and so with
the same mapping file. Each is a *source* with an identity of its own (its cursor, its last run,
its dead letters' origin), listed in one YAML file::

    # $LIENTHONG_HOME/sources.yaml (or LIENTHONG_SOURCES, or lienthong intake --sources FILE)
    sources:
      - id: so-nnptnt-a                 # the identity: stable across a move of the database
        mapping: onestop_sandbox        # a shipped mapping, or a YAML path (relative to this file)
        sql: ${ONESTOP_A_URL}           # a database URL; ${NAME} is read from the environment
      - id: so-nnptnt-b
        mapping: mappings/vendor_x.yaml
        inbox: /srv/lienthong/inbox-b   # or an export-file folder
        min_age_seconds: 5

Keys of an entry: ``id`` and ``mapping`` (required); exactly one of ``sql`` and ``inbox``;
optional ``description``, ``enabled`` (default true), ``batch_size`` and ``settle_seconds`` (SQL),
``min_age_seconds`` (inbox). The file is checked completely when loaded, as mapping files are:
an unknown or missing key, a malformed identity, two entries with the same identity or reading
the same place with the same mapping, a ``${NAME}`` that is not set: :class:`SourcesFileError`
naming the file and the key (``sources.yaml: sources[1].sql: ...``). Passwords belong in the
environment (``${NAME}``), never in the file: the file may be committed, and what the DAG passes
between tasks is only the identity.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lienthong.hub.errors import ConfigurationError

from .base import check_source_id, inbox_location, sql_location

__all__ = ["SourceSpec", "SourcesFileError", "load_sources", "sources_file"]

_REQUIRED = ("id", "mapping")
_OPTIONAL = ("sql", "inbox", "description", "enabled", "batch_size", "settle_seconds", "min_age_seconds")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SourcesFileError(ConfigurationError):
    """The sources file is unreadable or invalid: ``source`` is the file, ``key`` the key path."""

    code = "SOURCES_FILE_INVALID"

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None, **kw):
        super().__init__(message, **kw)
        self.source = source
        self.key = key


@dataclass(frozen=True)
class SourceSpec:
    """One source to read: its identity (None: derived from mapping and location), its mapping, and
    where it reads (``sql`` URL, credentials included, or ``inbox`` folder)."""

    id: str | None
    mapping: str
    sql: str | None = None
    inbox: str | None = None
    description: str | None = None
    enabled: bool = True
    batch_size: int | None = None
    settle_seconds: float | None = None
    min_age_seconds: float | None = None

    def __post_init__(self) -> None:
        if bool(self.sql) == bool(self.inbox):
            raise ConfigurationError("give exactly one source: a one-stop database (sql URL) or an export "
                                     "folder (inbox)")
        if self.id is not None:
            object.__setattr__(self, "id", check_source_id(self.id))

    @property
    def kind(self) -> str:
        return "sql" if self.sql else "filedrop"

    @property
    def location(self) -> str:
        return sql_location(self.sql) if self.sql else inbox_location(self.inbox)

    @property
    def mapping_name(self) -> str:
        """The mapping's name as the cursor records it (a file's stem until it is loaded)."""
        return Path(self.mapping).stem if self.mapping.endswith((".yaml", ".yml")) else self.mapping

    def open(self, mapping: Any):
        """The source itself, read with ``mapping`` (a loaded :class:`DossierMapping`)."""
        if self.sql:
            from .sql import SqlSource

            return SqlSource(self.sql, mapping, batch_size=self.batch_size, settle_seconds=self.settle_seconds)
        from .filedrop import FileDropSource

        return FileDropSource(Path(self.inbox), mapping, min_age_seconds=self.min_age_seconds or 0.0)

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"SourceSpec({self.id!r}, {self.kind}, {self.mapping!r}, {self.location!r})"


def sources_file(explicit: str | Path | None = None, *, home: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Path | None:
    """The sources file in use: ``explicit``, else ``LIENTHONG_SOURCES``, else
    ``$LIENTHONG_HOME/sources.yaml`` when it exists; None when there is none."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("LIENTHONG_SOURCES"):
        return Path(env["LIENTHONG_SOURCES"])
    if home is not None and (home / "sources.yaml").is_file():
        return home / "sources.yaml"
    return None


def load_sources(path: str | Path, *, environ: Mapping[str, str] | None = None) -> list[SourceSpec]:
    """Read and validate the sources file at ``path`` (see the module docstring)."""
    from lienthong.mappings.dossier import _StrictLoader  # the mapping files' loader: duplicate keys refused

    env = os.environ if environ is None else environ
    file = str(path)

    def fail(key: str, problem: str) -> SourcesFileError:
        return SourcesFileError(f"{file}: {key}: {problem}" if key else f"{file}: {problem}", source=file,
                                key=key or None)

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourcesFileError(f"{file}: cannot read the sources file: {exc}", source=file) from exc
    try:
        doc = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise fail("", f"not valid YAML: {exc}") from exc
    if not isinstance(doc, Mapping) or set(doc) != {"sources"}:
        raise fail("", "must be a mapping with one key, sources: a list of sources")
    entries = doc["sources"]
    if not isinstance(entries, list) or not entries:
        raise fail("sources", "must be a non-empty list")

    base = Path(path).resolve().parent
    specs: list[SourceSpec] = []
    seen_ids: dict[str, str] = {}
    seen_places: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(entries):
        where = f"sources[{i}]"
        if not isinstance(entry, Mapping):
            raise fail(where, "must be a mapping with id, mapping and sql or inbox")
        unknown = [str(k) for k in entry if k not in (*_REQUIRED, *_OPTIONAL)]
        if unknown:
            raise fail(f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join((*_REQUIRED, *_OPTIONAL))})")
        for key in _REQUIRED:
            if key not in entry:
                raise fail(f"{where}.{key}", "missing")
        if ("sql" in entry) == ("inbox" in entry):
            raise fail(where, "give exactly one of sql (a one-stop database URL) and inbox (an export folder)")
        values: dict[str, Any] = {}
        for key in ("id", "mapping", "sql", "inbox", "description"):
            if key in entry:
                value = entry[key]
                if not isinstance(value, str) or not value.strip():
                    raise fail(f"{where}.{key}", "must be a non-empty text")
                values[key] = _expand(value.strip(), env, lambda problem, k=f"{where}.{key}": fail(k, problem))
        try:
            values["id"] = check_source_id(values["id"], "identity")
        except ConfigurationError as exc:
            raise fail(f"{where}.id", str(exc)) from None
        if values["id"] in seen_ids:
            raise fail(f"{where}.id", f"{values['id']!r} is already the identity of {seen_ids[values['id']]}")
        seen_ids[values["id"]] = where
        mapping = values["mapping"]
        if mapping.endswith((".yaml", ".yml")) and not Path(mapping).is_absolute():
            values["mapping"] = str(base / mapping)
        if "inbox" in values and not Path(values["inbox"]).is_absolute():
            values["inbox"] = str(base / values["inbox"])
        if "enabled" in entry:
            if not isinstance(entry["enabled"], bool):
                raise fail(f"{where}.enabled", "must be true or false")
            values["enabled"] = entry["enabled"]
        for key, kind, lowest in (("batch_size", int, 1), ("settle_seconds", float, 0), ("min_age_seconds", float, 0)):
            if key not in entry:
                continue
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)) \
                    or value < lowest:
                raise fail(f"{where}.{key}", f"must be a {'whole ' if kind is int else ''}number of at least {lowest}")
            values[key] = kind(value)
        if "settle_seconds" in values and "sql" not in values:
            raise fail(f"{where}.settle_seconds", "only a SQL source settles")
        if "batch_size" in values and "sql" not in values:
            raise fail(f"{where}.batch_size", "only a SQL source reads in pages (an inbox is read file by file)")
        if "min_age_seconds" in values and "inbox" not in values:
            raise fail(f"{where}.min_age_seconds", "only an inbox waits for files to settle")
        try:
            spec = SourceSpec(**values)
            place = (spec.mapping_name, spec.location)
        except ConfigurationError as exc:
            raise fail(f"{where}.{'sql' if 'sql' in values else 'inbox'}", str(exc)) from None
        if place in seen_places:
            raise fail(where, f"reads the same place with the same mapping as {seen_places[place]}: one "
                              "identity per source, or its changes are taken in twice")
        seen_places[place] = where
        specs.append(spec)
    return specs


def _expand(value: str, env: Mapping[str, str], fail: Any) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in env or env[name] == "":
            raise fail(f"${{{name}}} is not set in the environment")
        return env[name]

    return _VARIABLE.sub(one, value)
