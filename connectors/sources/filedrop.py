"""Read dossier changes from export files the one-stop system drops into an inbox folder.

Some one-stop systems cannot give the hub a database connection, only periodic exports. They
write JSON, CSV or XML files into an inbox folder; each file becomes one :class:`SourceBatch`
(its ``cursor`` is the file name). After the caller has committed the batch's events it calls
:meth:`FileDropSource.ack` (or :meth:`mark_done`), which moves the file to ``inbox/processed/``.
A file that cannot be read as an export at all (truncated JSON, a CSV with the wrong header,
hostile XML, an unknown extension) is moved to ``inbox/quarantine/`` with a ``<name>.reason.txt``
beside it saying why, and the rest of the inbox carries on: one broken file never stops intake.
A *record* that is readable but cannot be mapped (an unknown status...) is not a broken file:
it is an item with an error in the batch, and the caller dead-letters it.

Formats (column names as in the mapping file; ``files`` section names the record kinds):

* JSON ``{"hoso": [{...}, ...], "buoc_xu_ly": [{...}, ...]}`` (either list may be absent);
* CSV, one file per kind, chosen by the file-name prefix: ``hoso-*.csv`` / ``buoc_xu_ly-*.csv``,
  UTF-8 (a BOM is accepted), first line = the column names; an empty cell is a NULL;
* XML ``<xuat_du_lieu><hoso><so_ho_so>…</so_ho_so>…</hoso><buoc_xu_ly>…</buoc_xu_ly></xuat_du_lieu>``,
  parsed by :func:`lienthong.hub.xmlsafe.parse_xml` (no DTD, no entities, size and depth limits);
  an empty element is a NULL.

Why some files are left alone: an exporter writing a file in place would let the hub read half of
it. Files whose name starts with ``.`` or ends with ``.tmp`` / ``.part`` are skipped (write under
such a name, then rename: renames are atomic); ``min_age_seconds`` additionally waits until a
file has not changed for that long, for exporters that cannot rename.

Why files are read in name order, dossier files before step files of the same name: exporters
name files by time, and the portal must receive a dossier before its steps. ``hoso-X.csv`` is
read before ``buoc_xu_ly-X.csv``; in a JSON or XML file the dossier records come first.

Why the cursor is still useful although files are moved: if the hub stops between committing a
file's events and moving it, the file is still in the inbox next time. The cursor is that file's
name and the SHA-256 of its bytes (``a.json|sha256:…``); ``changes(cursor)`` moves the file to
``processed/`` unread only if it still holds those bytes. An exporter that reuses a file name
(``export.json`` every hour) therefore never has a new export skipped: a file under a committed
name with other bytes is read like any other (and re-reading a committed file would only find
duplicates: idempotency keys).

One reader per inbox: two hubs reading the same folder would both read a file before either moves
it (idempotency keys would still keep the outbox free of duplicates).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lienthong.hub.errors import ConfigurationError, FatalError, HubError, XmlRejected
from lienthong.hub.xmlsafe import parse_xml
from lienthong.mappings.dossier import DOSSIER, RESULT, STEP, DossierMapping
from lxml import etree

from .base import SourceBatch, SourceItem, SourceUnavailable, inbox_location, map_rows

__all__ = [
    "DEFAULT_MAX_BYTES", "ExportFileEncoding", "ExportFileLayout", "ExportFileMalformed", "ExportFileRejected",
    "ExportFileTooLarge", "ExportFileUnsupported", "FileDropSource", "RejectedFile",
]

log = logging.getLogger(__name__)

#: an export larger than this is refused (quarantined) instead of read into memory
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
PROCESSED = "processed"
QUARANTINE = "quarantine"
_SKIPPED_SUFFIXES = (".tmp", ".part")
#: separates the file name from its digest in a cursor (``|`` cannot be in a name on Windows shares)
_DIGEST_MARK = "|sha256:"


# --------------------------------------------------------------------------------------------
# why a file is refused (the reason written beside it in quarantine)
# --------------------------------------------------------------------------------------------
class ExportFileRejected(FatalError):
    """An export file cannot be read as an export of this source: it is quarantined."""

    code = "EXPORT_FILE_REJECTED"


class ExportFileUnsupported(ExportFileRejected):
    """Not a .json, .csv or .xml file (or a format the mapping does not accept), or not a regular file."""

    code = "EXPORT_FILE_UNSUPPORTED"


class ExportFileTooLarge(ExportFileRejected):
    code = "EXPORT_FILE_TOO_LARGE"


class ExportFileEncoding(ExportFileRejected):
    """The bytes are not text in the mapping's encoding (UTF-8 by default)."""

    code = "EXPORT_FILE_ENCODING"


