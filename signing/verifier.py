"""Hardened verification of enveloped XML-DSig signatures from partners.

A valid signature proves only that *something* was signed by *someone*. The classic XML-DSig
attacks (signature wrapping, reference redirection to an ``Id``, algorithm downgrade, a
self-signed certificate in ``KeyInfo``) all produce signatures that verify cryptographically while
the application reads unsigned data or trusts an unknown key. So :class:`Verifier` first pins the
*shape* of the signature to the one profile the hub exchanges, then the *signer*, and only then
checks the cryptography – and hands back nothing but the subtree signxml proved was signed:

1. exactly one ``ds:Signature`` in the whole document, where the document's profile places it
   (:func:`~.signer.signature_parent`: in an ``edXML`` document the header of its envelope, else a
   direct child of the root) (:class:`MissingSignature`, :class:`MultipleSignatures`);
2. exclusive c14n for ``SignedInfo``; signature method in the allowed list (RSA-SHA256 /
   ECDSA-SHA256 by default), SHA-256 digest; SHA-1 and anything else refused
   (:class:`WeakAlgorithm`);
3. exactly one ``Reference``, ``URI=""``, transforms exactly *enveloped-signature* then
   *exc-c14n* (:class:`UnexpectedReference`);
4. the first ``X509Certificate`` in ``KeyInfo`` chains to a pinned CA of the :class:`TrustStore`
   (signatures checked with ``cryptography``; other ``X509Certificate`` elements may serve as
   intermediates) (:class:`UntrustedCertificate`); every certificate in the path is within its
   validity (:class:`ExpiredCertificate`, :class:`NotYetValidCertificate`); the signer has
   ``digitalSignature`` and is not a CA (:class:`KeyUsageViolation`); nothing in the path is on a
   CRL of its issuer (:class:`RevokedCertificate`);
5. signxml verifies the signature value and the digest *with that certificate only*, under a
   ``SignatureConfiguration`` repeating the pins above (:class:`InvalidSignatureValue`,
   :class:`DigestMismatch`).

Bytes are parsed with :func:`lienthong.hub.xmlsafe.parse_xml` (no DTD, entities, XInclude, PIs;
size and depth bounds) and signxml re-parses with the same hardened parser.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cryptography.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lienthong.hub.errors import (
    CertificateError,
    ConfigurationError,
    DigestMismatch,
    ExpiredCertificate,
    InvalidSignatureValue,
    KeyUsageViolation,
    MissingSignature,
    MultipleSignatures,
    NotYetValidCertificate,
    RevokedCertificate,
    SignatureError,
    UnexpectedReference,
    UntrustedCertificate,
    WeakAlgorithm,
)
from lienthong.hub.xmlsafe import parse_xml, safe_parser
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.algorithms import CanonicalizationMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature

from .keys import agency_code_of
from .signer import DSIG_NS, ENVELOPED_SIGNATURE, EXC_C14N, SHA256_DIGEST, SIGNATURE_PLACES, signature_parent

__all__ = ["TrustStore", "Verifier", "VerifiedDocument", "ALLOWED_SIGNATURE_METHODS", "DEFAULT_ALLOWED_ALGORITHMS"]

#: Names usable in ``Verifier(allowed_algorithms=...)``. SHA-1 based methods are deliberately absent.
ALLOWED_SIGNATURE_METHODS: dict[str, SignatureMethod] = {
    "rsa-sha256": SignatureMethod.RSA_SHA256,
    "rsa-sha384": SignatureMethod.RSA_SHA384,
    "rsa-sha512": SignatureMethod.RSA_SHA512,
    "ecdsa-sha256": SignatureMethod.ECDSA_SHA256,
    "ecdsa-sha384": SignatureMethod.ECDSA_SHA384,
    "ecdsa-sha512": SignatureMethod.ECDSA_SHA512,
}
DEFAULT_ALLOWED_ALGORITHMS: tuple[str, ...] = ("rsa-sha256", "ecdsa-sha256")

#: Longest accepted path leaf → … → anchor (leaf + 2 intermediates + anchor).
MAX_CHAIN_LENGTH = 4
#: Validated certificate paths a :class:`TrustStore` remembers (one per partner signer in practice).
PATH_CACHE_SIZE = 256

_NS = {"ds": DSIG_NS}
_DS_SIGNATURE = f"{{{DSIG_NS}}}Signature"
_WEAK_MARKERS = ("sha1", "md5", "ripemd160")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _describe(cert: x509.Certificate) -> str:
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = "<unreadable subject>"
    return f"certificate '{subject}' (serial {cert.serial_number:x})"


def _path_of(root: etree._Element, el: etree._Element) -> str:
    """A readable path from ``root`` to ``el`` with local names: /edXMLEnvelope/edXMLBody/Signature."""
    parts = []
    node: etree._Element | None = el
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if node is not root and parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        parts.append(name)
        if node is root:
            break
        node = parent
    return "/" + "/".join(reversed(parts))


# --------------------------------------------------------------------------------------------
# trust store
# --------------------------------------------------------------------------------------------
def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None


def _load_certificates(path: Path) -> list[x509.Certificate]:
    data = _read(path, "trusted CA certificate file")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not a PEM or DER X.509 certificate: {exc}") from None


def _load_crl(path: Path) -> x509.CertificateRevocationList:
    data = _read(path, "CRL file")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not a PEM or DER CRL: {exc}") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _can_sign_certificates(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True  # RFC 5280: no KeyUsage extension means no restriction


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True iff ``issuer``'s name matches and its key verifies ``cert``'s signature."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, cryptography.exceptions.InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class TrustStore:
    """Pinned CA certificates and the CRLs they signed.

    Only certificates that chain to one of ``anchors`` are trusted; the system CA bundle is never
    consulted (a web-PKI certificate must not be able to sign national messages). Every CRL must be
    signed by one of the anchors (checked at load time). A CRL past its ``nextUpdate`` is still
    applied – its revocations do not expire – and refreshing it is the operator's job.

    Every partner message is signed by one of a handful of certificates, so :meth:`validate`
    remembers the paths it has fully validated (chain signatures, key usage, CRLs), keyed by the
    signer and the intermediates offered. Those checks do not depend on the time and the store's
    anchors and CRLs never change (a CRL refresh means a new ``TrustStore``, with an empty memory),
    so a remembered path only needs its validity windows checked again, against the time of each
    call. A path that failed any check is never remembered.
    """

    anchors: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    _revoked: dict[bytes, dict[int, dt.datetime]] = field(init=False, repr=False, compare=False)
    _validated: dict[tuple[x509.Certificate, ...], tuple[_PathEntry, ...]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchors", tuple(self.anchors))
        object.__setattr__(self, "crls", tuple(self.crls))
        object.__setattr__(self, "_revoked", {})
        object.__setattr__(self, "_validated", {})
        if not self.anchors:
            raise ConfigurationError("the trust store has no CA certificate")
        for anchor in self.anchors:
            if not _is_ca(anchor):
                raise ConfigurationError(f"trusted {_describe(anchor)} is not a CA certificate (basicConstraints CA:false)")
        for crl in self.crls:
            issuer = next((a for a in self.anchors if a.subject == crl.issuer and crl.is_signature_valid(a.public_key())),
                          None)
            if issuer is None:
                raise ConfigurationError(
                    f"CRL issued by '{crl.issuer.rfc4514_string()}' is not signed by any trusted CA"
                )
            entries = self._revoked.setdefault(issuer.fingerprint(hashes.SHA256()), {})
            for revoked in crl:
                entries[revoked.serial_number] = revoked.revocation_date_utc

    @classmethod
    def from_paths(cls, ca_paths: Iterable[Path | str], crl_paths: Iterable[Path | str] = ()) -> TrustStore:
        """Load CA certificates (PEM, several per file allowed, or DER) and CRLs (PEM or DER)."""
        anchors: list[x509.Certificate] = []
        for path in ca_paths:
            anchors.extend(_load_certificates(Path(path)))
        crls = [_load_crl(Path(p)) for p in crl_paths]
        return cls(anchors=tuple(anchors), crls=tuple(crls))

    def _revocation(self, cert: x509.Certificate, issuer: x509.Certificate) -> dt.datetime | None:
        entries = self._revoked.get(issuer.fingerprint(hashes.SHA256()))
        return entries.get(cert.serial_number) if entries else None

    def build_path(self, leaf: x509.Certificate, candidates: Sequence[x509.Certificate] = ()) -> list[x509.Certificate]:
        """leaf → intermediates taken from ``candidates`` → pinned anchor, or :class:`UntrustedCertificate`."""
        path = [leaf]
        current = leaf
        while len(path) < MAX_CHAIN_LENGTH:
            anchor = next((a for a in self.anchors if _issued_by(current, a)), None)
            if anchor is not None:
                path.append(anchor)
                return path
            step = next(
                (c for c in candidates
                 if c not in path and _is_ca(c) and _can_sign_certificates(c) and _issued_by(current, c)),
                None,
            )
            if step is None:
                break
            path.append(step)
            current = step
        raise UntrustedCertificate(
            f"signer {_describe(leaf)} issued by '{leaf.issuer.rfc4514_string()}' does not chain to a trusted CA"
        )

    def validate(
        self, leaf: x509.Certificate, candidates: Sequence[x509.Certificate] = (), *, at: dt.datetime
    ) -> list[x509.Certificate]:
        """Every certificate check on the signer at time ``at``; returns the path leaf → anchor.

        In order: the path to a pinned anchor, the validity window of every certificate in it at
        ``at``, the signer's key usage, revocation of every certificate by its issuer's CRL.
        """
        key = (leaf, *candidates)
        remembered = self._validated.get(key)
        if remembered is not None:
            _check_validity(remembered, at)
            return [entry.certificate for entry in remembered]
        path = self.build_path(leaf, candidates)
        entries = tuple(
            _PathEntry(cert, "signer" if index == 0 else ("trusted CA" if index == len(path) - 1 else "intermediate CA"),
                       cert.not_valid_before_utc, cert.not_valid_after_utc)
            for index, cert in enumerate(path)
        )
        _check_validity(entries, at)
        if _is_ca(leaf):
            raise KeyUsageViolation(f"signer {_describe(leaf)} is a CA certificate; CA keys must not sign messages")
        try:
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            raise KeyUsageViolation(f"signer {_describe(leaf)} has no keyUsage extension (digitalSignature required)") from None
        if not usage.digital_signature:
            raise KeyUsageViolation(f"signer {_describe(leaf)} keyUsage does not include digitalSignature")
        for cert, issuer in zip(path, path[1:], strict=False):
            revoked_at = self._revocation(cert, issuer)
            if revoked_at is not None:
                raise RevokedCertificate(
                    f"{_describe(cert)} was revoked on {revoked_at.isoformat()} "
                    f"(CRL of '{issuer.subject.rfc4514_string()}')"
                )
        if len(self._validated) >= PATH_CACHE_SIZE:
            self._validated.clear()  # only certificates that chain to an anchor get here: rare
        self._validated[key] = entries
        return path


@dataclass(frozen=True, slots=True)
class _PathEntry:
    """One certificate of a validated path, with what its validity check needs."""

    certificate: x509.Certificate
    role: str
    not_before: dt.datetime
    not_after: dt.datetime


def _check_validity(path: Sequence[_PathEntry], at: dt.datetime) -> None:
    for entry in path:
        if at < entry.not_before:
            raise NotYetValidCertificate(
                f"{entry.role} {_describe(entry.certificate)} is not valid before {entry.not_before.isoformat()} "
                f"(checked at {at.isoformat()})"
            )
        if at > entry.not_after:
            raise ExpiredCertificate(
                f"{entry.role} {_describe(entry.certificate)} expired on {entry.not_after.isoformat()} "
                f"(checked at {at.isoformat()})"
            )


# --------------------------------------------------------------------------------------------
# verifier
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedDocument:
    """What a verified message may be read from: only the signed subtree, and who signed it."""

    #: the signed document as signxml re-parsed it from the canonical bytes that were digested
    #: (``ds:Signature`` removed, comments dropped); never read the input tree instead.
    root: etree._Element
    certificate: x509.Certificate
    #: the agency code in the signer certificate's ``OU``
    signer_agency: str
    #: RFC 4514 subject of the signer certificate
    signer_subject: str


class Verifier:
    """Verify partner signatures against a :class:`TrustStore`; safe to share across threads.

    ``now`` returns the (timezone-aware) time at which certificates must be valid; default the
    current UTC time. ``allowed_algorithms`` lists accepted signature methods by name (see
    :data:`ALLOWED_SIGNATURE_METHODS`); the digest is always SHA-256.
    """

    def __init__(
        self,
        trust_store: TrustStore,
        *,
        now: Callable[[], dt.datetime] | None = None,
        allowed_algorithms: Iterable[str] = DEFAULT_ALLOWED_ALGORITHMS,
    ) -> None:
        self.trust_store = trust_store
        self._now = now or _utcnow
        methods = []
        for name in allowed_algorithms:
            try:
                methods.append(ALLOWED_SIGNATURE_METHODS[name])
            except KeyError:
                raise ConfigurationError(
                    f"signature algorithm {name!r} cannot be allowed; choose from {', '.join(ALLOWED_SIGNATURE_METHODS)}"
                ) from None
        if not methods:
            raise ConfigurationError("allowed_algorithms is empty: no signature could ever verify")
        self._methods = frozenset(methods)
        self._method_uris = {m.value: m for m in self._methods}

    # -- public ------------------------------------------------------------------------------
    def verify(self, data: bytes | etree._Element) -> VerifiedDocument:
        """Verify ``data`` (untrusted bytes, or an element already parsed by ``parse_xml``).

        Returns a :class:`VerifiedDocument` or raises a :class:`SignatureError` subclass naming the
        failed check. ``data`` itself is not modified.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            root = parse_xml(bytes(data), what="signed document")
        elif isinstance(data, etree._ElementTree):
            root = data.getroot()
        elif isinstance(data, etree._Element):
            root = data
        else:
            raise TypeError(f"Verifier.verify takes bytes or an lxml element, not {type(data).__name__}")

        at = self._now()
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        signature = self._locate_signature(root)
        method = self._check_signed_info(signature)
        leaf, others = self._certificates(signature)
        self.trust_store.validate(leaf, others, at=at)
        agency = agency_code_of(leaf)
        if agency is None:
            raise CertificateError(
                f"signer {_describe(leaf)} has no single OU naming its agency code; cannot tell who signed"
            )
        signed_root = self._verify_crypto(root, leaf, method, at)
        return VerifiedDocument(
            root=signed_root, certificate=leaf, signer_agency=agency, signer_subject=leaf.subject.rfc4514_string()
        )

    # -- steps -------------------------------------------------------------------------------
    def _locate_signature(self, root: etree._Element) -> etree._Element:
        signatures = list(root.iter(_DS_SIGNATURE))
        where = etree.QName(root).localname
        if not signatures:
            raise MissingSignature(f"<{where}> carries no ds:Signature")
        if len(signatures) > 1:
            paths = ", ".join(_path_of(root, s) for s in signatures)
            raise MultipleSignatures(f"<{where}> carries {len(signatures)} ds:Signature elements ({paths}); exactly one is accepted")
        signature = signatures[0]
        parent = signature_parent(root)
        if signature.getparent() is not parent:
            if root.tag in SIGNATURE_PLACES:
                place = "/".join(etree.QName(t).localname for t in (root.tag, *SIGNATURE_PLACES[root.tag]))
                raise MissingSignature(
                    f"no ds:Signature in /{place}: the only one is at {_path_of(root, signature)}; "
                    f"an <{where}> document carries its signature in the header of its envelope"
                )
            raise MissingSignature(
                f"no ds:Signature directly under <{where}>: the only one is at {_path_of(root, signature)}; "
                "an enveloped signature must be a child of the root element"
            )
        return signature

    def _algorithm(self, parent: etree._Element, child: str) -> str:
        node = parent.find(f"ds:{child}", _NS)
        if node is None or not node.get("Algorithm"):
            raise SignatureError(f"ds:{etree.QName(parent).localname} has no ds:{child} Algorithm")
        return node.get("Algorithm")

    def _check_signed_info(self, signature: etree._Element) -> SignatureMethod:
        signed_infos = signature.findall("ds:SignedInfo", _NS)
        if len(signed_infos) != 1:
            raise SignatureError(f"ds:Signature has {len(signed_infos)} ds:SignedInfo elements; exactly one expected")
        signed_info = signed_infos[0]

        c14n = self._algorithm(signed_info, "CanonicalizationMethod")
        if c14n != EXC_C14N:
            raise WeakAlgorithm(f"SignedInfo canonicalization {c14n} is not accepted; only {EXC_C14N} is")

        sig_uri = self._algorithm(signed_info, "SignatureMethod")
        method = self._method_uris.get(sig_uri)
        if method is None:
            weak = any(m in sig_uri.lower() for m in _WEAK_MARKERS)
            raise WeakAlgorithm(
                f"signature method {sig_uri} is {'weak and ' if weak else ''}not accepted; "
                f"accepted: {', '.join(sorted(self._method_uris))}"
            )

        references = signed_info.findall("ds:Reference", _NS)
        if len(references) != 1:
            raise UnexpectedReference(f"SignedInfo has {len(references)} ds:Reference elements; exactly one is accepted")
        reference = references[0]
        uri = reference.get("URI")
        if uri != "":
            shown = "no URI attribute" if uri is None else f'URI="{uri}"'
            raise UnexpectedReference(
                f'ds:Reference has {shown}; only URI="" (the whole document) is accepted'
            )
        transforms = [t.get("Algorithm") for t in reference.findall("ds:Transforms/ds:Transform", _NS)]
        if transforms != [ENVELOPED_SIGNATURE, EXC_C14N]:
            raise UnexpectedReference(
                f"ds:Reference transforms {transforms or 'none'} are not accepted; expected exactly "
                f"[{ENVELOPED_SIGNATURE}, {EXC_C14N}]"
            )
        digest = self._algorithm(reference, "DigestMethod")
        if digest != SHA256_DIGEST:
            weak = any(m in digest.lower() for m in _WEAK_MARKERS)
            raise WeakAlgorithm(f"digest method {digest} is {'weak and ' if weak else ''}not accepted; only {SHA256_DIGEST} is")
        return method

    def _certificates(self, signature: etree._Element) -> tuple[x509.Certificate, list[x509.Certificate]]:
        nodes = signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS)
        if not nodes:
            raise UntrustedCertificate("ds:Signature has no KeyInfo/X509Data/X509Certificate: the signer is unknown")
        certs = []
        for index, node in enumerate(nodes):
            try:
                der = base64.b64decode("".join((node.text or "").split()), validate=True)
                certs.append(x509.load_der_x509_certificate(der))
            except (binascii.Error, ValueError) as exc:
                raise UntrustedCertificate(f"X509Certificate #{index + 1} in KeyInfo is not a valid certificate: {exc}") from None
        return certs[0], certs[1:]

    def _verify_crypto(
        self, root: etree._Element, cert: x509.Certificate, method: SignatureMethod, at: dt.datetime
    ) -> etree._Element:
        config = SignatureConfiguration(
            require_x509=True,
            location="./" + "".join(f"{tag}/" for tag in SIGNATURE_PLACES.get(root.tag, ())),
            expect_references=1,
            signature_methods=frozenset({method}),
            digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
            verification_time=at,
            default_reference_c14n_method=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        # XMLVerifier stores per-call state on the instance: one per call keeps this thread-safe.
        try:
            result = XMLVerifier().verify(root, x509_cert=cert, expect_config=config, parser=safe_parser())
        except InvalidDigest:
            raise DigestMismatch(
                f"<{etree.QName(root).localname}> was altered after signing: its SHA-256 digest "
                '(Reference URI="") does not match the signed DigestValue'
            ) from None
        except InvalidCertificate as exc:
            raise CertificateError(f"certificate rejected: {exc}") from None
        except (InvalidSignature, cryptography.exceptions.InvalidSignature) as exc:
            detail = str(exc).strip()
            if not detail or detail.startswith("Signature verification failed"):
                detail = "SignedInfo was altered or signed with another key"
            raise InvalidSignatureValue(f"SignatureValue does not verify with {_describe(cert)}: {detail}") from None
        except etree.DocumentInvalid as exc:
            raise SignatureError(f"ds:Signature does not follow the XML-DSig schema: {exc}") from None
        except (InvalidInput, etree.XMLSyntaxError, ValueError) as exc:
            raise SignatureError(f"signature cannot be processed: {exc}") from None
        signed = getattr(result, "signed_xml", None)
        if signed is None:  # pragma: no cover - URI="" always yields XML
            raise SignatureError("the signed data is not an XML document")
        return signed
