"""The documents the hub and the sandbox exchange, read as a gateway on the national axis reads them.

The reader here shares no code with ``hub/envelope.py``: it is written from the structure of the
national SDK's sample document (``shared/DOMAIN.md``) and walks root → envelope → header → parts, as
gateway parsers do. Every sample and every message of an end-to-end run through the partner
modules must satisfy it, and its signature must verify with libxmlsec (``xmlsec1``) on the edXML
document alone, extracted from the SOAP body.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from lienthong.connectors.csdl_tthc import CsdlTthcClient
from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.http import WatchedAdapter
from lienthong.connectors.reporting import CHITIEU_FIELDS, ReportingClient
from lienthong.connectors.soap import SoapConnector
from lienthong.connectors.soapframe import body_bytes, wrap_soap
from lienthong.connectors.transport import transport_for
from lienthong.hub import errors
from lienthong.hub.envelope import Party, build_envelope, new_document_id
from lienthong.hub.store.models import AuditEntry
from lienthong.signing import Signer, Verifier, load_identity
from lienthong.signing.cli import trust_store_for
from lxml import etree
from national_helpers import PASSWORD
from sqlalchemy import select
from urllib3 import HTTPResponse

EDX = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"
XMLSEC1 = shutil.which("xmlsec1")
#: the parts of a MessageHeader, in the order the national SDK writes them
SDK_ORDER = ("From", "To", "Code", "PromulgationInfo", "DocumentType", "Subject", "Content", "SignerInfo",
             "DueDate", "ToPlaces", "OtherInfo", "ResponseFor", "SteeringType", "DocumentId")
REQUIRED = {"From", "To", "Code", "PromulgationInfo", "DocumentType", "Subject", "DocumentId"}
DATE = re.compile(r"\d{4}/\d{2}/\d{2}")
STAMP = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}")


def _names(el) -> list[str]:
    return [etree.QName(c).localname for c in el if isinstance(c.tag, str)]


def gateway_read(document: bytes) -> dict:
    """Walk one edXML document as a gateway does; return what it routes on."""
    root = etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    assert root.tag == f"{EDX}edXML" and root.prefix is None, "the root is edXML, in the default namespace"
    top = [c for c in root if isinstance(c.tag, str)]
    assert top[0].tag == f"{EDX}edXMLEnvelope" and top[0].prefix == "edXML", "the envelope is the root's first child"
    assert [c.tag for c in top[1:]] in ([], [f"{EDX}AttachmentEncoded"]), "only attachments beside the envelope"
    envelope = top[0]
    assert _names(envelope) == ["edXMLHeader", "edXMLBody"]
    header, body = envelope
    assert _names(header) == ["MessageHeader", "TraceHeaderList", "Signature"]
    message_header, trace_list, signature = header
    assert signature.tag == f"{DS}Signature", "the signature sits in the header, where the SDK reserves it"

    names = _names(message_header)
    order = [SDK_ORDER.index(n) for n in names]
    assert order == sorted(order), f"MessageHeader parts out of the SDK's order: {names}"
    assert REQUIRED <= set(names) and names[-1] == "DocumentId"
    assert all(names.count(n) == 1 for n in names if n != "To")
    for org in (message_header.find(f"{EDX}From"), *message_header.iterfind(f"{EDX}To")):
        assert _names(org)[:3] == ["OrganId", "OrganizationInCharge", "OrganName"]
    assert DATE.fullmatch(message_header.findtext(f"{EDX}PromulgationInfo/{EDX}PromulgationDate"))
    assert _names(message_header.find(f"{EDX}DocumentType")) == ["Type", "TypeName", "TypeDetail"]
    assert message_header.findtext(f"{EDX}OtherInfo/{EDX}Priority") in {"0", "1", "2", "3", "4"}

    assert trace_list.get("id") and trace_list.get("version") == "1.0" and trace_list.get("mustUnderstand") == "1"
    assert trace_list.get("actor") == "http://schemas.xmlsoap.org/soap/actor/next"
    parts = _names(trace_list)
    assert parts[-1] == "Bussiness" and set(parts[:-1]) == {"TraceHeader"}
    for hop in trace_list.iterfind(f"{EDX}TraceHeader"):
        assert STAMP.fullmatch(hop.findtext(f"{EDX}Timestamp")) and hop.findtext(f"{EDX}OrganId")
    business = trace_list.find(f"{EDX}Bussiness")
    assert business.findtext(f"{EDX}BussinessDocType") in {"0", "1", "2", "3"}
    assert business.findtext(f"{EDX}Paper") in {"0", "1"}

    assert body[0].tag == f"{EDX}edXMLManifest" and body[0].get("version") == "1.0"
    payload = [c for c in body if isinstance(c.tag, str)][1:]
    assert len(payload) == 1 and not payload[0].tag.startswith(EDX), "one business element after the manifest"
    for el in envelope.iter(f"{EDX}*"):
        assert el.prefix == "edXML", f"{etree.QName(el).localname} without the edXML: prefix"

    response_for = message_header.find(f"{EDX}ResponseFor")
    return {
        "subject": message_header.findtext(f"{EDX}Subject"),
        "document_id": message_header.findtext(f"{EDX}DocumentId"),
        "date": message_header.findtext(f"{EDX}PromulgationInfo/{EDX}PromulgationDate"),
        "from": message_header.findtext(f"{EDX}From/{EDX}OrganId"),
        "response_for": None if response_for is None else {n: response_for.findtext(f"{EDX}{n}") for n in
                                                           ("OrganId", "Code", "PromulgationDate", "DocumentId")},
        "business_doc_type": business.findtext(f"{EDX}BussinessDocType"),
        "payload": etree.QName(payload[0]).localname,
    }


def xmlsec_verify(document: bytes, tmp_path: Path, *, ca: Path | None) -> subprocess.CompletedProcess:
    path = tmp_path / f"doc-{abs(hash(document))}.xml"
    path.write_bytes(document)
    trust = ["--trusted-pem", str(ca)] if ca else ["--insecure"]  # samples: a throwaway CA, not kept
    return subprocess.run([XMLSEC1, "--verify", *trust, "--enabled-reference-uris", "empty", str(path)],
                          capture_output=True, text=True, timeout=60)


# ------------------------------------------------------------------------------------------- samples
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.xml")))
def test_every_sample_reads_as_the_axis_reads_it(sample):
    read = gateway_read((SAMPLES / sample).read_bytes())
    service, operation, kind = sample.removesuffix(".xml").split(".")
    assert read["subject"] == operation
    assert read["payload"] == (operation if kind == "request" else f"{operation}Result")
    if kind == "response":
        request = gateway_read((SAMPLES / f"{service}.{operation}.request.xml").read_bytes())
        assert read["response_for"] == {"OrganId": request["from"], "Code": request["document_id"][:12],
                                        "PromulgationDate": request["date"], "DocumentId": request["document_id"]}


@pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 is not installed")
def test_every_sample_verifies_with_xmlsec1(tmp_path):
    for sample in sorted(SAMPLES.glob("*.xml")):
        result = xmlsec_verify(sample.read_bytes(), tmp_path, ca=None)
        assert result.returncode == 0, f"{sample.name}: {result.stderr}"


# ------------------------------------------------------------------------------ an end-to-end run
def _run_every_operation(settings, audit):
    catalogue = CsdlTthcClient(transport_for(settings, "csdl_tthc", audit=audit))
    code = catalogue.list_page(1, 3).items[0].code
    catalogue.procedure(code)
    catalogue.agencies()
    catalogue.fields()
    portal = DvcPortalClient(transport_for(settings, "dvc_portal", audit=audit))
    ma = "000.00.00.G10-20261201-0000042"
    dossier = {"MaHoSo": ma, "MaTTHC": "1.001012", "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu",
               "MaLinhVuc": "G10-TY", "TenLinhVuc": "Thú y", "KenhThucHien": 2, "ChuHoSo": "Nguyễn Văn An",
               "LoaiDoiTuong": 1, "TrichYeuHoSo": "Kiểm dịch 50 con bò giống", "NgayNopHoSo": "20261201081530",
               "NgayTiepNhan": "20261201093000", "NgayHenTra": "20261208170000", "TrangThaiHoSo": 2}
    assert not portal.lookup(ma)["TonTai"]
    assert portal.sync_dossiers([dossier], is_updating=False)[0].accepted
    assert portal.sync_dossiers([{**dossier, "TrangThaiHoSo": 4}], is_updating=True)[0].accepted
    portal.update_progress([{"MaHoSo": ma, "NguoiXuLy": "Trần Văn Đức", "ChucDanh": "Chuyên viên",
                             "ThoiDiemXuLy": "20261201100000", "PhongBanXuLy": "Phòng Kiểm dịch",
                             "NoiDungXuLy": "Thẩm định", "TrangThai": 4}])
    portal.upload_result(ma, b"ket qua " * 1000, file_name="kq.txt", mime_type="text/plain", chunk_size=4096)
    reporting = ReportingClient(transport_for(settings, "baocao", audit=audit))
    sent = reporting.send_report(period_kind="thang", year=2026, period=12, agency_code=settings.agency_code,
                                 rows=[{"MaCoQuan": settings.agency_code, "MaTTHC": "1.001012", "MaLinhVuc": "G10-TY",
                                        **{f: 0 for f in CHITIEU_FIELDS[3:]}, "TiepNhanTrucTuyen": 1}])
    reporting.report_status(sent.ma_bao_cao)


def test_every_message_of_a_run_reads_as_the_axis_reads_it_and_verifies_with_xmlsec1(settings, audit, tmp_path):
    _run_every_operation(settings, audit)
    with audit.engine.connect() as conn:
        entries = conn.execute(select(AuditEntry.seq, AuditEntry.direction, AuditEntry.operation)
                               .order_by(AuditEntry.seq)).all()
    assert len(entries) >= 26 and {e.operation for e in entries} >= {"DongBoHoSoMC", "TaiPhanTepKetQua", "GuiBaoCao"}
    requests_by_id, doc_types = {}, []
    verifier = Verifier(trust_store_for(settings))
    for seq, direction, operation in entries:
        document = body_bytes(audit.body(seq))
        read = gateway_read(document)
        assert verifier.verify(document).root.tag == f"{EDX}edXML"  # the hub's verifier, on the document alone
        assert read["subject"] == operation
        if direction == "out":
            requests_by_id[read["document_id"]] = read
            if operation == "DongBoHoSoMC":
                doc_types.append(read["business_doc_type"])
        else:  # a reply names what it answers: agency, code, date and id of the request
            request = requests_by_id[read["response_for"]["DocumentId"]]
            assert read["response_for"] == {"OrganId": request["from"], "Code": request["document_id"][:12],
                                            "PromulgationDate": request["date"], "DocumentId": request["document_id"]}
        if XMLSEC1:
            result = xmlsec_verify(document, tmp_path, ca=settings.pki_dir / "ca.crt")
            assert result.returncode == 0, f"entry {seq} ({direction} {operation}): {result.stderr}"
    assert doc_types == ["0", "2"]  # a first sync is new (0), a sync of a dossier the portal has is an update (2)


# ----------------------------------------------------------------------------------- replies checked
class _Replying(WatchedAdapter):
    """Forwards to the sandbox, then answers with a reply the test builds from the real one."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        body = self.answer(body_bytes(request.body))
        headers = {k: v for k, v in response.raw.headers.items() if k.lower() != "content-length"}
        headers["Content-Length"] = str(len(body))
        response.raw = HTTPResponse(body=io.BytesIO(body), headers=headers, status=200, preload_content=False)
        return response


