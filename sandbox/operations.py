"""What each emulated national operation does with a verified request.

The server (``sandbox.server``) has already parsed, schema-checked and signature-verified the
envelope and checked who sent it to whom; an operation here only reads the payload element and
returns the ``<Op>Result`` element. Business failures that concern the whole message are raised as
:class:`OperationFault` (→ SOAP Fault with a specific code); per-dossier rejections in a batch are
answered in the result (``KetQua/MaLoi`` ≠ ``"0"``), as the portal does, so one bad dossier does not
sink a hundred good ones.

Rules the emulated portal enforces (so the hub's sync logic meets them in tests):

* ``DongBoHoSoMC``: ``isUpdating=false`` for a dossier the portal already has → ``HOSO_DA_TON_TAI``;
  ``isUpdating=true`` for one it does not have → ``HOSO_CHUA_TON_TAI``; a dossier already in a
  terminal status (3, 7, 8, 10) cannot change status → ``TRANG_THAI_KHONG_HOP_LE``.
* ``CapNhatTienDoHoSoMC``: steps need a known dossier (``HOSO_CHUA_TON_TAI``) and must not be
  older than the last accepted step (``THU_TU_KHONG_HOP_LE``); an identical step sent again is
  accepted but recorded as a duplicate.
* Result upload: chunks must continue where the portal stands (``UPLOAD_OFFSET_MISMATCH``), not
  exceed the declared size, and the assembled file must match the declared SHA-256
  (``CHECKSUM_MISMATCH``, after which the session restarts from byte 0).
* ``GuiBaoCao``: ``Ky`` must fit ``LoaiKy`` (1..12 months, 1..4 quarters) and ``MaCoQuan`` must be
  the sender; a second report for the same agency and period replaces the first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree
from sqlalchemy import Connection

from ..connectors.payload import children, element, text, to_dict
from ..connectors.services import BAOCAO, CSDL_TTHC, DVC_PORTAL, ServiceSpec
from ..hub.envelope import Envelope
from ..hub.errors import FatalError
from .catalogue import VN_TZ, Catalogue
from .store import SandboxStore

TERMINAL_STATUSES = frozenset({3, 7, 8, 10})

TTHC = CSDL_TTHC.namespace
DVC = DVC_PORTAL.namespace
BC = BAOCAO.namespace

#: operations that change what the national side holds: a resend with the same DocumentId must
#: get the first answer back instead of being applied again
STATE_CHANGING = frozenset({
    "DongBoHoSoMC", "CapNhatTienDoHoSoMC", "BatDauTaiTepKetQua", "TaiPhanTepKetQua",
    "KetThucTaiTepKetQua", "GuiBaoCao",
})

#: dossier fields that are lists, kept as lists in the stored JSON even with one item
DOSSIER_LISTS = frozenset({"DinhDanhCHS", "DSKetNoiCSDL", "TaiLieuNop", "DanhSachLePhi",
                           "DanhSachHoSoBoSung", "DanhSachGiayToKetQua"})


class OperationFault(FatalError):
    """A whole request refused by the emulated service; ``code`` goes into the SOAP Fault.

    Normally the refusal rolls back whatever the handler wrote. ``keep_changes=True`` commits them
    anyway: a corrupt upload is refused *and* its session reset, and the reset must survive.
    """

    code = "BUSINESS_REJECTED"

    def __init__(self, message: str, *, keep_changes: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.keep_changes = keep_changes


@dataclass(frozen=True)
class Call:
    """One verified request as an operation sees it."""

    service: ServiceSpec
    operation: str
    envelope: Envelope
    payload: etree._Element
    received_at: datetime  # UTC
    base_url: str  # for links the reply hands out (result files)


def portal_time(moment: datetime) -> str:
    """yyyyMMddHHmmss in Vietnam time, the portal's date format."""
    return moment.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")


def xs_datetime(moment: datetime) -> str:
    return moment.astimezone(VN_TZ).replace(microsecond=0).isoformat()


