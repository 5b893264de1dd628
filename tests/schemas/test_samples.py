"""The national contract in schemas/: XSDs, WSDLs and signed samples agree with each other.

Every sample is checked by two independent XSD implementations (libxml2 through lxml, and
xmlschema) so that a schema construct one of them tolerates by accident cannot slip through, and a
few deliberately broken variants must be refused by both.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
import xmlschema
import zeep
import zeep.transports
from lienthong.connectors.services import EDXML_NS, SERVICES, schemas_dir
from lienthong.hub.errors import SchemaViolation
from lienthong.hub.validation import validate
from lienthong.hub.xmlsafe import parse_xml
from lxml import etree

SAMPLES = schemas_dir() / "samples"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
E = "{%s}" % EDXML_NS


def sample_path(service: str, operation: str, kind: str) -> Path:
    return SAMPLES / f"{service}.{operation}.{kind}.xml"


ALL_SAMPLES = [
    pytest.param(spec.name, op, kind, id=f"{spec.name}.{op}.{kind}")
    for spec in SERVICES.values() for op in spec.operations for kind in ("request", "response")
]


@pytest.fixture(scope="module")
def lxml_schemas() -> dict[str, etree.XMLSchema]:
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return {name: etree.XMLSchema(etree.parse(str(spec.xsd_path), parser)) for name, spec in SERVICES.items()}


@pytest.fixture(scope="module")
def xs_schemas() -> dict[str, xmlschema.XMLSchema]:
    return {name: xmlschema.XMLSchema(str(spec.xsd_path)) for name, spec in SERVICES.items()}


def load(service: str, operation: str, kind: str) -> etree._Element:
    return parse_xml(sample_path(service, operation, kind).read_bytes())


def assert_invalid_in_both(root: etree._Element, service: str, lxml_schemas, xs_schemas) -> None:
    assert not lxml_schemas[service].validate(root), "lxml accepted an invalid message"
    assert not xs_schemas[service].is_valid(root), "xmlschema accepted an invalid message"
    with pytest.raises(SchemaViolation):
        validate(root, service)


# ------------------------------------------------------------------------------------ schemas
@pytest.mark.parametrize("service", list(SERVICES))
def test_each_xsd_loads_in_both_implementations(service, lxml_schemas, xs_schemas):
    spec = SERVICES[service]
    xs = xs_schemas[service]
    assert xs.target_namespace == spec.namespace
    declared = {etree.QName(name).localname for name in xs.elements}
    expected = {op for op in spec.operations} | {f"{op}Result" for op in spec.operations}
    assert declared == expected, f"{spec.xsd_file} must declare exactly <Op> and <Op>Result per operation"
    # the document root is reachable through the import, so messages validate against the service XSD
    assert f"{E}edXML" in xs.maps.elements


@pytest.mark.parametrize("service", list(SERVICES))
def test_xsd_imports_the_envelope_profile(service):
    doc = etree.parse(str(SERVICES[service].xsd_path))
    imports = doc.findall("{http://www.w3.org/2001/XMLSchema}import")
    assert [(i.get("namespace"), i.get("schemaLocation")) for i in imports] == [(EDXML_NS, "edxml_envelope.xsd")]
    assert doc.getroot().get("elementFormDefault") == "qualified"


# ------------------------------------------------------------------------------------ samples
def test_every_operation_has_a_request_and_a_response_sample():
    expected = {f"{spec.name}.{op}.{kind}.xml" for spec in SERVICES.values() for op in spec.operations
                for kind in ("request", "response")}
    present = {p.name for p in SAMPLES.glob("*.xml")}
    assert expected - present == set(), "missing samples"
    assert present - expected == set(), "samples for operations that do not exist"


@pytest.mark.parametrize(("service", "operation", "kind"), ALL_SAMPLES)
def test_sample_is_valid_in_both_implementations(service, operation, kind, lxml_schemas, xs_schemas):
    root = load(service, operation, kind)
    schema = lxml_schemas[service]
    assert schema.validate(root), f"lxml: {schema.error_log.last_error}"
    xs_schemas[service].validate(root)  # raises with the reason
    validate(root, service)  # the hub's own validator agrees


@pytest.mark.parametrize(("service", "operation", "kind"), ALL_SAMPLES)
def test_sample_is_a_signed_envelope_for_its_operation(service, operation, kind):
    root = load(service, operation, kind)
    assert root.tag == f"{E}edXML" and root.prefix is None  # the root, in the default namespace
    (envelope,) = root.findall(f"{E}edXMLEnvelope")
    header = envelope.find(f"{E}edXMLHeader/{E}MessageHeader")
    assert header.findtext(f"{E}Subject") == operation
    body = envelope.find(f"{E}edXMLBody")
    assert body[0].tag == f"{E}edXMLManifest" and len(body) == 2
    expected = operation if kind == "request" else f"{operation}Result"
    assert body[1].tag == f"{{{SERVICES[service].namespace}}}{expected}"
    assert envelope.find(f"{E}edXMLHeader")[-1].tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    if kind == "response":
        request = load(service, operation, "request")
        req_id = request.findtext(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}MessageHeader/{E}DocumentId")
        assert header.findtext(f"{E}ResponseFor/{E}DocumentId") == req_id
    # every element of the envelope carries the edXML prefix on the wire (gateways reject unprefixed ones)
    for el in envelope.iter(f"{E}*"):
        assert el.prefix == "edXML", el.tag


def test_samples_keep_vietnamese_text_intact():
    text = sample_path("csdl_tthc", "LayThuTuc", "response").read_text(encoding="utf-8")
    assert "Cấp giấy chứng nhận kiểm dịch động vật, sản phẩm động vật xuất khẩu" in text
    assert "Thú y" in text and "Đồng" in text
    import unicodedata

    assert unicodedata.is_normalized("NFC", text)


# ------------------------------------------------------------------------------------ invalid variants
@pytest.mark.parametrize(("service", "operation", "element", "value"), [
    pytest.param("csdl_tthc", "LayThuTuc", "MATTHC", "1.12345", id="bad-procedure-code"),
    pytest.param("dvc_portal", "DongBoHoSoMC", "TrangThaiHoSo", "11", id="dossier-status-outside-1-to-10"),
    pytest.param("dvc_portal", "DongBoHoSoMC", "TrichYeuHoSo", "ồ" * 1001, id="summary-over-1000-characters"),
    pytest.param("baocao", "GuiBaoCao", "LoaiKy", "nam", id="month-report-with-unknown-period-kind"),
    # xmlschema takes about a second over 1.4 MB of base64
    pytest.param("dvc_portal", "TaiPhanTepKetQua", "DuLieu", base64.b64encode(b"\0" * (1024 * 1024 + 1)).decode(),
                 id="chunk-over-one-mebibyte", marks=pytest.mark.slow),
])
def test_payload_value_out_of_bounds_is_rejected(service, operation, element, value, lxml_schemas, xs_schemas):
    root = load(service, operation, "request")
    ns = SERVICES[service].namespace
    root.find(f".//{{{ns}}}{element}").text = value
    assert_invalid_in_both(root, service, lxml_schemas, xs_schemas)


def test_unprefixed_edxml_element_is_rejected(lxml_schemas, xs_schemas):
    root = load("csdl_tthc", "LayThuTuc", "request")
    subject = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}MessageHeader/{E}Subject")
    subject.tag = "Subject"  # no namespace: what a careless producer writes
    assert_invalid_in_both(root, "csdl_tthc", lxml_schemas, xs_schemas)


def test_missing_subject_is_rejected(lxml_schemas, xs_schemas):
    root = load("baocao", "GuiBaoCao", "request")
    header = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}MessageHeader")
    header.remove(header.find(f"{E}Subject"))
    assert_invalid_in_both(root, "baocao", lxml_schemas, xs_schemas)


def test_payload_of_another_service_is_rejected(lxml_schemas, xs_schemas):
    # processContents="strict": a DVC payload inside an envelope checked with the CSDL schema fails
    root = load("dvc_portal", "TraCuuHoSo", "request")
    assert_invalid_in_both(root, "csdl_tthc", lxml_schemas, xs_schemas)


# ------------------------------------------------------------------------------------ WSDL
class OfflineTransport(zeep.transports.Transport):
    """Loads local files only: proves the WSDLs need no network to be used."""

    def load(self, url):  # noqa: ANN001 - zeep signature
        if "://" in url and not url.startswith("file://"):
            raise AssertionError(f"WSDL tried to fetch {url}")
        return super().load(url)


@pytest.mark.parametrize("service", list(SERVICES))
def test_wsdl_loads_offline_and_names_exactly_the_operations(service):
    spec = SERVICES[service]
    client = zeep.Client(wsdl=str(spec.wsdl_path), transport=OfflineTransport())
    services = list(client.wsdl.services.values())
    assert len(services) == 1
    ports = list(services[0].ports.values())
    assert len(ports) == 1
    binding = ports[0].binding
    assert set(binding._operations) == set(spec.operations)
    for name, op in binding._operations.items():
        assert op.soapaction == name
        for message in (op.input, op.output):
            parts = list(message.body.type.elements) if hasattr(message.body, "type") else []
            assert message.body.qname == etree.QName(EDXML_NS, "edXML")
            assert parts, "the envelope element resolved to its type"
    assert ports[0].binding_options["address"].startswith("http://localhost:8080")


@pytest.mark.parametrize("service", list(SERVICES))
def test_wsdl_is_document_literal_soap11_with_one_envelope_part(service):
    spec = SERVICES[service]
    doc = etree.parse(str(spec.wsdl_path))
    w, s = "{%s}" % WSDL_NS, "{%s}" % WSDL_SOAP_NS
    assert doc.find(f"{w}binding/{s}binding").get("style") == "document"
    assert doc.find(f"{w}binding/{s}binding").get("transport") == "http://schemas.xmlsoap.org/soap/http"
    messages = doc.findall(f"{w}message")
    assert len(messages) == 2 * len(spec.operations)
    for message in messages:
        parts = message.findall(f"{w}part")
        assert len(parts) == 1
        prefix, local = parts[0].get("element").split(":")
        assert message.nsmap[prefix] == EDXML_NS and local == "edXML"
    for body in doc.iter(f"{s}body"):
        assert body.get("use") == "literal"
    imports = doc.findall(f"{w}types/{{http://www.w3.org/2001/XMLSchema}}schema/{{http://www.w3.org/2001/XMLSchema}}import")
    assert spec.xsd_file in {i.get("schemaLocation") for i in imports}
    portal_types = {op.get("name") for op in doc.findall(f"{w}portType/{w}operation")}
    assert portal_types == set(spec.operations)


def test_samples_were_not_modified_after_signing():
    """The sample generator writes the signed bytes verbatim: the digest still matches the content."""
    import hashlib

    root = load("dvc_portal", "DongBoHoSoMC", "request")
    ds = "{http://www.w3.org/2000/09/xmldsig#}"
    signature = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{ds}Signature")
    digest = signature.findtext(f"{ds}SignedInfo/{ds}Reference/{ds}DigestValue")
    unsigned = copy.deepcopy(root)
    header = unsigned.find(f"{E}edXMLEnvelope/{E}edXMLHeader")
    header.remove(header[-1])
    c14n = etree.tostring(unsigned, method="c14n", exclusive=True)
    assert base64.b64encode(hashlib.sha256(c14n).digest()).decode() == digest
