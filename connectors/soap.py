"""The SOAP transport: the first implementation of the partner port (:mod:`.transport`).

:meth:`SoapConnector.handle` takes a :class:`~.transport.PartnerCall` (operation and fields), writes
the fields as the service's payload element and makes the exchange below; the verified reply's
payload comes back as the answer's fields (:class:`~.transport.PartnerAnswer`). Signing, the schema
check, the audit and the classification of failures into the hub's error tree all happen on this
side of the port, so a partner module never sees XML. One call = build the envelope → check it against the service's XSD → sign it → frame it in SOAP →
record it in the audit trail → POST it → record the reply → classify the answer → verify the
reply's signature → check the reply's schema and addressing. In that order, synchronously:
nothing reaches the wire unsigned or unaudited, and nothing is handed back unverified.

zeep loads the service's WSDL from ``schemas/`` (never from the network) and resolves each
operation's SOAPAction and default address. The HTTP exchange itself goes through
:class:`~.http.HttpClient` (TLS verification on, an optional client certificate): it ends at the
``operation_timeout`` deadline whatever the partner's pace, and reads the reply with the
operation's size limit, abandoning it as soon as it passes (what arrived, bounded, is audited with
the error). The SOAP body is assembled by :mod:`.soapframe` from the exact signed bytes, so that
what was signed is, byte for byte, what is sent and what is audited.

POST is not retried here (urllib3 does not retry it either): the caller owns the retry policy and
reacts to the error's type (``RetryableError`` vs ``FatalError``, see :mod:`lienthong.hub.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import requests
import zeep
from lxml import etree

from ..hub.audit import AuditTrail
from ..hub.envelope import NEW, UPDATE, Envelope, Party, build_envelope, q
from ..hub.errors import (
    ConfigurationError,
    EnvelopeError,
    FatalError,
    ServiceUnavailable,
    UnexpectedResponse,
    XmlMalformed,
)
from ..hub.inbound import open_envelope
from ..hub.settings import PartnerEndpoint, Settings
from ..hub.validation import validate
from ..signing.cli import signer_for, trust_store_for
from ..signing.signer import Signer
from ..signing.verifier import VerifiedDocument, Verifier
from .exchange import audited_exchange
from .http import HttpLimits, HttpReply, PartnerHttp
from .payload import element, to_dict
from .port import PartnerAnswer, PartnerCall
from .services import ServiceSpec, service
from .soapframe import unwrap_soap, wrap_soap

#: what a SOAP 1.1 reply may be labelled (servers use all three)
XML_CONTENT_TYPES = ("text/xml", "application/xml", "application/soap+xml")
#: where build_envelope puts the request's DocumentId
_DOCUMENT_ID = f"{q('edXMLEnvelope')}/{q('edXMLHeader')}/{q('MessageHeader')}/{q('DocumentId')}"


@dataclass(frozen=True)
class OperationBinding:
    name: str
    soap_action: str


@dataclass(frozen=True)
class WsdlInfo:
    default_address: str
    operations: dict[str, OperationBinding]


@cache
def wsdl_info(service_name: str) -> WsdlInfo:
    """Parse a service's local WSDL once per process with zeep (no network access)."""
    spec = service(service_name)
    settings = zeep.Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True,
                             forbid_external=True)
    try:
        client = zeep.Client(wsdl=str(spec.wsdl_path), settings=settings)
    except Exception as exc:  # zeep raises a variety of types for a broken WSDL
        raise ConfigurationError(f"cannot load WSDL {spec.wsdl_path}: {exc}") from None
    wsdl_service = next(iter(client.wsdl.services.values()))
    port = next(iter(wsdl_service.ports.values()))
    ops = {}
    for name, op in port.binding._operations.items():
        ops[name] = OperationBinding(name=name, soap_action=op.soapaction or name)
    missing = set(spec.operations) - set(ops)
    if missing:
        raise ConfigurationError(f"{spec.wsdl_file} lacks operations {sorted(missing)}")
    return WsdlInfo(default_address=port.binding_options["address"], operations=ops)