def parse_xs_datetime(value: str) -> datetime:
    """xs:dateTime → aware datetime; a value without offset is read as Vietnam time."""
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=VN_TZ)


def _int(el: etree._Element, ns: str, name: str, default: int | None = None) -> int | None:
    value = text(el, ns, name)
    return int(value) if value is not None else default


def _bool(value: str | None) -> bool:
    return (value or "").strip() in ("true", "1")


class Operations:
    """The operation handlers of the three services, bound to one catalogue and one store."""

    def __init__(self, catalogue: Catalogue, store: SandboxStore, *,
                 clock: Callable[[], datetime] | None = None, report_review_seconds: float = 0.0) -> None:
        self.catalogue = catalogue
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.report_review_seconds = report_review_seconds
        self._handlers: dict[str, Callable[[Call, Connection | None], etree._Element]] = {
            "LayDanhSachTTHC": self.lay_danh_sach_tthc,
            "LayThuTuc": self.lay_thu_tuc,
            "LayDanhMucCoQuan": self.lay_danh_muc_co_quan,
            "LayDanhMucLinhVuc": self.lay_danh_muc_linh_vuc,
            "DongBoHoSoMC": self.dong_bo_ho_so,
            "CapNhatTienDoHoSoMC": self.cap_nhat_tien_do,
            "TraCuuHoSo": self.tra_cuu_ho_so,
            "BatDauTaiTepKetQua": self.bat_dau_tai_tep,
            "TaiPhanTepKetQua": self.tai_phan_tep,
            "KetThucTaiTepKetQua": self.ket_thuc_tai_tep,
            "GuiBaoCao": self.gui_bao_cao,
            "LayTrangThaiBaoCao": self.lay_trang_thai_bao_cao,
        }

    def handler(self, operation: str) -> Callable[[Call, Connection | None], etree._Element]:
        return self._handlers[operation]

    def operations(self) -> frozenset[str]:
        return frozenset(self._handlers)

    # ====================================================================== CSDL TTHC
    def lay_danh_sach_tthc(self, call: Call, conn: Connection | None) -> etree._Element:
        """One page of the catalogue, ordered by MATTHC, from one snapshot of the current revision.

        ``TuNgay`` keeps procedures with NGAYCAPNHAT ≥ TuNgay, abolished ones included (a sync must
        see a procedure leave force); withdrawn procedures are never listed.
        """
        p = call.payload
        since_text = text(p, TTHC, "TuNgay")
        try:
            since = parse_xs_datetime(since_text) if since_text else None
        except ValueError as exc:  # schema-valid xs:dateTime forms Python cannot read (e.g. 24:00:00)
            raise OperationFault(f"TuNgay {since_text!r} is not a date-time the catalogue can compare: {exc}") from exc
        page = _int(p, TTHC, "Trang")
        size = _int(p, TTHC, "SoBanGhi")
        status = _int(p, TTHC, "TrangThai")
        total, items = self.catalogue.page(page, size, since=since, status=status)
        return element(TTHC, "LayDanhSachTTHCResult", {
            "TongSo": total,
            "Trang": page,
            "SoBanGhi": size,
            "TTHC": [{"MATTHC": s.code, "NGAYCAPNHAT": s.updated, "TRANGTHAI": s.status} for s in items],
        }, prefix="tthc")

    def lay_thu_tuc(self, call: Call, conn: Connection | None) -> etree._Element:
        code = text(call.payload, TTHC, "MATTHC")
        record = self.catalogue.record(code)
        if record is None:
            # A withdrawn procedure is as absent as one that never existed (the real service keeps no
            # tombstone); the message only helps whoever reads the sandbox's log.
            removed = self.catalogue.removed_in(code)
            why = f" (withdrawn at catalogue revision {removed})" if removed is not None else ""
            raise OperationFault(f"no procedure {code} in the national catalogue{why}", code="NOT_FOUND")
        return element(TTHC, "LayThuTucResult", {"ThuTuc": record}, prefix="tthc")

    def lay_danh_muc_co_quan(self, call: Call, conn: Connection | None) -> etree._Element:
        return element(TTHC, "LayDanhMucCoQuanResult", {"CoQuan": [
            {"MADONVI": a.code, "TENDONVI": a.name, "CAPDONVI": a.level} for a in self.catalogue.agencies()
        ]}, prefix="tthc")

    def lay_danh_muc_linh_vuc(self, call: Call, conn: Connection | None) -> etree._Element:
        return element(TTHC, "LayDanhMucLinhVucResult", {"LinhVuc": [
            {"MALINHVUC": f.code, "TENLINHVUC": f.name, "MANGANH": f.sector} for f in self.catalogue.fields()
        ]}, prefix="tthc")

    # ====================================================================== DVC portal
    def dong_bo_ho_so(self, call: Call, conn: Connection | None) -> etree._Element:
        assert conn is not None
        is_updating = _bool(text(call.payload, DVC, "isUpdating"))
        records = [to_dict(h, lists=DOSSIER_LISTS) for h in children(call.payload, DVC, "HoSo")]
        # one read for the whole batch; later items see earlier ones of the same batch
        held = self.store.dossier_states(conn, sorted({r["MaHoSo"] for r in records}))
        new: dict[str, dict[str, Any]] = {}
        changed: dict[str, dict[str, Any]] = {}
        events, results = [], []
        for data in records:
            ma = data["MaHoSo"]
            status = int(data["TrangThaiHoSo"])
            current = held.get(ma)
            code, why = "0", "Đồng bộ thành công"
            if not is_updating and current is not None:
                code, why = "HOSO_DA_TON_TAI", f"Hồ sơ {ma} đã có trên Cổng; gửi lại với isUpdating=true"
            elif is_updating and current is None:
                code, why = "HOSO_CHUA_TON_TAI", f"Hồ sơ {ma} chưa có trên Cổng; gửi với isUpdating=false"
            elif current is not None and current[0] in TERMINAL_STATUSES and status != current[0]:
                code, why = ("TRANG_THAI_KHONG_HOP_LE",
                             f"Hồ sơ {ma} đã kết thúc (trạng thái {current[0]}), không thể chuyển sang {status}")
            else:
                unknown = self._unknown_results(ma, data.get("DanhSachGiayToKetQua") or [])
                if unknown:
                    # the portal links only result files it holds (KetThucTaiTepKetQua confirmed their hash)
                    code, why = ("GIAY_TO_KET_QUA_KHONG_TON_TAI",
                                 f"Hồ sơ {ma}: giấy tờ kết quả {', '.join(unknown)} chưa được tải lên Cổng")
            accepted = code == "0"
            if accepted:
                row = {"ma_ho_so": ma, "ma_tthc": data["MaTTHC"], "trang_thai": status,
                       "kenh": int(data["KenhThucHien"]), "from_agency": call.envelope.sender.code,
                       "at": call.received_at, "data": data}
                if current is None:
                    new[ma] = row
                    held[ma] = (status, 1)
                else:  # (a dossier created earlier in this batch is "held" too: isUpdating=false refuses it)
                    row["versions"] = current[1] + 1
                    held[ma] = (status, current[1] + 1)
                    changed[ma] = row
            events.append({"ma_ho_so": ma, "kind": "HoSo", "at": call.received_at,
                           "document_id": call.envelope.document_id, "is_updating": is_updating,
                           "trang_thai": status, "accepted": accepted, "ma_loi": code, "mo_ta": why, "data": data})
            results.append({"MaHoSo": ma, "MaLoi": code, "MoTa": why})
        self.store.save_dossiers(conn, list(new.values()), list(changed.values()))
        self.store.add_dossier_events(conn, events)
        return element(DVC, "DongBoHoSoMCResult", {"KetQua": results}, prefix="dvc")

    def cap_nhat_tien_do(self, call: Call, conn: Connection | None) -> etree._Element:
        assert conn is not None
        records = [to_dict(s) for s in children(call.payload, DVC, "QuaTrinhXuLy")]
        codes_ = sorted({r["MaHoSo"] for r in records})
        known = self.store.dossier_states(conn, codes_)
        steps = self.store.accepted_steps(conn, codes_)
        events, results = [], []
        for data in records:
            ma = data["MaHoSo"]
            when = data["ThoiDiemXuLy"]
            status = int(data["TrangThai"])
            fingerprint = hashlib.sha256(
                f"{when}|{status}|{data.get('NoiDungXuLy', '')}".encode()).hexdigest()[:32]
            last, prints = steps.get(ma, (None, set()))
            duplicate = False
            code, why = "0", "Cập nhật tiến độ thành công"
            if ma not in known:
                code, why = "HOSO_CHUA_TON_TAI", f"Hồ sơ {ma} chưa có trên Cổng; đồng bộ hồ sơ trước"
            elif last is not None and when < last:
                code, why = "THU_TU_KHONG_HOP_LE", f"Bước xử lý lúc {when} cũ hơn bước đã nhận lúc {last}"
            elif fingerprint in prints:
                duplicate, why = True, "Bước xử lý đã được nhận trước đó"
            if code == "0":
                prints.add(fingerprint)
                steps[ma] = (max(last, when) if last else when, prints)
            events.append({"ma_ho_so": ma, "kind": "QuaTrinhXuLy", "at": call.received_at,
                           "document_id": call.envelope.document_id, "trang_thai": status, "thoi_diem": when,
                           "accepted": code == "0", "duplicate": duplicate, "ma_loi": code, "mo_ta": why,
                           "fingerprint": fingerprint, "data": data})
            results.append({"MaHoSo": ma, "MaLoi": code, "MoTa": why})
        self.store.add_dossier_events(conn, events)
        return element(DVC, "CapNhatTienDoHoSoMCResult", {"KetQua": results}, prefix="dvc")

    def tra_cuu_ho_so(self, call: Call, conn: Connection | None) -> etree._Element:
        ma = text(call.payload, DVC, "MaHoSo")
        existing = self.store.get_dossier(ma, conn)
        if existing is None:
            return element(DVC, "TraCuuHoSoResult", {"MaHoSo": ma, "TonTai": False}, prefix="dvc")
        return element(DVC, "TraCuuHoSoResult", {
            "MaHoSo": ma, "TonTai": True, "TrangThaiHoSo": existing["trang_thai"],
            "NgayCapNhat": portal_time(existing["updated_at"]),
        }, prefix="dvc")

    def _unknown_results(self, ma: str, listed: list[Any]) -> list[str]:
        """The GiayToId of ``listed`` (a DanhSachGiayToKetQua) that are no finished upload of dossier ``ma``."""
        unknown = []
        for entry in listed:
            giay_to_id = entry.get("GiayToId") if isinstance(entry, dict) else None
            upload = self.store.result_by_id(giay_to_id) if giay_to_id else None
            if upload is None or upload["ma_ho_so"] != ma:
                unknown.append(str(giay_to_id))
        return unknown

    # -- chunked, resumable result upload -----------------------------------------------------
    def bat_dau_tai_tep(self, call: Call, conn: Connection | None) -> etree._Element:
        assert conn is not None
        p = call.payload
        ma = text(p, DVC, "MaHoSo")
        size = int(text(p, DVC, "KichThuoc"))
        sha = text(p, DVC, "SHA256")
        if self.store.get_dossier(ma, conn) is None:
            raise OperationFault(f"dossier {ma} is unknown to the portal: synchronise it before its results",
                                 code="NOT_FOUND")
        previous = self.store.find_upload(conn, ma, sha, size)
        if previous is not None:
            # same file of the same dossier: resume (or report it complete) instead of starting over
            return element(DVC, "BatDauTaiTepKetQuaResult", {
                "MaPhienTai": previous["ma_phien_tai"], "DaNhan": previous["da_nhan"]}, prefix="dvc")
        session = uuid.uuid4().hex
        self.store.partial_path(session).write_bytes(b"")
        self.store.create_upload(conn, ma_phien_tai=session, ma_ho_so=ma, ma_giay_to_ket_qua=text(p, DVC, "MaGiayToKetQua"),
                                 ten_tep=text(p, DVC, "TenTep"), kieu_tep=text(p, DVC, "KieuTep"), kich_thuoc=size,
                                 sha256=sha, da_nhan=0, chunks=0, status="open", created_at=call.received_at)
        return element(DVC, "BatDauTaiTepKetQuaResult", {"MaPhienTai": session, "DaNhan": 0}, prefix="dvc")

    def _session(self, conn: Connection, session: str) -> dict[str, Any]:
        upload = self.store.upload(session, conn)
        if upload is None:
            raise OperationFault(f"no upload session {session}; start one with BatDauTaiTepKetQua", code="NOT_FOUND")
        return upload

    def tai_phan_tep(self, call: Call, conn: Connection | None) -> etree._Element:
        assert conn is not None
        p = call.payload
        session = text(p, DVC, "MaPhienTai")
        offset = int(text(p, DVC, "ViTri"))
        data = base64.b64decode(text(p, DVC, "DuLieu") or "")
        upload = self._session(conn, session)
        have, size = upload["da_nhan"], upload["kich_thuoc"]
        if offset > have:
            raise OperationFault(
                f"chunk at byte {offset} leaves a gap: the portal holds {have} bytes of session {session}; "
                "resume from DaNhan (BatDauTaiTepKetQua tells it)", code="UPLOAD_OFFSET_MISMATCH")
        end = offset + len(data)
        if end > size:
            raise OperationFault(f"chunk ends at byte {end}, beyond the declared size {size} of session {session}")
        if upload["status"] == "done" or end <= have:
            # a resend of bytes already held: nothing to write, say where we stand
            return element(DVC, "TaiPhanTepKetQuaResult", {"MaPhienTai": session, "DaNhan": have}, prefix="dvc")
        path = self.store.partial_path(session)
        with open(path, "r+b" if path.exists() else "w+b") as fh:
            fh.truncate(have)  # drop bytes a crash may have left past the committed length
            fh.seek(have)
            fh.write(data[have - offset:])
            fh.flush()
            os.fsync(fh.fileno())
        self.store.update_upload(conn, session, da_nhan=end, chunks=upload["chunks"] + 1)
        return element(DVC, "TaiPhanTepKetQuaResult", {"MaPhienTai": session, "DaNhan": end}, prefix="dvc")

    def ket_thuc_tai_tep(self, call: Call, conn: Connection | None) -> etree._Element:
        assert conn is not None
        p = call.payload
        session = text(p, DVC, "MaPhienTai")
        declared = text(p, DVC, "SHA256")
        upload = self._session(conn, session)
        if declared != upload["sha256"]:
            raise OperationFault(f"SHA-256 {declared} differs from {upload['sha256']} announced when session "
                                 f"{session} started", code="CHECKSUM_MISMATCH")
        if upload["status"] != "done":
            if upload["da_nhan"] != upload["kich_thuoc"]:
                raise OperationFault(f"session {session} holds {upload['da_nhan']} of {upload['kich_thuoc']} bytes; "
                                     "send the rest before ending it", code="UPLOAD_INCOMPLETE")
            partial = self.store.partial_path(session)
            digest = hashlib.sha256()
            with open(partial, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != declared:
                # the bytes are corrupt: start the session over from byte 0
                partial.write_bytes(b"")
                self.store.update_upload(conn, session, da_nhan=0, chunks=0)
                raise OperationFault(f"the {upload['kich_thuoc']} bytes received in session {session} hash to "
                                     f"{digest.hexdigest()}, not {declared}; the session restarts at byte 0",
                                     code="CHECKSUM_MISMATCH", keep_changes=True)
            giay_to_id = "KQ" + hashlib.sha256(f"{upload['ma_ho_so']}|{declared}".encode()).hexdigest()[:30]
            os.replace(partial, self.store.result_path(giay_to_id))
            self.store.update_upload(conn, session, status="done", giay_to_id=giay_to_id, finished_at=call.received_at)
            upload["giay_to_id"] = giay_to_id
        return element(DVC, "KetThucTaiTepKetQuaResult", {
            "GiayToId": upload["giay_to_id"],
            "DuongDanTepTinKetQua": f"{call.base_url}{DVC_PORTAL.path}/ket-qua/{upload['giay_to_id']}",
            "SHA256": declared,
        }, prefix="dvc")

    # ====================================================================== reporting
    def gui_bao_cao(self, call: Call, conn: Connection | None) -> etree._Element:
        assert conn is not None
        p = call.payload
        period = p.find(f"{{{BC}}}KyBaoCao")
        kind = text(period, BC, "LoaiKy")
        year = int(text(period, BC, "Nam"))
        number = int(text(period, BC, "Ky"))
        agency = text(p, BC, "MaCoQuan")
        limit = 12 if kind == "thang" else 4
        if not 1 <= number <= limit:
            raise OperationFault(f"KyBaoCao {kind} {number}/{year}: Ky must be 1..{limit} for LoaiKy={kind}")
        if agency != call.envelope.sender.code:
            raise OperationFault(f"report for agency {agency} sent by {call.envelope.sender.code}: "
                                 "an agency submits its own report")
        rows = [to_dict(r) for r in children(p, BC, "ChiTieu")]
        self.store.supersede_reports(conn, agency, kind, year, number)
        report_id = f"BC-{year}-{'T' if kind == 'thang' else 'Q'}{number:02d}-{uuid.uuid4().hex[:12]}"
        self.store.add_report(conn, ma_bao_cao=report_id, ma_co_quan=agency, loai_ky=kind, nam=year, ky=number,
                              trang_thai="DA_TIEP_NHAN", received_at=call.received_at,
                              document_id=call.envelope.document_id, rows=len(rows),
                              data=_json(rows), ghi_chu=None)
        return element(BC, "GuiBaoCaoResult", {
            "MaBaoCao": report_id, "TrangThai": "DA_TIEP_NHAN", "ThoiDiemNhan": xs_datetime(call.received_at),
        }, prefix="bc")

    def lay_trang_thai_bao_cao(self, call: Call, conn: Connection | None) -> etree._Element:
        report_id = text(call.payload, BC, "MaBaoCao")
        report = self.store.report(report_id, conn)
        if report is None:
            # A status lookup answers "unknown" with a signed reply, like TraCuuHoSo's TonTai=false:
            # callers (and the health check) can tell "never received" from "service broken".
            return element(BC, "LayTrangThaiBaoCaoResult", {
                "MaBaoCao": report_id, "TrangThai": "KHONG_TON_TAI",
                "GhiChu": "Hệ thống chưa nhận báo cáo có mã này",
            }, prefix="bc")
        status, note = report["trang_thai"], report["ghi_chu"]
        if status == "DA_TIEP_NHAN":
            waited = (call.received_at - report["received_at"]).total_seconds()
            status = "DA_DUYET" if waited >= self.report_review_seconds else "DANG_XU_LY"
        elif status == "DA_THAY_THE" and not note:
            note = "Đã được thay thế bởi báo cáo gửi sau cho cùng cơ quan và kỳ báo cáo"
        return element(BC, "LayTrangThaiBaoCaoResult", {
            "MaBaoCao": report_id, "TrangThai": status,
            "ThoiDiemNhan": xs_datetime(report["received_at"]), "GhiChu": note,
        }, prefix="bc")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
