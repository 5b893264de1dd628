"""One result file's upload, against the sandbox portal and against a portal that lies: a file that
changes mid-upload, a size that does not match, a refusal, a hash the portal does not confirm."""

from __future__ import annotations

import hashlib
import io

import pytest
from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.port import PartnerAnswer
from lienthong.connectors.services import DVC_PORTAL
from lienthong.hub.delivery import outbox
from lienthong.hub.delivery.engine import RESULT_KINDS, deliver_once
from lienthong.hub.delivery.outbox import OutboxChange
from lienthong.hub.errors import ResultFileChanged, ResultHashNotConfirmed
from lienthong.hub.store import write_transaction
from lienthong.hub.store.models import ResultUpload
from results_helpers import FAST, Clock, portal, uploader
from sqlalchemy import select

MA = "G10-20261201-0000001"


def hoso(ma: str = MA) -> dict:
    return {"MaHoSo": ma, "MaTTHC": "1.001012", "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu",
            "KenhThucHien": 2, "ChuHoSo": "Nguyễn Văn An", "LoaiDoiTuong": 1,
            "TrichYeuHoSo": "Kiểm dịch 50 con bò giống nhập khẩu", "NgayNopHoSo": "20261201081530", "TrangThaiHoSo": 9}


def result_event(engine, root, data: bytes, *, ma: str = MA, announce: dict | None = None) -> int:
    (root / "kq.pdf").write_bytes(data)
    payload = {"MaHoSo": ma, "TenGiayTo": "Giấy chứng nhận", "TenTep": "kq.pdf", "KieuTep": "application/pdf",
               "TepKetQua": "kq.pdf", **(announce or {})}
    with write_transaction(engine) as conn:
        return outbox.enqueue(conn, [OutboxChange("result", f"ketqua:{ma}", payload)]).ids[0]


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "ket-qua"
    folder.mkdir()
    return folder


def upload_pass(engine, client, up):
    return deliver_once(engine, client, worker_id="results", policy=FAST, clock=Clock(), kinds=RESULT_KINDS,
                        uploader=up, per_partition=1)


def test_a_file_that_changes_while_it_uploads_is_a_dead_letter_and_never_ended(engine, sandbox, conn_home, root,
                                                                              tmp_path):
    client = portal(engine, conn_home, sandbox)
    client.sync_dossiers([hoso()], is_updating=False)
    data = bytes(range(256)) * 8192  # 2 MiB: four chunks
    result_event(engine, root, data)
    changed = []

    def rewrite(_n: int) -> None:  # after the first confirmed chunk, the one-stop system rewrites the file
        if not changed:
            changed.append(True)
            (root / "kq.pdf").write_bytes(data[:-1] + b"!")

    summary = upload_pass(engine, client, uploader(engine, client, root, tmp_path / "spool", on_bytes=rewrite))
    assert summary.dead_reasons == {"RESULT_FILE_CHANGED": 1}
    [letter] = outbox.dead_letters(engine)
    assert "changed after it was announced" in letter.reason and MA in letter.reason
    assert not [u for u in sandbox.store.uploads_for(MA) if u["status"] == "done"]


def test_a_size_that_is_not_the_announced_one_is_a_dead_letter(engine, sandbox, conn_home, root, tmp_path):
    client = portal(engine, conn_home, sandbox)
    client.sync_dossiers([hoso()], is_updating=False)
    result_event(engine, root, b"%PDF" * 1000, announce={"KichThuoc": 3999})
    summary = upload_pass(engine, client, uploader(engine, client, root, tmp_path / "spool"))
    assert summary.dead_reasons == {"RESULT_SIZE_MISMATCH": 1}
    assert sandbox.store.uploads_for(MA) == []  # nothing announced to the portal


def test_a_portal_refusal_is_a_dead_letter_with_the_portals_words(engine, sandbox, conn_home, root, tmp_path):
    client = portal(engine, conn_home, sandbox)  # the dossier was never synchronised: the portal refuses
    result_event(engine, root, b"%PDF" * 1000)
    summary = upload_pass(engine, client, uploader(engine, client, root, tmp_path / "spool"))
    assert summary.dead_reasons == {"NOT_FOUND": 1}
    [letter] = outbox.dead_letters(engine)
    assert "synchronise it before its results" in letter.reason


