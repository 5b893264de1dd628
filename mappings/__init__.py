"""The canonical model, code tables and mappings between national formats and the hub's model.

Import from the modules (``lienthong.mappings.procedure``, ``.tables``, ``.diff``, ``.errors``) or
from here; the names below are the package's public API.
"""

from .diff import Change, diff_documents, format_diff
from .errors import CodeTableError, MalformedValue, MappingError, MissingField, UnknownCode
from .procedure import (
    Agency,
    Channel,
    Component,
    Document,
    Fee,
    Field,
    LegalBasis,
    Procedure,
    ProcessingTime,
    Result,
    canonical_json,
    content_hash,
    from_national,
)
from .tables import CodeTable, load_all, load_table, read_table

__all__ = [
    "Agency", "Change", "Channel", "CodeTable", "CodeTableError", "Component", "Document", "Fee", "Field",
    "LegalBasis", "MalformedValue", "MappingError", "MissingField", "ProcessingTime", "Procedure", "Result",
    "UnknownCode", "canonical_json", "content_hash", "diff_documents", "format_diff", "from_national", "load_all",
    "load_table", "read_table",
]
