"""The hostile-input corpus, sent over HTTP to the sandbox's real receiving path.

Each case is a request a partner (or an attacker on the axis) could send. Every one must be
refused with its own specific fault code, the server must keep serving, nothing may be processed
(no dossier stored, no reply signed), and every refusal must be recorded. The same acceptance code
(``hub.inbound.open_envelope`` behind ``hub.xmlsafe``) runs on every reply the hub receives.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from lienthong.connectors.payload import element
from lienthong.connectors.services import DVC_PORTAL
from lienthong.connectors.soapframe import wrap_soap
from lienthong.hub.envelope import Party, build_envelope, build_legacy_envelope, new_document_id
from lienthong.signing import Signer
from lienthong.signing.keys import SigningIdentity
from lienthong.signing.pki import issue_certificate, load_ca, revoke
from lxml import etree
from sandbox_helpers import HUB_AGENCY, PASSWORD, SandboxClient, dossier
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner

DSIG = "http://www.w3.org/2000/09/xmldsig#"
HUB = Party(HUB_AGENCY, "Bộ Nông nghiệp và Môi trường")
NATIONAL = Party("000.00.00.G22", "Văn phòng Chính phủ")
NOW = dt.datetime.now(dt.UTC)
DOSSIER = "G09.20-20260609-0092637"


def _payload():
    return element(DVC_PORTAL.namespace, "DongBoHoSoMC", {"isUpdating": False, "HoSo": [dossier(DOSSIER)]},
                   prefix="dvc")


def _envelope(*, sender=HUB, to=NATIONAL, subject="DongBoHoSoMC", payload=None):
    return build_envelope(sender=sender, recipients=[to], subject=subject, payload=payload if payload is not None else _payload(),
                          document_id=new_document_id())


class Kit:
    """Everything needed to craft the cases: the hub's signer and identities made by the dev CA."""

    def __init__(self, pki, hub_signer, foreign_signer):
        self.pki, self.signer, self.foreign = pki, hub_signer, foreign_signer
        self.ca = load_ca(pki.ca_p12, PASSWORD)

    def identity(self, **kw) -> Signer:
        issued = issue_certificate(self.ca, None, HUB_AGENCY, key_type="ec", **kw)
        return Signer(SigningIdentity.from_objects(issued.private_key, issued.certificate, (self.ca.certificate,)),
                      "ecdsa-sha256")

    def signed(self, root=None) -> bytes:
        return self.signer.sign(root if root is not None else _envelope())

    def sha1_signed(self) -> bytes:
        class Sha1Signer(XMLSigner):
            def check_deprecated_methods(self):  # produce a genuine SHA-1 signature on purpose
                return None

        ident = self.signer.identity
        signed = Sha1Signer(signature_algorithm=SignatureMethod.RSA_SHA1, digest_algorithm=DigestAlgorithm.SHA1,
                            c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#").sign(
            _envelope(), key=ident.private_key, cert=[ident.certificate])
        return etree.tostring(_into_header(signed))

    def id_reference_signed(self) -> bytes:
        root = _envelope()
        body = root.find(f"{EDX}edXMLEnvelope/{EDX}edXMLBody")
        body.set("Id", "body")
        ident = self.signer.identity
        signed = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#").sign(
            root, key=ident.private_key, cert=[ident.certificate], reference_uri="#body")
        return etree.tostring(_into_header(signed))


EDX = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}"


def _header(root):
    return root.find(f"{EDX}edXMLEnvelope/{EDX}edXMLHeader")


def _into_header(signed):
    """signxml puts an enveloped signature under the root; the profile wants it in the envelope's
    header. Moving it keeps it valid (the enveloped transform removes it wherever it is)."""
    _header(signed).append(signed.find(f"{{{DSIG}}}Signature"))
    return signed


def _edit(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new, 1)


def _move_signature_into_body(data: bytes) -> bytes:
    root = etree.fromstring(data)
    sig = _header(root).find(f"{{{DSIG}}}Signature")
    root.find(f"{EDX}edXMLEnvelope/{EDX}edXMLBody").append(sig)
    return etree.tostring(root)


def _duplicate_signature(data: bytes) -> bytes:
    root = etree.fromstring(data)
    header = _header(root)
    header.append(etree.fromstring(etree.tostring(header.find(f"{{{DSIG}}}Signature"))))
    return etree.tostring(root)


