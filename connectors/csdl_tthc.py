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

from lxml import etree

from .payload import element, to_dict
from .services import CSDL_TTHC
from .soap import Reply, SoapConnector

NS = CSDL_TTHC.namespace
_N = "{%s}" % NS


def _el(tag, content=None):
    return element(NS, tag, content, prefix="tthc")


#: element names that are lists in LayThuTuc records, even when only one occurs
THUTUC_LISTS = frozenset({
    "CAPTHUCHIEN", "LINHVUCTHUCHIEN", "COQUANTHUCHIEN", "TRINHTUTHUCHIEN", "CACHTHUCTHUCHIEN",
    "THOIGIAN", "PHILEPHI", "THANHPHANHOSO", "GIAYTO", "DOITUONGTHUCHIEN", "KETQUATHUCHIEN", "CANCUPHAPLY",
})


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
    def __init__(self, connector: SoapConnector):
        if connector.spec is not CSDL_TTHC:
            raise ValueError("CsdlTthcClient needs a connector for csdl_tthc")
        self.connector = connector

    @property
    def endpoint(self) -> str:
        """The address this client reads, without credentials: the catalogue's watermark is kept with it."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.connector.address)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def list_page(self, page: int, page_size: int, *, changed_since: datetime | None = None,
                  correlation_id: str | None = None) -> ProcedurePage:
        reply = self.connector.call("LayDanhSachTTHC", _el("LayDanhSachTTHC", {
            "TuNgay": changed_since, "Trang": page, "SoBanGhi": page_size,
        }), correlation_id=correlation_id)
        p = reply.payload
        items = tuple(
            ProcedureRef(code=el.findtext(_N + "MATTHC"),
                         modified=datetime.fromisoformat(el.findtext(_N + "NGAYCAPNHAT")),
                         status=el.findtext(_N + "TRANGTHAI"))
            for el in p.iterfind(_N + "TTHC")
        )
        return ProcedurePage(total=int(p.findtext(_N + "TongSo")), page=int(p.findtext(_N + "Trang")),
                             page_size=int(p.findtext(_N + "SoBanGhi")), items=items)

    def procedure_reply(self, code: str, *, correlation_id: str | None = None) -> Reply:
        """The verified reply for one procedure (keeps the raw record for quarantine/versioning)."""
        return self.connector.call("LayThuTuc", _el("LayThuTuc", {"MATTHC": code}),
                                   correlation_id=correlation_id)

    def procedure(self, code: str, *, correlation_id: str | None = None) -> dict[str, Any]:
        return thutuc_record(self.procedure_reply(code, correlation_id=correlation_id).payload)

    def agencies(self) -> list[dict[str, str]]:
        reply = self.connector.call("LayDanhMucCoQuan", _el("LayDanhMucCoQuan"))
        return [to_dict(el) for el in reply.payload.iterfind(_N + "CoQuan")]

    def fields(self) -> list[dict[str, str]]:
        reply = self.connector.call("LayDanhMucLinhVuc", _el("LayDanhMucLinhVuc"))
        return [to_dict(el) for el in reply.payload.iterfind(_N + "LinhVuc")]


def thutuc_record(payload: etree._Element) -> dict[str, Any]:
    """``LayThuTucResult/ThuTuc`` as nested dicts with national upper-case keys."""
    thutuc = payload.find(_N + "ThuTuc")
    if thutuc is None:
        raise ValueError("LayThuTucResult has no ThuTuc")
    return to_dict(thutuc, lists=THUTUC_LISTS)
