"""Build and read the hub's message envelope, modelled on edXML (QCVN 102:2016/BTTTT).

Every request and reply the hub exchanges is one ``edXML:edXMLEnvelope``: a MessageHeader saying
who sends to whom, which operation (``Subject``) and which message (``DocumentId``), a trace of the
hops, and the business payload in ``edXMLBody/Payload``. The envelope is signed as a whole
(enveloped XML-DSig appended as the last child), so the header cannot be re-addressed without
breaking the signature.

This is a profile *modelled on* edXML, not a certified QCVN 102 implementation: see
``schemas/edxml_envelope.xsd`` for exactly what is declared.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from lxml import etree

from ..connectors.services import EDXML_NS
from .errors import EnvelopeError

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NSMAP = {"edXML": EDXML_NS}
_E = "{%s}" % EDXML_NS


def q(name: str) -> str:
    """Clark name of an edXML element."""
    return _E + name


@dataclass(frozen=True)
class Party:
    """An agency on the axis: its code (Decision 20/2020/QĐ-TTg shape) and its name."""

    code: str
    name: str


@dataclass(frozen=True)
class Envelope:
    """What the hub needs from a parsed envelope; ``payload`` is the business element."""

    document_id: str
    subject: str
    sender: Party
    recipients: tuple[Party, ...]
    response_for: str | None
    payload: etree._Element
    sent_at: datetime  # UTC, from the first TraceHeader

    @property
    def recipient_codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.recipients)


def new_document_id() -> str:
    """A fresh message id for messages that are not derived from stored events."""
    return uuid.uuid4().hex


def edxml_date(moment: datetime) -> str:
    return moment.astimezone(VN_TZ).strftime("%Y/%m/%d")


def edxml_datetime(moment: datetime) -> str:
    return moment.astimezone(VN_TZ).strftime("%Y/%m/%d %H:%M:%S")


def parse_edxml_datetime(text: str) -> datetime:
    """``yyyy/MM/dd HH:mm:ss`` in Vietnam time → aware UTC datetime."""
    try:
        local = datetime.strptime(text.strip(), "%Y/%m/%d %H:%M:%S")
    except ValueError:
        raise EnvelopeError(f"TraceHeader Timestamp {text!r} is not yyyy/MM/dd HH:mm:ss") from None
    return local.replace(tzinfo=VN_TZ).astimezone(UTC)


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _E + name)
    if text is not None:
        el.text = text
    return el


def _organization(parent: etree._Element, name: str, party: Party) -> None:
    org = _sub(parent, name)
    _sub(org, "OrganId", party.code)
    _sub(org, "OrganName", party.name)


def build_envelope(
    *,
    sender: Party,
    recipients: list[Party] | tuple[Party, ...],
    subject: str,
    payload: etree._Element,
    document_id: str | None = None,
    response_for: str | None = None,
    response_for_agency: str | None = None,
    business_doc_type: int | None = None,
    now: datetime | None = None,
) -> etree._Element:
    """The unsigned envelope carrying ``payload`` (the element is moved into it, not copied).

    ``response_for`` is the DocumentId of the request a reply answers; the hub checks it on every
    reply so that a reply can never be matched to the wrong request.
    """
    if not recipients:
        raise EnvelopeError("an envelope needs at least one recipient (To)")
    moment = now or datetime.now(UTC)
    root = etree.Element(_E + "edXMLEnvelope", nsmap=NSMAP)
    header = _sub(root, "edXMLHeader")
    mh = _sub(header, "MessageHeader")
    _organization(mh, "From", sender)
    for r in recipients:
        _organization(mh, "To", r)
    _sub(mh, "DocumentId", document_id or new_document_id())
    prom = _sub(mh, "PromulgationInfo")
    _sub(prom, "PromulgationDate", edxml_date(moment))
    _sub(mh, "Subject", subject)
    if response_for:
        rf = _sub(mh, "ResponseFor")
        _sub(rf, "OrganId", response_for_agency or recipients[0].code)
        _sub(rf, "DocumentId", response_for)
    trace_list = _sub(header, "TraceHeaderList")
    trace = _sub(trace_list, "TraceHeader")
    _sub(trace, "OrganId", sender.code)
    _sub(trace, "Timestamp", edxml_datetime(moment))
    if business_doc_type is not None:
        bus = _sub(trace_list, "Bussiness")
        _sub(bus, "BussinessDocType", str(business_doc_type))
    body = _sub(root, "edXMLBody")
    _sub(body, "Payload").append(payload)
    return root


def _text(el: etree._Element | None, where: str) -> str:
    if el is None or not (el.text or "").strip():
        raise EnvelopeError(f"envelope has no {where}")
    return el.text.strip()


def _party(el: etree._Element, where: str) -> Party:
    return Party(code=_text(el.find(q("OrganId")), f"{where}/OrganId"),
                 name=(el.findtext(q("OrganName")) or "").strip())


def parse_envelope(root: etree._Element) -> Envelope:
    """Read the header fields and the payload of a (verified, schema-valid) envelope."""
    if root.tag != q("edXMLEnvelope"):
        raise EnvelopeError(f"expected edXML:edXMLEnvelope, found {root.tag}")
    mh = root.find(f"{q('edXMLHeader')}/{q('MessageHeader')}")
    if mh is None:
        raise EnvelopeError("envelope has no edXMLHeader/MessageHeader")
    sender_el = mh.find(q("From"))
    if sender_el is None:
        raise EnvelopeError("envelope has no MessageHeader/From")
    recipients = tuple(_party(el, "To") for el in mh.iterfind(q("To")))
    if not recipients:
        raise EnvelopeError("envelope has no MessageHeader/To")
    rf = mh.find(q("ResponseFor"))
    payload_holder = root.find(f"{q('edXMLBody')}/{q('Payload')}")
    if payload_holder is None or len(payload_holder) != 1:
        raise EnvelopeError("envelope must carry exactly one element in edXMLBody/Payload")
    stamp = root.findtext(f"{q('edXMLHeader')}/{q('TraceHeaderList')}/{q('TraceHeader')}/{q('Timestamp')}")
    return Envelope(
        document_id=_text(mh.find(q("DocumentId")), "MessageHeader/DocumentId"),
        subject=_text(mh.find(q("Subject")), "MessageHeader/Subject"),
        sender=_party(sender_el, "From"),
        recipients=recipients,
        response_for=(rf.findtext(q("DocumentId")) or "").strip() or None if rf is not None else None,
        payload=payload_holder[0],
        sent_at=parse_edxml_datetime(stamp) if stamp else datetime.now(UTC),
    )


def header_fields(root: etree._Element) -> dict[str, str | None]:
    """Best-effort header read for the audit trail: never raises, even on a broken envelope."""
    try:
        mh = root.find(f"{q('edXMLHeader')}/{q('MessageHeader')}")
        if mh is None:
            return {}
        return {
            "document_id": mh.findtext(q("DocumentId")),
            "subject": mh.findtext(q("Subject")),
            "from_agency": mh.findtext(f"{q('From')}/{q('OrganId')}"),
            "to_agency": mh.findtext(f"{q('To')}/{q('OrganId')}"),
            "response_for": mh.findtext(f"{q('ResponseFor')}/{q('DocumentId')}"),
        }
    except Exception:  # noqa: BLE001 - audit metadata must not mask the real error
        return {}
