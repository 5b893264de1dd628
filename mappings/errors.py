"""Errors of the mapping layer.

A national record that cannot be turned into the canonical model is not something a retry can
fix: the same bytes will fail the same way. So every mapping error is a :class:`FatalError` and
the sync quarantines the record with the error's ``code`` and message. The message always names
the national field (with its position, e.g. ``CACHTHUCTHUCHIEN[1].THOIGIAN[0].PHILEPHI[0].SOTIEN``)
and the procedure code when it is known, so an operator can find the offending value in the raw
record without a debugger; ``field`` and ``procedure`` carry the same facts for programs.
"""

from __future__ import annotations

from lienthong.hub.errors import FatalError


class MappingError(FatalError):
    """A record, document or code table does not fit the canonical model."""

    code = "MAPPING_INVALID"

    def __init__(self, message: str, *, field: str | None = None, procedure: str | None = None, **kw):
        super().__init__(message, **kw)
        self.field = field
        self.procedure = procedure


class MissingField(MappingError):
    """A field the model cannot do without (e.g. MATTHC, TENTTHC) is absent or blank."""

    code = "MAPPING_MISSING_FIELD"


class MalformedValue(MappingError):
    """A value has the wrong shape: a malformed code, a non-numeric fee or time, a bad date."""

    code = "MAPPING_MALFORMED_VALUE"


class UnknownCode(MappingError):
    """A coded value (MUCDO, CAPTHUCHIEN, KENH...) is not in its code table under ``mappings/tables``."""

    code = "MAPPING_UNKNOWN_CODE"


class CodeTableError(MappingError):
    """A code table file is unreadable or invalid; ``source`` is the file."""

    code = "MAPPING_TABLE_INVALID"

    def __init__(self, message: str, *, source: str | None = None, **kw):
        super().__init__(message, **kw)
        self.source = source
