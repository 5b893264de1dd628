"""Connector to the national reporting system (Hệ thống thông tin báo cáo quốc gia).

``GuiBaoCao`` sends one period's figures per agency / procedure / field; ``LayTrangThaiBaoCao``
asks what became of a report. The figures themselves are computed by ``hub.reporting``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .payload import element
from .services import BAOCAO
from .soap import SoapConnector

NS = BAOCAO.namespace
_N = "{%s}" % NS


def _el(tag, content=None):
    return element(NS, tag, content, prefix="bc")


#: ChiTieu fields in schema order
CHITIEU_FIELDS = (
    "MaCoQuan", "MaTTHC", "MaLinhVuc", "TiepNhanKyTruoc", "TiepNhanTrucTuyen", "TiepNhanTrucTiep",
    "TiepNhanBuuChinh", "GiaiQuyetTruocHan", "GiaiQuyetDungHan", "GiaiQuyetQuaHan", "DangXuLyTrongHan",
    "DangXuLyQuaHan", "YeuCauBoSung", "RutHoSo", "DungXuLy",
)


@dataclass(frozen=True)
class ReportStatus:
    ma_bao_cao: str
    trang_thai: str
    received_at: str | None
    note: str | None = None


class ReportingClient:
    def __init__(self, connector: SoapConnector):
        if connector.spec is not BAOCAO:
            raise ValueError("ReportingClient needs a connector for baocao")
        self.connector = connector

    def send_report(self, *, period_kind: str, year: int, period: int, agency_code: str,
                    rows: list[dict[str, Any]], document_id: str | None = None) -> ReportStatus:
        for row in rows:
            unknown = set(row) - set(CHITIEU_FIELDS)
            if unknown:
                raise ValueError(f"report row has unknown figures: {', '.join(sorted(unknown))}")
        payload = _el("GuiBaoCao", {
            "KyBaoCao": {"LoaiKy": period_kind, "Nam": year, "Ky": period},
            "MaCoQuan": agency_code,
            "ChiTieu": [{k: r[k] for k in CHITIEU_FIELDS if k in r} for r in rows],
        })
        p = self.connector.call("GuiBaoCao", payload, document_id=document_id).payload
        return ReportStatus(p.findtext(_N + "MaBaoCao"), p.findtext(_N + "TrangThai"), p.findtext(_N + "ThoiDiemNhan"))

    def report_status(self, ma_bao_cao: str) -> ReportStatus:
        p = self.connector.call("LayTrangThaiBaoCao", _el("LayTrangThaiBaoCao", {"MaBaoCao": ma_bao_cao})).payload
        return ReportStatus(p.findtext(_N + "MaBaoCao"), p.findtext(_N + "TrangThai"),
                            p.findtext(_N + "ThoiDiemNhan"), p.findtext(_N + "GhiChu"))