def _wrap(data: bytes) -> bytes:
    """XML signature wrapping: a forged envelope carries the genuinely signed one inside it."""
    genuine = etree.fromstring(data)
    forged = _envelope(payload=element(DVC_PORTAL.namespace, "DongBoHoSoMC",
                                       {"isUpdating": True, "HoSo": [dossier(DOSSIER, status=10)]}, prefix="dvc"))
    _header(forged).append(_header(genuine).find(f"{{{DSIG}}}Signature"))
    forged.find(f"{EDX}edXMLEnvelope/{EDX}edXMLBody").append(genuine)
    return etree.tostring(forged)


def _legacy(kit: Kit) -> bytes:
    """The hub's earlier shape, correctly signed: a bare edXMLEnvelope root, payload in Payload."""
    return kit.signer.sign(build_legacy_envelope(sender=HUB, recipients=[NATIONAL], subject="DongBoHoSoMC",
                                                 payload=_payload(), document_id=new_document_id()))


def _two_envelopes(kit: Kit) -> bytes:
    """Two envelopes under one root, signed as a whole: a gateway would route the first, the hub
    might read the second; neither may be chosen."""
    root = _envelope()
    second = _envelope(payload=element(DVC_PORTAL.namespace, "DongBoHoSoMC",
                                       {"isUpdating": True, "HoSo": [dossier(DOSSIER, status=10)]}, prefix="dvc"))
    root.append(second.find(f"{EDX}edXMLEnvelope"))
    return kit.signer.sign(root)


def _envelope_outside_the_root(kit: Kit) -> bytes:
    """The envelope one level down, inside a wrapper element, where gateways do not look for it."""
    root = _envelope()
    envelope = root.find(f"{EDX}edXMLEnvelope")
    wrapper = etree.SubElement(root, "{urn:wrapper}Wrapper")
    wrapper.append(envelope)
    return etree.tostring(root)


def _forged_content_id(kit: Kit) -> bytes:
    """An attachment rides along under a content id the manifest does not list (it lists another)."""
    root = _envelope()
    manifest = root.find(f"{EDX}edXMLEnvelope/{EDX}edXMLBody/{EDX}edXMLManifest")
    ref = etree.SubElement(manifest, f"{EDX}Reference")
    ref.set("{http://www.w3.org/1999/xlink}href", "cid:ket-qua-1")
    ref.set("{http://www.w3.org/1999/xlink}type", "simple")
    for name, value in (("AttachmentName", "ket-qua.pdf"), ("ContentType", "application/pdf"),
                        ("ContentId", "ket-qua-1")):
        etree.SubElement(ref, f"{EDX}{name}").text = value
    attachment = etree.SubElement(etree.SubElement(root, f"{EDX}AttachmentEncoded"), f"{EDX}Attachment")
    for name, value in (("ContentType", "application/pdf"), ("ContentId", "ket-qua-2"),
                        ("ContentTransferEncoded", "JVBERi0xLjQK"), ("AttachmentName", "ket-qua.pdf")):
        etree.SubElement(attachment, f"{EDX}{name}").text = value
    return kit.signer.sign(root)


def _corrupt_signature_value(data: bytes) -> bytes:
    value = re.search(rb"<ds:SignatureValue>([^<]+)</ds:SignatureValue>", data)
    flipped = value.group(1)[:10] + (b"A" if value.group(1)[10:11] != b"A" else b"B") + value.group(1)[11:]
    return data.replace(value.group(1), flipped)


def _unprefixed(kit: Kit) -> bytes:
    xml = etree.tostring(_envelope()).decode()
    xml = xml.replace("edXML:", "").replace("xmlns:edXML=", "xmlns=")
    return kit.signer.sign(etree.fromstring(xml.encode()))


