"""The sandbox's SOAP pipeline: signed replies for good requests, a specific Fault for each bad one."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import zeep
from lienthong.connectors.services import EDXML_NS, SERVICES
from lienthong.connectors.soapframe import unwrap_soap
from lienthong.hub.errors import ConfigurationError, PartnerFault, ServiceUnavailable
from lienthong.sandbox.samples import _derived, conversation
from lienthong.sandbox.server import MEMORY, FaultInjector, SandboxConfig, SandboxServer
from lxml import etree
from sandbox_helpers import HUB, NATIONAL_AGENCY, Party, SandboxClient, dossier, fault_code

DVC_NS = SERVICES["dvc_portal"].namespace


# ------------------------------------------------------------------------------------ happy path
def test_every_operation_answers_a_signed_schema_valid_reply(client, sandbox):
    """The whole conversation of schemas/samples, against a live sandbox over HTTP."""
    replies = {}
    seen = set()
    for service, operation, content in conversation():
        if content is None:
            content = _derived(operation, {op: r.envelope_root for op, r in replies.items()},
                               SERVICES[service].namespace)
        request_id = f"G10-TEST-{len(seen) + 1:06d}"
        reply = client.call(service, operation, content, document_id=request_id)
        assert reply.http.status_code == 200, reply.http.text[:500]
        env = reply.envelope
        assert env.subject == operation
        assert env.sender.code == NATIONAL_AGENCY
        assert [p.code for p in env.recipients] == [HUB.code]
        assert env.response_for == request_id
        assert env.payload.tag == f"{{{SERVICES[service].namespace}}}{operation}Result"
        reply.envelope_root = env.payload.getroottree().getroot()
        replies[operation] = reply
        seen.add((service, operation))
    assert seen == {(s.name, op) for s in SERVICES.values() for op in s.operations}
    assert sandbox.store.count() == len(seen)
    assert sandbox.store.outcomes() == {"OK": len(seen)}


def test_csdl_paging_and_changed_since(client):
    first = client.call("csdl_tthc", "LayDanhSachTTHC", {"Trang": 1, "SoBanGhi": 100}).result
    ns = SERVICES["csdl_tthc"].namespace
    assert first.findtext(f"{{{ns}}}TongSo") == "300"
    codes = [el.text for el in first.iter(f"{{{ns}}}MATTHC")]
    assert len(codes) == 100 and len(set(codes)) == 100
    last = client.call("csdl_tthc", "LayDanhSachTTHC", {"Trang": 3, "SoBanGhi": 100}).result
    assert len(list(last.iter(f"{{{ns}}}MATTHC"))) == 100
    beyond = client.call("csdl_tthc", "LayDanhSachTTHC", {"Trang": 4, "SoBanGhi": 100}).result
    assert list(beyond.iter(f"{{{ns}}}MATTHC")) == []
    recent = client.call("csdl_tthc", "LayDanhSachTTHC",
                         {"TuNgay": "2025-12-01T00:00:00+07:00", "Trang": 1, "SoBanGhi": 1000}).result
    total = int(recent.findtext(f"{{{ns}}}TongSo"))
    assert 0 < total < 300
    assert all(el.text >= "2025-12-01" for el in recent.iter(f"{{{ns}}}NGAYCAPNHAT"))


def test_unknown_procedure_is_not_found(client):
    reply = client.call("csdl_tthc", "LayThuTuc", {"MATTHC": "9.999999"})
    assert (reply.http.status_code, reply.fault_code) == (500, "NOT_FOUND")


# ------------------------------------------------------------------------------------ refusals
def test_unsigned_request_is_refused(client, sandbox):
    reply = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"}, signer=False)
    assert (reply.http.status_code, reply.fault_code) == (500, "SIGNATURE_MISSING")
    [msg] = sandbox.store.received(outcome="SIGNATURE_MISSING")
    assert msg.operation == "TraCuuHoSo" and msg.http_status == 500 and msg.error


def test_wrong_recipient_is_refused(client):
    reply = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"},
                        to=Party("000.00.00.G05", "Bộ Tài chính"))
    assert reply.fault_code == "WRONG_RECIPIENT"
    assert "000.00.00.G05" in reply.http.text


def test_sender_must_match_the_signing_certificate(client):
    reply = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"},
                        sender=Party("000.00.00.G11", "Bộ khác"))
    assert reply.fault_code == "WRONG_SENDER"


def test_schema_invalid_request_is_refused(client, sandbox):
    reply = client.call("dvc_portal", "DongBoHoSoMC",
                        {"isUpdating": False, "HoSo": [dossier("000.00.04.G10-20260609-0000001", status=11)]})
    assert reply.fault_code == "SCHEMA_INVALID"
    assert "TrangThaiHoSo" in reply.http.text
    assert sandbox.store.dossier_count() == 0


def test_untrusted_signer_is_refused(client, foreign_signer):
    reply = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"},
                        signer=foreign_signer)
    assert reply.fault_code == "CERTIFICATE_UNTRUSTED"


def test_tampered_request_is_refused(client):
    def tamper(signed: bytes) -> bytes:
        return signed.replace(b"0000001", b"0000002")

    reply = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"},
                        mutate_signed=tamper)
    assert reply.fault_code == "SIGNATURE_DIGEST_MISMATCH"


def test_unknown_soap_action_is_refused(client):
    reply = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"},
                        soap_action="XoaHoSo")
    assert reply.fault_code == "UNKNOWN_OPERATION"
    # an operation of another service is unknown here too
    reply = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"},
                        soap_action="LayThuTuc")
    assert reply.fault_code == "UNKNOWN_OPERATION"


def test_missing_soap_action_is_refused(client):
    data = client.request_bytes("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"})
    http = client.post_raw("dvc_portal", data, None)
    assert fault_code(http.content) == "UNKNOWN_OPERATION"


def test_soap_action_must_match_subject(client):
    # a valid, signed TraCuuHoSo request presented as another operation of the same service
    reply = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": "000.00.04.G10-20260609-0000001"},
                        soap_action="DongBoHoSoMC")
    assert reply.fault_code == "ENVELOPE_INVALID"
    assert "Subject" in reply.http.text


def test_payload_must_be_the_operations_request_element(client):
    # Subject and SOAPAction say TraCuuHoSo, the payload is a (schema-valid) TraCuuHoSoResult
    from lienthong.connectors.payload import element

    payload = element(DVC_NS, "TraCuuHoSoResult", {"MaHoSo": "000.00.04.G10-20260609-0000001", "TonTai": True})
    reply = client.call("dvc_portal", "TraCuuHoSo", payload)
    assert reply.fault_code == "ENVELOPE_INVALID"


@pytest.mark.parametrize(("body", "code"), [
    (b"<soap:Envelope", "XML_MALFORMED"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "XML_DTD_FORBIDDEN"),
    (b'<x xmlns="urn:other"/>', "XML_MALFORMED"),
])
def test_hostile_or_broken_xml_is_refused(client, body, code):
    http = client.post_raw("dvc_portal", body, "TraCuuHoSo")
    assert http.status_code == 500
    assert fault_code(http.content) == code


def test_oversized_body_is_refused_before_reading(make_sandbox, hub_signer, hub_verifier):
    server = make_sandbox(max_body_bytes=2048)
    client = SandboxClient(server.base_url, hub_signer, hub_verifier)
    reply = client.call("csdl_tthc", "LayThuTuc", {"MATTHC": "1.001012"})
    assert (reply.http.status_code, reply.fault_code) == (413, "XML_TOO_LARGE")


def test_resend_of_the_same_message_is_answered_not_applied_twice(client, sandbox):
    data = client.request_bytes("dvc_portal", "DongBoHoSoMC",
                                {"isUpdating": False, "HoSo": [dossier("000.00.04.G10-20260609-0000001")]},
                                document_id="G10-RESEND-000001")
    first = client.read("dvc_portal", client.post_raw("dvc_portal", data, "DongBoHoSoMC"))
    again = client.read("dvc_portal", client.post_raw("dvc_portal", data, "DongBoHoSoMC"))
    code = f"{{{DVC_NS}}}KetQua/{{{DVC_NS}}}MaLoi"
    assert first.result.findtext(code) == again.result.findtext(code) == "0"
    assert again.envelope.response_for == "G10-RESEND-000001"
    assert [m.outcome for m in sandbox.store.received(operation="DongBoHoSoMC")] == ["OK", "DUPLICATE"]
    assert len(sandbox.store.dossier_history("000.00.04.G10-20260609-0000001")) == 1


def test_same_document_id_with_other_content_is_refused(client):
    ok = client.call("dvc_portal", "DongBoHoSoMC",
                     {"isUpdating": False, "HoSo": [dossier("000.00.04.G10-20260609-0000001")]},
                     document_id="G10-REUSED-000001")
    assert ok.http.status_code == 200
    reused = client.call("dvc_portal", "DongBoHoSoMC",
                         {"isUpdating": False, "HoSo": [dossier("000.00.04.G10-20260609-0000002")]},
                         document_id="G10-REUSED-000001")
    assert reused.fault_code == "DUPLICATE_DOCUMENT_ID"


# ------------------------------------------------------------------------------------ fault injection
def test_fail_rate_one_answers_503_service_unavailable(make_sandbox, hub_signer, hub_verifier):
    server = make_sandbox(fail_rate=1.0)
    client = SandboxClient(server.base_url, hub_signer, hub_verifier)
    http = client.post_raw("dvc_portal", client.request_bytes(
        "dvc_portal", "DongBoHoSoMC", {"isUpdating": False, "HoSo": [dossier("000.00.04.G10-20260609-0000001")]}),
        "DongBoHoSoMC")
    assert http.status_code == 503
    assert fault_code(http.content) == "SERVICE_UNAVAILABLE"
    with pytest.raises(ServiceUnavailable):  # how the hub's connectors classify it
        unwrap_soap(http.content, http_status=http.status_code)
    assert server.store.dossier_count() == 0, "an unavailable service must not process the request"
    [msg] = server.store.received()
    assert (msg.outcome, msg.http_status, msg.operation) == ("SERVICE_UNAVAILABLE", 503, "DongBoHoSoMC")
    assert msg.document_id and msg.from_agency == HUB.code  # recorded from the (unverified) header
    server.configure_faults(fail_rate=0.0)
    assert client.call("csdl_tthc", "LayThuTuc", {"MATTHC": "1.001012"}).http.status_code == 200


def test_fatal_rate_one_answers_a_business_rejection(make_sandbox, hub_signer, hub_verifier):
    server = make_sandbox(fatal_rate=1.0)
    client = SandboxClient(server.base_url, hub_signer, hub_verifier)
    http = client.post_raw("csdl_tthc", client.request_bytes("csdl_tthc", "LayThuTuc", {"MATTHC": "1.001012"}),
                           "LayThuTuc")
    assert (http.status_code, fault_code(http.content)) == (500, "BUSINESS_REJECTED")
    with pytest.raises(PartnerFault):
        unwrap_soap(http.content, http_status=http.status_code)


def test_latency_is_added(make_sandbox, hub_signer, hub_verifier):
    server = make_sandbox(latency_ms=250)
    client = SandboxClient(server.base_url, hub_signer, hub_verifier)
    started = time.perf_counter()
    assert client.call("csdl_tthc", "LayDanhMucLinhVuc", {}).http.status_code == 200
    assert time.perf_counter() - started >= 0.25


def test_injected_timeout_processes_but_never_answers(make_sandbox, hub_signer, hub_verifier):
    server = make_sandbox(timeout_rate=1.0, timeout_seconds=5.0)
    client = SandboxClient(server.base_url, hub_signer, hub_verifier)
    data = client.request_bytes("dvc_portal", "DongBoHoSoMC",
                                {"isUpdating": False, "HoSo": [dossier("000.00.04.G10-20260609-0000001")]},
                                document_id="G10-TIMEOUT-000001")
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.post_raw("dvc_portal", data, "DongBoHoSoMC", timeout=0.3)
    # the portal did receive and apply it: only an idempotent resend is safe
    assert server.store.dossier("000.00.04.G10-20260609-0000001") is not None
    assert [m.outcome for m in server.store.received()] == ["TIMEOUT"]
    server.configure_faults(timeout_rate=0.0)
    resend = client.read("dvc_portal", client.post_raw("dvc_portal", data, "DongBoHoSoMC"))
    assert resend.result.findtext(f"{{{DVC_NS}}}KetQua/{{{DVC_NS}}}MaLoi") == "0"
    assert [m.outcome for m in server.store.received()] == ["TIMEOUT", "DUPLICATE"]


def test_stop_releases_a_hanging_timeout(make_sandbox, hub_signer, hub_verifier):
    server = make_sandbox(timeout_rate=1.0, timeout_seconds=30.0)
    client = SandboxClient(server.base_url, hub_signer, hub_verifier)
    errors = []

    def call():
        try:
            client.post_raw("csdl_tthc", client.request_bytes("csdl_tthc", "LayDanhMucLinhVuc", {}),
                            "LayDanhMucLinhVuc", timeout=10)
        except requests.RequestException as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    deadline = time.time() + 5
    while server.store.count() == 0 and time.time() < deadline:
        time.sleep(0.02)
    started = time.perf_counter()
    server.stop()
    t.join(5)
    assert not t.is_alive() and errors, "the client saw the connection close without an answer"
    assert time.perf_counter() - started < 3


def test_fault_draws_are_reproducible_with_a_seed():
    def draws(seed):
        inj = FaultInjector(fail_rate=0.2, fatal_rate=0.1, timeout_rate=0.1, seed=seed)
        return [inj.draw() for _ in range(200)]

    a, b = draws(42), draws(42)
    assert a == b
    assert {"unavailable", "fatal", "timeout", None} == set(a)
    assert 20 <= a.count("unavailable") <= 60


@pytest.mark.parametrize("rates", [{"fail_rate": 1.5}, {"fail_rate": 0.6, "timeout_rate": 0.6}, {"fatal_rate": -0.1}])
def test_impossible_fault_rates_are_refused(rates):
    with pytest.raises(ConfigurationError):
        FaultInjector(**rates)


# ------------------------------------------------------------------------------------ HTTP surface
def test_wsdl_is_served_with_the_real_address_and_loads_in_zeep(sandbox):
    url = sandbox.url("csdl_tthc")
    text = requests.get(url + "?wsdl", timeout=5).text
    assert f'location="{url}"' in text
    client = zeep.Client(url + "?wsdl")  # fetches the imported XSDs from the sandbox too
    port = next(iter(next(iter(client.wsdl.services.values())).ports.values()))
    assert port.binding_options["address"] == url
    assert set(port.binding._operations) == set(SERVICES["csdl_tthc"].operations)


def test_health_and_unknown_paths(sandbox):
    health = requests.get(sandbox.base_url + "/health", timeout=5).json()
    assert health["status"] == "ok"
    assert health["services"]["dvc_portal"] == sandbox.url("dvc_portal")
    assert requests.get(sandbox.base_url + "/khong-co", timeout=5).status_code == 404
    assert requests.get(sandbox.base_url + "/../../etc/passwd.xsd", timeout=5).status_code == 404
    posted = requests.post(sandbox.base_url + "/khong-co", data=b"<x/>", timeout=5)
    assert posted.status_code == 404


def test_missing_pki_is_a_clear_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="keys init"):
        SandboxServer(SandboxConfig(store_path=MEMORY, pki_dir=tmp_path / "none"))


def test_signing_key_must_speak_for_the_national_agency(pki):
    from sandbox_helpers import PASSWORD

    with pytest.raises(ConfigurationError, match="speaks for agency"):
        SandboxServer(SandboxConfig(store_path=MEMORY, pki_dir=pki.pki_dir, key_password=PASSWORD,
                                    signing_key=pki.hub_p12))


def test_concurrent_clients(sandbox, hub_signer, hub_verifier):
    """Many keep-alive clients at once: every request answered, every message recorded once."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        c = SandboxClient(sandbox.base_url, hub_signer, hub_verifier)
        try:
            for i in range(5):
                ma = f"000.00.04.G10-20260609-{n:03d}{i:04d}"
                r = c.call("dvc_portal", "DongBoHoSoMC", {"isUpdating": False, "HoSo": [dossier(ma)]})
                assert r.result.findtext(f"{{{DVC_NS}}}KetQua/{{{DVC_NS}}}MaLoi") == "0"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[0]
    assert sandbox.store.dossier_count() == 40
    assert sandbox.store.count(operation="DongBoHoSoMC", outcome="OK") == 40


def test_reply_bytes_are_the_signed_bytes(client):
    """The reply body carries the signed envelope verbatim (verifiable without re-serialising)."""
    reply = client.call("csdl_tthc", "LayDanhMucLinhVuc", {})
    body = reply.http.content
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope')
    doc = etree.fromstring(body)[0][0]
    assert doc.tag == f"{{{EDXML_NS}}}edXML" and doc[0].tag == f"{{{EDXML_NS}}}edXMLEnvelope"
    assert doc[0][0][-1].tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"  # in the envelope's header
