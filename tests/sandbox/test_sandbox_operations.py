"""The emulated services' business behaviour: dossier rules, resumable uploads, reports."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import requests
from lienthong.connectors.services import SERVICES
from sandbox_helpers import HUB, SandboxClient, dossier, step

DVC = SERVICES["dvc_portal"].namespace
BC = SERVICES["baocao"].namespace
MA = "000.00.04.G10-20260609-0000001"


def q(ns: str, *names: str) -> str:
    return "/".join(f"{{{ns}}}{n}" for n in names)


def codes(reply) -> list[str]:
    return [el.text for el in reply.result.iter(f"{{{DVC}}}MaLoi")]


def sync(client: SandboxClient, *hoso, updating: bool = False):
    return client.call("dvc_portal", "DongBoHoSoMC", {"isUpdating": updating, "HoSo": list(hoso)})


# ------------------------------------------------------------------------------------ dossiers
def test_dossier_lifecycle_as_the_portal_sees_it(client, sandbox):
    lookup = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": MA}).result
    assert lookup.findtext(q(DVC, "TonTai")) == "false"
    assert lookup.find(q(DVC, "TrangThaiHoSo")) is None

    assert codes(sync(client, dossier(MA, status=2))) == ["0"]
    assert codes(sync(client, dossier(MA, status=4), updating=True)) == ["0"]
    lookup = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": MA}).result
    assert (lookup.findtext(q(DVC, "TonTai")), lookup.findtext(q(DVC, "TrangThaiHoSo"))) == ("true", "4")
    assert len(lookup.findtext(q(DVC, "NgayCapNhat"))) == 14

    stored = sandbox.store.dossier(MA)
    assert stored["trang_thai"] == 4 and stored["versions"] == 2 and stored["from_agency"] == HUB.code
    assert stored["data"]["ChuHoSo"] == "Nguyễn Văn An"
    history = sandbox.store.dossier_history(MA)
    assert [(e.kind, e.trang_thai, e.is_updating, e.accepted) for e in history] == [
        ("HoSo", 2, False, True), ("HoSo", 4, True, True)]


def test_is_updating_must_match_what_the_portal_holds(client, sandbox):
    assert codes(sync(client, dossier(MA), updating=True)) == ["HOSO_CHUA_TON_TAI"]
    assert sandbox.store.dossier(MA) is None
    assert codes(sync(client, dossier(MA))) == ["0"]
    assert codes(sync(client, dossier(MA, status=4))) == ["HOSO_DA_TON_TAI"]
    assert sandbox.store.dossier(MA)["trang_thai"] == 2
    rejected = sandbox.store.dossier_history(MA)[-1]
    assert (rejected.accepted, rejected.ma_loi) == (False, "HOSO_DA_TON_TAI")


def test_one_bad_dossier_does_not_sink_the_batch(client, sandbox):
    other = "000.00.04.G10-20260609-0000002"
    assert codes(sync(client, dossier(MA))) == ["0"]
    assert codes(sync(client, dossier(MA), dossier(other))) == ["HOSO_DA_TON_TAI", "0"]
    assert sandbox.store.dossier(other) is not None


def test_terminal_status_cannot_change(client):
    assert codes(sync(client, dossier(MA, status=10))) == ["0"]
    assert codes(sync(client, dossier(MA, status=4), updating=True)) == ["TRANG_THAI_KHONG_HOP_LE"]
    assert codes(sync(client, dossier(MA, status=10, GhiChu="Bổ sung ghi chú"), updating=True)) == ["0"]


def test_processing_steps_in_order_once_each(client, sandbox):
    steps = {"QuaTrinhXuLy": [step(MA, "20260609093000", 2, "Tiếp nhận hồ sơ")]}
    assert codes(client.call("dvc_portal", "CapNhatTienDoHoSoMC", steps)) == ["HOSO_CHUA_TON_TAI"]
    sync(client, dossier(MA))
    assert codes(client.call("dvc_portal", "CapNhatTienDoHoSoMC", steps)) == ["0"]
    later = {"QuaTrinhXuLy": [step(MA, "20260610090000", 4, "Thẩm định"), step(MA, "20260609100000", 4, "Muộn")]}
    assert codes(client.call("dvc_portal", "CapNhatTienDoHoSoMC", later)) == ["0", "THU_TU_KHONG_HOP_LE"]
    # the same step pushed twice is accepted but marked, so tests can assert "each step once"
    assert codes(client.call("dvc_portal", "CapNhatTienDoHoSoMC",
                             {"QuaTrinhXuLy": [step(MA, "20260610090000", 4, "Thẩm định")]})) == ["0"]
    history = [e for e in sandbox.store.dossier_history(MA) if e.kind == "QuaTrinhXuLy"]
    assert [(e.thoi_diem, e.accepted, e.duplicate) for e in history] == [
        ("20260609093000", False, False), ("20260609093000", True, False), ("20260610090000", True, False),
        ("20260609100000", False, False), ("20260610090000", True, True)]


# ------------------------------------------------------------------------------------ result upload
def start_upload(client, content: bytes, name: str = "Giấy chứng nhận số 12.pdf"):
    return client.call("dvc_portal", "BatDauTaiTepKetQua", {
        "MaHoSo": MA, "MaGiayToKetQua": "KQ-1.001012-1", "TenTep": name, "KieuTep": "application/pdf",
        "KichThuoc": len(content), "SHA256": hashlib.sha256(content).hexdigest()})


def send_chunk(client, session: str, offset: int, data: bytes):
    return client.call("dvc_portal", "TaiPhanTepKetQua",
                       {"MaPhienTai": session, "ViTri": offset, "DuLieu": base64.b64encode(data).decode()})


def test_upload_needs_a_known_dossier(client):
    reply = start_upload(client, b"%PDF-1.4 ...")
    assert reply.fault_code == "NOT_FOUND"


def test_chunked_upload_resumes_and_verifies(client, sandbox):
    sync(client, dossier(MA, status=9))
    content = bytes(range(256)) * 600  # 150 KiB in 64 KiB chunks (the client picks any size up to 1 MiB)
    chunk = 64 * 1024
    started = start_upload(client, content).result
    session = started.findtext(q(DVC, "MaPhienTai"))
    assert started.findtext(q(DVC, "DaNhan")) == "0"

    first = send_chunk(client, session, 0, content[:chunk]).result
    assert first.findtext(q(DVC, "DaNhan")) == str(chunk)
    # the connection "broke": asking again for the same file says where to resume
    resumed = start_upload(client, content).result
    assert resumed.findtext(q(DVC, "MaPhienTai")) == session
    assert resumed.findtext(q(DVC, "DaNhan")) == str(chunk)
    # a resend of a chunk already held changes nothing
    assert send_chunk(client, session, 0, content[:chunk]).result.findtext(q(DVC, "DaNhan")) == str(chunk)
    # a gap is refused with a code that tells the client to ask where to resume
    gap = send_chunk(client, session, 2 * chunk, content[2 * chunk:])
    assert gap.fault_code == "UPLOAD_OFFSET_MISMATCH"
    early_end = client.call("dvc_portal", "KetThucTaiTepKetQua",
                            {"MaPhienTai": session, "SHA256": hashlib.sha256(content).hexdigest()})
    assert early_end.fault_code == "UPLOAD_INCOMPLETE"
    # an overlapping chunk (starts inside what is held) only appends the new bytes
    second = send_chunk(client, session, chunk - 10, content[chunk - 10:2 * chunk - 10]).result
    assert second.findtext(q(DVC, "DaNhan")) == str(2 * chunk - 10)
    last = send_chunk(client, session, 2 * chunk - 10, content[2 * chunk - 10:]).result
    assert last.findtext(q(DVC, "DaNhan")) == str(len(content))

    done = client.call("dvc_portal", "KetThucTaiTepKetQua",
                       {"MaPhienTai": session, "SHA256": hashlib.sha256(content).hexdigest()}).result
    giay_to_id = done.findtext(q(DVC, "GiayToId"))
    link = done.findtext(q(DVC, "DuongDanTepTinKetQua"))
    assert link == f"{sandbox.base_url}/dvc/ket-qua/{giay_to_id}"
    fetched = requests.get(link, timeout=5)
    assert fetched.status_code == 200 and fetched.content == content
    assert fetched.headers["Content-Type"] == "application/pdf"
    [upload] = sandbox.store.uploads_for(MA)
    assert (upload["status"], upload["chunks"], upload["da_nhan"]) == ("done", 3, len(content))
    # ending again is idempotent; starting the same file again reports it complete
    again = client.call("dvc_portal", "KetThucTaiTepKetQua",
                        {"MaPhienTai": session, "SHA256": hashlib.sha256(content).hexdigest()}).result
    assert again.findtext(q(DVC, "GiayToId")) == giay_to_id
    assert start_upload(client, content).result.findtext(q(DVC, "DaNhan")) == str(len(content))


def test_corrupt_upload_is_refused_and_restarts(client, sandbox):
    sync(client, dossier(MA, status=9))
    content = b"%PDF-1.4 ket qua giai quyet\n" * 100
    session = start_upload(client, content).result.findtext(q(DVC, "MaPhienTai"))
    corrupt = bytearray(content)
    corrupt[10] ^= 0xFF
    send_chunk(client, session, 0, bytes(corrupt))
    sha = hashlib.sha256(content).hexdigest()
    bad = client.call("dvc_portal", "KetThucTaiTepKetQua", {"MaPhienTai": session, "SHA256": sha})
    assert bad.fault_code == "CHECKSUM_MISMATCH"
    # the reset survived the fault: the portal now holds nothing of this file
    assert start_upload(client, content).result.findtext(q(DVC, "DaNhan")) == "0"
    send_chunk(client, session, 0, content)
    ok = client.call("dvc_portal", "KetThucTaiTepKetQua", {"MaPhienTai": session, "SHA256": sha})
    assert ok.result.findtext(q(DVC, "SHA256")) == sha
    wrong_hash = client.call("dvc_portal", "KetThucTaiTepKetQua", {"MaPhienTai": session, "SHA256": "0" * 64})
    assert wrong_hash.fault_code == "CHECKSUM_MISMATCH"


def test_chunk_beyond_declared_size_and_unknown_session(client):
    sync(client, dossier(MA, status=9))
    session = start_upload(client, b"abc").result.findtext(q(DVC, "MaPhienTai"))
    assert send_chunk(client, session, 0, b"abcd").fault_code == "BUSINESS_REJECTED"
    assert send_chunk(client, "khongtontai-000", 0, b"a").fault_code == "NOT_FOUND"


# ------------------------------------------------------------------------------------ reporting
def report(period_kind: str = "quy", number: int = 2, agency: str = HUB.code, online: int = 10) -> dict:
    row = {"MaCoQuan": agency, "TiepNhanKyTruoc": 5, "TiepNhanTrucTuyen": online, "TiepNhanTrucTiep": 3,
           "TiepNhanBuuChinh": 0, "GiaiQuyetTruocHan": 8, "GiaiQuyetDungHan": 2, "GiaiQuyetQuaHan": 1,
           "DangXuLyTrongHan": 6, "DangXuLyQuaHan": 1, "YeuCauBoSung": 2, "RutHoSo": 0, "DungXuLy": 0}
    return {"KyBaoCao": {"LoaiKy": period_kind, "Nam": 2026, "Ky": number}, "MaCoQuan": agency, "ChiTieu": [row]}


def test_report_is_received_then_approved(client, sandbox):
    sent = client.call("baocao", "GuiBaoCao", report()).result
    report_id = sent.findtext(q(BC, "MaBaoCao"))
    assert sent.findtext(q(BC, "TrangThai")) == "DA_TIEP_NHAN"
    status = client.call("baocao", "LayTrangThaiBaoCao", {"MaBaoCao": report_id}).result
    assert status.findtext(q(BC, "TrangThai")) == "DA_DUYET"
    stored = sandbox.store.report(report_id)
    assert (stored["loai_ky"], stored["nam"], stored["ky"], stored["rows"]) == ("quy", 2026, 2, 1)
    assert stored["data"][0]["TiepNhanTrucTuyen"] == "10"


def test_report_review_delay(make_sandbox, hub_signer, hub_verifier):
    moment = [datetime(2026, 7, 1, 1, 0, tzinfo=UTC)]
    server = make_sandbox(report_review_seconds=3600, clock=lambda: moment[0])
    client = SandboxClient(server.base_url, hub_signer, hub_verifier)
    report_id = client.call("baocao", "GuiBaoCao", report()).result.findtext(q(BC, "MaBaoCao"))
    status = lambda: client.call("baocao", "LayTrangThaiBaoCao", {"MaBaoCao": report_id}).result  # noqa: E731
    assert status().findtext(q(BC, "TrangThai")) == "DANG_XU_LY"
    moment[0] += timedelta(hours=2)
    assert status().findtext(q(BC, "TrangThai")) == "DA_DUYET"


def test_second_report_for_the_period_replaces_the_first(client):
    first = client.call("baocao", "GuiBaoCao", report(online=10)).result.findtext(q(BC, "MaBaoCao"))
    second = client.call("baocao", "GuiBaoCao", report(online=12)).result.findtext(q(BC, "MaBaoCao"))
    assert first != second
    old = client.call("baocao", "LayTrangThaiBaoCao", {"MaBaoCao": first}).result
    assert old.findtext(q(BC, "TrangThai")) == "DA_THAY_THE"
    assert "thay thế" in old.findtext(q(BC, "GhiChu"))
    # another period is independent
    other = client.call("baocao", "GuiBaoCao", report("thang", 6)).result.findtext(q(BC, "MaBaoCao"))
    assert client.call("baocao", "LayTrangThaiBaoCao", {"MaBaoCao": second}).result.findtext(
        q(BC, "TrangThai")) == "DA_DUYET"
    assert other


def test_report_rules(client):
    assert client.call("baocao", "GuiBaoCao", report("quy", 5)).fault_code == "BUSINESS_REJECTED"
    assert client.call("baocao", "GuiBaoCao", report("thang", 12)).http.status_code == 200
    assert client.call("baocao", "GuiBaoCao", report(agency="000.00.00.G11")).fault_code == "BUSINESS_REJECTED"
    unknown = client.call("baocao", "LayTrangThaiBaoCao", {"MaBaoCao": "BC-KHONG-CO-123"}).result
    assert unknown.findtext(q(BC, "TrangThai")) == "KHONG_TON_TAI"  # a signed answer, not a Fault