def test_the_fingerprint_is_kept_and_announced_again_by_the_next_attempt(engine, sandbox, conn_home, root,
                                                                        tmp_path):
    """Across attempts the file is announced with what it was when first read: the portal then finds
    its session and the upload goes on where it stood."""
    client = portal(engine, conn_home, sandbox)
    client.sync_dossiers([hoso()], is_updating=False)
    data = bytes(range(256)) * 8192
    event_id = result_event(engine, root, data)
    sandbox.configure_faults(fail_rate=1.0)  # the portal goes down during the upload...
    calls = []
    up = uploader(engine, client, root, tmp_path / "spool", progress_every=0.0)  # note every chunk
    stream = client.send_chunk

    def flaky(session, offset, chunk):
        calls.append(offset)
        if len(calls) == 1:
            sandbox.configure_faults(fail_rate=0.0)
            answer = stream(session, offset, chunk)
            sandbox.configure_faults(fail_rate=1.0)
            return answer
        return stream(session, offset, chunk)

    sandbox.configure_faults(fail_rate=0.0)
    client.send_chunk = flaky
    sandbox_down_after_first = upload_pass(engine, client, up)
    assert sandbox_down_after_first.retried == 1
    with engine.connect() as conn:
        row = conn.execute(select(ResultUpload.__table__).where(ResultUpload.event_id == event_id)).one()
    assert (row.size, row.sha256, row.confirmed) == (len(data), hashlib.sha256(data).hexdigest(), 512 * 1024)
    sandbox.configure_faults(fail_rate=0.0)
    client.send_chunk = stream
    clock = Clock()
    clock.advance(60)
    done = deliver_once(engine, client, worker_id="results", policy=FAST, clock=clock, kinds=RESULT_KINDS,
                        uploader=up, per_partition=1)
    assert (done.uploads, done.resumed_uploads, done.sent_bytes) == (1, 1, len(data) - 512 * 1024)
    with engine.connect() as conn:
        row = conn.execute(select(ResultUpload.__table__).where(ResultUpload.event_id == event_id)).one()
    assert row.resumed == 1 and row.restarts == 0 and row.giay_to_id and row.uploaded_at is not None


class LyingPortal:
    """A portal transport that takes every chunk and ends the upload with another SHA-256."""

    spec = DVC_PORTAL
    audit = None

    def __init__(self, answer_sha: str):
        self.answer_sha = answer_sha
        self.held = 0

    def handle(self, call):
        if call.operation == "BatDauTaiTepKetQua":
            result = {"MaPhienTai": "s" * 32, "DaNhan": 0}
        elif call.operation == "TaiPhanTepKetQua":
            import base64

            self.held = call.params["ViTri"] + len(base64.b64decode(call.params["DuLieu"]))
            result = {"MaPhienTai": "s" * 32, "DaNhan": self.held}
        else:
            result = {"GiayToId": "KQ" + "0" * 30, "DuongDanTepTinKetQua": "https://dvc.example/kq",
                      "SHA256": self.answer_sha}
        return PartnerAnswer(call.operation, result, request_document_id="x" * 8, reply_document_id=None,
                             latency_ms=0.0, audit_seqs=(), request_bytes=b"", response_bytes=b"")


def test_nothing_counts_as_uploaded_unless_the_portal_confirms_the_hash():
    data = b"%PDF-1.7 " * 10_000
    client = DvcPortalClient(LyingPortal("f" * 64))
    with pytest.raises(ResultHashNotConfirmed, match="without confirming"):
        client.upload_result(MA, data, file_name="kq.pdf", mime_type="application/pdf")
    honest = DvcPortalClient(LyingPortal(hashlib.sha256(data).hexdigest()))
    assert honest.upload_result(MA, data, file_name="kq.pdf", mime_type="application/pdf").giay_to_id


