"""Build and read the hub's message envelope: edXML (QCVN 102:2016/BTTTT) as the national SDK emits it.

Every request and reply the hub exchanges is one ``edXML`` document, the structure gateways on the
Trục liên thông read (root → envelope → header → parts)::

    edXML                               root, default namespace, no prefix
    └ edXML:edXMLEnvelope
      ├ edXML:edXMLHeader
      │ ├ edXML:MessageHeader           From, To+, Code, PromulgationInfo, DocumentType, Subject,
      │ │                               Content, SignerInfo, ToPlaces, OtherInfo, ResponseFor
      │ │                               (replies), SteeringType, DocumentId — the SDK's order
      │ ├ edXML:TraceHeaderList         id, version, mustUnderstand, actor; TraceHeader per hop,
      │ │                               Bussiness (BussinessDocType 0 new / 2 update, Paper 0)
      │ └ ds:Signature                  enveloped, over the whole document (added by the signer)
      └ edXML:edXMLBody
        ├ edXML:edXMLManifest           what is attached (nothing, for a data message)
        └ <the business payload>        one element of the service namespace, its own XSD applies

What each part holds for a data message (as opposed to an official letter) is written in
``schemas/README.md``; the codes (document type, priority) are tables in ``mappings/tables/``.

Messages the hub exchanged before this shape (a bare ``edXML:edXMLEnvelope`` root with the payload
in ``edXMLBody/Payload`` and the signature as the root's last child) are still **read**
(:func:`parse_envelope` reports ``shape == "legacy"``) so the audit ledger's years of messages stay
verifiable; only the receivers decide whether they accept them (the live exchange does not).

It is not a certified QCVN 102 implementation: ``schemas/edxml_envelope.xsd`` declares exactly what
is used.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

from lxml import etree

from ..connectors.services import EDXML_NS
from .errors import EnvelopeError, EnvelopeStructure

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NSMAP = {"edXML": EDXML_NS}
_E = "{%s}" % EDXML_NS
XLINK_NS = "http://www.w3.org/1999/xlink"
#: the SOAP actor of the trace header list, as the SDK writes it
TRACE_ACTOR = "http://schemas.xmlsoap.org/soap/actor/next"
#: the two shapes a stored message can have
AXIS, LEGACY = "axis", "legacy"
#: BussinessDocType: 0 new, 1 revoke, 2 update, 3 replace
NEW, REVOKE, UPDATE, REPLACE = 0, 1, 2, 3


def q(name: str) -> str:
    """Clark name of an edXML element."""
    return _E + name


ROOT = q("edXML")
ENVELOPE = q("edXMLEnvelope")
HEADER = q("edXMLHeader")
BODY = q("edXMLBody")
MESSAGE_HEADER = q("MessageHeader")


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
    #: ``axis`` (the SDK's structure) or ``legacy`` (the hub's earlier one, read for the ledger)
    shape: str = AXIS
    business_doc_type: int | None = None
    #: PromulgationInfo/PromulgationDate as written (yyyy/MM/dd): a reply's ResponseFor repeats it
    promulgation_date: str | None = None

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


@dataclass(frozen=True)
class DataMessageProfile:
    """The header values every data message carries (``schemas/README.md``, ``mappings/tables``)."""

    document_type: int
    document_type_name: str
    priority: int


@cache
def data_message_profile() -> DataMessageProfile:
    from ..mappings.tables import load_table

    types = load_table("edxml_document_type")
    (code,) = [c for c, e in types.entries.items() if e.get("data_message")]
    priorities = load_table("edxml_priority")
    (normal,) = [c for c, e in priorities.entries.items() if e.get("default")]
    return DataMessageProfile(document_type=code, document_type_name=types.entries[code]["label"], priority=normal)


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _E + name)
    if text is not None:
        el.text = text
    return el


def _organization(parent: etree._Element, name: str, party: Party) -> None:
    org = _sub(parent, name)
    _sub(org, "OrganId", party.code)
    # a data message is the sending agency's own: it is the organisation in charge of it
    _sub(org, "OrganizationInCharge", party.name)
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
    response_for_date: str | None = None,
    business_doc_type: int | None = None,
    signer_name: str | None = None,
    content: str | None = None,
    now: datetime | None = None,
) -> etree._Element:
    """The unsigned ``edXML`` document carrying ``payload`` (the element is moved into it, not copied).

    ``response_for`` is the DocumentId of the request a reply answers (with the request's agency
    and promulgation date); the hub checks it on every reply so that a reply can never be matched
    to the wrong request. ``business_doc_type``: :data:`NEW` for a first sync, :data:`UPDATE` for
    a change of something the recipient has (default NEW).
    """
    if not recipients:
        raise EnvelopeError("an envelope needs at least one recipient (To)")
    moment = now or datetime.now(UTC)
    doc_id = document_id or new_document_id()
    profile = data_message_profile()
    root = etree.Element(ROOT, nsmap={None: EDXML_NS})
    envelope = etree.SubElement(root, ENVELOPE, nsmap=NSMAP)
    header = _sub(envelope, "edXMLHeader")
    mh = _sub(header, "MessageHeader")
    _organization(mh, "From", sender)
    for r in recipients:
        _organization(mh, "To", r)
    code = _sub(mh, "Code")
    _sub(code, "CodeNumber", doc_id[:12])
    _sub(code, "CodeNotation", subject)
    prom = _sub(mh, "PromulgationInfo")
    _sub(prom, "Place", sender.name)
    _sub(prom, "PromulgationDate", edxml_date(moment))
    kind = _sub(mh, "DocumentType")
    _sub(kind, "Type", str(profile.document_type))
    _sub(kind, "TypeName", profile.document_type_name)
    _sub(kind, "TypeDetail", subject)
    _sub(mh, "Subject", subject)
    _sub(mh, "Content", content or subject)
    if signer_name:
        _sub(_sub(mh, "SignerInfo"), "FullName", signer_name)
    places = _sub(mh, "ToPlaces")
    for r in recipients:
        _sub(places, "Place", r.name)
    other = _sub(mh, "OtherInfo")
    _sub(other, "Priority", str(profile.priority))
    _sub(other, "PromulgationAmount", "1")
    _sub(other, "PageAmount", "0")
    if response_for:
        rf = _sub(mh, "ResponseFor")
        _sub(rf, "OrganId", response_for_agency or recipients[0].code)
        _sub(rf, "Code", response_for[:12])
        if response_for_date:
            _sub(rf, "PromulgationDate", response_for_date)
        _sub(rf, "DocumentId", response_for)
    _sub(mh, "SteeringType", "0")
    _sub(mh, "DocumentId", doc_id)
    trace_list = _sub(header, "TraceHeaderList")
    trace_list.set("id", f"TH.{doc_id}"[:128])
    trace_list.set("version", "1.0")
    trace_list.set("mustUnderstand", "1")
    trace_list.set("actor", TRACE_ACTOR)
    trace = _sub(trace_list, "TraceHeader")
    _sub(trace, "OrganId", sender.code)
    _sub(trace, "Timestamp", edxml_datetime(moment))
    bus = _sub(trace_list, "Bussiness")
    _sub(bus, "BussinessDocType", str(NEW if business_doc_type is None else business_doc_type))
    _sub(bus, "Paper", "0")
    body = _sub(envelope, "edXMLBody")
    _sub(body, "edXMLManifest").set("version", "1.0")
    body.append(payload)
    return root


def _text(el: etree._Element | None, where: str) -> str:
    if el is None or not (el.text or "").strip():
        raise EnvelopeError(f"envelope has no {where}")
    return el.text.strip()


def _party(el: etree._Element, where: str) -> Party:
    return Party(code=_text(el.find(q("OrganId")), f"{where}/OrganId"),
                 name=(el.findtext(q("OrganName")) or "").strip())


def envelope_of(root: etree._Element) -> tuple[etree._Element, str]:
    """The ``edXMLEnvelope`` of a document and the document's shape, or EnvelopeError saying why not.

    A gateway looks for exactly one envelope as the first child of the ``edXML`` root; so does the
    hub. A bare ``edXMLEnvelope`` root is the hub's legacy shape."""
    if root.tag == ENVELOPE:
        return root, LEGACY
    if root.tag != ROOT:
        raise EnvelopeStructure(f"expected an edXML document (root edXML), found {root.tag}")
    envelopes = [child for child in root if child.tag == ENVELOPE]
    if len(envelopes) != 1:
        nested = sum(1 for _ in root.iter(ENVELOPE))
        raise EnvelopeStructure(f"an edXML document holds exactly one edXML:edXMLEnvelope under its root; this "
                                f"one holds {len(envelopes)} there" + (f" ({nested} in all)" if nested != len(envelopes) else ""))
    first = next((child for child in root if isinstance(child.tag, str)), None)
    if first is not envelopes[0]:
        raise EnvelopeStructure("edXML:edXMLEnvelope must be the first element of the edXML root")
    return envelopes[0], AXIS


