"""Generate ``schemas/samples/``: one signed request and one signed reply per national operation.

Run ``python -m lienthong.sandbox.samples`` (optionally ``--out DIR``) to regenerate them.

Why generated rather than hand-written: a sample must be a *complete* message that passes every
check a real exchange passes (XSD of header and payload, enveloped signature), and it must stay so
when the schemas evolve. So the requests are built with the hub's own envelope builder and signer,
and every reply is the sandbox's actual answer to that request (run in-process, clock pinned), in
an order that makes the conversation coherent: the dossier is synchronised before its steps and its
result file, the report is sent before its status is asked for.

The signatures come from a throwaway development PKI created in a temporary directory and deleted
afterwards: they prove the samples are well-formed signed messages, not who signed them. Request
DocumentIds and times are fixed, so a regeneration only changes signatures, certificates, reply
DocumentIds and upload session ids.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lxml import etree

from ..connectors.payload import element, text
from ..connectors.reporting import CHITIEU_FIELDS
from ..connectors.services import SERVICES, schemas_dir
from ..connectors.soapframe import body_bytes, wrap_soap
from ..hub.envelope import Party, build_envelope
from ..hub.settings import DEFAULT_AGENCY_CODE, DEFAULT_AGENCY_NAME, NATIONAL_AGENCY_CODE, NATIONAL_AGENCY_NAME
from ..hub.xmlsafe import parse_xml
from ..signing import Signer, init_dev_pki, load_identity
from .server import MEMORY, SandboxConfig, SandboxServer

#: the moment every sample pretends to be sent (09:00 in Hà Nội, 10 June 2026)
SAMPLE_TIME = datetime(2026, 6, 10, 2, 0, 0, tzinfo=UTC)
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

MA_HO_SO = "000.00.04.G10-20260609-0000123"
MA_HO_SO_2 = "000.00.04.G10-20260528-0000087"
RESULT_FILE = (
    b"%PDF-1.4\n% Giay chung nhan kiem dich dong vat nhap khau so 123/2026/CNKD-TY (mau thu nghiem)\n"
    b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)


def _dossier() -> dict[str, Any]:
    """A dossier in progress that went through a supplement request: every list is present."""
    return {
        "MaHoSo": MA_HO_SO,
        "MaTTHC": "1.001012",
        "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu",
        "MaLinhVuc": "G10-TY",
        "TenLinhVuc": "Thú y",
        "KenhThucHien": 2,
        "ChuHoSo": "Công ty TNHH Chăn nuôi Phú An",
        "SoGiayToChuHoSo": "0312345678",
        "LoaiDoiTuong": 2,
        "MaDoiTuong": "DN-0312345678",
        "Email": "xuatnhapkhau@phuan.example.vn",
        "SoDienThoai": "0243 823 1456",
        "TrichYeuHoSo": "Đề nghị cấp Giấy chứng nhận kiểm dịch cho lô 1.200 con lợn giống nhập khẩu từ Đan Mạch "
                        "qua cửa khẩu cảng Hải Phòng",
        "NgayNopHoSo": "20260609081530",
        "NgayTiepNhan": "20260609093000",
        "NgayHenTra": "20260616170000",
        "TrangThaiHoSo": 4,
        "DonViXuLy": "Cục Thú y",
        "GhiChu": "Hồ sơ đã bổ sung giấy chứng nhận vệ sinh thú y của nước xuất khẩu",
        "NoiNopHoSo": 1,  # the portal (mappings/tables/submission_place.yaml)
        "HoSoCoThanhPhanSoHoa": True,
        "TaiKhoanDuocXacThucVoiVNeID": True,
        "DuocThanhToanTrucTuyen": 1,
        "DinhDanhCHS": [{"LoaiDinhDanh": 2, "SoDinhDanh": "0312345678"}],
        "DSKetNoiCSDL": [{"MaCSDL": "CSDLQG-DKDN"}],
        "TaiLieuNop": [
            {"TepDinhKemId": "TL-20260609-0001", "TenTepDinhKem": "Đơn đăng ký kiểm dịch động vật nhập khẩu.pdf",
             "IsDeleted": False, "MaThanhPhanHoSo": "GT-1.001012-1",
             "DuongDanTaiTepTin": "https://motcua.mae.example.vn/tep/TL-20260609-0001", "DuocSoHoa": True,
             "DuocTaiSuDung": False, "DuocLayTuKhoDMQG": False},
            {"TepDinhKemId": "TL-20260611-0007",
             "TenTepDinhKem": "Giấy chứng nhận vệ sinh thú y của nước xuất khẩu (bổ sung).pdf",
             "IsDeleted": False, "MaThanhPhanHoSo": "GT-1.001012-3",
             "DuongDanTaiTepTin": "https://motcua.mae.example.vn/tep/TL-20260611-0007", "DuocSoHoa": True,
             "DuocTaiSuDung": False, "DuocLayTuKhoDMQG": False},
        ],
        "DanhSachLePhi": [{"TenPhiLePhi": "Phí kiểm dịch động vật nhập khẩu", "MaPhiLePhi": "PLP-1.001012-1",
                           "HinhThucThu": 2, "Gia": "1200000", "LoaiPhiLePhi": 1}],
        "DanhSachHoSoBoSung": [{
            "HoSoBoSungId": "BS-20260610-0003", "NguoiYeuCauBoSung": "Nguyễn Thị Minh Hằng",
            "NoiDungBoSung": "Bổ sung bản chính Giấy chứng nhận vệ sinh thú y do cơ quan thú y Đan Mạch cấp",
            "NgayBoSung": "20260610100000", "NguoiTiepNhanBoSung": "Trần Văn Đức",
            "ThongTinTiepNhan": "Đã nhận bản điện tử có chữ ký số", "NgayTiepNhanBoSung": "20260611083000",
            "TrangThaiBoSung": 2, "NgayHenTraTruoc": "20260616170000", "NgayHenTraMoi": "20260617170000",
        }],
    }


def _finished_dossier() -> dict[str, Any]:
    """A dossier whose digital result was returned (status 10, DanhSachGiayToKetQua)."""
    return {
        "MaHoSo": MA_HO_SO_2,
        "MaTTHC": "1.001013",
        "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch sản phẩm động vật nhập khẩu",
        "MaLinhVuc": "G10-TY",
        "TenLinhVuc": "Thú y",
        "KenhThucHien": 1,
        "ChuHoSo": "Hợp tác xã Thủy sản Đông Hải",
        "LoaiDoiTuong": 2,
        "TrichYeuHoSo": "Kiểm dịch 20 tấn bột cá nhập khẩu làm nguyên liệu thức ăn chăn nuôi",
        "NgayNopHoSo": "20260528140000",
        "NgayTiepNhan": "20260528140000",
        "NgayHenTra": "20260604170000",
        "TrangThaiHoSo": 10,
        "NgayTra": "20260603100000",
        "ThongTinTra": "Trả kết quả điện tử qua Cổng Dịch vụ công quốc gia",
        "HinhThuc": 2,
        "NgayKetThucXuLy": "20260602160000",
        "DonViXuLy": "Cục Thú y",
        "NoiNopHoSo": 2,  # the ministry's own one-stop system
        "HoSoCoThanhPhanSoHoa": True,
        "DuocThanhToanTrucTuyen": 0,
        "DanhSachGiayToKetQua": [{
            "TenGiayTo": "Giấy chứng nhận kiểm dịch sản phẩm động vật nhập khẩu số 087/2026/CNKD-TY",
            "MaThanhPhanHoSo": "KQ-1.001013-1",
            "GiayToId": "KQ5c1f0e7a9d2b4c6e8f0a1b3c5d7e9f",
            "DuongDanTepTinKetQua": "http://localhost:8080/dvc/ket-qua/KQ5c1f0e7a9d2b4c6e8f0a1b3c5d7e9f",
            "MaGiayToKetQua": "KQ-1.001013-1",
        }],
    }


def _report() -> dict[str, Any]:
    def row(agency: str, tthc: str | None, field: str | None, counts: tuple[int, ...]) -> dict[str, Any]:
        return dict(zip(CHITIEU_FIELDS, (agency, tthc, field, *counts), strict=True))

    return {
        "KyBaoCao": {"LoaiKy": "quy", "Nam": 2026, "Ky": 2},
        "MaCoQuan": DEFAULT_AGENCY_CODE,
        "ChiTieu": [
            row(DEFAULT_AGENCY_CODE, None, None, (412, 3180, 965, 57, 2904, 871, 64, 683, 21, 118, 9, 4)),
            row("000.00.04.G10", None, "G10-TY", (96, 1210, 240, 11, 1102, 290, 18, 132, 5, 41, 2, 1)),
            row("000.00.04.G10", "1.001012", "G10-TY", (14, 188, 22, 0, 170, 31, 3, 19, 1, 6, 0, 0)),
        ],
    }


def conversation() -> Iterator[tuple[str, str, dict[str, Any] | None]]:
    """(service, operation, payload content) in an order where each request makes sense.

    ``None`` content means "derive from the previous replies" (upload session, report id).
    """
    yield "csdl_tthc", "LayDanhSachTTHC", {"TuNgay": "2025-10-01T00:00:00+07:00", "Trang": 1, "SoBanGhi": 5,
                                           "TrangThai": 1}
    yield "csdl_tthc", "LayThuTuc", {"MATTHC": "1.001011"}
    yield "csdl_tthc", "LayDanhMucCoQuan", {}
    yield "csdl_tthc", "LayDanhMucLinhVuc", {}
    yield "dvc_portal", "DongBoHoSoMC", {"isUpdating": False, "HoSo": [_dossier(), _finished_dossier()]}
    yield "dvc_portal", "CapNhatTienDoHoSoMC", {"QuaTrinhXuLy": [
        {"MaHoSo": MA_HO_SO, "NguoiXuLy": "Trần Văn Đức", "ChucDanh": "Chuyên viên",
         "ThoiDiemXuLy": "20260609093000", "PhongBanXuLy": "Bộ phận Một cửa",
         "NoiDungXuLy": "Tiếp nhận hồ sơ trực tuyến, chuyển Phòng Kiểm dịch động vật", "TrangThai": 2,
         "NgayBatDau": "20260609093000", "NgayKetThucTheoQuyDinh": "20260609170000"},
        {"MaHoSo": MA_HO_SO, "NguoiXuLy": "Nguyễn Thị Minh Hằng", "ChucDanh": "Phó Trưởng phòng",
         "ThoiDiemXuLy": "20260611090000", "PhongBanXuLy": "Phòng Kiểm dịch động vật",
         "NoiDungXuLy": "Thẩm định hồ sơ sau khi doanh nghiệp bổ sung giấy tờ", "TrangThai": 4,
         "NgayBatDau": "20260611090000", "NgayKetThucTheoQuyDinh": "20260616170000"},
    ]}
    yield "dvc_portal", "TraCuuHoSo", {"MaHoSo": MA_HO_SO}
    yield "dvc_portal", "BatDauTaiTepKetQua", {
        "MaHoSo": MA_HO_SO, "MaGiayToKetQua": "KQ-1.001012-1",
        "TenTep": "Giấy chứng nhận kiểm dịch số 123-2026-CNKD-TY.pdf", "KieuTep": "application/pdf",
        "KichThuoc": len(RESULT_FILE), "SHA256": hashlib.sha256(RESULT_FILE).hexdigest()}
    yield "dvc_portal", "TaiPhanTepKetQua", None
    yield "dvc_portal", "KetThucTaiTepKetQua", None
    yield "baocao", "GuiBaoCao", _report()
    yield "baocao", "LayTrangThaiBaoCao", None


def generate(out_dir: Path) -> list[Path]:
    """Write the samples into ``out_dir``; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="lienthong-samples-") as tmp:
        pki_dir = Path(tmp) / "pki"
        password = "samples-only-throwaway"
        files = init_dev_pki(pki_dir, DEFAULT_AGENCY_CODE, NATIONAL_AGENCY_CODE, password=password)
        signer = Signer(load_identity(files.hub_p12, password.encode()))
        moment = [SAMPLE_TIME]

        def clock() -> datetime:
            return moment[0]

        server = SandboxServer(SandboxConfig(store_path=MEMORY, pki_dir=pki_dir, key_password=password,
                                             clock=clock, pretty_replies=True))
        hub = Party(DEFAULT_AGENCY_CODE, DEFAULT_AGENCY_NAME)
        national = Party(NATIONAL_AGENCY_CODE, NATIONAL_AGENCY_NAME)
        replies: dict[str, etree._Element] = {}
        try:
            for n, (service_name, operation, content) in enumerate(conversation(), start=1):
                spec = SERVICES[service_name]
                if content is None:
                    content = _derived(operation, replies, spec.namespace)
                payload = element(spec.namespace, operation, content, prefix=_prefix(service_name))
                envelope = build_envelope(
                    sender=hub, recipients=[national], subject=operation, payload=payload,
                    document_id=f"G10-LT-20260610-{n:06d}", now=moment[0])
                etree.indent(envelope)
                request = signer.sign(envelope)
                response = server.handle_soap(spec, operation, wrap_soap(request), base_url="http://localhost:8080")
                reply = body_bytes(response.body)
                if response.status != 200 or reply is None:
                    raise RuntimeError(f"sandbox refused the {operation} sample: {response.body[:600]!r}")
                replies[operation] = parse_xml(reply)
                for kind, data in (("request", request), ("response", reply)):
                    path = out_dir / f"{service_name}.{operation}.{kind}.xml"
                    path.write_bytes(XML_DECLARATION + data + b"\n")
                    written.append(path)
                moment[0] += timedelta(seconds=7)
        finally:
            server.close()
    return written


