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
from collections.abc import Callable
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
    """What an upload ended with: the portal's GiayToId and link for the file."""

    giay_to_id: str
    url: str
    sha256: str
    size: int
    #: bytes the portal already held when the upload (re)started
    resumed_from: int
    session: str | None = None
    #: times the portal reported holding nothing after it had confirmed bytes (started over)
    restarts: int = 0
    #: file bytes sent in chunks by this call
    sent: int = 0


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

    # -- the chunked, resumable result upload ----------------------------------------------------
    def start_upload(self, ma_ho_so: str, *, file_name: str, mime_type: str, size: int, sha256: str,
                     ma_giay_to_ket_qua: str | None = None, correlation_id: str | None = None) -> tuple[str, int]:
        """Announce a file (``BatDauTaiTepKetQua``); returns the portal's session and the bytes it
        already holds of it (0 for a new file; all of them for a file it has: same dossier, same
        size and SHA-256)."""
        start = self._ask("BatDauTaiTepKetQua", {
            "MaHoSo": ma_ho_so, "MaGiayToKetQua": ma_giay_to_ket_qua, "TenTep": file_name,
            "KieuTep": mime_type, "KichThuoc": size, "SHA256": sha256,
        }, correlation_id=correlation_id)
        return start.get("MaPhienTai"), int(start.get("DaNhan") or 0)

    def send_chunk(self, session: str, offset: int, data: bytes) -> int:
        """``TaiPhanTepKetQua``: ``data`` at ``offset``; returns the bytes the portal now holds."""
        answer = self._ask("TaiPhanTepKetQua", {"MaPhienTai": session, "ViTri": offset, "DuLieu": _b64(data)},
                           correlation_id=session)
        return int(answer["DaNhan"])

    def finish_upload(self, session: str, sha256: str) -> dict[str, Any]:
        """``KetThucTaiTepKetQua``: the portal checks the SHA-256 and returns GiayToId and the link."""
        return self._ask("KetThucTaiTepKetQua", {"MaPhienTai": session, "SHA256": sha256}, correlation_id=session)

    def stream_upload(self, ma_ho_so: str, opener: Callable[[], BinaryIO], *, size: int, sha256: str,
                      file_name: str, mime_type: str, ma_giay_to_ket_qua: str | None = None,
                      chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_retries: int = 3,
                      on_progress: Callable[[str, str, int], Any] | None = None) -> UploadedResult:
        """Upload ``size`` bytes announced as ``sha256``, resuming where the portal stands.

        ``opener()`` gives the file from byte 0. The SHA-256 is computed while reading: the bytes
        the portal already holds are read (not sent) to carry the hash over them, the rest are
        hashed as they are sent, so memory stays at one chunk whatever the file's size and the hash
        that is finally checked covers exactly the bytes that were read. If they do not hash to
        ``sha256`` (or the file is shorter or longer than ``size``) the file changed after it was
        announced: :class:`~lienthong.hub.errors.ResultFileChanged`, and the upload is not ended,
        so the portal never links bytes nobody announced. When the portal reports another position
        than the chunk's end (it lost bytes, or holds more), the reading realigns on it; a chunk
        refused with ``UPLOAD_OFFSET_MISMATCH`` asks the portal where it stands and goes on from
        there; a chunk that fails retryably (timeout, lost connection, 5xx) is followed by the same
        question, up to ``chunk_retries`` times in a row. ``on_progress(stage, session, confirmed)`` is called with ``started`` and after each
        confirmed chunk (``chunk``); what it raises stops the upload (a worker that lost its lease).
        A hash the portal does not confirm is :class:`~lienthong.hub.errors.ResultHashNotConfirmed`;
        its ``CHECKSUM_MISMATCH`` (bytes damaged on the way) is the retryable
        :class:`~lienthong.hub.errors.UploadChecksumMismatch`.
        """
        from lienthong.hub.errors import (
            PartnerFault,
            ResultFileChanged,
            ResultHashNotConfirmed,
            RetryableError,
            UploadChecksumMismatch,
        )

        def announce() -> tuple[str, int]:
            return self.start_upload(ma_ho_so, file_name=file_name, mime_type=mime_type, size=size, sha256=sha256,
                                     ma_giay_to_ket_qua=ma_giay_to_ket_qua)

        session, have = announce()
        resumed_from, restarts, realigned, sent, failed = have, 0, 0, 0, 0
        if on_progress is not None:
            on_progress("started", session, have)
        with opener() as fh:
            digest, pos = _hash_prefix(fh, have, size, file_name)
            while pos < size:
                data = fh.read(min(chunk_size, size - pos))
                if not data:
                    raise ResultFileChanged(f"result file {file_name} ends at byte {pos:,}, before the {size:,} "
                                            "bytes announced: it changed after it was announced")
                digest.update(data)
                end = pos + len(data)
                try:
                    answer = self.send_chunk(session, pos, data)
                    failed = 0
                except RetryableError:
                    # a lost connection, a timeout, a busy portal: ask where it stands and go on from
                    # there, a few times in a row before the attempt is given up (and retried later)
                    failed += 1
                    if failed > chunk_retries:
                        raise
                    session, answer = announce()
                except PartnerFault as exc:
                    if exc.fault_code != "UPLOAD_OFFSET_MISMATCH" or realigned >= 3:
                        raise
                    realigned += 1
                    session, answer = announce()
                sent += len(data)
                if answer != end:
                    if answer == 0 and pos > 0:
                        restarts += 1
                    digest, pos = _hash_prefix(fh, answer, size, file_name)
                else:
                    pos = end
                if on_progress is not None:
                    on_progress("chunk", session, pos)
            if fh.read(1):
                raise ResultFileChanged(f"result file {file_name} is longer than the {size:,} bytes announced: "
                                        "it changed after it was announced")
        if digest.hexdigest() != sha256:
            raise ResultFileChanged(f"result file {file_name} now hashes to {digest.hexdigest()}, not the "
                                    f"{sha256} announced: it changed after it was announced; the upload was not ended")
        try:
            done = self.finish_upload(session, sha256)
        except PartnerFault as exc:
            if exc.fault_code == "CHECKSUM_MISMATCH":
                raise UploadChecksumMismatch(f"the portal's copy of {file_name} does not hash to {sha256} (damaged "
                                             f"on the way); it starts the session over: {exc}") from exc
            raise
        if done.get("SHA256") != sha256 or not done.get("GiayToId"):
            raise ResultHashNotConfirmed(f"the portal ended the upload of {file_name} without confirming SHA-256 "
                                         f"{sha256} (it answered {done.get('SHA256')!r}, GiayToId "
                                         f"{done.get('GiayToId')!r})")
        return UploadedResult(giay_to_id=done["GiayToId"], url=done.get("DuongDanTepTinKetQua"), sha256=sha256,
                              size=size, resumed_from=resumed_from, session=session, restarts=restarts,
                              sent=sent)

    def upload_result(self, ma_ho_so: str, source: Path | bytes, *, file_name: str, mime_type: str,
                      ma_giay_to_ket_qua: str | None = None,
                      chunk_size: int = DEFAULT_CHUNK_SIZE) -> UploadedResult:
        """Upload a file (or bytes) in one go: hashed first, then :meth:`stream_upload`."""
        if isinstance(source, (bytes, bytearray)):
            opener = lambda: io.BytesIO(source)  # noqa: E731
        else:
            opener = lambda: open(source, "rb")  # noqa: E731
        with opener() as fh:
            size, sha = file_fingerprint(fh)
        return self.stream_upload(ma_ho_so, opener, size=size, sha256=sha, file_name=file_name, mime_type=mime_type,
                                  ma_giay_to_ket_qua=ma_giay_to_ket_qua, chunk_size=chunk_size)


def file_fingerprint(fh: BinaryIO) -> tuple[int, str]:
    """(size, SHA-256) of a binary file from its current position, read 1 MiB at a time: what an
    upload announces (both from the same reading, so they describe the same bytes)."""
    digest = hashlib.sha256()
    size = 0
    for block in iter(lambda: fh.read(1024 * 1024), b""):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def _hash_prefix(fh: BinaryIO, length: int, size: int, name: str) -> tuple[Any, int]:
    """A SHA-256 over bytes [0, ``length``) of ``fh`` (read, not sent), and ``length``."""
    from lienthong.hub.errors import ResultFileChanged

    if length > size:
        raise ResultFileChanged(f"the portal holds {length:,} bytes of {name}, more than the {size:,} announced")
    fh.seek(0)
    digest = hashlib.sha256()
    left = length
    while left > 0:
        block = fh.read(min(1024 * 1024, left))
        if not block:
            raise ResultFileChanged(f"result file {name} ends before byte {length:,}: it changed after it was announced")
        digest.update(block)
        left -= len(block)
    return digest, length


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")
