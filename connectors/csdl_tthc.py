"""Connector to the national database of administrative procedures (CSDL quốc gia về TTHC).

Operations as the national catalogue names them: ``LayDanhSachTTHC`` (paged list of codes with
their last-modified time, optionally only those changed since a moment), ``LayThuTuc`` (one full
procedure record, upper-case national field names), ``LayDanhMucCoQuan`` and ``LayDanhMucLinhVuc``
(agency and field lists). This module only speaks the partner's format; turning records into the
hub's canonical model is the job of ``mappings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .port import PartnerAnswer, PartnerCall, PartnerTransport, expect_service
from .services import CSDL_TTHC, THUTUC_LISTS

__all__ = ["THUTUC_LISTS", "CsdlTthcClient", "ProcedurePage", "ProcedureRef", "thutuc_record"]


@dataclass(frozen=True)
class ProcedureRef:
    code: str  # MATTHC
    modified: datetime  # NGAYCAPNHAT
    status: str  # TRANGTHAI (1 = published)


@dataclass(frozen=True)
class ProcedurePage:
    total: int
    page: int
    page_size: int
    items: tuple[ProcedureRef, ...]


class CsdlTthcClient:
    def __init__(self, transport: PartnerTransport):
        self.transport = expect_service(transport, CSDL_TTHC, "CsdlTthcClient")

    def _ask(self, operation: str, params: dict[str, Any] | None = None, **kwargs: Any) -> PartnerAnswer:
        return self.transport.handle(PartnerCall(operation, params or {}, **kwargs))

    @property
    def endpoint(self) -> str:
        """The address this client reads, without credentials: the catalogue's watermark is kept with it."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.transport.address)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def list_page(self, page: int, page_size: int, *, changed_since: datetime | None = None,
                  correlation_id: str | None = None) -> ProcedurePage:
        p = self._ask("LayDanhSachTTHC", {"TuNgay": changed_since, "Trang": page, "SoBanGhi": page_size},
                      correlation_id=correlation_id).result
        items = tuple(
            ProcedureRef(code=item.get("MATTHC"), modified=datetime.fromisoformat(item.get("NGAYCAPNHAT")),
                         status=item.get("TRANGTHAI"))
            for item in p.get("TTHC", [])
        )
        return ProcedurePage(total=int(p["TongSo"]), page=int(p["Trang"]), page_size=int(p["SoBanGhi"]), items=items)

    def procedure_answer(self, code: str, *, correlation_id: str | None = None) -> PartnerAnswer:
        """The answer for one procedure (its raw bytes are kept for quarantine and versioning)."""
        return self._ask("LayThuTuc", {"MATTHC": code}, correlation_id=correlation_id)

    def procedure(self, code: str, *, correlation_id: str | None = None) -> dict[str, Any]:
        return thutuc_record(self.procedure_answer(code, correlation_id=correlation_id).result)

    def agencies(self) -> list[dict[str, str]]:
        return self._ask("LayDanhMucCoQuan").result.get("CoQuan", [])

    def fields(self) -> list[dict[str, str]]:
        return self._ask("LayDanhMucLinhVuc").result.get("LinhVuc", [])


def thutuc_record(result: dict[str, Any]) -> dict[str, Any]:
    """The ``ThuTuc`` of a LayThuTuc answer: nested dicts with national upper-case keys."""
    record = result.get("ThuTuc")
    if not isinstance(record, dict):
        raise ValueError("LayThuTucResult has no ThuTuc")
    return record