class ExportFileMalformed(ExportFileRejected):
    """Not well-formed JSON or CSV (truncated, bad quoting, duplicate keys...), or empty."""

    code = "EXPORT_FILE_MALFORMED"


class ExportFileLayout(ExportFileRejected):
    """Well-formed, but not laid out as this source's exports (wrong header, root, keys, nesting)."""

    code = "EXPORT_FILE_LAYOUT"


@dataclass(frozen=True, slots=True)
class RejectedFile:
    """A file the source quarantined: its name, the error code and message, where it went."""

    name: str
    code: str
    reason: str
    moved_to: Path | None


Records = dict[str, list[dict[str, Any]]]  # kind -> raw records


# --------------------------------------------------------------------------------------------
# the source
# --------------------------------------------------------------------------------------------
class FileDropSource:
    """Export files in ``inbox`` read one by one as batches (see the module docstring).

    ``rejected`` lists the files this source quarantined (for the caller's counters);
    ``on_reject`` is also called with each :class:`RejectedFile` as it happens.
    """

    #: what kind of source this is (stored with its cursor)
    kind = "filedrop"

    def __init__(self, inbox: str | Path, mapping: DossierMapping, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 min_age_seconds: float = 0.0, on_reject: Callable[[RejectedFile], None] | None = None,
                 clock: Callable[[], float] = time.time):
        if mapping.files is None:
            raise ConfigurationError(f"{mapping.path}: no 'files' section: the mapping does not describe export files")
        self.mapping = mapping
        self.layout = mapping.files
        self.inbox = Path(inbox)
        if not self.inbox.is_dir():
            raise ConfigurationError(f"inbox folder {self.inbox} does not exist or is not a folder")
        self.processed_dir = self.inbox / PROCESSED
        self.quarantine_dir = self.inbox / QUARANTINE
        for folder in (self.processed_dir, self.quarantine_dir):
            try:
                folder.mkdir(exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(f"cannot create {folder}: {exc}") from exc
        self.max_bytes = max_bytes
        self.min_age_seconds = min_age_seconds
        self.on_reject = on_reject
        self.clock = clock
        self.rejected: list[RejectedFile] = []
        self._fields = {DOSSIER: mapping.dossiers.field_columns(), STEP: mapping.steps.field_columns()}
        #: (record name in the files, kind), in reading order: dossiers, steps, then result documents
        self._kinds = [(self.layout.dossiers, DOSSIER), (self.layout.steps, STEP)]
        if mapping.results is not None:
            if self.layout.results is None:
                raise ConfigurationError(f"{mapping.path}: files.results is missing: the export files must name "
                                         "their result records")
            self._fields[RESULT] = mapping.results.field_columns()
            self._kinds.append((self.layout.results, RESULT))
        self._element_kinds = dict(self._kinds)

    @property
    def name(self) -> str:
        return self.mapping.name

    @property
    def location(self) -> str:
        """The inbox folder's absolute path (:func:`~.base.inbox_location`)."""
        return inbox_location(self.inbox)

    def __repr__(self) -> str:
        return f"FileDropSource({self.mapping.name!r}, {str(self.inbox)!r})"

    def check_cursor(self, cursor: str | None) -> None:
        """Every cursor fits an inbox: every file in it is read whatever the cursor says; the cursor
        only lets a file whose events were committed (same name, same bytes) be moved aside unread."""

    def describe_cursor(self, cursor: str | None) -> str:
        if not cursor:
            return "no file read yet"
        name, _, digest = cursor.partition(_DIGEST_MARK)
        return f"last file {name}" + (f" (sha256 {digest[:12]}…)" if digest else "")

    # -- which files ---------------------------------------------------------------------------
    def pending(self) -> list[Path]:
        """The files ready to read, in reading order (names starting with '.' or ending with
        .tmp/.part, sub-folders and files younger than ``min_age_seconds`` are left alone)."""
        now = self.clock()
        ready: list[Path] = []
        try:
            entries = list(os.scandir(self.inbox))
        except OSError as exc:
            raise SourceUnavailable(f"cannot list inbox {self.inbox}: {exc}") from exc
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.lower().endswith(_SKIPPED_SUFFIXES):
                continue
            if entry.is_dir(follow_symlinks=False):
                continue
            if self.min_age_seconds:
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime < self.min_age_seconds:
                        continue
                except OSError:
                    continue  # gone meanwhile
            ready.append(Path(entry.path))
        return sorted(ready, key=self._order)

    def _order(self, path: Path) -> tuple[str, int, str]:
        name = path.name
        lowered = name.lower()
        for rank, (kind_name, _) in enumerate(self._kinds):
            prefix = f"{kind_name.lower()}-"
            if lowered.endswith(".csv") and lowered.startswith(prefix):
                return name[len(prefix):], rank, name
        return name, 0, name

    # -- reading -------------------------------------------------------------------------------
    def changes(self, cursor: str | None = None) -> Iterator[SourceBatch]:
        """One batch per readable file; broken files are quarantined on the way.

        ``cursor`` is the last committed batch's cursor (file name and digest): if that file is
        still in the inbox with the same bytes, its events are already committed, so it is moved to
        ``processed/`` unread.
        """
        if cursor:
            name, _, digest = cursor.partition(_DIGEST_MARK)
            committed = self.inbox / name
            if name == committed.name and committed.is_file() and digest and self._digest(committed) == digest:
                self.mark_done(committed)
        for path in self.pending():
            try:
                records, digest = self._read(path)
            except (ExportFileRejected, XmlRejected) as exc:
                self._reject(path, exc)
                continue
            except FileNotFoundError:
                continue  # taken away meanwhile: nothing to read
            items: list[SourceItem] = []
            for _, kind in self._kinds:
                items += map_rows(self.mapping, kind, records.get(kind, ()))
            yield SourceBatch(source=self.name, cursor=f"{path.name}{_DIGEST_MARK}{digest}", items=tuple(items),
                              origin=path.name, file=path)

    def read_file(self, path: Path) -> Records:
        """The raw records of one export file by kind, or a specific :class:`ExportFileRejected`
        (:class:`~lienthong.hub.errors.XmlRejected` for hostile or broken XML)."""
        return self._read(path)[0]

    def _digest(self, path: Path) -> str | None:
        try:
            return hashlib.sha256(self._read_bytes(path)).hexdigest()
        except (OSError, ExportFileRejected):
            return None

    def _read(self, path: Path) -> tuple[Records, str]:
        """The records of one export file and the SHA-256 of the bytes they were read from."""
        name = path.name
        suffix = path.suffix.lower().lstrip(".")
        if suffix not in ("json", "csv", "xml"):
            raise ExportFileUnsupported(f"{name}: not an export file (.json, .csv or .xml expected)")
        if suffix not in self.layout.formats:
            raise ExportFileUnsupported(f"{name}: {suffix} exports are not accepted by {self.mapping.file} "
                                        f"(files.formats: {', '.join(self.layout.formats)})")
        if path.is_symlink() or not path.is_file():
            raise ExportFileUnsupported(f"{name}: not a regular file")
        data = self._read_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        if suffix == "xml":
            return self._read_xml(name, data), digest
        text = self._decode(name, data)
        if suffix == "json":
            return self._read_json(name, text), digest
        return self._read_csv(name, text), digest

    def _read_bytes(self, path: Path) -> bytes:
        try:
            with path.open("rb") as fh:
                data = fh.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ExportFileUnsupported(f"{path.name}: cannot be read: {exc.strerror or exc}") from exc
        if len(data) > self.max_bytes:
            raise ExportFileTooLarge(f"{path.name}: larger than the limit of {self.max_bytes:,} bytes")
        if not data.strip():
            raise ExportFileMalformed(f"{path.name}: the file is empty")
        return data

    def _decode(self, name: str, data: bytes) -> str:
        encoding = self.layout.encoding
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # a BOM, as spreadsheet programs write it, is not part of the data
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ExportFileEncoding(f"{name}: not valid {self.layout.encoding} text at byte {exc.start}") from None

    # -- JSON ----------------------------------------------------------------------------------
    def _read_json(self, name: str, text: str) -> Records:
        try:
            doc = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ExportFileMalformed(f"{name}: not valid JSON at line {exc.lineno} column {exc.colno}: "
                                      f"{exc.msg}") from None
        except _DuplicateKey as exc:
            raise ExportFileMalformed(f"{name}: JSON object has the key {exc.args[0]!r} twice") from None
        except ValueError as exc:
            raise ExportFileMalformed(f"{name}: not valid JSON: {exc}") from None
        except RecursionError:
            raise ExportFileMalformed(f"{name}: JSON nested too deeply") from None
        expected = tuple(name for name, _ in self._kinds)
        if not isinstance(doc, dict):
            raise ExportFileLayout(f"{name}: expected a JSON object with {' and/or '.join(map(repr, expected))}")
        unknown = [k for k in doc if k not in expected]
        if unknown:
            raise ExportFileLayout(f"{name}: unexpected key {unknown[0]!r} (expected {', '.join(map(repr, expected))})")
        if not doc:
            raise ExportFileLayout(f"{name}: no {' or '.join(map(repr, expected))} list")
        records: Records = {}
        for key, value in doc.items():
            kind = self._element_kinds[key]
            if not isinstance(value, list):
                raise ExportFileLayout(f"{name}: {key!r} must be a list of records")
            for i, record in enumerate(value):
                if not isinstance(record, dict):
                    raise ExportFileLayout(f"{name}: {key}[{i}] is not an object")
                for column_name, cell in record.items():
                    if isinstance(cell, (dict, list)):
                        raise ExportFileLayout(f"{name}: {key}[{i}].{column_name} is nested; records hold "
                                               "plain values")
            records[kind] = value
        return records

    # -- CSV -----------------------------------------------------------------------------------
    def _read_csv(self, name: str, text: str) -> Records:
        kind = self._csv_kind(name)
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise ExportFileMalformed(f"{name}: the file is empty")
            header = [h.strip() for h in header]
            self._check_header(name, kind, header)
            width = len(header)
            rows: list[dict[str, Any]] = []
            for cells in reader:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # blank line
                if len(cells) != width:
                    raise ExportFileLayout(f"{name}: line {reader.line_num} has {len(cells)} fields, the header "
                                           f"has {width}")
                rows.append({h: (c if c != "" else None) for h, c in zip(header, cells, strict=True)})
        except csv.Error as exc:
            raise ExportFileMalformed(f"{name}: not valid CSV at line {reader.line_num}: {exc}") from None
        return {kind: rows}

    def _csv_kind(self, name: str) -> str:
        lowered = name.lower()
        prefixes = sorted(((f"{name}-", kind) for name, kind in self._kinds), key=lambda p: -len(p[0]))
        for prefix, kind in prefixes:
            if lowered.startswith(prefix.lower()):
                return kind
        named = " or ".join(f"{prefix}-*.csv" for prefix, _ in self._kinds)
        raise ExportFileLayout(f"{name}: a CSV export is named {named}, so the hub knows which records it holds")

    def _check_header(self, name: str, kind: str, header: list[str]) -> None:
        # missing columns first: a file without a header row shows up as that, not as odd names
        present = set(header)
        missing = [c for c in self._fields[kind] if c not in present]
        if missing:
            raise ExportFileLayout(f"{name}: the header lacks column {', '.join(missing)} "
                                   f"(the first line must name the columns: {', '.join(self._fields[kind])})")
        if len(present) != len(header):
            twice = next(c for c in header if header.count(c) > 1)
            raise ExportFileLayout(f"{name}: the header names column {twice!r} twice")
        if "" in present:
            raise ExportFileLayout(f"{name}: the header has an empty column name")

    # -- XML -----------------------------------------------------------------------------------
    def _read_xml(self, name: str, data: bytes) -> Records:
        root = parse_xml(data, max_bytes=self.max_bytes, what=f"export file {name}")
        if root.tag != self.layout.xml_root:
            raise ExportFileLayout(f"{name}: the root element is <{_shown_tag(root.tag)}>, expected "
                                   f"<{self.layout.xml_root}> (without a namespace)")
        records: Records = {}
        for index, element in enumerate(root):
            if not isinstance(element.tag, str):
                continue  # a comment
            kind = self._element_kinds.get(element.tag)
            if kind is None:
                expected = " or ".join(f"<{n}>" for n, _ in self._kinds)
                raise ExportFileLayout(f"{name}: unexpected element <{_shown_tag(element.tag)}> in "
                                       f"<{self.layout.xml_root}> (expected {expected})")
            record: dict[str, Any] = {}
            for child in element:
                if not isinstance(child.tag, str):
                    continue
                where = f"{element.tag}[{index}]/{_shown_tag(child.tag)}"
                if len(child):
                    raise ExportFileLayout(f"{name}: {where} has child elements; fields hold plain text")
                if child.tag in record:
                    raise ExportFileLayout(f"{name}: {where} appears twice in one record")
                value = "".join(child.itertext())
                record[child.tag] = value if value.strip() else None
            records.setdefault(kind, []).append(record)
        return records

    # -- moving files --------------------------------------------------------------------------
    def ack(self, batch: SourceBatch) -> None:
        """After the caller committed the batch: move its file to ``processed/``."""
        if batch.file is None:
            raise ValueError("this batch did not come from a file")
        self.mark_done(batch.file)

    def mark_done(self, file: str | Path) -> Path:
        """Move ``file`` (a path or a name in the inbox) to ``processed/``; returns where it went."""
        return self._move(self._in_inbox(file), self.processed_dir)

    def quarantine(self, file: str | Path, reason: str | HubError) -> Path:
        """Move ``file`` to ``quarantine/`` with ``<name>.reason.txt`` beside it; returns where it went."""
        source = self._in_inbox(file)
        target = self._move(source, self.quarantine_dir)
        if isinstance(reason, HubError):
            reason = f"{reason.code}: {reason}"
        note = (f"file: {source.name}\nquarantined_at: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
                f"source: {self.mapping.name} ({self.mapping.file})\nreason: {reason}\n")
        reason_file = target.with_name(target.name + ".reason.txt")
        try:
            reason_file.write_text(note, encoding="utf-8")
        except OSError as exc:
            raise SourceUnavailable(f"cannot write {reason_file}: {exc}") from exc
        return target

    def _in_inbox(self, file: str | Path) -> Path:
        path = Path(file)
        if not path.is_absolute() and path.parent == Path("."):
            path = self.inbox / path
        if path.parent.resolve() != self.inbox.resolve():
            raise ValueError(f"{file} is not a file of the inbox {self.inbox}")
        return path

    def _move(self, path: Path, folder: Path) -> Path:
        target = folder / path.name
        n = 1
        while target.exists() or target.with_name(target.name + ".reason.txt").exists():
            # a file of the same name was moved before (an export sent twice): keep both
            target = folder / f"{path.stem}.{n}{path.suffix}"
            n += 1
        try:
            os.replace(path, target)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SourceUnavailable(f"cannot move {path} to {folder}: {exc.strerror or exc}") from exc
        return target

    def _reject(self, path: Path, error: HubError) -> None:
        log.warning("%s: quarantining %s: %s: %s", self.mapping.name, path.name, error.code, error)
        try:
            moved: Path | None = self.quarantine(path, error)
        except FileNotFoundError:
            moved = None
        except SourceUnavailable as exc:
            # the file stays in the inbox and is reported again next time; the rest carries on
            log.error("%s: %s", self.mapping.name, exc)
            moved = None
        rejected = RejectedFile(path.name, error.code, str(error), moved)
        self.rejected.append(rejected)
        if self.on_reject is not None:
            self.on_reject(rejected)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _shown_tag(tag: str) -> str:
    qname = etree.QName(tag)
    return f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname
