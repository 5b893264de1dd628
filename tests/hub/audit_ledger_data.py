"""A small ledger of real, signed exchanges with the sandbox, for the audit reading tests.

Run through the real connectors (envelope, XSD, signature, SOAP, sandbox, verified reply), so the
ledger holds exactly what the hub would record in production: DongBoHoSoMC with two dossiers whose
owners are Vietnamese citizens, their CapNhatTienDoHoSoMC steps, a TraCuuHoSo, a later
DongBoHoSoMC with the final status, and a LayThuTuc for a procedure code.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from lienthong.connectors.csdl_tthc import CsdlTthcClient
from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.soap import SoapConnector
from lienthong.hub.audit import AuditTrail
from national_helpers import settings_for

MA_HO_SO = "000.00.04.G10-20261120-0000042"
MA_HO_SO_2 = "000.00.04.G10-20261121-0000043"
MA_TTHC = "1.001012"
OWNER = unicodedata.normalize("NFC", "Nguyễn Văn An")
OWNER_2 = unicodedata.normalize("NFC", "Trần Thị Bích Ngọc")
ID_NUMBER = "001203004567"
PHONE = "0912345678"
EMAIL = "nguyenvanan@example.vn"


def dossier(ma: str, owner: str, status: int, **extra) -> dict:
    return {
        "MaHoSo": ma, "MaTTHC": MA_TTHC, "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu",
        "MaLinhVuc": "G10-TY", "TenLinhVuc": "Thú y", "KenhThucHien": 2, "ChuHoSo": owner,
        "LoaiDoiTuong": 1, "TrichYeuHoSo": f"Ông/bà {owner} đề nghị cấp giấy chứng nhận kiểm dịch",
        "NgayNopHoSo": "20261120081530", "TrangThaiHoSo": status, **extra,
    }


@dataclass(frozen=True)
class Ledger:
    first_sync: tuple[int, int]
    steps: tuple[int, int]
    lookup: tuple[int, int]
    final_sync: tuple[int, int]
    procedure: tuple[int, int]
    procedure_code: str


def fill_ledger(engine, conn_home, sandbox) -> Ledger:
    """Eight real exchanges (sixteen entries) recorded in ``engine``'s ledger."""
    settings = settings_for(conn_home, sandbox.base_url)
    audit = AuditTrail(engine)
    portal_connector = SoapConnector(settings, "dvc_portal", audit=audit)
    portal = DvcPortalClient(portal_connector)
    portal.sync_dossiers([
        dossier(MA_HO_SO, OWNER, 2, SoGiayToChuHoSo=ID_NUMBER, Email=EMAIL, SoDienThoai=PHONE,
                GhiChu=f"Liên hệ {PHONE} hoặc {EMAIL}",
                DinhDanhCHS=[{"LoaiDinhDanh": 1, "SoDinhDanh": ID_NUMBER}]),
        dossier(MA_HO_SO_2, OWNER_2, 2),
    ], is_updating=False)
    first = portal_connector.audit.head()[0]
    portal.update_progress([
        {"MaHoSo": MA_HO_SO, "NguoiXuLy": "Lê Văn Cường", "ChucDanh": "Chuyên viên",
         "ThoiDiemXuLy": "20261120093000", "PhongBanXuLy": "Bộ phận Một cửa",
         "NoiDungXuLy": f"Tiếp nhận hồ sơ của {OWNER}", "TrangThai": 2, "NgayBatDau": "20261120093000",
         "NgayKetThucTheoQuyDinh": "20261120170000"},
        {"MaHoSo": MA_HO_SO, "NguoiXuLy": "Phạm Thị Hoa", "ChucDanh": "Phó Trưởng phòng",
         "ThoiDiemXuLy": "20261121090000", "PhongBanXuLy": "Phòng Kiểm dịch động vật",
         "NoiDungXuLy": "Thẩm định hồ sơ", "TrangThai": 4, "NgayBatDau": "20261121090000",
         "NgayKetThucTheoQuyDinh": "20261125170000"},
    ])
    steps = audit.head()[0]
    portal.lookup(MA_HO_SO)
    lookup = audit.head()[0]
    portal.sync_dossiers([dossier(MA_HO_SO, OWNER, 10, SoGiayToChuHoSo=ID_NUMBER, NgayTra="20261125100000")],
                         is_updating=True)
    final = audit.head()[0]
    csdl = CsdlTthcClient(SoapConnector(settings, "csdl_tthc", audit=audit))
    code = csdl.list_page(1, 1).items[0].code
    csdl.procedure(code)
    procedure = audit.head()[0]
    return Ledger((first - 1, first), (steps - 1, steps), (lookup - 1, lookup), (final - 1, final),
                  (procedure - 1, procedure), code)
