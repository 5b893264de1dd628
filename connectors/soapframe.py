"""SOAP 1.1 framing around the hub's signed envelopes.

The signature covers the envelope, so the envelope's bytes must reach the wire unchanged: the
SOAP message is assembled by concatenating the exact signed bytes between a fixed SOAP prefix and
suffix, never by re-serialising a tree. The audit trail therefore records the very bytes sent.
Both the connectors (client side) and the sandbox (server side) frame and unframe with this module.
"""

from __future__ import annotations

from lxml import etree

from ..hub.errors import (
    HubError,
    PartnerFault,
    ServiceUnavailable,
    TransientFault,
    XmlMalformed,
)
from ..hub.xmlsafe import DEFAULT_MAX_BYTES, parse_xml
from .services import SOAP11_NS

FAULT_NS = "urn:lienthong:fault:1"

_PREFIX = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soap:Envelope xmlns:soap="' + SOAP11_NS.encode() + b'"><soap:Body>'
)
_SUFFIX = b"</soap:Body></soap:Envelope>"

#: Fault codes a partner uses for conditions that pass by themselves: worth a retry.
RETRYABLE_FAULT_CODES = frozenset({"SERVICE_UNAVAILABLE", "TIMEOUT", "BUSY", "RATE_LIMITED", "TRANSIENT_FAULT"})


def wrap_soap(envelope_bytes: bytes) -> bytes:
    """A SOAP 1.1 message whose Body holds ``envelope_bytes`` verbatim (no XML declaration allowed)."""
    if envelope_bytes.startswith(b"<?xml"):
        envelope_bytes = envelope_bytes[envelope_bytes.index(b"?>") + 2:].lstrip()
    return _PREFIX + envelope_bytes + _SUFFIX


def body_bytes(soap_bytes: bytes) -> bytes | None:
    """The verbatim bytes inside soap:Body when the message was framed by :func:`wrap_soap`."""
    if soap_bytes.startswith(_PREFIX) and soap_bytes.endswith(_SUFFIX):
        return soap_bytes[len(_PREFIX):-len(_SUFFIX)]
    return None


def build_fault(fault_code: str, message: str, *, client: bool = True) -> bytes:
    """A SOAP 1.1 Fault carrying the hub's stable error code in ``detail/lt:MaLoi``."""
    soap = "{%s}" % SOAP11_NS
    env = etree.Element(soap + "Envelope", nsmap={"soap": SOAP11_NS})
    body = etree.SubElement(env, soap + "Body")
    fault = etree.SubElement(body, soap + "Fault")
    etree.SubElement(fault, "faultcode").text = "soap:Client" if client else "soap:Server"
    etree.SubElement(fault, "faultstring").text = message
    detail = etree.SubElement(fault, "detail")
    etree.SubElement(detail, "{%s}MaLoi" % FAULT_NS, nsmap={"lt": FAULT_NS}).text = fault_code
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def fault_error(fault: etree._Element, *, partner: str, http_status: int | None = None) -> HubError:
    """Turn a parsed soap:Fault into the typed error the caller must react to."""
    faultstring = (fault.findtext("faultstring") or "").strip()
    faultcode = (fault.findtext("faultcode") or "").strip()
    code = (fault.findtext(".//{%s}MaLoi" % FAULT_NS) or "").strip() or faultcode or "FAULT"
    message = f"{partner} answered with SOAP Fault {code}: {faultstring}"
    if code in RETRYABLE_FAULT_CODES or http_status in (429, 502, 503, 504):
        if http_status in (502, 503, 504) or code == "SERVICE_UNAVAILABLE":
            return ServiceUnavailable(message, status=http_status)
        return TransientFault(message, code="TRANSIENT_FAULT")
    return PartnerFault(message, fault_code=code)


def unwrap_soap(data: bytes, *, partner: str = "partner", http_status: int | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """The element inside soap:Body, parsed safely; a soap:Fault is raised as its typed error."""
    root = parse_xml(data, max_bytes=max_bytes, what=f"SOAP message from {partner}")
    if root.tag != "{%s}Envelope" % SOAP11_NS:
        raise XmlMalformed(f"message from {partner} is not a SOAP 1.1 Envelope (root is {root.tag})")
    body = root.find("{%s}Body" % SOAP11_NS)
    if body is None or len(body) != 1:
        raise XmlMalformed(f"SOAP message from {partner} must have exactly one element in soap:Body")
    child = body[0]
    if child.tag == "{%s}Fault" % SOAP11_NS:
        raise fault_error(child, partner=partner, http_status=http_status)
    return child
