"""Replies are verified from the one hardened parse of the SOAP message, whatever framed them.

The connector hands the envelope element found in ``soap:Body`` to the verifier (no second parse
of its bytes), so a reply framed by another SOAP stack must verify exactly as the sandbox's own
framing does, and anything in ``soap:Body`` besides the signed envelope must still be refused.
"""

from __future__ import annotations

import io

import pytest
import requests
from lienthong.connectors.csdl_tthc import CsdlTthcClient
from lienthong.connectors.http import WatchedAdapter
from lienthong.connectors.payload import element
from lienthong.connectors.services import CSDL_TTHC
from lienthong.connectors.soap import SoapConnector
from lienthong.connectors.soapframe import body_bytes
from lienthong.hub import errors
from lienthong.hub.store.models import AuditEntry
from sqlalchemy import select
from urllib3 import HTTPResponse

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


class _Reframing(WatchedAdapter):
    """Forwards to the sandbox, then re-frames the signed envelope of its reply with ``frame``."""

    def __init__(self, frame):
        super().__init__()
        self.frame = frame

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        inner = body_bytes(response.content)
        if inner is not None:
            framed = self.frame(inner)
            headers = {k: v for k, v in response.raw.headers.items() if k.lower() != "content-length"}
            headers["Content-Length"] = str(len(framed))
            response.raw = HTTPResponse(body=io.BytesIO(framed), headers=headers,
                                        status=response.status_code, preload_content=False)
        return response


def _client(settings, audit, frame) -> CsdlTthcClient:
    session = requests.Session()
    session.mount("http://", _Reframing(frame))
    return CsdlTthcClient(SoapConnector(settings, "csdl_tthc", audit=audit, session=session))


def _outcomes(audit):
    with audit.engine.connect() as conn:
        return conn.execute(select(AuditEntry.direction, AuditEntry.outcome).order_by(AuditEntry.seq)).all()


def test_a_reply_framed_by_another_soap_stack_verifies(settings, audit):
    def frame(inner: bytes) -> bytes:
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<S:Envelope xmlns:S="{SOAP}" xmlns:x="urn:unused">'
                "<S:Header/>\n  <S:Body>\n    ").encode() + inner + b"\n  </S:Body>\n</S:Envelope>\n"

    client = _client(settings, audit, frame)
    code = client.list_page(1, 1).items[0].code
    reply = client.transport.call("LayThuTuc", element(CSDL_TTHC.namespace, "LayThuTuc", {"MATTHC": code}))
    assert reply.signer.signer_agency == "000.00.00.G22"
    assert reply.payload.tag.endswith("LayThuTucResult")
    # only what was signed is handed back: none of the framing's namespaces leak into it
    assert "urn:unused" not in reply.signer.root.nsmap.values() and SOAP not in reply.signer.root.nsmap.values()
    assert [o for _, o in _outcomes(audit)] == ["sent", "ok", "sent", "ok"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (lambda inner: inner + b"unsigned text", "text after the envelope"),
        (lambda inner: b"<!-- no envelope here -->", "a comment instead of the envelope"),
    ],
)
def test_anything_but_the_signed_envelope_in_the_body_is_refused(settings, audit, body, why):
    def frame(inner: bytes) -> bytes:
        return f'<S:Envelope xmlns:S="{SOAP}"><S:Body>'.encode() + body(inner) + b"</S:Body></S:Envelope>"

    connector = _client(settings, audit, frame).transport
    with pytest.raises(errors.XmlMalformed, match="soap:Body must hold the signed envelope") as info:
        connector.call("LayDanhMucLinhVuc", element(CSDL_TTHC.namespace, "LayDanhMucLinhVuc"))
    assert info.value.code == "XML_MALFORMED", why
    assert _outcomes(audit) == [("out", "sent"), ("in", "rejected")]


def test_a_tampered_reply_in_foreign_framing_is_still_caught(settings, audit):
    def frame(inner: bytes) -> bytes:
        assert b"</tthc:TENLINHVUC>" in inner
        altered = inner.replace(b"</tthc:TENLINHVUC>", " (sửa)</tthc:TENLINHVUC>".encode(), 1)
        return f'<S:Envelope xmlns:S="{SOAP}"><S:Body>'.encode() + altered + b"</S:Body></S:Envelope>"

    connector = _client(settings, audit, frame).transport
    with pytest.raises(errors.DigestMismatch, match="altered after signing"):
        connector.call("LayDanhMucLinhVuc", element(CSDL_TTHC.namespace, "LayDanhMucLinhVuc"))
