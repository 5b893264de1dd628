"""The SOAP connector against the real sandbox: signed, audited, classified, verified."""

from __future__ import annotations

from dataclasses import replace

import pytest
from lienthong.connectors.csdl_tthc import CsdlTthcClient
from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.payload import element
from lienthong.connectors.services import CSDL_TTHC, DVC_PORTAL, SERVICES
from lienthong.connectors.soap import SoapConnector, wsdl_info
from lienthong.hub import errors
from lienthong.hub.flows.healthcheck import roundtrip
from lienthong.hub.store.models import AuditEntry
from lienthong.signing import TrustStore, Verifier
from lienthong.signing.pki import create_ca
from national_helpers import PASSWORD, settings_for
from sqlalchemy import select


def _entries(audit):
    with audit.engine.connect() as conn:
        return conn.execute(select(AuditEntry.seq, AuditEntry.direction, AuditEntry.operation, AuditEntry.outcome,
                                   AuditEntry.document_id, AuditEntry.correlation_id, AuditEntry.error)
                            .order_by(AuditEntry.seq)).all()


def test_wsdl_is_read_locally_and_names_every_operation():
    for spec in SERVICES.values():
        info = wsdl_info(spec.name)
        assert set(info.operations) == set(spec.operations)
        assert all(op.soap_action == name for name, op in info.operations.items())


@pytest.mark.parametrize("service", list(SERVICES))
def test_signed_round_trip_is_verified_and_audited_both_ways(service, settings, audit, sandbox):
    summary = roundtrip(settings, service, audit=audit)
    assert summary["signer_agency"] == "000.00.00.G22"
    out_seq, in_seq = summary["audit_seqs"]
    rows = _entries(audit)
    assert [(r.direction, r.outcome) for r in rows] == [("out", "sent"), ("in", "ok")]
    assert rows[0].document_id == summary["request_document_id"]
    assert rows[1].document_id == summary["reply_document_id"]
    assert rows[1].correlation_id == summary["request_document_id"]
    # the audit holds the exact bytes the sandbox received
    received = sandbox.store.received(service=service)
    assert len(received) == 1
    assert audit.body(out_seq) == received[0].raw
    assert audit.verify().ok


def test_catalogue_client_reads_a_full_record(settings, audit):
    client = CsdlTthcClient(SoapConnector(settings, "csdl_tthc", audit=audit))
    page = client.list_page(1, 5)
    assert page.total == 50 and len(page.items) == 5
    record = client.procedure(page.items[0].code)
    assert record["MATTHC"] == page.items[0].code
    assert isinstance(record["CACHTHUCTHUCHIEN"], list)  # per-channel times and fees, always a list
    assert all("KENH" in c for c in record["CACHTHUCTHUCHIEN"])


def test_result_upload_resumes_after_an_interruption_and_checks_sha256(settings, audit, sandbox):
    import hashlib

    connector = SoapConnector(settings, "dvc_portal", audit=audit)
    client = DvcPortalClient(connector)
    ma = "000.00.00.G10-20260609-0000001"
    client.sync_dossiers([{"MaHoSo": ma, "MaTTHC": "1.001000", "TenTTHC": "Thủ tục thử", "KenhThucHien": 2,
                           "ChuHoSo": "Lê Thị Mai", "LoaiDoiTuong": 1, "TrichYeuHoSo": "Hồ sơ thử",
                           "TrangThaiHoSo": 9}], is_updating=False)
    data = "Kết quả giải quyết thủ tục hành chính\n".encode() * 5000
    sha = hashlib.sha256(data).hexdigest()
    # a first attempt dies after one chunk
    start = connector.call("BatDauTaiTepKetQua", element(DVC_PORTAL.namespace, "BatDauTaiTepKetQua", {
        "MaHoSo": ma, "TenTep": "kq.txt", "KieuTep": "text/plain", "KichThuoc": len(data), "SHA256": sha}))
    session = start.payload.findtext("{%s}MaPhienTai" % DVC_PORTAL.namespace)
    import base64

    connector.call("TaiPhanTepKetQua", element(DVC_PORTAL.namespace, "TaiPhanTepKetQua", {
        "MaPhienTai": session, "ViTri": 0, "DuLieu": base64.b64encode(data[:32768]).decode()}))
    # the retry resumes where the portal stopped and the portal checks the whole file's hash
    done = client.upload_result(ma, data, file_name="kq.txt", mime_type="text/plain", chunk_size=32 * 1024)
    assert done.resumed_from == 32768
    assert done.size == len(data) and done.sha256 == sha
    assert done.url.startswith(sandbox.base_url)
    import requests

    assert requests.get(done.url, timeout=5).content == data


def test_unavailable_partner_is_retryable_and_recorded(conn_home, make_sandbox, audit):
    sandbox = make_sandbox(fail_rate=1.0)
    settings = settings_for(conn_home, sandbox.base_url)
    with pytest.raises(errors.ServiceUnavailable) as info:
        roundtrip(settings, "csdl_tthc", audit=audit)
    assert info.value.retryable
    assert [(r.direction, r.outcome) for r in _entries(audit)] == [("out", "sent"), ("in", "unavailable")]


def test_business_rejection_is_fatal_with_the_partner_code(conn_home, make_sandbox, audit):
    sandbox = make_sandbox(fatal_rate=1.0)
    settings = settings_for(conn_home, sandbox.base_url)
    with pytest.raises(errors.PartnerFault) as info:
        roundtrip(settings, "dvc_portal", audit=audit)
    assert info.value.fault_code == "BUSINESS_REJECTED" and not info.value.retryable
    assert _entries(audit)[-1].outcome == "fault"