@dataclass(frozen=True)
class Reply:
    """A verified answer: the parsed envelope of the reply and what it took to get it."""

    operation: str
    request_document_id: str
    envelope: Envelope
    signer: VerifiedDocument
    latency_ms: float
    audit_seqs: tuple[int, int]
    request_bytes: bytes
    response_bytes: bytes

    @property
    def payload(self) -> etree._Element:
        return self.envelope.payload


class SoapConnector:
    """Talks to one national service over SOAP/edXML (a :class:`~.transport.PartnerTransport`).
    Thread-safe; keep one per service per process."""

    def __init__(
        self,
        settings: Settings,
        service_name: str,
        *,
        audit: AuditTrail,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        session: requests.Session | None = None,
    ):
        self.settings = settings
        self.spec: ServiceSpec = service(service_name)
        self.endpoint: PartnerEndpoint = settings.partner(service_name)
        self.wsdl = wsdl_info(service_name)
        self.address = self.endpoint.url or self.wsdl.default_address
        self.audit = audit
        self.signer = signer or signer_for(settings)
        self.verifier = verifier or Verifier(trust_store_for(settings))
        self.me = Party(settings.agency_code, settings.agency_name)
        self.partner = Party(self.endpoint.agency_code, self.endpoint.agency_name)
        self.http = PartnerHttp(settings, self.spec, self.endpoint, self.address, session)
        #: SignerInfo/FullName of the messages: who signs them (the signing certificate's CN)
        self.signer_name = _common_name(self.signer.identity.certificate) or self.me.name

    # --- transport --------------------------------------------------------------------------
    def limits(self, operation: str) -> HttpLimits:
        """The deadline and reply size limit of one exchange of ``operation``."""
        return self.http.limits(operation)

    def _post(self, action: str, message: bytes, limits: HttpLimits) -> HttpReply:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
        return self.http.client().post(self.address, message, headers, limits, content_types=XML_CONTENT_TYPES)

    # --- the partner port --------------------------------------------------------------------
    def handle(self, call: PartnerCall) -> PartnerAnswer:
        """One operation as a partner module asks for it: fields in, the verified answer's fields out."""
        payload = element(self.spec.namespace, call.operation, call.params, prefix=self.spec.prefix)
        reply = self.call(call.operation, payload, document_id=call.document_id,
                          correlation_id=call.correlation_id, attempt=call.attempt,
                          business_doc_type=None if call.updating is None else UPDATE if call.updating else NEW)
        return PartnerAnswer(
            operation=call.operation, result=answer_fields(self.spec, call.operation, reply.payload),
            request_document_id=reply.request_document_id, reply_document_id=reply.envelope.document_id,
            latency_ms=reply.latency_ms, audit_seqs=reply.audit_seqs, request_bytes=reply.request_bytes,
            response_bytes=reply.response_bytes, signer_subject=reply.signer.signer_subject,
            signer_agency=reply.signer.signer_agency)

    # --- one exchange -----------------------------------------------------------------------
    def call(
        self,
        operation: str,
        payload: etree._Element,
        *,
        document_id: str | None = None,
        correlation_id: str | None = None,
        attempt: int = 1,
        business_doc_type: int | None = None,
    ) -> Reply:
        binding = self.wsdl.operations.get(operation)
        if binding is None or operation not in self.spec.operations:
            raise ConfigurationError(f"{self.spec.name} has no operation {operation!r}")
        envelope = build_envelope(sender=self.me, recipients=[self.partner], subject=operation,
                                  payload=payload, document_id=document_id, business_doc_type=business_doc_type,
                                  signer_name=self.signer_name, content=f"{self.spec.title}: {operation}")
        validate(envelope, self.spec.name, what=f"{operation} request")
        doc_id = _document_id(envelope)
        signed = self.signer.sign(envelope)
        request_bytes = wrap_soap(signed)
        common = dict(partner=self.spec.name, operation=operation, document_id=doc_id,
                      correlation_id=correlation_id or doc_id, attempt=attempt)
        limits = self.limits(operation)
        done = audited_exchange(
            self.audit, common=common, sender=self.me.code, recipient=self.partner.code, request=request_bytes,
            send=lambda: self._post(binding.soap_action, request_bytes, limits),
            accept=lambda response: self._accept(operation, doc_id, response, limits), answer_id=_reply_id)
        verified, envelope_in = done.accepted
        return Reply(operation=operation, request_document_id=doc_id, envelope=envelope_in, signer=verified,
                     latency_ms=done.latency_ms, audit_seqs=done.audit_seqs, request_bytes=request_bytes,
                     response_bytes=done.response_bytes)

    def _accept(self, operation: str, request_id: str, response: HttpReply,
                limits: HttpLimits) -> tuple[VerifiedDocument, Envelope]:
        """Classify the HTTP answer, then verify, validate and match the reply to the request."""
        status = response.status
        content = response.content
        is_xml = content.lstrip()[:1] == b"<"
        if status in (502, 503, 504, 429) and not is_xml:
            raise ServiceUnavailable(f"{self.spec.name} answered HTTP {status}", status=status)
        if status >= 400 and not is_xml:
            if status >= 500:
                raise ServiceUnavailable(f"{self.spec.name} answered HTTP {status}", status=status)
            raise ConfigurationError(f"{self.spec.name} answered HTTP {status} at {self.address}: check the endpoint")
        # One hardened parse of the whole SOAP message: its size, depth, DTD, entity and PI checks
        # cover the envelope inside it. The verifier is handed that subtree, not the envelope's
        # bytes to parse again: signxml serialises and re-parses the element it verifies anyway,
        # so a second hardened parse of the same bytes here would be pure repetition.
        child = unwrap_soap(content, partner=self.spec.name, http_status=status,
                            max_bytes=limits.max_bytes)  # raises faults
        if status != 200:
            raise FatalError(f"{self.spec.name} answered HTTP {status} without a SOAP Fault")
        if not isinstance(child.tag, str) or (child.tail is not None and child.tail.strip()):
            # what the inner bytes would have failed to parse as: a lone comment, or text after the envelope
            raise XmlMalformed(f"{self.spec.name} reply to {operation}: soap:Body must hold the signed envelope "
                               "and nothing else")
        accepted = open_envelope(child,
                                 service_name=self.spec.name, verifier=self.verifier,
                                 expected_recipient=self.me.code, expected_sender=self.partner.code,
                                 what=f"reply to {operation}")
        env = accepted.envelope
        if env.response_for != request_id:
            raise UnexpectedResponse(f"reply answers message {env.response_for}, not {request_id}")
        if env.subject != operation:
            raise UnexpectedResponse(f"reply is for operation {env.subject}, not {operation}")
        return accepted.verified, env


