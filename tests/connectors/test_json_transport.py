"""The portal's JSON adapter as the second transport of the partner port.

Against the sandbox's emulation of the adapter (same store and rules as its SOAP side): the portal
client works unchanged over it, logs in once and again only when the session ends, never stores the
password or the token, and every bad answer a deployment or a proxy can give is one specific error
of the hub's tree, with the adapter's own words kept.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace

import national_helpers
import pytest
import requests
from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.http import WatchedAdapter
from lienthong.connectors.json_adapter import REDACTED_PASSWORD, REDACTED_SESSION, JsonTransport
from lienthong.connectors.transport import transport_for
from lienthong.hub import errors
from lienthong.hub.store.models import AuditEntry
from requests.structures import CaseInsensitiveDict
from sqlalchemy import select
from urllib3 import HTTPResponse

MA = "000.00.00.G10-20261201-0000077"


def dossier(status: int = 2, ma: str = MA) -> dict:
    return {"MaHoSo": ma, "MaTTHC": "1.001012", "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu",
            "MaLinhVuc": "G10-TY", "TenLinhVuc": "Thú y", "KenhThucHien": 2, "ChuHoSo": "Nguyễn Văn An",
            "LoaiDoiTuong": 1, "TrichYeuHoSo": "Kiểm dịch 50 con bò giống", "NgayNopHoSo": "20261201081530",
            "NgayTiepNhan": "20261201093000", "NgayHenTra": "20261208170000", "TrangThaiHoSo": status,
            "HoSoCoThanhPhanSoHoa": True, "NoiNopHoSo": 2}


def json_settings(settings, sandbox, **endpoint):
    return national_helpers.over_json(settings, sandbox.base_url, **endpoint)


@pytest.fixture
def over_json(settings, sandbox):
    return json_settings(settings, sandbox)


def entries(audit):
    with audit.engine.connect() as conn:
        return conn.execute(select(AuditEntry.seq, AuditEntry.direction, AuditEntry.operation, AuditEntry.outcome)
                            .order_by(AuditEntry.seq)).all()


def test_the_portal_client_works_unchanged_over_the_json_adapter(over_json, audit, sandbox):
    transport = transport_for(over_json, "dvc_portal", audit=audit)
    assert isinstance(transport, JsonTransport)
    portal = DvcPortalClient(transport)
    assert portal.lookup(MA)["TonTai"] is False
    assert [r.accepted for r in portal.sync_dossiers([dossier()], is_updating=False)] == [True]
    again = portal.sync_dossiers([dossier()], is_updating=False)[0]  # the portal's rule, as over SOAP
    assert (again.accepted, again.ma_loi) == (False, "HOSO_DA_TON_TAI")
    assert portal.sync_dossiers([dossier(4)], is_updating=True)[0].accepted
    step = {"MaHoSo": MA, "NguoiXuLy": "Trần Văn Đức", "ChucDanh": "Chuyên viên", "ThoiDiemXuLy": "20261201100000",
            "PhongBanXuLy": "Phòng Kiểm dịch", "NoiDungXuLy": "Thẩm định", "TrangThai": 4}
    assert portal.update_progress([step])[0].accepted
    found = portal.lookup(MA)
    assert (found["TonTai"], found["TrangThaiHoSo"]) == (True, "4")
    assert sandbox.store.dossier_count() == 1
    # one login for all of it; every exchange audited
    ops = [e.operation for e in entries(audit) if e.direction == "out"]
    assert ops.count("DangNhap") == 1 and len(ops) == 7


def test_values_travel_as_the_adapter_expects_them(over_json, audit):
    DvcPortalClient(transport_for(over_json, "dvc_portal", audit=audit)).sync_dossiers([dossier()], is_updating=False)
    sent = next(audit.body(e.seq) for e in entries(audit) if e.operation == "DongBoHoSoMC" and e.direction == "out")
    body = json.loads(sent)
    assert body["service"] == "DongBoHoSoMC" and body["isUpdating"] == "False" and body["madonvi"] == over_json.agency_code
    record = body["data"][0]
    assert (record["TrangThaiHoSo"], record["KenhThucHien"], record["HoSoCoThanhPhanSoHoa"]) == ("2", "2", "1")
    assert record["NoiNopHoSo"] == "2"  # a code, as the adapter takes it


def test_secrets_never_reach_the_audit_trail(over_json, audit):
    DvcPortalClient(transport_for(over_json, "dvc_portal", audit=audit)).lookup(MA)
    bodies = [audit.body(e.seq) for e in entries(audit)]
    login_request, login_answer, call = (json.loads(b) for b in bodies[:3])
    assert login_request == {"username": "lienthong", "password": REDACTED_PASSWORD}
    assert login_answer["session"] == REDACTED_SESSION and call["session"] == REDACTED_SESSION
    assert not any(b"sandbox-adapter" in b for b in bodies)
    assert audit.verify().ok  # the chain covers exactly the stored (redacted) bytes


def test_an_expired_session_mid_batch_logs_in_once_more_and_carries_on(over_json, audit, sandbox):
    portal = DvcPortalClient(transport_for(over_json, "dvc_portal", audit=audit))
    portal.lookup(MA)
    sandbox.json_adapter.expire_sessions()
    assert portal.sync_dossiers([dossier()], is_updating=False)[0].accepted
    outcomes = [(e.operation, e.outcome) for e in entries(audit) if e.direction == "in"]
    assert outcomes == [("DangNhap", "ok"), ("TraCuuHoSo", "ok"), ("DongBoHoSoMC", "session_expired"),
                        ("DangNhap", "ok"), ("DongBoHoSoMC", "ok")]


def test_a_short_session_is_renewed_before_it_ends(settings, sandbox, audit):
    sandbox.config.session_ttl = 30.0  # the adapter says so at login; the hub renews 60 s early
    portal = DvcPortalClient(transport_for(json_settings(settings, sandbox), "dvc_portal", audit=audit))
    portal.lookup(MA)
    portal.lookup(MA)
    assert [e.operation for e in entries(audit) if e.direction == "out"].count("DangNhap") == 2
    assert not any(e.outcome == "session_expired" for e in entries(audit))


def test_a_wrong_password_is_one_clear_refusal(settings, sandbox, audit):
    portal = DvcPortalClient(transport_for(json_settings(settings, sandbox, password="wrong"), "dvc_portal",
                                           audit=audit))
    with pytest.raises(errors.PartnerFault, match="refused DangNhap .error_code 1.: wrong user name or password"):
        portal.lookup(MA)


@pytest.mark.parametrize("missing, named", [("username", "LIENTHONG_DVC_USERNAME"), ("dstcode", "LIENTHONG_DVC_DSTCODE")])
def test_a_missing_setting_is_named_at_start(settings, sandbox, audit, missing, named):
    with pytest.raises(errors.ConfigurationError, match=f"dvc_portal over json needs {named}"):
        transport_for(json_settings(settings, sandbox, **{missing: None}), "dvc_portal", audit=audit)


def test_an_operation_the_adapter_does_not_offer_is_refused_by_name(over_json, audit):
    portal = DvcPortalClient(transport_for(over_json, "dvc_portal", audit=audit))
    with pytest.raises(errors.ConfigurationError, match="BatDauTaiTepKetQua is not offered by the portal's JSON adapter"):
        portal.upload_result(MA, b"x", file_name="kq.txt", mime_type="text/plain")


# --- bad answers: the sandbox logs the hub in, then the answer to the call is replaced -------------
class _Answering(WatchedAdapter):
    def __init__(self, status: int, body: bytes, content_type: str = "application/json"):
        super().__init__()
        self.status, self.body, self.content_type = status, body, content_type

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        if request.url.endswith("/integration"):
            headers = {"Content-Type": self.content_type, "Content-Length": str(len(self.body))}
            response.raw = HTTPResponse(body=io.BytesIO(self.body), headers=headers, status=self.status,
                                        preload_content=False)
            response.status_code = self.status
            response.headers = CaseInsensitiveDict(headers)
        return response


def _answered(over_json, audit, status, body, content_type="application/json"):
    session = requests.Session()
    session.mount("http://", _Answering(status, body, content_type))
    return DvcPortalClient(JsonTransport(over_json, "dvc_portal", audit=audit, session=session))


@pytest.mark.parametrize("status, body, content_type, error, words", [
    (200, b"<html><body>Phi\xc3\xaan \xc4\x91\xc4\x83ng nh\xe1\xba\xadp proxy</body></html>", "text/html",
     errors.UnexpectedContentType, "text/html"),
    (200, b"<html>login</html>", "application/json", errors.UnexpectedContentType, "markup, not JSON"),
    (200, b"not json at all", "application/json", errors.UnexpectedResponse, "not JSON"),
    (200, b'{"message": "ok"}', "application/json", errors.UnexpectedResponse, "has no error_code"),
    (200, b'{"error_code": 0, "result": {"MaHoSo": "x"}}', "application/json", errors.UnexpectedResponse,
     "result is a dict, not a list"),
    (200, '{"error_code": 7, "message": "Mã TTHC không tồn tại"}'.encode(), "application/json",
     errors.PartnerFault, "error_code 7.: Mã TTHC không tồn tại"),
    (200, b'{"error_code": 3, "message": "busy"}', "application/json", errors.TransientFault, "for now"),
    (503, b"upstream down", "text/plain", errors.ServiceUnavailable, "HTTP 503"),
    (404, b"", "text/plain", errors.ConfigurationError, "check the adapter's URL"),
])
def test_every_bad_answer_is_a_specific_error_with_the_partners_words(over_json, audit, status, body,
                                                                       content_type, error, words):
    portal = _answered(over_json, audit, status, body, content_type)
    with pytest.raises(error, match=words) as info:
        portal.sync_dossiers([dossier()], is_updating=False)
    assert info.value.request_bytes is not None  # the evidence travels with the error (dead letters)
    last = entries(audit)[-1]
    assert last.direction == "in" and last.outcome != "ok"


def test_an_empty_result_accepts_each_dossier_sent_when_the_code_is_zero(over_json, audit):
    portal = _answered(over_json, audit, 200, b'{"error_code": 0, "message": "Th\xc3\xa0nh c\xc3\xb4ng", "result": []}')
    results = portal.sync_dossiers([dossier(), dossier(ma="000.00.00.G10-20261201-0000078")], is_updating=False)
    assert [(r.ma_ho_so, r.accepted, r.mo_ta) for r in results] == [
        (MA, True, "Thành công"), ("000.00.00.G10-20261201-0000078", True, "Thành công")]


def test_a_huge_answer_is_abandoned_at_the_limit(over_json, audit):
    over_json = replace(over_json, max_reply_bytes=1024 * 1024)
    portal = _answered(over_json, audit, 200, b'{"error_code": 0, "result": [' + b'"x",' * 13_000_000 + b'"x"]}')
    with pytest.raises(errors.ReplyTooLarge):
        portal.sync_dossiers([dossier()], is_updating=False)


def test_json_entries_are_found_by_dossier_and_shown_masked(over_json, audit):
    from lienthong.hub.audit.masking import Masker
    from lienthong.hub.audit.query import SearchQuery, load_entry, search

    portal = DvcPortalClient(transport_for(over_json, "dvc_portal", audit=audit))
    portal.lookup(MA)
    portal.sync_dossiers([dossier()], is_updating=False)
    found = search(audit.engine, SearchQuery(dossier=MA))
    assert {(e.operation, e.direction) for e in found} >= {("TraCuuHoSo", "out"), ("DongBoHoSoMC", "out"),
                                                          ("DongBoHoSoMC", "in")}
    sent = next(e for e in found if e.operation == "DongBoHoSoMC" and e.direction == "out")
    shown = Masker().body_text(load_entry(audit.engine, sent.seq).raw)
    assert MA in shown and "Nguyễn Văn An" not in shown  # the owner's name is masked, the code is not


def test_threads_share_one_session(over_json, audit):
    from concurrent.futures import ThreadPoolExecutor

    portal = DvcPortalClient(transport_for(over_json, "dvc_portal", audit=audit))
    with ThreadPoolExecutor(6) as pool:
        assert not any(found["TonTai"] for found in pool.map(lambda _: portal.lookup(MA), range(18)))
    assert [e.operation for e in entries(audit) if e.direction == "out"].count("DangNhap") == 1


def test_a_slow_answer_ends_at_the_deadline(make_sandbox, conn_home, audit):
    from national_helpers import settings_for

    slow = make_sandbox(latency_ms=3000)
    settings = json_settings(settings_for(conn_home, slow.base_url, operation_timeout=0.5), slow)
    portal = DvcPortalClient(transport_for(settings, "dvc_portal", audit=audit))
    started = time.monotonic()
    with pytest.raises(errors.TransportTimeout) as info:
        portal.lookup(MA)
    assert time.monotonic() - started < 2.0 and info.value.retryable  # the deadline, not the partner's pace
    assert entries(audit)[-1].outcome == "timeout"
