"""Signer output profile and sign → verify round trips (RSA, ECDSA, element input, SOAP-wrapped)."""

from __future__ import annotations

import datetime as dt

import pytest
from lienthong.hub.errors import ConfigurationError, SignatureError
from lienthong.signing.keys import load_identity
from lienthong.signing.signer import ENVELOPED_SIGNATURE, EXC_C14N, SHA256_DIGEST, Signer
from lienthong.signing.verifier import Verifier
from lxml import etree
from signing_helpers import (
    DSIG_NS,
    HUB_AGENCY,
    NATIONAL_AGENCY,
    PASSWORD,
    SOAP11_NS,
    build_envelope,
    ds,
    dvc,
    edxml,
    parse,
    raw_sign,
    serialize,
    utcnow,
)

NS = {"ds": DSIG_NS}


def test_signed_bytes_follow_the_profile(signed_envelope, hub_identity):
    assert not signed_envelope.startswith(b"<?xml")
    signed_envelope.decode("utf-8")
    root = parse(signed_envelope)
    assert root.tag == edxml("edXMLEnvelope")
    assert root[-1].tag == ds("Signature"), "ds:Signature must be the last child of the root"
    assert len(root.findall(".//ds:Signature", NS)) == 1
    si = root[-1].find("ds:SignedInfo", NS)
    assert si.find("ds:CanonicalizationMethod", NS).get("Algorithm") == EXC_C14N
    assert si.find("ds:SignatureMethod", NS).get("Algorithm").endswith("#rsa-sha256")
    (ref,) = si.findall("ds:Reference", NS)
    assert ref.get("URI") == ""
    assert [t.get("Algorithm") for t in ref.findall("ds:Transforms/ds:Transform", NS)] == [
        ENVELOPED_SIGNATURE, EXC_C14N]
    assert ref.find("ds:DigestMethod", NS).get("Algorithm") == SHA256_DIGEST
    certs = root[-1].findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    assert len(certs) == 1
    from base64 import b64decode

    from cryptography import x509
    assert x509.load_der_x509_certificate(b64decode("".join(certs[0].text.split()))) == hub_identity.certificate


def test_rsa_round_trip_returns_only_the_signed_subtree(signed_envelope, verifier, hub_identity):
    doc = verifier.verify(signed_envelope)
    assert doc.signer_agency == HUB_AGENCY
    assert doc.certificate == hub_identity.certificate
    assert doc.signer_subject == hub_identity.subject
    assert doc.root.tag == edxml("edXMLEnvelope")
    assert doc.root.find(".//ds:Signature", NS) is None  # the verified subtree is the signed content
    assert [e.text for e in doc.root.iter(dvc("MaHoSo"))] == ["G09.20-20260609-0000000", "G09.20-20260609-0000001"]
    assert doc.root.find(f".//{dvc('ChuHoSo')}").text == "Nguyễn Văn An"


def test_ecdsa_round_trip(make_identity, verifier):
    identity = make_identity("000.00.01.H22", key_type="ec")
    signed = Signer(identity, algorithm="ecdsa-sha256").sign(build_envelope())
    sig = parse(signed)[-1]
    assert sig.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm").endswith("#ecdsa-sha256")
    doc = verifier.verify(signed)
    assert doc.signer_agency == "000.00.01.H22"


def test_ecdsa_dev_pki_round_trip(tmp_path):
    from lienthong.signing.pki import init_dev_pki
    from lienthong.signing.verifier import TrustStore

    files = init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, key_type="ec")
    identity = load_identity(files.national_p12, PASSWORD)
    assert identity.default_algorithm == "ecdsa-sha256"
    signed = Signer(identity, "ecdsa-sha256").sign(build_envelope())
    doc = Verifier(TrustStore.from_paths([files.ca_cert], [files.crl])).verify(signed)
    assert doc.signer_agency == NATIONAL_AGENCY


def test_sign_does_not_modify_the_callers_element(signer):
    root = build_envelope()
    wrapper = etree.Element("wrapper")
    wrapper.append(root)
    root.tail = "\n"
    before = etree.tostring(wrapper)
    signed = signer.sign(root)
    assert etree.tostring(wrapper) == before
    assert root.getparent() is wrapper and root[-1].tag != ds("Signature")
    assert parse(signed)[-1].tag == ds("Signature")


def test_signing_is_repeatable_with_the_same_signer(signer, verifier):
    # RSA PKCS#1 v1.5 is deterministic: the same document gives the same bytes.
    assert signer.sign(build_envelope()) == signer.sign(build_envelope())
    for n in (0, 1, 5):
        assert verifier.verify(signer.sign(build_envelope(n))).signer_agency == HUB_AGENCY


def test_verify_accepts_an_element_nested_in_soap(signed_envelope, verifier):
    soap = (f'<soap:Envelope xmlns:soap="{SOAP11_NS}" xmlns:x="urn:unrelated"><soap:Header/>'
            f'<soap:Body>').encode() + signed_envelope + b"</soap:Body></soap:Envelope>"
    body_child = parse(soap).find(f"{{{SOAP11_NS}}}Body")[0]
    before = etree.tostring(body_child)
    doc = verifier.verify(body_child)
    assert doc.signer_agency == HUB_AGENCY
    assert etree.tostring(body_child) == before  # input untouched


def test_comments_added_after_signing_are_not_in_the_verified_tree(signed_envelope, verifier):
    # Classic comment injection: text split by a comment must come back whole, from signed bytes only.
    tampered = signed_envelope.replace(b"Nguy\xe1\xbb\x85n V\xc4\x83n An", b"Nguy\xe1\xbb\x85n<!-- x --> V\xc4\x83n An", 1)
    assert tampered != signed_envelope
    doc = verifier.verify(tampered)
    owner = doc.root.find(f".//{dvc('ChuHoSo')}")
    assert owner.text == "Nguyễn Văn An"
    assert not list(doc.root.iter(etree.Comment))


