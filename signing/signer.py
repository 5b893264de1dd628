"""Enveloped XML-DSig signatures for outgoing envelopes.

The profile is fixed, because the national side verifies exactly this and nothing looser:

* enveloped signature over the whole document (one ``Reference`` with ``URI=""``), so no part of
  the envelope – header, routing, payload – can be changed or moved without breaking it;
* exclusive canonicalisation (``xml-exc-c14n#``), so the digest does not depend on namespace
  declarations inherited from whatever wraps the envelope (the SOAP ``Envelope``/``Body``);
* RSA-SHA256 (or ECDSA-SHA256) and SHA-256 digests; SHA-1 is never produced;
* ``KeyInfo/X509Data`` with the signer's certificate, so the receiver can check it against its
  pinned CA without an out-of-band key exchange;
* ``ds:Signature`` as the **last child of the root**, where the envelope XSD expects it.

:class:`Signer` holds already-parsed key objects (see :func:`lienthong.signing.keys.load_identity`):
nothing is parsed per message except the document itself.
"""

from __future__ import annotations

from lienthong.hub.errors import ConfigurationError, SignatureError
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner
from signxml.algorithms import SignatureConstructionMethod
from signxml.exceptions import InvalidInput

from .keys import SigningIdentity

__all__ = ["Signer", "SIGNATURE_ALGORITHMS", "DSIG_NS", "EXC_C14N", "ENVELOPED_SIGNATURE", "SHA256_DIGEST"]

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED_SIGNATURE = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256_DIGEST = "http://www.w3.org/2001/04/xmlenc#sha256"

#: Algorithm names accepted in settings (``LIENTHONG_SIGNATURE_ALGORITHM``) → signxml method and key type.
SIGNATURE_ALGORITHMS: dict[str, tuple[SignatureMethod, str]] = {
    "rsa-sha256": (SignatureMethod.RSA_SHA256, "rsa"),
    "ecdsa-sha256": (SignatureMethod.ECDSA_SHA256, "ec"),
}

_DS_SIGNATURE = f"{{{DSIG_NS}}}Signature"


class Signer:
    """Signs envelopes with one identity; create once and reuse (it is safe to share across threads).

    ``sign`` does **not** modify the element it is given: signxml serialises it and works on a
    fresh copy, and the signed copy is returned as bytes. Keep sending exactly those bytes – any
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
        # XMLSigner keeps no per-call state when ``id_attribute`` is not passed: one instance serves all.
        self._signer = XMLSigner(
            method=SignatureConstructionMethod.enveloped,
            signature_algorithm=method,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        # Only the signer's own certificate goes into KeyInfo: the receiver pins the CA itself.
        self._cert_chain = [identity.certificate]

    @property
    def agency_code(self) -> str:
        """The agency the signature speaks for (certificate ``OU``): must equal the envelope's From/OrganId."""
        return self.identity.agency_code

    def sign(self, root: etree._Element) -> bytes:
        """Return the document rooted at ``root`` with an enveloped signature appended, as UTF-8 bytes.

        No XML declaration is written (the bytes are embedded in a SOAP body as they are).
        Raises :class:`SignatureError` if the document already carries a ``ds:Signature`` (signing
        twice would produce a message the verifier refuses) or if the root has an ``Id``/``ID``
        attribute (signxml would then reference ``#id`` instead of ``URI=""``).
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
        try:
            signed = self._signer.sign(root, key=self.identity.private_key, cert=self._cert_chain)
        except InvalidInput as exc:
            raise SignatureError(f"cannot sign <{etree.QName(root).localname}>: {exc}") from None
        last = signed[-1] if len(signed) else None
        if last is None or last.tag != _DS_SIGNATURE:  # pragma: no cover - guards a signxml behaviour change
            raise SignatureError("signxml did not append ds:Signature as the last child of the root")
        return etree.tostring(signed, encoding="UTF-8", xml_declaration=False)
