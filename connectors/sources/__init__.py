"""Sources of dossier changes in the ministry's one-stop system (SQL view, export files).

Each source reads rows, maps them with a :class:`~lienthong.mappings.dossier.DossierMapping`
and yields :class:`SourceBatch` objects whose ``cursor`` the caller commits together with the
batch's outbox events (see :mod:`.base` for the protocol):

* :class:`SqlSource` (:mod:`.sql`): the one-stop database, read incrementally by keyset;
* :class:`FileDropSource` (:mod:`.filedrop`): JSON/CSV/XML export files dropped in an inbox.
"""

from .base import MAPPED, Source, SourceBatch, SourceItem, SourceUnavailable, map_rows
from .filedrop import (
    ExportFileEncoding,
    ExportFileLayout,
    ExportFileMalformed,
    ExportFileRejected,
    ExportFileTooLarge,
    ExportFileUnsupported,
    FileDropSource,
    RejectedFile,
)
from .sql import CursorInvalid, SqlCursor, SqlSource

__all__ = [
    "MAPPED", "CursorInvalid", "ExportFileEncoding", "ExportFileLayout", "ExportFileMalformed", "ExportFileRejected",
    "ExportFileTooLarge", "ExportFileUnsupported", "FileDropSource", "RejectedFile", "Source", "SourceBatch",
    "SourceItem", "SourceUnavailable", "SqlCursor", "SqlSource", "map_rows",
]