def test_signer_refuses_already_signed_documents(signer, signed_envelope):
    with pytest.raises(SignatureError, match="already contains a ds:Signature"):
        signer.sign(parse(signed_envelope))


def test_signer_refuses_root_with_id(signer):
    root = build_envelope()
    root.set("Id", "env-1")
    with pytest.raises(SignatureError, match="Id attribute"):
        signer.sign(root)


def test_signer_algorithm_must_match_the_key(hub_identity, make_identity):
    with pytest.raises(ConfigurationError, match="needs an EC key"):
        Signer(hub_identity, "ecdsa-sha256")
    with pytest.raises(ConfigurationError, match="ecdsa-sha256"):
        Signer(make_identity(key_type="ec"), "rsa-sha256")
    with pytest.raises(ConfigurationError, match="unknown signature algorithm"):
        Signer(hub_identity, "rsa-sha1")


def test_signer_rejects_non_elements(signer):
    with pytest.raises(TypeError):
        signer.sign(b"<a/>")


def test_verifier_algorithm_pinning_is_configurable(trust, make_identity):
    ec_signed = Signer(make_identity(key_type="ec"), "ecdsa-sha256").sign(build_envelope())
    from lienthong.hub.errors import WeakAlgorithm

    with pytest.raises(WeakAlgorithm, match="ecdsa-sha256"):
        Verifier(trust, allowed_algorithms=("rsa-sha256",)).verify(ec_signed)
    with pytest.raises(ConfigurationError, match="cannot be allowed"):
        Verifier(trust, allowed_algorithms=("rsa-sha1",))
    with pytest.raises(ConfigurationError, match="empty"):
        Verifier(trust, allowed_algorithms=())


def test_intermediate_ca_in_keyinfo_is_used_for_the_chain(ca, trust):
    from lienthong.hub.errors import UntrustedCertificate
    from lienthong.signing.keys import SigningIdentity
    from lienthong.signing.pki import CertificateAuthority, issue_certificate

    inter = issue_certificate(ca, None, "G09", agency_name="CA trung gian", key_type="ec", is_ca=True,
                              key_usage={"key_cert_sign", "crl_sign"})
    inter_ca = CertificateAuthority(inter.private_key, inter.certificate)
    leaf = issue_certificate(inter_ca, None, "G09.20", key_type="ec")
    identity = SigningIdentity.from_objects(leaf.private_key, leaf.certificate)
    from signxml import SignatureMethod

    with_chain = raw_sign(build_envelope(), identity, signature_algorithm=SignatureMethod.ECDSA_SHA256,
                          certs=[leaf.certificate, inter.certificate])
    assert Verifier(trust).verify(with_chain).signer_agency == "G09.20"
    leaf_only = Signer(identity, "ecdsa-sha256").sign(build_envelope())
    with pytest.raises(UntrustedCertificate, match="does not chain"):
        Verifier(trust).verify(leaf_only)


def test_verification_time_comes_from_now(signed_envelope, trust):
    from lienthong.hub.errors import ExpiredCertificate, NotYetValidCertificate

    with pytest.raises(ExpiredCertificate, match="expired"):
        Verifier(trust, now=lambda: utcnow() + dt.timedelta(days=365 * 3)).verify(signed_envelope)
    with pytest.raises(NotYetValidCertificate, match="not valid before"):
        Verifier(trust, now=lambda: utcnow() - dt.timedelta(days=1)).verify(signed_envelope)
    naive_ok = Verifier(trust, now=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    assert naive_ok.verify(signed_envelope).signer_agency == HUB_AGENCY


def test_serialized_verified_tree_is_the_signed_content(signed_envelope, verifier):
    doc = verifier.verify(signed_envelope)
    original = parse(signed_envelope)
    original.remove(original[-1])
    assert etree.tostring(doc.root, method="c14n", exclusive=True) == etree.tostring(
        original, method="c14n", exclusive=True)
    assert serialize(doc.root)  # a normal, serialisable element


@pytest.mark.parametrize("dossiers", [1, 40])
def test_the_lean_signer_writes_exactly_what_signxml_writes(hub_identity, dossiers):
    """The hub builds its signatures with lxml's canonicaliser instead of signxml.XMLSigner (which
    re-parses the document several times). RSA PKCS#1 v1.5 is deterministic, so for the same
    document the two must produce the same bytes: same digest, same SignedInfo, same value, same
    KeyInfo. A Vietnamese payload and an inherited-namespace SOAP-style wrapper are included."""
    from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner
    from signxml.algorithms import SignatureConstructionMethod

    envelope = build_envelope(dossiers=dossiers)
    reference = XMLSigner(
        method=SignatureConstructionMethod.enveloped, signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256, c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(envelope, key=hub_identity.private_key, cert=[hub_identity.certificate])
    expected = etree.tostring(reference, encoding="UTF-8", xml_declaration=False)
    assert Signer(hub_identity).sign(envelope) == expected
    wrapper = etree.Element("{urn:wrap}Outer", nsmap={"w": "urn:wrap", "x": "urn:unused"})
    wrapper.append(build_envelope(dossiers=dossiers))
    inner = wrapper[0]
    mine = Signer(hub_identity).sign(inner)
    theirs = XMLSigner(
        method=SignatureConstructionMethod.enveloped, signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256, c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(inner, key=hub_identity.private_key, cert=[hub_identity.certificate])
    assert etree.fromstring(mine).find(ds("Signature")).findtext(ds("SignatureValue")) == \
        theirs.find(ds("Signature")).findtext(ds("SignatureValue"))
