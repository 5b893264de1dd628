"""Accepting a message from outside: the same checks on both sides of every exchange.

The connectors run these on every reply, the sandbox on every request. In order: the bytes are
parsed by the hardened parser (:mod:`.xmlsafe`), the signature is verified with pinned algorithms
and trust anchors (only the verified subtree is used from then on), the envelope is checked
against the service's XSD, every edXML element must carry the ``edXML:`` prefix, and the
addressing must be the one expected. Each failure is a specific :class:`~.errors.FatalError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from ..connectors.services import EDXML_NS
from .envelope import Envelope, parse_envelope
from .errors import EnvelopeError, WrongRecipient, WrongSender
from .validation import validate

if TYPE_CHECKING:  # pragma: no cover
    from ..signing.verifier import VerifiedDocument, Verifier


@dataclass(frozen=True)
class Accepted:
    verified: VerifiedDocument
    envelope: Envelope


def check_prefixes(root: etree._Element) -> None:
    """Cross-province gateways reject unprefixed edXML elements; so does the hub."""
    for el in root.iter("{%s}*" % EDXML_NS):
        if el.prefix != "edXML":
            shown = f"'{el.prefix}:'" if el.prefix else "no prefix"
            raise EnvelopeError(f"element {etree.QName(el).localname} uses {shown}; edXML elements must use 'edXML:'")


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
    verified = verifier.verify(data)
    root = verified.root
    validate(root, service_name, what=what)
    check_prefixes(root)
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
