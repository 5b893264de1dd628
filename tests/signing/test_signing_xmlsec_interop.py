"""Interoperability with libxmlsec1, the XML-DSig implementation most gateways are built on.

(a) what the hub signs verifies with ``xmlsec1 --verify`` pinned to our CA and to URI="" only;
(b) what xmlsec1 signs from a template of our profile verifies with our Verifier.
Skipped when the ``xmlsec1`` command is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lienthong.hub.errors import DigestMismatch
from lienthong.signing.signer import DSIG_NS, ENVELOPED_SIGNATURE, EXC_C14N, SHA256_DIGEST, Signer
from lxml import etree
from signing_helpers import HUB_AGENCY, build_envelope, dvc, serialize

XMLSEC1 = shutil.which("xmlsec1")
pytestmark = pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 is not installed")


def xmlsec_verify(pki, document: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [XMLSEC1, "--verify", "--trusted-pem", str(pki.ca_cert), "--enabled-reference-uris", "empty", str(document)],
        capture_output=True, text=True, timeout=60,
    )


def test_xmlsec1_verifies_our_rsa_signature(pki, signed_envelope, tmp_path):
    doc = tmp_path / "signed.xml"
    doc.write_bytes(signed_envelope)
    result = xmlsec_verify(pki, doc)
    assert result.returncode == 0, result.stderr
    assert "OK" in (result.stdout + result.stderr)

    # and it is a real check: a tampered copy fails in xmlsec1 too
    doc.write_bytes(signed_envelope.replace(b"<dvc:TrangThaiHoSo>2<", b"<dvc:TrangThaiHoSo>10<", 1))
    assert xmlsec_verify(pki, doc).returncode != 0


def test_xmlsec1_verifies_our_ecdsa_signature(pki, make_identity, tmp_path):
    signed = Signer(make_identity("000.00.01.H22", key_type="ec"), "ecdsa-sha256").sign(build_envelope())
    doc = tmp_path / "signed-ec.xml"
    doc.write_bytes(signed)
    result = xmlsec_verify(pki, doc)
    assert result.returncode == 0, result.stderr


def _template(root: etree._Element) -> etree._Element:
    """Append an empty ds:Signature template of our profile (as a partner would configure xmlsec)."""
    D = f"{{{DSIG_NS}}}"
    sig = etree.SubElement(root, D + "Signature", nsmap={"ds": DSIG_NS})
    si = etree.SubElement(sig, D + "SignedInfo")
    etree.SubElement(si, D + "CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(si, D + "SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    ref = etree.SubElement(si, D + "Reference", URI="")
    transforms = etree.SubElement(ref, D + "Transforms")
    etree.SubElement(transforms, D + "Transform", Algorithm=ENVELOPED_SIGNATURE)
    etree.SubElement(transforms, D + "Transform", Algorithm=EXC_C14N)
    etree.SubElement(ref, D + "DigestMethod", Algorithm=SHA256_DIGEST)
    etree.SubElement(ref, D + "DigestValue")
    etree.SubElement(sig, D + "SignatureValue")
    key_info = etree.SubElement(sig, D + "KeyInfo")
    etree.SubElement(key_info, D + "X509Data")  # xmlsec1 fills in the certificate
    return root


def test_document_signed_by_xmlsec1_verifies_with_our_verifier(pki, hub_identity, verifier, tmp_path):
    key_pem = tmp_path / "hub-key.pem"
    fd = os.open(key_pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(hub_identity.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    template = tmp_path / "template.xml"
    template.write_bytes(serialize(_template(build_envelope(3))))
    out = tmp_path / "xmlsec-signed.xml"
    result = subprocess.run(
        [XMLSEC1, "--sign", "--privkey-pem", f"{key_pem},{pki.hub_cert}", "--output", str(out), str(template)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    signed = out.read_bytes()
    assert b"<ds:X509Certificate>" in signed

    doc = verifier.verify(signed)
    assert doc.signer_agency == HUB_AGENCY
    assert doc.certificate == hub_identity.certificate
    assert len(list(doc.root.iter(dvc("HoSo")))) == 3

    with pytest.raises(DigestMismatch):
        verifier.verify(signed.replace(b"1.005129", b"1.999999", 1))
