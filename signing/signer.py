"""Enveloped XML-DSig signatures for outgoing envelopes.

The profile is fixed, because the national side verifies exactly this and nothing looser:

* enveloped signature over the whole document (one ``Reference`` with ``URI=""``), so no part of
  the envelope – header, routing, payload – can be changed or moved without breaking it;
* exclusive canonicalisation (``xml-exc-c14n#``), so the digest does not depend on namespace
  declarations inherited from whatever wraps the envelope (the SOAP ``Envelope``/``Body``);
* RSA-SHA256 (or ECDSA-SHA256) and SHA-256 digests; SHA-1 is never produced;
* ``KeyInfo/X509Data`` with the signer's certificate, so the receiver can check it against its
  pinned CA without an out-of-band key exchange;
* ``ds:Signature`` where the document's profile reserves its place (:func:`signature_parent`):
  the last child of ``edXMLEnvelope/edXMLHeader`` in an ``edXML`` document (as the national SDK
  places it), the last child of the root in any other document (seals, export manifests, the
  hub's earlier envelopes).

:class:`Signer` holds already-parsed key objects (see :func:`lienthong.signing.keys.load_identity`):
nothing is parsed per message except the document itself.

The signature is built here with lxml's canonicaliser and ``cryptography`` rather than with
``signxml.XMLSigner``, which serialises and re-parses the whole document several times per call
(about 70% of its time on a 60 KB message). What is produced is the same profile, element for
element, that signxml produces (tests compare the two), and it is judged by independent
verifiers: the hub's own (signxml's ``XMLVerifier`` with a pinned ``SignatureConfiguration``) and
``xmlsec1`` (interoperability tests).
"""

from __future__ import annotations

import base64
import copy
import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lienthong.hub.errors import ConfigurationError, SignatureError
from lxml import etree
from signxml import SignatureMethod

from .keys import SigningIdentity

__all__ = ["Signer", "SIGNATURE_ALGORITHMS", "DSIG_NS", "EXC_C14N", "ENVELOPED_SIGNATURE", "SHA256_DIGEST"]

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
#: the edXML namespace (QCVN 102:2016/BTTTT); kept here too so signing needs no hub module for it
EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
#: document root → the path below it where its profile places the signature (else: the root itself)
SIGNATURE_PLACES: dict[str, tuple[str, ...]] = {
    f"{{{EDXML_NS}}}edXML": (f"{{{EDXML_NS}}}edXMLEnvelope", f"{{{EDXML_NS}}}edXMLHeader"),
}


def signature_parent(root: etree._Element) -> etree._Element | None:
    """The element that must hold the enveloped signature of the document rooted at ``root``
    (``None`` when the document lacks the element its profile names)."""
    node = root
    for tag in SIGNATURE_PLACES.get(root.tag, ()):
        node = next((child for child in node if child.tag == tag), None)
        if node is None:
            return None
    return node


EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED_SIGNATURE = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256_DIGEST = "http://www.w3.org/2001/04/xmlenc#sha256"

#: Algorithm names accepted in settings (``LIENTHONG_SIGNATURE_ALGORITHM``) → signxml method and key type.
SIGNATURE_ALGORITHMS: dict[str, tuple[SignatureMethod, str]] = {
    "rsa-sha256": (SignatureMethod.RSA_SHA256, "rsa"),
    "ecdsa-sha256": (SignatureMethod.ECDSA_SHA256, "ec"),
}

_DS_SIGNATURE = f"{{{DSIG_NS}}}Signature"


def _ds(parent: etree._Element, name: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{DSIG_NS}}}{name}", attributes)


