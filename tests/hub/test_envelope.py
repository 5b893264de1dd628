"""The envelope profile: built messages are schema-valid and read back exactly."""

from datetime import UTC, datetime

import pytest
from lienthong.connectors.payload import element
from lienthong.connectors.services import CSDL_TTHC, DVC_PORTAL
from lienthong.hub.envelope import Party, build_envelope, edxml_datetime, parse_envelope
from lienthong.hub.errors import EnvelopeError, SchemaViolation
from lienthong.hub.inbound import check_prefixes
from lienthong.hub.validation import validate
from lxml import etree

HUB = Party("000.00.00.G10", "Bộ Nông nghiệp và Môi trường")
NATIONAL = Party("000.00.00.G22", "Văn phòng Chính phủ")


def _request(**kw):
    payload = element(CSDL_TTHC.namespace, "LayThuTuc", {"MATTHC": "1.005129"})
    return build_envelope(sender=HUB, recipients=[NATIONAL], subject="LayThuTuc", payload=payload, **kw)


def test_built_envelope_is_valid_and_reads_back():
    moment = datetime(2026, 6, 9, 1, 2, 3, tzinfo=UTC)
    root = _request(document_id="G10-0000000001", now=moment)
    validate(root, "csdl_tthc")
    env = parse_envelope(root)
    assert env.document_id == "G10-0000000001"
    assert env.subject == "LayThuTuc"
    assert env.sender == HUB
    assert env.recipient_codes == ("000.00.00.G22",)
    assert env.response_for is None
    assert env.sent_at == moment
    assert env.payload.findtext("{%s}MATTHC" % CSDL_TTHC.namespace) == "1.005129"


def test_times_are_written_in_vietnam_time():
    assert edxml_datetime(datetime(2026, 6, 9, 20, 0, 0, tzinfo=UTC)) == "2026/06/10 03:00:00"


def test_reply_carries_response_for():
    root = _request(response_for="abcdef0123456789", response_for_agency="000.00.00.G10")
    assert parse_envelope(root).response_for == "abcdef0123456789"


def test_every_edxml_element_is_prefixed():
    root = _request()
    xml = etree.tostring(root).decode()
    assert "<edXML:edXMLEnvelope" in xml and "<edXMLHeader" not in xml
    check_prefixes(root)


def test_unprefixed_edxml_is_refused():
    xml = etree.tostring(_request()).decode().replace("edXML:", "").replace('xmlns:edXML=', "xmlns=")
    root = etree.fromstring(xml.encode())
    with pytest.raises(EnvelopeError, match="must use 'edXML:'"):
        check_prefixes(root)


def test_payload_of_another_service_is_a_schema_violation():
    payload = element(DVC_PORTAL.namespace, "TraCuuHoSo", {"MaHoSo": "G09.20-20260609-0092637"})
    root = build_envelope(sender=HUB, recipients=[NATIONAL], subject="TraCuuHoSo", payload=payload)
    validate(root, "dvc_portal")
    with pytest.raises(SchemaViolation, match="csdl_tthc.xsd"):
        validate(root, "csdl_tthc")


def test_bad_agency_code_is_a_schema_violation_naming_the_line():
    root = build_envelope(sender=Party("not a code", "x"), recipients=[NATIONAL], subject="LayThuTuc",
                          payload=element(CSDL_TTHC.namespace, "LayThuTuc", {"MATTHC": "1.005129"}))
    with pytest.raises(SchemaViolation, match="OrganId"):
        validate(root, "csdl_tthc")


def test_envelope_needs_a_recipient():
    with pytest.raises(EnvelopeError):
        build_envelope(sender=HUB, recipients=[], subject="LayThuTuc",
                       payload=element(CSDL_TTHC.namespace, "LayThuTuc", {"MATTHC": "1.005129"}))


def test_schemas_are_never_compiled_by_two_threads_at_once(monkeypatch):
    """Each thread compiles its own validators (lxml keeps per-call error state), but libxml2's
    schema compilation is not safe in two threads at once: a sender pool's first round failed with
    "Document is not valid XML Schema" for a schema that is. Compilations must queue."""
    import threading
    import time

    from lienthong.hub import validation

    real, inside, most = validation.etree.XMLSchema, [0], [0]
    guard = threading.Lock()

    def compile_slowly(doc):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.01)  # long enough for every other thread to arrive meanwhile
        try:
            return real(doc)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(validation.etree, "XMLSchema", compile_slowly)
    barrier, failures = threading.Barrier(6), []

    def first_validation() -> None:  # a new thread: nothing compiled yet in it
        root = _request(document_id="G10-0000000002")
        barrier.wait()
        try:
            validate(root, "csdl_tthc")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=first_validation) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and most[0] == 1
