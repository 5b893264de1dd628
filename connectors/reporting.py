"""Connector to the national reporting system (Hệ thống thông tin báo cáo quốc gia).

``GuiBaoCao`` sends one period's figures per agency / procedure / field; ``LayTrangThaiBaoCao``
asks what became of a report. The figures themselves are computed by ``hub.reporting``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .port import PartnerCall, PartnerTransport, expect_service
from .services import BAOCAO

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
    def __init__(self, transport: PartnerTransport):
        self.transport = expect_service(transport, BAOCAO, "ReportingClient")

    def send_report(self, *, period_kind: str, year: int, period: int, agency_code: str,
                    rows: list[dict[str, Any]], document_id: str | None = None) -> ReportStatus:
        for row in rows:
            unknown = set(row) - set(CHITIEU_FIELDS)
            if unknown:
                raise ValueError(f"report row has unknown figures: {', '.join(sorted(unknown))}")
        p = self.transport.handle(PartnerCall("GuiBaoCao", {
            "KyBaoCao": {"LoaiKy": period_kind, "Nam": year, "Ky": period},
            "MaCoQuan": agency_code,
            "ChiTieu": [{k: r[k] for k in CHITIEU_FIELDS if k in r} for r in rows],
        }, document_id=document_id)).result
        return ReportStatus(p.get("MaBaoCao"), p.get("TrangThai"), p.get("ThoiDiemNhan"))

    def report_status(self, ma_bao_cao: str) -> ReportStatus:
        p = self.transport.handle(PartnerCall("LayTrangThaiBaoCao", {"MaBaoCao": ma_bao_cao})).result
        return ReportStatus(p.get("MaBaoCao"), p.get("TrangThai"), p.get("ThoiDiemNhan"), p.get("GhiChu"))