class Signer:
    """Signs envelopes with one identity; create once and reuse (it is safe to share across threads).

    ``sign`` does **not** modify the element it is given: it works on a copy, and the signed copy
    is returned as bytes. Keep sending exactly those bytes – any
    re-serialisation of a parsed tree risks changing what was signed.
    """

    def __init__(self, identity: SigningIdentity, algorithm: str = "rsa-sha256") -> None:
        try:
            method, key_type = SIGNATURE_ALGORITHMS[algorithm]
        except KeyError:
            raise ConfigurationError(
                f"unknown signature algorithm {algorithm!r}; use one of {', '.join(SIGNATURE_ALGORITHMS)}"
            ) from None
        if identity.key_type != key_type:
            raise ConfigurationError(
                f"signature algorithm {algorithm} needs an {key_type.upper()} key but {identity.source or 'the identity'}"
                f" holds an {identity.key_type.upper()} key; set LIENTHONG_SIGNATURE_ALGORITHM={identity.default_algorithm}"
            )
        self.identity = identity
        self.algorithm = algorithm
        self._method_uri = method.value
        # Only the signer's own certificate goes into KeyInfo: the receiver pins the CA itself.
        # Its PEM body (64-character lines), computed once.
        pem = identity.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        self._certificate_text = "".join(pem.splitlines(keepends=True)[1:-1])

    @property
    def agency_code(self) -> str:
        """The agency the signature speaks for (certificate ``OU``): must equal the envelope's From/OrganId."""
        return self.identity.agency_code

    def sign(self, root: etree._Element) -> bytes:
        """Return the document rooted at ``root`` with an enveloped signature appended, as UTF-8 bytes.

        No XML declaration is written (the bytes are embedded in a SOAP body as they are).
        Raises :class:`SignatureError` if the document already carries a ``ds:Signature`` (signing
        twice would produce a message the verifier refuses) or if the root has an ``Id``/``ID``
        attribute (verifiers would be tempted to resolve ``#id`` references instead of ``URI=""``).
        """
        if isinstance(root, etree._ElementTree):
            root = root.getroot()
        if not isinstance(root, etree._Element) or not isinstance(root.tag, str):
            raise TypeError(f"Signer.sign takes an lxml element, not {type(root).__name__}")
        existing = next(root.iter(_DS_SIGNATURE), None)
        if existing is not None:
            raise SignatureError(
                f"<{etree.QName(root).localname}> already contains a ds:Signature; sign an unsigned document"
            )
        for attr in ("Id", "ID"):
            if root.get(attr) is not None:
                raise SignatureError(
                    f"<{etree.QName(root).localname}> has an {attr} attribute; the signature profile references "
                    'the whole document with URI="" and the root must not carry an Id'
                )
        doc = copy.deepcopy(root)  # the caller's tree is left as it was
        # Reference URI="": the whole document without the signature (the enveloped-signature
        # transform), exclusive c14n without comments, SHA-256.
        digest = hashlib.sha256(etree.tostring(doc, method="c14n", exclusive=True, with_comments=False)).digest()
        parent = signature_parent(doc)
        if parent is None:
            raise SignatureError(f"<{etree.QName(doc).localname}> lacks "
                                 f"{'/'.join(etree.QName(t).localname for t in SIGNATURE_PLACES[doc.tag])}, "
                                 "where its signature goes")
        signature = etree.SubElement(parent, _DS_SIGNATURE, nsmap={"ds": DSIG_NS})
        signed_info = _ds(signature, "SignedInfo")
        _ds(signed_info, "CanonicalizationMethod", Algorithm=EXC_C14N)
        _ds(signed_info, "SignatureMethod", Algorithm=self._method_uri)
        reference = _ds(signed_info, "Reference", URI="")
        transforms = _ds(reference, "Transforms")
        _ds(transforms, "Transform", Algorithm=ENVELOPED_SIGNATURE)
        _ds(transforms, "Transform", Algorithm=EXC_C14N)
        _ds(reference, "DigestMethod", Algorithm=SHA256_DIGEST)
        _ds(reference, "DigestValue").text = base64.b64encode(digest).decode("ascii")
        # SignedInfo is canonicalised where it stands (in the document), as a verifier will.
        value = self._sign_bytes(etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False))
        _ds(signature, "SignatureValue").text = base64.b64encode(value).decode("ascii")
        _ds(_ds(_ds(signature, "KeyInfo"), "X509Data"), "X509Certificate").text = self._certificate_text
        return etree.tostring(doc, encoding="UTF-8", xml_declaration=False)

    def _sign_bytes(self, data: bytes) -> bytes:
        key = self.identity.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            # XML-DSig ECDSA values are r ‖ s, each the curve's size, not the DER that OpenSSL returns.
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            size = (key.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