def test_a_signed_reply_that_names_another_message_is_refused(settings, audit, conn_home):
    national = Signer(load_identity(conn_home / "pki" / "national.p12", PASSWORD))

    def answer(request: bytes) -> bytes:
        asked = gateway_read(request)
        payload = etree.Element("{urn:lienthong:dvc:1}TraCuuHoSoResult", nsmap={"dvc": "urn:lienthong:dvc:1"})
        etree.SubElement(payload, "{urn:lienthong:dvc:1}MaHoSo").text = "000.00.00.G10-20261201-0000042"
        etree.SubElement(payload, "{urn:lienthong:dvc:1}TonTai").text = "false"
        reply = build_envelope(sender=Party("000.00.00.G22", "Văn phòng Chính phủ"), recipients=[Party(asked["from"], "Bộ")], subject="TraCuuHoSo", payload=payload,
                               document_id=new_document_id(), response_for=new_document_id(),
                               response_for_agency=asked["from"], response_for_date=asked["date"])
        return wrap_soap(national.sign(reply))

    session = requests.Session()
    session.mount("http://", _Replying(answer))
    portal = DvcPortalClient(SoapConnector(settings, "dvc_portal", audit=audit, session=session))
    with pytest.raises(errors.UnexpectedResponse, match="reply answers message [0-9a-f]{32}, not [0-9a-f]{32}") as info:
        portal.lookup("000.00.00.G10-20261201-0000042")
    assert info.value.code == "UNEXPECTED_RESPONSE"
    with audit.engine.connect() as conn:
        outcomes = conn.execute(select(AuditEntry.direction, AuditEntry.outcome).order_by(AuditEntry.seq)).all()
    assert [tuple(o) for o in outcomes] == [("out", "sent"), ("in", "rejected")]  # kept, and said why