def answer_fields(spec: ServiceSpec, operation: str, payload: etree._Element) -> dict:
    """A reply payload (``{operation}Result``) as the answer's fields: local names, leaf text,
    sub-records as dicts, the operation's repeated fields as lists however many came."""
    return to_dict(payload, lists=spec.repeated_in(operation))


def _document_id(envelope: etree._Element) -> str:
    """The DocumentId of an envelope ``build_envelope`` just made (and the XSD accepted)."""
    text = (envelope.findtext(_DOCUMENT_ID) or "").strip()
    if not text:  # what parse_envelope would say; the XSD has normally refused it already
        raise EnvelopeError("envelope has no MessageHeader/DocumentId")
    return text


def _common_name(certificate) -> str | None:
    from cryptography.x509.oid import NameOID

    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _reply_id(raw: bytes) -> str | None:
    """The reply's DocumentId for the audit index, read without trusting or fully parsing it
    (a reply's ResponseFor names the request's DocumentId first: the reply's own comes after it)."""
    after = raw.find(b"</edXML:ResponseFor>")
    start = raw.find(b"<edXML:DocumentId>", max(after, 0))
    if start < 0:
        return None
    end = raw.find(b"</edXML:DocumentId>", start)
    if end < 0 or end - start > 200:
        return None
    return raw[start + len(b"<edXML:DocumentId>"):end].decode("utf-8", "replace")
