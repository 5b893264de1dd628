"""Every verifier refusal, each triggered by a real crafted document and mapped to its own error."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from lienthong.hub.errors import (
    CertificateError,
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
    XmlDtdForbidden,
)
from lienthong.signing.pki import create_ca, revoke, write_crl
from lienthong.signing.signer import Signer
from lienthong.signing.verifier import TrustStore, Verifier
from lxml import etree
from signing_helpers import (
    DSIG_NS,
    HUB_AGENCY,
    build_envelope,
    ds,
    dvc,
    edxml,
    parse,
    raw_sign,
    serialize,
    utcnow,
)
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

NS = {"ds": DSIG_NS}


def _error_code(exc_info) -> str:
    return exc_info.value.code


# --- structure ---------------------------------------------------------------------------------
def test_unsigned_document(verifier):
    with pytest.raises(MissingSignature, match="carries no ds:Signature") as info:
        verifier.verify(serialize(build_envelope()))
    assert _error_code(info) == "SIGNATURE_MISSING"


def test_signature_moved_into_the_body(signed_envelope, verifier):
    root = parse(signed_envelope)
    sig = root[-1]
    root.find(edxml("edXMLBody")).append(sig)
    with pytest.raises(MissingSignature, match=r"/edXMLEnvelope/edXMLBody/Signature"):
        verifier.verify(serialize(root))


def test_duplicated_signature(signed_envelope, verifier):
    root = parse(signed_envelope)
    root.append(copy.deepcopy(root[-1]))
    with pytest.raises(MultipleSignatures, match="2 ds:Signature"):
        verifier.verify(serialize(root))
    # a second signature hidden deeper counts too
    root = parse(signed_envelope)
    root.find(f".//{dvc('HoSo')}").append(copy.deepcopy(root[-1]))
    with pytest.raises(MultipleSignatures):
        verifier.verify(serialize(root))


def test_wrapping_attack_signed_envelope_nested_under_forged_root(signed_envelope, verifier):
    """The genuine signed envelope is hidden inside a forged one that the application would read."""
    genuine = parse(signed_envelope)
    forged = build_envelope()
    forged.find(f".//{dvc('ChuHoSo')}").text = "Kẻ Giả Mạo"
    forged.find(edxml("edXMLHeader")).append(genuine)  # the whole signed document, signature included
    with pytest.raises(MissingSignature, match="directly under <edXMLEnvelope>"):
        verifier.verify(serialize(forged))


def test_wrapping_attack_signature_lifted_onto_forged_root(signed_envelope, verifier):
    """Signature moved to the forged root, genuine content stashed in the forged body."""
    genuine = parse(signed_envelope)
    sig = genuine[-1]
    forged = build_envelope()
    forged.find(f".//{dvc('TrangThaiHoSo')}").text = "10"
    forged.find(edxml("edXMLBody")).append(genuine)  # genuine envelope without its signature
    forged.append(sig)
    with pytest.raises(DigestMismatch) as info:
        verifier.verify(serialize(forged))
    assert _error_code(info) == "SIGNATURE_DIGEST_MISMATCH"


def test_payload_edited_after_signing(signed_envelope, verifier):
    tampered = signed_envelope.replace(b"<dvc:TrangThaiHoSo>2<", b"<dvc:TrangThaiHoSo>10<", 1)
    assert tampered != signed_envelope
    with pytest.raises(DigestMismatch, match="altered after signing"):
        verifier.verify(tampered)


def test_header_readdressed_after_signing(signed_envelope, verifier):
    tampered = signed_envelope.replace(b"000.00.00.G22", b"000.00.00.G99", 1)
    with pytest.raises(DigestMismatch):
        verifier.verify(tampered)


def test_signature_value_tampered(signed_envelope, verifier):
    root = parse(signed_envelope)
    value = root[-1].find("ds:SignatureValue", NS)
    raw = bytearray(__import__("base64").b64decode(value.text))
    raw[10] ^= 0x01
    value.text = __import__("base64").b64encode(bytes(raw)).decode()
    with pytest.raises(InvalidSignatureValue) as info:
        verifier.verify(serialize(root))
    assert _error_code(info) == "SIGNATURE_VALUE_INVALID"


def test_signed_info_edited_after_signing(signed_envelope, verifier):
    # Changing the digest value to match a forged payload breaks the signature over SignedInfo.
    root = parse(signed_envelope)
    root.find(f".//{dvc('TrangThaiHoSo')}").text = "10"
    root.remove(root[-1])
    import base64
    import hashlib
    forged_digest = base64.b64encode(hashlib.sha256(etree.tostring(root, method="c14n", exclusive=True)).digest())
    sig = parse(signed_envelope)[-1]
    sig.find("ds:SignedInfo/ds:Reference/ds:DigestValue", NS).text = forged_digest.decode()
    root.append(sig)
    with pytest.raises(InvalidSignatureValue):
        verifier.verify(serialize(root))


# --- algorithms ---------------------------------------------------------------------------------
def test_sha1_signature_is_refused(hub_identity, verifier):
    signed = raw_sign(build_envelope(), hub_identity, signature_algorithm=SignatureMethod.RSA_SHA1,
                      digest_algorithm=DigestAlgorithm.SHA1)
    assert b"xmldsig#rsa-sha1" in signed and b"xmldsig#sha1" in signed
    with pytest.raises(WeakAlgorithm, match="rsa-sha1 is weak") as info:
        verifier.verify(signed)
    assert _error_code(info) == "SIGNATURE_WEAK_ALGORITHM"


def test_sha1_digest_alone_is_refused(hub_identity, verifier):
    signed = raw_sign(build_envelope(), hub_identity, digest_algorithm=DigestAlgorithm.SHA1)
    with pytest.raises(WeakAlgorithm, match="digest method .*sha1 is weak"):
        verifier.verify(signed)


def test_other_strong_but_unpinned_algorithms_are_refused(hub_identity, verifier):
    signed = raw_sign(build_envelope(), hub_identity, signature_algorithm=SignatureMethod.RSA_SHA512,
                      digest_algorithm=DigestAlgorithm.SHA512)
    with pytest.raises(WeakAlgorithm, match="rsa-sha512 is not accepted"):
        verifier.verify(signed)


def test_inclusive_canonicalization_is_refused(hub_identity, verifier):
    signed = raw_sign(build_envelope(), hub_identity, c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1)
    with pytest.raises(WeakAlgorithm, match="canonicalization"):
        verifier.verify(signed)


# --- references ---------------------------------------------------------------------------------
def test_reference_to_an_id_instead_of_the_whole_document(hub_identity, verifier):
    root = build_envelope()
    root.find(edxml("edXMLBody")).set("Id", "body")
    signed = raw_sign(root, hub_identity, reference_uri="#body")
    assert b'URI="#body"' in signed
    with pytest.raises(UnexpectedReference, match='URI="#body"') as info:
        verifier.verify(signed)
    assert _error_code(info) == "SIGNATURE_UNEXPECTED_REFERENCE"


def test_root_id_reference_is_refused_too(hub_identity, verifier):
    root = build_envelope()
    root.set("Id", "env")  # signxml then defaults the reference to "#env"
    signed = raw_sign(root, hub_identity)
    with pytest.raises(UnexpectedReference, match='URI="#env"'):
        verifier.verify(signed)


def test_several_references_are_refused(hub_identity, verifier):
    root = build_envelope()
    root.find(edxml("edXMLHeader")).set("Id", "h")
    root.find(edxml("edXMLBody")).set("Id", "b")
    signed = raw_sign(root, hub_identity, reference_uri=["#h", "#b"])
    with pytest.raises(UnexpectedReference, match="2 ds:Reference"):
        verifier.verify(signed)


def test_missing_c14n_transform_is_refused(hub_identity, verifier):
    signed = raw_sign(build_envelope(), hub_identity, exclude_c14n_transform_element=True)
    with pytest.raises(UnexpectedReference, match="transforms"):
        verifier.verify(signed)


def test_extra_transform_is_refused(signed_envelope, verifier):
    root = parse(signed_envelope)
    transforms = root[-1].find("ds:SignedInfo/ds:Reference/ds:Transforms", NS)
    etree.SubElement(transforms, ds("Transform"), Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116")
    with pytest.raises(UnexpectedReference, match="REC-xpath"):
        verifier.verify(serialize(root))


# --- certificates -------------------------------------------------------------------------------
def test_certificate_from_a_foreign_ca(make_identity, verifier):
    foreign = create_ca(common_name="Liên thông Hub Development Root CA", key_type="ec")  # same name, other key
    identity = make_identity(HUB_AGENCY, issuer=foreign)
    signed = Signer(identity, "ecdsa-sha256").sign(build_envelope())
    with pytest.raises(UntrustedCertificate, match="does not chain to a trusted CA") as info:
        verifier.verify(signed)
    assert _error_code(info) == "CERTIFICATE_UNTRUSTED"


def test_self_signed_certificate_in_keyinfo(verifier):
    ca_like = create_ca(key_type="ec")  # self-signed; also a CA, so it cannot be a signer anyway
    from lienthong.signing.keys import SigningIdentity
    from lienthong.signing.pki import issue_certificate

    leaf = issue_certificate(ca_like, None, HUB_AGENCY, key_type="ec")
    identity = SigningIdentity.from_objects(leaf.private_key, leaf.certificate)
    signed = raw_sign(build_envelope(), identity, signature_algorithm=SignatureMethod.ECDSA_SHA256,
                      certs=[leaf.certificate, ca_like.certificate])  # attacker ships its own "root"
    with pytest.raises(UntrustedCertificate):
        verifier.verify(signed)


def test_no_certificate_in_keyinfo(signed_envelope, verifier):
    root = parse(signed_envelope)
    key_info = root[-1].find("ds:KeyInfo", NS)
    root[-1].remove(key_info)
    with pytest.raises(UntrustedCertificate, match="no KeyInfo/X509Data/X509Certificate"):
        verifier.verify(serialize(root))


def test_garbage_certificate_in_keyinfo(signed_envelope, verifier):
    root = parse(signed_envelope)
    root[-1].find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS).text = "bm90IGEgY2VydA=="
    with pytest.raises(UntrustedCertificate, match="not a valid certificate"):
        verifier.verify(serialize(root))


def test_expired_certificate(make_identity, verifier):
    start = utcnow() - dt.timedelta(days=800)
    identity = make_identity(not_before=start, not_after=start + dt.timedelta(days=730))
    signed = Signer(identity, "ecdsa-sha256").sign(build_envelope())
    with pytest.raises(ExpiredCertificate, match="signer .* expired on") as info:
        verifier.verify(signed)
    assert _error_code(info) == "CERTIFICATE_EXPIRED"


def test_not_yet_valid_certificate(make_identity, verifier):
    start = utcnow() + dt.timedelta(days=3)
    identity = make_identity(not_before=start, not_after=start + dt.timedelta(days=730))
    signed = Signer(identity, "ecdsa-sha256").sign(build_envelope())
    with pytest.raises(NotYetValidCertificate, match="not valid before") as info:
        verifier.verify(signed)
    assert _error_code(info) == "CERTIFICATE_NOT_YET_VALID"


def test_revoked_certificate(make_identity, ca, pki, tmp_path):
    identity = make_identity()
    signed = Signer(identity, "ecdsa-sha256").sign(build_envelope())
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl.read_bytes())
    assert Verifier(TrustStore.from_paths([pki.ca_cert], [crl])).verify(signed)  # fine before revocation
    revoke(crl, ca, identity.certificate)
    with pytest.raises(RevokedCertificate, match="revoked on") as info:
        Verifier(TrustStore.from_paths([pki.ca_cert], [crl])).verify(signed)
    assert _error_code(info) == "CERTIFICATE_REVOKED"


def test_wrong_key_usage(make_identity, verifier):
    identity = make_identity(key_usage={"key_encipherment", "key_agreement"})
    signed = Signer(identity, "ecdsa-sha256").sign(build_envelope())
    with pytest.raises(KeyUsageViolation, match="digitalSignature") as info:
        verifier.verify(signed)
    assert _error_code(info) == "CERTIFICATE_KEY_USAGE"


def test_missing_key_usage_extension(make_identity, verifier):
    signed = Signer(make_identity(key_usage=None), "ecdsa-sha256").sign(build_envelope())
    with pytest.raises(KeyUsageViolation, match="no keyUsage"):
        verifier.verify(signed)


def test_ca_certificate_cannot_sign_messages(make_identity, verifier):
    identity = make_identity(is_ca=True, key_usage={"digital_signature", "key_cert_sign"})
    signed = Signer(identity, "ecdsa-sha256").sign(build_envelope())
    with pytest.raises(KeyUsageViolation, match="is a CA certificate"):
        verifier.verify(signed)


def test_certificate_without_agency_code(ca, verifier):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "không rõ cơ quan")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .sign(ca.private_key, hashes.SHA256())
    )

    class Anonymous:
        private_key = key
        certificate = cert

    signed = raw_sign(build_envelope(), Anonymous, signature_algorithm=SignatureMethod.ECDSA_SHA256)
    with pytest.raises(CertificateError, match="no single OU"):
        verifier.verify(signed)


def test_signature_by_a_different_key_than_the_certificate(hub_identity, make_identity, verifier):
    other = make_identity(key_type="rsa")
    signed = raw_sign(build_envelope(), hub_identity, certs=[other.certificate])  # hub key, someone else's cert
    with pytest.raises(InvalidSignatureValue):
        verifier.verify(signed)


# --- hostile input and trust-store configuration ---------------------------------------------------
def test_bytes_go_through_the_hardened_parser(signed_envelope, verifier):
    hostile = b'<!DOCTYPE x [<!ENTITY e "boom">]>' + signed_envelope
    with pytest.raises(XmlDtdForbidden):
        verifier.verify(hostile)


def test_all_errors_are_signature_errors(signed_envelope, verifier):
    # the delivery engine dead-letters on SignatureError; nothing may escape as a bare signxml/lxml error
    root = parse(signed_envelope)
    root[-1].find("ds:SignatureValue", NS).text = "!!!not base64!!!"
    with pytest.raises(SignatureError):
        verifier.verify(serialize(root))


def test_trust_store_configuration_errors(pki, ca, tmp_path):
    from lienthong.hub.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="not found"):
        TrustStore.from_paths([tmp_path / "missing.crt"])
    with pytest.raises(ConfigurationError, match="no CA certificate"):
        TrustStore.from_paths([])
    with pytest.raises(ConfigurationError, match="not a CA certificate"):
        TrustStore.from_paths([pki.hub_cert])
    foreign_crl = tmp_path / "foreign.pem"
    write_crl(foreign_crl, create_ca(key_type="ec"))
    with pytest.raises(ConfigurationError, match="not signed by any trusted CA"):
        TrustStore.from_paths([pki.ca_cert], [foreign_crl])
    junk = tmp_path / "junk.crt"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigurationError, match="not a PEM or DER"):
        TrustStore.from_paths([junk])
    der = tmp_path / "ca.der"
    from cryptography.hazmat.primitives.serialization import Encoding

    der.write_bytes(ca.certificate.public_bytes(Encoding.DER))
    assert TrustStore.from_paths([der]).anchors == (ca.certificate,)