def test_timeout_is_retryable_and_the_request_was_audited_first(conn_home, make_sandbox, audit):
    sandbox = make_sandbox(timeout_rate=1.0, timeout_seconds=3.0)
    settings = settings_for(conn_home, sandbox.base_url, operation_timeout=0.5)
    with pytest.raises(errors.TransportTimeout, match="did not answer within 0.5 s"):
        roundtrip(settings, "baocao", audit=audit)
    rows = _entries(audit)
    assert [(r.direction, r.outcome) for r in rows] == [("out", "sent"), ("in", "timeout")]
    assert "0.5 s" in rows[1].error


def test_unreachable_endpoint_is_a_transport_error(conn_home, audit):
    settings = settings_for(conn_home, "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(errors.TransportError, match="cannot reach csdl_tthc"):
        roundtrip(settings, "csdl_tthc", audit=audit)


def test_wrong_partner_agency_is_refused_by_the_partner(conn_home, sandbox, audit):
    settings = settings_for(conn_home, sandbox.base_url)
    settings = settings.with_partner(replace(settings.partner("dvc_portal"), agency_code="000.00.00.G99"))
    with pytest.raises(errors.PartnerFault) as info:
        roundtrip(settings, "dvc_portal", audit=audit)
    assert info.value.fault_code == "WRONG_RECIPIENT"


def test_reply_from_an_untrusted_signer_is_rejected(settings, audit):
    foreign = create_ca(common_name="Not the national CA", key_type="ec")
    tmp = settings.home / "foreign-ca.crt"
    from cryptography.hazmat.primitives.serialization import Encoding

    tmp.write_bytes(foreign.certificate.public_bytes(Encoding.PEM))
    connector = SoapConnector(settings, "csdl_tthc", audit=audit,
                              verifier=Verifier(TrustStore.from_paths([tmp])))
    with pytest.raises(errors.UntrustedCertificate):
        connector.call("LayDanhMucLinhVuc", element(CSDL_TTHC.namespace, "LayDanhMucLinhVuc"))
    assert _entries(audit)[-1].outcome == "rejected"


def test_schema_invalid_request_never_leaves_the_hub(settings, audit, sandbox):
    connector = SoapConnector(settings, "csdl_tthc", audit=audit)
    with pytest.raises(errors.SchemaViolation, match="MATTHC"):
        connector.call("LayThuTuc", element(CSDL_TTHC.namespace, "LayThuTuc", {"MATTHC": "not-a-code"}))
    assert _entries(audit) == []
    assert sandbox.store.count() == 0


def test_unknown_operation_is_a_configuration_error(settings, audit):
    connector = SoapConnector(settings, "dvc_portal", audit=audit)
    with pytest.raises(errors.ConfigurationError, match="no operation 'LayThuTuc'"):
        connector.call("LayThuTuc", element(DVC_PORTAL.namespace, "LayThuTuc"))


def test_key_is_loaded_once_per_process(settings, audit):
    from lienthong.signing.keys import load_identity

    SoapConnector(settings, "csdl_tthc", audit=audit)
    before = load_identity.cache_info()
    for name in SERVICES:
        SoapConnector(settings, name, audit=audit)
    after = load_identity.cache_info()
    assert after.misses == before.misses and after.hits >= before.hits + len(SERVICES)


def test_wrong_key_password_is_a_clear_configuration_error(conn_home, sandbox, audit):
    settings = replace(settings_for(conn_home, sandbox.base_url), key_password="sai mật khẩu")
    with pytest.raises(errors.ConfigurationError) as info:
        SoapConnector(settings, "csdl_tthc", audit=audit)
    assert "sai mật khẩu" not in str(info.value) and PASSWORD not in str(info.value)


def test_tls_certificate_that_does_not_verify_is_a_tls_error(conn_home, audit, tmp_path):
    """TLS verification is on by default: a server with an unknown certificate is refused, not trusted."""
    import datetime as dt
    import http.server
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = settings_for(conn_home, f"https://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(errors.TlsError, match="TLS verification"):
            roundtrip(settings, "csdl_tthc", audit=audit)
        assert [(r.direction, r.outcome) for r in _entries(audit)] == [("out", "sent"), ("in", "error")]
    finally:
        server.shutdown()


def test_proxy_and_ca_bundle_from_the_environment_are_still_honoured(settings, audit, monkeypatch):
    """The environment is read once per session (not per request), but it is still read."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    connector = SoapConnector(settings, "csdl_tthc", audit=audit)
    session = connector.http.client().session
    assert session.proxies.get("http") == "http://proxy.internal:3128"
    assert session.verify == "/etc/ssl/certs/ca-certificates.crt"
    assert session.trust_env is False


def test_a_failed_exchange_carries_its_evidence(conn_home, make_sandbox, audit):
    sandbox = make_sandbox(fatal_rate=1.0)
    connector = SoapConnector(settings_for(conn_home, sandbox.base_url), "dvc_portal", audit=audit)
    with pytest.raises(errors.PartnerFault) as info:
        connector.call("TraCuuHoSo", element(DVC_PORTAL.namespace, "TraCuuHoSo",
                                             {"MaHoSo": "000.00.00.G10-20260609-0000001"}))
    exc = info.value
    assert exc.request_bytes == sandbox.store.received()[-1].raw  # the signed bytes that were sent
    assert b"BUSINESS_REJECTED" in exc.response_bytes and exc.document_id
