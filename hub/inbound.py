"""Accepting a message from outside: the same checks on both sides of every exchange.

The connectors run these on every reply, the sandbox on every request. In order: the bytes are
parsed by the hardened parser (:mod:`.xmlsafe`), the signature is verified with pinned algorithms
and trust anchors (only the verified subtree is used from then on), the document must have the
structure gateways read (one ``edXMLEnvelope`` first under the ``edXML`` root; the hub's earlier
bare-envelope shape is refused live, though the audit ledger still reads it), it is checked
against the service's XSD, every element of the envelope must carry the ``edXML:`` prefix, the
manifest and the attachments must list the same content, and the addressing must be the one
expected. Each failure is a specific :class:`~.errors.FatalError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from ..connectors.services import EDXML_NS
from .envelope import LEGACY, XLINK_NS, Envelope, envelope_of, parse_envelope, q
from .errors import AttachmentMismatch, EnvelopeError, LegacyEnvelope, WrongRecipient, WrongSender
from .validation import validate
from .xmlsafe import parse_xml

if TYPE_CHECKING:  # pragma: no cover
    from ..signing.verifier import VerifiedDocument, Verifier


@dataclass(frozen=True)
class Accepted:
    verified: VerifiedDocument
    envelope: Envelope


def check_prefixes(root: etree._Element) -> None:
    """Cross-province gateways reject unprefixed elements in the envelope; so does the hub.

    The ``edXML`` root and ``AttachmentEncoded`` are written in the default namespace, without a
    prefix, as the national SDK writes them; everything inside ``edXMLEnvelope`` has ``edXML:``."""
    envelope = root if root.tag == q("edXMLEnvelope") else root.find(q("edXMLEnvelope"))
    for el in (envelope if envelope is not None else root).iter("{%s}*" % EDXML_NS):
        if el.prefix != "edXML":
            shown = f"'{el.prefix}:'" if el.prefix else "no prefix"
            raise EnvelopeError(f"element {etree.QName(el).localname} uses {shown}; edXML elements must use 'edXML:'")


def check_attachments(root: etree._Element) -> None:
    """Every manifest reference names an attachment of the document, by ``cid:`` and ContentId,
    and every attachment is in the manifest: nothing rides along unlisted, nothing listed is missing."""
    listed: dict[str, str] = {}
    for ref in root.iterfind(f"{q('edXMLEnvelope')}/{q('edXMLBody')}/{q('edXMLManifest')}/{q('Reference')}"):
        content_id = (ref.findtext(q("ContentId")) or "").strip()
        href = ref.get(f"{{{XLINK_NS}}}href") or ""
        if href != f"cid:{content_id}":
            raise AttachmentMismatch(f"manifest reference {href!r} does not name its ContentId {content_id!r}")
        if content_id in listed:
            raise AttachmentMismatch(f"manifest lists ContentId {content_id!r} twice")
        listed[content_id] = href
    attached = [(a.findtext(q("ContentId")) or "").strip()
                for a in root.iterfind(f"{q('AttachmentEncoded')}/{q('Attachment')}")]
    if len(set(attached)) != len(attached):
        raise AttachmentMismatch("two attachments carry the same ContentId")
    unlisted, missing = sorted(set(attached) - set(listed)), sorted(set(listed) - set(attached))
    if unlisted or missing:
        raise AttachmentMismatch("manifest and attachments differ: " + "; ".join(
            part for part in (f"not in the manifest: {', '.join(unlisted)}" if unlisted else "",
                              f"listed but not attached: {', '.join(missing)}" if missing else "") if part))


def open_envelope(
    data: bytes | etree._Element,
    *,
    service_name: str,
    verifier: Verifier,
    expected_recipient: str,
    expected_sender: str | None = None,
    what: str = "message",
) -> Accepted:
    """Verify, validate and address-check one signed envelope; return only verified content."""
    # The shape first, as a gateway reads it (root -> envelope), so a misplaced or doubled envelope
    # is named as such rather than as a signature the verifier cannot find; nothing is used from
    # the unverified tree but its structure.
    received = data if isinstance(data, etree._Element) else parse_xml(bytes(data), what="signed document")
    if envelope_of(received)[1] == LEGACY:
        raise LegacyEnvelope(f"{what} is a bare edXML:edXMLEnvelope (the hub's earlier shape); the axis reads an "
                             "edXML document whose root holds the envelope")
    verified = verifier.verify(received)
    root = verified.root
    validate(root, service_name, what=what)
    check_prefixes(root)
    check_attachments(root)
    env = parse_envelope(root)
    if expected_sender is not None:
        if verified.signer_agency != expected_sender:
            raise WrongSender(f"{what} is signed by agency {verified.signer_agency}, expected {expected_sender}")
        if env.sender.code != expected_sender:
            raise WrongSender(f"{what} comes from {env.sender.code}, expected {expected_sender}")
    elif env.sender.code != verified.signer_agency:
        raise WrongSender(f"{what} claims to come from {env.sender.code} but is signed by agency "
                          f"{verified.signer_agency}")
    if expected_recipient not in env.recipient_codes:
        raise WrongRecipient(f"{what} is addressed to {', '.join(env.recipient_codes)}, not to {expected_recipient}")
    return Accepted(verified=verified, envelope=env)