def _prefix(service_name: str) -> str:
    return {"csdl_tthc": "tthc", "dvc_portal": "dvc", "baocao": "bc"}[service_name]


def _result(replies: dict[str, etree._Element], operation: str, ns: str) -> etree._Element:
    found = replies[operation].find(f".//{{{ns}}}{operation}Result")
    if found is None:
        raise RuntimeError(f"no {operation}Result in the sandbox reply")
    return found


def _derived(operation: str, replies: dict[str, etree._Element], ns: str) -> dict[str, Any]:
    if operation == "TaiPhanTepKetQua":
        started = _result(replies, "BatDauTaiTepKetQua", ns)
        return {"MaPhienTai": text(started, ns, "MaPhienTai"), "ViTri": 0,
                "DuLieu": base64.b64encode(RESULT_FILE).decode("ascii")}
    if operation == "KetThucTaiTepKetQua":
        started = _result(replies, "BatDauTaiTepKetQua", ns)
        return {"MaPhienTai": text(started, ns, "MaPhienTai"), "SHA256": hashlib.sha256(RESULT_FILE).hexdigest()}
    if operation == "LayTrangThaiBaoCao":
        sent = _result(replies, "GuiBaoCao", ns)
        return {"MaBaoCao": text(sent, ns, "MaBaoCao")}
    raise ValueError(operation)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lienthong.sandbox.samples",
                                     description="Regenerate the signed sample messages of schemas/samples/.")
    parser.add_argument("--out", type=Path, default=schemas_dir() / "samples", help="output directory")
    args = parser.parse_args(argv)
    files = generate(args.out)
    print(f"wrote {len(files)} samples to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