# (id, builder(kit) -> request bytes (SOAP-framed unless marked raw), SOAPAction, expected fault code)
RAW = "raw"
CASES: list[tuple[str, Callable[[Kit], bytes], str, str]] = [
    # --- XML-level attacks and broken XML: refused by the hardened parser
    ("xxe-file", lambda k: b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', RAW, "XML_DTD_FORBIDDEN"),
    ("xxe-network", lambda k: b'<!DOCTYPE a [<!ENTITY x SYSTEM "http://127.0.0.1:1/">]><a>&x;</a>', RAW,
     "XML_DTD_FORBIDDEN"),
    ("billion-laughs", lambda k: b'<!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>',
     RAW, "XML_DTD_FORBIDDEN"),
    ("quadratic-blowup", lambda k: b'<!DOCTYPE q [<!ENTITY x "' + b"A" * 20000 + b'">]><q>' + b"&x;" * 2000 + b"</q>",
     RAW, "XML_DTD_FORBIDDEN"),
    ("external-dtd", lambda k: b'<!DOCTYPE a SYSTEM "http://127.0.0.1:1/evil.dtd"><a/>', RAW, "XML_DTD_FORBIDDEN"),
    ("dtd-inside-soap", lambda k: b'<!DOCTYPE soap:Envelope [<!ENTITY e "x">]>' + wrap_soap(k.signed())[38:], RAW,
     "XML_DTD_FORBIDDEN"),
    ("xinclude", lambda k: wrap_soap(b'<x:include xmlns:x="http://www.w3.org/2001/XInclude" href="/etc/passwd"/>'),
     RAW, "XML_XINCLUDE_FORBIDDEN"),
    ("deep-nesting", lambda k: wrap_soap(b"<d>" * 200 + b"</d>" * 200), RAW, "XML_TOO_DEEP"),
    ("very-deep-nesting", lambda k: b"<d>" * 20000 + b"</d>" * 20000, RAW, "XML_TOO_DEEP"),
    ("huge-attribute", lambda k: wrap_soap(b'<a x="' + b"A" * (17 * 1024 * 1024) + b'"/>'), RAW, "XML_TOO_LARGE"),
    ("invalid-utf8", lambda k: _edit(wrap_soap(k.signed()), "Nguyễn".encode(), b"Nguy\xc3\x28n"), RAW, "XML_ENCODING"),
    ("utf16", lambda k: wrap_soap(k.signed()).decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
     .encode("utf-16"), RAW, "XML_ENCODING"),
    ("truncated", lambda k: wrap_soap(k.signed())[:-400], RAW, "XML_MALFORMED"),
    ("empty", lambda k: b"", RAW, "XML_MALFORMED"),
    ("not-xml", lambda k: b'{"service": "DongBoHoSoMC"}', RAW, "XML_MALFORMED"),
    ("processing-instruction", lambda k: _edit(wrap_soap(k.signed()), b"<soap:Body>", b"<soap:Body><?php x?>"), RAW,
     "XML_PI_FORBIDDEN"),
    ("not-soap", lambda k: k.signed(), RAW, "XML_MALFORMED"),
    # --- signatures: refused by the verifier
    ("unsigned", lambda k: etree.tostring(_envelope()), "sign-none", "SIGNATURE_MISSING"),
    ("sha1-signature", lambda k: k.sha1_signed(), "", "SIGNATURE_WEAK_ALGORITHM"),
    ("signature-moved-into-body", lambda k: _move_signature_into_body(k.signed()), "", "SIGNATURE_MISSING"),
    ("signature-duplicated", lambda k: _duplicate_signature(k.signed()), "", "SIGNATURE_MULTIPLE"),
    ("signature-wrapping", lambda k: _wrap(k.signed()), "", "SIGNATURE_DIGEST_MISMATCH"),
    ("payload-edited-after-signing", lambda k: _edit(k.signed(), b"<dvc:TrangThaiHoSo>2<",
                                                     b"<dvc:TrangThaiHoSo>10<"), "", "SIGNATURE_DIGEST_MISMATCH"),
    ("header-readdressed-after-signing", lambda k: _edit(k.signed(), b"000.00.00.G22", b"000.00.00.G23"), "",
     "SIGNATURE_DIGEST_MISMATCH"),
    ("signature-value-corrupted", lambda k: _corrupt_signature_value(k.signed()), "", "SIGNATURE_VALUE_INVALID"),
    ("reference-to-an-id", lambda k: k.id_reference_signed(), "", "SIGNATURE_UNEXPECTED_REFERENCE"),
    ("foreign-ca", lambda k: k.foreign.sign(_envelope()), "", "CERTIFICATE_UNTRUSTED"),
    ("expired-certificate", lambda k: k.identity(not_before=NOW - dt.timedelta(days=400),
                                                  not_after=NOW - dt.timedelta(days=1)).sign(_envelope()), "",
     "CERTIFICATE_EXPIRED"),
    ("not-yet-valid-certificate", lambda k: k.identity(not_before=NOW + dt.timedelta(days=2),
                                                        not_after=NOW + dt.timedelta(days=400)).sign(_envelope()), "",
     "CERTIFICATE_NOT_YET_VALID"),
    ("wrong-key-usage", lambda k: k.identity(key_usage={"key_encipherment"}).sign(_envelope()), "",
     "CERTIFICATE_KEY_USAGE"),
    ("revoked-certificate", None, "", "CERTIFICATE_REVOKED"),  # built in the test: needs the sandbox's CRL
    # --- envelopes: well signed but wrong for this exchange
    ("wrong-recipient", lambda k: k.signed(_envelope(to=Party("000.00.00.G23", "Bộ khác"))), "", "WRONG_RECIPIENT"),
    ("sender-is-not-the-signer", lambda k: k.signed(_envelope(sender=Party("000.00.00.G11", "Bộ khác"))), "",
     "WRONG_SENDER"),
    ("schema-invalid-payload", lambda k: k.signed(_envelope(payload=element(
        DVC_PORTAL.namespace, "DongBoHoSoMC", {"isUpdating": False, "HoSo": [dossier(DOSSIER, status=11)]},
        prefix="dvc"))), "", "SCHEMA_INVALID"),
    ("unprefixed-edxml", _unprefixed, "", "ENVELOPE_INVALID"),
    # --- the shape gateways read: root edXML -> one envelope -> header -> parts
    ("legacy-bare-envelope", _legacy, "", "ENVELOPE_LEGACY_SHAPE"),
    ("two-envelopes-under-one-root", _two_envelopes, "", "ENVELOPE_STRUCTURE"),
    ("envelope-outside-the-root", _envelope_outside_the_root, "", "ENVELOPE_STRUCTURE"),
    ("attachment-with-a-forged-content-id", _forged_content_id, "", "ENVELOPE_ATTACHMENT_MISMATCH"),
    ("subject-disagrees-with-soapaction", lambda k: k.signed(_envelope(subject="TraCuuHoSo")), "",
     "ENVELOPE_INVALID"),
    ("unknown-soapaction", lambda k: k.signed(), "XoaHoSo", "UNKNOWN_OPERATION"),
]


@pytest.fixture(scope="module")
def corpus_sandbox(request, pki, tmp_path_factory):
    """One sandbox for the corpus, trusting the dev CA and a CRL that revokes one hub certificate."""
    from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer

    ca = load_ca(pki.ca_p12, PASSWORD)
    revoked = issue_certificate(ca, None, HUB_AGENCY, key_type="ec")
    crl = tmp_path_factory.mktemp("crl") / "crl.pem"
    revoke(crl, ca, revoked.certificate, when=NOW - dt.timedelta(hours=1))
    server = SandboxServer(SandboxConfig(port=0, store_path=MEMORY, pki_dir=pki.pki_dir, key_password=PASSWORD,
                                         procedures=50, crls=(crl,)))
    server.start()
    revoked_signer = Signer(SigningIdentity.from_objects(revoked.private_key, revoked.certificate,
                                                         (ca.certificate,)), "ecdsa-sha256")
    yield server, revoked_signer
    server.close()


def test_the_corpus_is_large_and_every_case_is_distinct():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, build, action, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_request_is_refused_with_its_specific_code(name, build, action, expected, corpus_sandbox, pki,
                                                           hub_signer, hub_verifier, foreign_signer):
    server, revoked_signer = corpus_sandbox
    kit = Kit(pki, hub_signer, foreign_signer)
    if name == "revoked-certificate":
        data = wrap_soap(revoked_signer.sign(_envelope()))
    else:
        built = build(kit)
        data = built if action == RAW else wrap_soap(built)
    soap_action = "XoaHoSo" if action == "XoaHoSo" else "DongBoHoSoMC"
    client = SandboxClient(server.base_url, hub_signer, hub_verifier)
    dossiers_before = server.store.count(operation="DongBoHoSoMC", outcome="OK")
    reply = client.read("dvc_portal", client.post_raw("dvc_portal", data, soap_action, timeout=30))
    assert reply.envelope is None, f"{name} was accepted"
    assert reply.fault_code == expected, f"{name}: expected {expected}, got {reply.fault_code}"
    assert reply.http.status_code in (413, 500)
    # nothing processed, the refusal recorded, the server still healthy
    assert server.store.count(operation="DongBoHoSoMC", outcome="OK") == dossiers_before
    assert server.store.received()[-1].outcome == expected
    healthy = client.call("dvc_portal", "TraCuuHoSo", {"MaHoSo": DOSSIER})
    assert healthy.envelope is not None


def test_a_request_cut_off_mid_body_is_neither_processed_nor_recorded(sandbox):
    """A worker killed while sending: the portal never received a request, so nothing is refused."""
    import socket
    from urllib.parse import urlsplit

    before = sandbox.store.count()
    url = urlsplit(sandbox.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(b"POST /dvc HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\n"
                     b'SOAPAction: "DongBoHoSoMC"\r\nContent-Length: 5000\r\n\r\n<S:Envelope xmlns:S="urn:x">')
        sock.shutdown(socket.SHUT_WR)  # the sender is gone
        assert sock.recv(1024) == b""  # no answer: the connection is just closed
    assert sandbox.store.count() == before