def payload_of(envelope: etree._Element, shape: str) -> etree._Element:
    body = envelope.find(BODY)
    if body is None:
        raise EnvelopeError("envelope has no edXMLBody")
    if shape == LEGACY:
        holder = body.find(q("Payload"))
        elements = [c for c in holder if isinstance(c.tag, str)] if holder is not None else []
        where = "edXMLBody/Payload"
    else:
        elements = [c for c in body if isinstance(c.tag, str) and not c.tag.startswith(_E)]
        where = "edXMLBody"
    if len(elements) != 1:
        raise EnvelopeError(f"envelope must carry exactly one business element in {where}, found {len(elements)}")
    return elements[0]


def parse_envelope(root: etree._Element) -> Envelope:
    """Read the header fields and the payload of a (verified, schema-valid) document, either shape."""
    envelope, shape = envelope_of(root)
    mh = envelope.find(f"{HEADER}/{MESSAGE_HEADER}")
    if mh is None:
        raise EnvelopeError("envelope has no edXMLHeader/MessageHeader")
    sender_el = mh.find(q("From"))
    if sender_el is None:
        raise EnvelopeError("envelope has no MessageHeader/From")
    recipients = tuple(_party(el, "To") for el in mh.iterfind(q("To")))
    if not recipients:
        raise EnvelopeError("envelope has no MessageHeader/To")
    rf = mh.find(q("ResponseFor"))
    trace_list = envelope.find(f"{HEADER}/{q('TraceHeaderList')}")
    stamp = trace_list.findtext(f"{q('TraceHeader')}/{q('Timestamp')}") if trace_list is not None else None
    doc_type = trace_list.findtext(f"{q('Bussiness')}/{q('BussinessDocType')}") if trace_list is not None else None
    return Envelope(
        document_id=_text(mh.find(q("DocumentId")), "MessageHeader/DocumentId"),
        subject=_text(mh.find(q("Subject")), "MessageHeader/Subject"),
        sender=_party(sender_el, "From"),
        recipients=recipients,
        response_for=(rf.findtext(q("DocumentId")) or "").strip() or None if rf is not None else None,
        payload=payload_of(envelope, shape),
        sent_at=parse_edxml_datetime(stamp) if stamp else datetime.now(UTC),
        shape=shape,
        business_doc_type=int(doc_type) if doc_type and doc_type.strip().isdigit() else None,
        promulgation_date=(mh.findtext(f"{q('PromulgationInfo')}/{q('PromulgationDate')}") or "").strip() or None,
    )


