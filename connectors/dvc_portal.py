"""Connector to the national public-service portal (Cổng Dịch vụ công quốc gia).

Operations as the portal names them: ``DongBoHoSoMC`` (dossiers, new or ``isUpdating``),
``CapNhatTienDoHoSoMC`` (processing steps), ``TraCuuHoSo`` (does the portal have this dossier?)
and a chunked, resumable upload of digital-result files (``BatDauTaiTepKetQua`` /
``TaiPhanTepKetQua`` / ``KetThucTaiTepKetQua``) checked end to end with SHA-256.

Dossiers are given as dicts keyed by the portal's field names; this module puts them in schema
order and refuses unknown keys, so a typo in a mapping fails loudly instead of being dropped.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .port import PartnerCall, PartnerTransport, expect_service
from .services import DVC_PORTAL

#: DongBoHoSoMC/HoSo fields in schema order (DOMAIN.md, portal spelling)
HOSO_FIELDS = (
    "MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "KenhThucHien", "ChuHoSo", "SoGiayToChuHoSo",
    "LoaiDoiTuong", "MaDoiTuong", "Email", "SoDienThoai", "TrichYeuHoSo", "NgayNopHoSo", "NgayTiepNhan",
    "NgayHenTra", "TrangThaiHoSo", "NgayTra", "ThongTinTra", "HinhThuc", "NgayKetThucXuLy", "NgayTuChoi",
    "DonViXuLy", "GhiChu", "NoiNopHoSo", "HoSoCoThanhPhanSoHoa", "TaiKhoanDuocXacThucVoiVNeID",
    "DuocThanhToanTrucTuyen", "DinhDanhCHS", "DSKetNoiCSDL", "TaiLieuNop", "DanhSachLePhi",
    "DanhSachHoSoBoSung", "DanhSachGiayToKetQua",
)
#: CapNhatTienDoHoSoMC/QuaTrinhXuLy fields in schema order
QUATRINH_FIELDS = (
    "MaHoSo", "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy", "PhongBanXuLy", "NoiDungXuLy", "TrangThai",
    "NgayBatDau", "NgayKetThucTheoQuyDinh",
)
#: 512 KiB: well under the 1 MiB chunk limit of the schema once base64-encoded (×4/3).
DEFAULT_CHUNK_SIZE = 512 * 1024


def ordered_record(record: dict[str, Any], order: tuple[str, ...], what: str) -> dict[str, Any]:
    """``record`` in the portal's field order; a field the portal does not know is a ValueError."""
    unknown = set(record) - set(order)
    if unknown:
        raise ValueError(f"{what} has fields the portal does not know: {', '.join(sorted(unknown))}")
    return {k: record[k] for k in order if k in record}


@dataclass(frozen=True)
class ItemResult:
    """The portal's answer for one dossier or step: MaLoi "0" means accepted."""

    ma_ho_so: str
    ma_loi: str
    mo_ta: str

    @property
    def accepted(self) -> bool:
        return self.ma_loi == "0"


@dataclass(frozen=True)
class UploadedResult:
    giay_to_id: str
    url: str
    sha256: str
    size: int
    resumed_from: int


class DvcPortalClient:
    def __init__(self, transport: PartnerTransport):
        self.transport = expect_service(transport, DVC_PORTAL, "DvcPortalClient")

    def _ask(self, operation: str, params: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.transport.handle(PartnerCall(operation, params, **kwargs)).result

    @staticmethod
    def _results(result: dict[str, Any]) -> list[ItemResult]:
        return [ItemResult(item.get("MaHoSo"), item.get("MaLoi"), item.get("MoTa") or "")
                for item in result.get("KetQua", [])]

    def sync_dossiers(self, dossiers: list[dict[str, Any]], *, is_updating: bool,
                      document_id: str | None = None, correlation_id: str | None = None,
                      attempt: int = 1) -> list[ItemResult]:
        return self._results(self._ask("DongBoHoSoMC", {
            "isUpdating": is_updating,
            "HoSo": [ordered_record(d, HOSO_FIELDS, f"dossier {d.get('MaHoSo')}") for d in dossiers],
        }, document_id=document_id, correlation_id=correlation_id, attempt=attempt, updating=is_updating))

    def update_progress(self, steps: list[dict[str, Any]], *, document_id: str | None = None,
                        correlation_id: str | None = None, attempt: int = 1) -> list[ItemResult]:
        return self._results(self._ask("CapNhatTienDoHoSoMC", {
            "QuaTrinhXuLy": [ordered_record(s, QUATRINH_FIELDS, f"step of {s.get('MaHoSo')}") for s in steps],
        }, document_id=document_id, correlation_id=correlation_id, attempt=attempt))

    def lookup(self, ma_ho_so: str) -> dict[str, Any]:
        p = self._ask("TraCuuHoSo", {"MaHoSo": ma_ho_so})
        return {
            "MaHoSo": p.get("MaHoSo"),
            "TonTai": p.get("TonTai") in ("true", "1"),
            "TrangThaiHoSo": p.get("TrangThaiHoSo"),
            "NgayCapNhat": p.get("NgayCapNhat"),
        }

    def upload_result(self, ma_ho_so: str, source: Path | bytes, *, file_name: str, mime_type: str,
                      ma_giay_to_ket_qua: str | None = None,
                      chunk_size: int = DEFAULT_CHUNK_SIZE) -> UploadedResult:
        """Stream a result file in chunks; a restarted upload resumes where the portal stopped.

        The file is read twice (hash, then send) rather than held in memory: results can be large
        scans. The portal checks the SHA-256 announced at the start against what it assembled.
        """
        if isinstance(source, (bytes, bytearray)):
            size = len(source)
            opener = lambda: io.BytesIO(source)  # noqa: E731
        else:
            size = os.path.getsize(source)
            opener = lambda: open(source, "rb")  # noqa: E731
        digest = hashlib.sha256()
        with opener() as fh:
            for block in iter(lambda: fh.read(1024 * 1024), b""):
                digest.update(block)
        sha = digest.hexdigest()
        start = self._ask("BatDauTaiTepKetQua", {
            "MaHoSo": ma_ho_so, "MaGiayToKetQua": ma_giay_to_ket_qua, "TenTep": file_name,
            "KieuTep": mime_type, "KichThuoc": size, "SHA256": sha,
        })
        session = start.get("MaPhienTai")
        received = resumed_from = int(start.get("DaNhan") or 0)
        with opener() as fh:
            fh.seek(received)
            while received < size:
                chunk = _read_exact(fh, min(chunk_size, size - received))
                answer = self._ask("TaiPhanTepKetQua", {
                    "MaPhienTai": session, "ViTri": received, "DuLieu": _b64(chunk),
                }, correlation_id=session)
                received = int(answer["DaNhan"])
                fh.seek(received)
        done = self._ask("KetThucTaiTepKetQua", {"MaPhienTai": session, "SHA256": sha}, correlation_id=session)
        return UploadedResult(giay_to_id=done.get("GiayToId"), url=done.get("DuongDanTepTinKetQua"),
                              sha256=done.get("SHA256"), size=size, resumed_from=resumed_from)


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise OSError(f"result file changed while uploading: expected {n} more bytes, read {len(data)}")
    return data


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")