def test_a_file_shorter_than_announced_is_refused_before_the_upload_ends():
    data = b"x" * 100_000
    client = DvcPortalClient(LyingPortal(hashlib.sha256(data).hexdigest()))
    with pytest.raises(ResultFileChanged, match="before the 200,000 bytes announced"):
        client.stream_upload(MA, lambda: io.BytesIO(data), size=200_000, sha256=hashlib.sha256(data).hexdigest(),
                             file_name="kq.pdf", mime_type="application/pdf")


def test_replay_reads_a_put_right_file_afresh(engine, sandbox, conn_home, root, tmp_path):
    client = portal(engine, conn_home, sandbox)
    client.sync_dossiers([hoso()], is_updating=False)
    result_event(engine, root, b"%PDF" * 1000, announce={"SHA256": "0" * 64})
    up = uploader(engine, client, root, tmp_path / "spool")
    assert upload_pass(engine, client, up).dead_reasons == {"RESULT_FILE_CHANGED": 1}
    [letter] = outbox.dead_letters(engine)
    # the one-stop system's announcement was wrong: the operator amends it and replays
    payload = {"MaHoSo": MA, "TenGiayTo": "Giấy chứng nhận", "TenTep": "kq.pdf", "KieuTep": "application/pdf",
               "TepKetQua": "kq.pdf", "SHA256": hashlib.sha256(b"%PDF" * 1000).hexdigest()}
    outbox.replay(engine, [letter.id], payloads={letter.id: payload})
    assert upload_pass(engine, client, up).uploads == 1


def test_a_result_of_a_dossier_never_read_waits_apart_and_once_replayed_is_uploaded_and_listed(
        engine, sandbox, conn_home, root, tmp_path):
    from lienthong.hub.delivery.engine import STATUS_KINDS
    from lienthong.hub.flows.intake import RESULT_DOSSIER_UNKNOWN, arrange_results
    from lienthong.mappings.dossier import MappedChange

    data = b"%PDF" * 2000
    (root / "kq.pdf").write_bytes(data)
    record = {"MaHoSo": MA, "TenGiayTo": "Giấy chứng nhận", "TenTep": "kq.pdf", "KieuTep": "application/pdf",
              "TepKetQua": "kq.pdf"}
    change = MappedChange("result", "ketqua:1", MA, 0, record)
    with write_transaction(engine) as conn:
        ordered, refused = arrange_results(conn, [change])
        assert ordered == [] and [r["reason_code"] for r in refused] == [RESULT_DOSSIER_UNKNOWN]
        outbox.enqueue_rejected(conn, refused[0], reason_code=refused[0]["reason_code"], reason=refused[0]["reason"])
        # the dossier arrives afterwards, and goes out: the orphan result holds nothing up
        outbox.enqueue(conn, [OutboxChange("dossier", f"hoso:{MA}:1", hoso())])
    client = portal(engine, conn_home, sandbox)
    clock = Clock()
    assert deliver_once(engine, client, worker_id="s", policy=FAST, clock=clock, kinds=STATUS_KINDS).delivered == 1
    [letter] = outbox.dead_letters(engine)
    outbox.replay(engine, [letter.id], payloads={letter.id: record})  # into the dossier's partition
    up = uploader(engine, client, root, tmp_path / "spool")
    clock.advance(5)
    assert deliver_once(engine, client, worker_id="r", policy=FAST, clock=clock, kinds=RESULT_KINDS,
                        uploader=up).uploads == 1
    # its dossier's snapshot went out before it: a copy listing it follows
    assert deliver_once(engine, client, worker_id="s", policy=FAST, clock=clock, kinds=STATUS_KINDS).delivered == 1
    [done] = [u for u in sandbox.store.uploads_for(MA) if u["status"] == "done"]
    last = [e.data for e in sandbox.store.dossier_history(MA) if e.kind == "HoSo" and e.accepted][-1]
    assert [e["GiayToId"] for e in last["DanhSachGiayToKetQua"]] == [done["giay_to_id"]]