def header_fields(root: etree._Element) -> dict[str, str | None]:
    """Best-effort header read for the audit trail: never raises, even on a broken envelope."""
    try:
        envelope = root if root.tag == ENVELOPE else root.find(ENVELOPE)
        mh = envelope.find(f"{HEADER}/{MESSAGE_HEADER}") if envelope is not None else None
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


def build_legacy_envelope(*, sender: Party, recipients: list[Party] | tuple[Party, ...], subject: str,
                          payload: etree._Element, document_id: str | None = None,
                          response_for: str | None = None, now: datetime | None = None) -> etree._Element:
    """The hub's earlier shape (a bare ``edXML:edXMLEnvelope``, payload in ``edXMLBody/Payload``).

    The hub never sends it any more. It is kept to make the messages the audit ledger holds from
    before, for the tests that prove they stay readable and for the benchmarks' baseline."""
    moment = now or datetime.now(UTC)
    root = etree.Element(ENVELOPE, nsmap=NSMAP)
    header = _sub(root, "edXMLHeader")
    mh = _sub(header, "MessageHeader")
    for name, party in (("From", sender), *(("To", r) for r in recipients)):
        org = _sub(mh, name)
        _sub(org, "OrganId", party.code)
        _sub(org, "OrganName", party.name)
    _sub(mh, "DocumentId", document_id or new_document_id())
    _sub(_sub(mh, "PromulgationInfo"), "PromulgationDate", edxml_date(moment))
    _sub(mh, "Subject", subject)
    if response_for:
        rf = _sub(mh, "ResponseFor")
        _sub(rf, "OrganId", recipients[0].code)
        _sub(rf, "DocumentId", response_for)
    trace = _sub(_sub(header, "TraceHeaderList"), "TraceHeader")
    _sub(trace, "OrganId", sender.code)
    _sub(trace, "Timestamp", edxml_datetime(moment))
    _sub(_sub(root, "edXMLBody"), "Payload").append(payload)
    return root
