"""The partner port: the one interface every partner module speaks through, whatever the wire.

A partner module (:mod:`.csdl_tthc`, :mod:`.dvc_portal`, :mod:`.reporting`) knows a national
service's operations and fields and nothing of how they travel: it hands a :class:`PartnerCall`
(the operation and its fields, as plain Python values under the national names) to a
:class:`PartnerTransport` and reads the :class:`PartnerAnswer` (the answer's fields the same way),
in the spirit of httpx's ``BaseTransport.handle_request``. The transport owns the wire:

- :class:`~.soap.SoapConnector`, the first implementation: the edXML envelope, its XSD check, the
  XML signature, SOAP framing, the bounded HTTP exchange, verification of the signed reply;
- a second one (the portal's JSON adapter) goes beside it, in its own module, and is chosen by
  configuration (:func:`.transport.transport_for`), without touching the partner modules or the flows.

What every transport promises, so the flows and the delivery engine can rely on it:

- every byte sent and received is recorded in the audit trail (``transport.audit``) before the
  answer is handed back or the error raised, under ``partner = transport.spec.name``;
- every failure is classified once, here, into the hub's error tree (:mod:`lienthong.hub.errors`):
  ``RetryableError`` (the partner may answer later) or ``FatalError`` (it will not), with the
  partner's own words; the raised error carries the evidence (``document_id``, ``request_bytes``,
  ``response_bytes``) so a dead letter keeps it;
- nothing is retried inside: the caller owns the retry policy and the breaker;
- an exchange ends by the configured deadline and reads at most the operation's reply limit;
- a ``document_id`` given again is sent again as the same message (idempotent resend).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .services import ServiceSpec

if TYPE_CHECKING:
    from ..hub.audit import AuditTrail

@dataclass(frozen=True)
class PartnerCall:
    """One operation of a national service, as the partner module means it."""

    operation: str
    #: the operation's fields by their national names, in the service's order: ``str``/``int``/
    #: ``bool``/``datetime``/``Decimal`` leaves, ``dict`` sub-records, ``list`` for repeated
    #: fields, ``None`` for a field left out
    params: Mapping[str, Any] = field(default_factory=dict)
    #: the message's id, when the caller decides it (a resend after a lost reply uses the same one)
    document_id: str | None = None
    #: what ties this exchange to others in the audit trail (an upload session, a catalogue run)
    correlation_id: str | None = None
    attempt: int = 1
    #: the call changes what the partner already holds (a dossier update) rather than giving it
    #: something new; ``None``: neither (a lookup). The SOAP/edXML transport says it in
    #: ``Bussiness/BussinessDocType`` (2 update, 0 new)
    updating: bool | None = None


@dataclass(frozen=True)
class PartnerAnswer:
    """A partner's accepted answer and what it took to get it."""

    operation: str
    #: the answer's fields by their national names: leaf values as text, sub-records as dicts,
    #: repeated fields as lists (:attr:`ServiceSpec.repeated <.services.ServiceSpec.repeated>`)
    result: dict[str, Any]
    request_document_id: str
    reply_document_id: str | None
    latency_ms: float
    #: the audit trail's entries of the request and of the answer
    audit_seqs: tuple[int, ...]
    #: the exact bytes sent and received (as audited)
    request_bytes: bytes
    response_bytes: bytes
    #: who signed the answer, when the transport verifies signed answers (SOAP/edXML)
    signer_subject: str | None = None
    signer_agency: str | None = None


@runtime_checkable
class PartnerTransport(Protocol):
    """How a partner module reaches its national service (see the module's promises)."""

    #: which national service this transport reaches
    spec: ServiceSpec
    #: where, as the audit trail and the catalogue's watermark name it (no credentials)
    address: str
    #: where every exchange is recorded
    audit: AuditTrail

    def handle(self, call: PartnerCall) -> PartnerAnswer:
        """Carry out ``call``; raise a :class:`~lienthong.hub.errors.HubError` when it fails."""
        ...


def expect_service(transport: PartnerTransport, spec: ServiceSpec, client: str) -> PartnerTransport:
    """``transport`` if it reaches ``spec``'s service; a partner client built on another one is a bug."""
    if transport.spec is not spec:
        raise ValueError(f"{client} needs a transport for {spec.name}, not {transport.spec.name}")
    return transport
