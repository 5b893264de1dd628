"""Constants and builders shared by the signing tests (a plain module so tests can import it)."""

from __future__ import annotations

import datetime as dt

from lxml import etree

HUB_AGENCY = "000.00.00.G10"
HUB_NAME = "Bộ Nông nghiệp và Môi trường"
NATIONAL_AGENCY = "000.00.00.G22"
PASSWORD = "mật-khẩu-thử-nghiệm-9f3a"

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DVC_NS = "urn:lienthong:dvc:1"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_envelope(dossiers: int = 2) -> etree._Element:
    """A realistic unsigned envelope (edXML profile + DongBoHoSoMC payload), built directly with lxml."""
    E = lambda tag: f"{{{EDXML_NS}}}{tag}"  # noqa: E731
    root = etree.Element(E("edXMLEnvelope"), nsmap={"edXML": EDXML_NS})
    header = etree.SubElement(root, E("edXMLHeader"))
    mh = etree.SubElement(header, E("MessageHeader"))
    for tag, code, name in (("From", HUB_AGENCY, HUB_NAME), ("To", NATIONAL_AGENCY, "Văn phòng Chính phủ")):
        org = etree.SubElement(mh, E(tag))
        etree.SubElement(org, E("OrganId")).text = code
        etree.SubElement(org, E("OrganName")).text = name
    etree.SubElement(mh, E("DocumentId")).text = "0f8c2a9e6b7d4c1aa3e5f7b9d1c3e5a7"
    pi = etree.SubElement(mh, E("PromulgationInfo"))
    etree.SubElement(pi, E("PromulgationDate")).text = "2026/06/09"
    etree.SubElement(mh, E("Subject")).text = "DongBoHoSoMC"
    thl = etree.SubElement(header, E("TraceHeaderList"))
    th = etree.SubElement(thl, E("TraceHeader"))
    etree.SubElement(th, E("OrganId")).text = HUB_AGENCY
    etree.SubElement(th, E("Timestamp")).text = "2026/06/09 10:15:00"
    body = etree.SubElement(root, E("edXMLBody"))
    payload = etree.SubElement(body, E("Payload"))
    req = etree.SubElement(payload, f"{{{DVC_NS}}}DongBoHoSoMC", nsmap={"dvc": DVC_NS})
    for i in range(dossiers):
        hs = etree.SubElement(req, f"{{{DVC_NS}}}HoSo")
        for tag, value in (("MaHoSo", f"G09.20-20260609-{i:07d}"), ("MaTTHC", "1.005129"),
                           ("TenTTHC", "Cấp giấy chứng nhận đủ điều kiện an toàn thực phẩm"),
                           ("ChuHoSo", "Nguyễn Văn An"), ("TrangThaiHoSo", "2"), ("KenhThucHien", "2")):
            etree.SubElement(hs, f"{{{DVC_NS}}}{tag}").text = value
    return root


def dvc(tag: str) -> str:
    return f"{{{DVC_NS}}}{tag}"


def ds(tag: str) -> str:
    return f"{{{DSIG_NS}}}{tag}"


def edxml(tag: str) -> str:
    return f"{{{EDXML_NS}}}{tag}"


def raw_sign(
    root: etree._Element,
    identity,
    *,
    signature_algorithm=None,
    digest_algorithm=None,
    c14n_algorithm=None,
    reference_uri=None,
    certs=None,
    exclude_c14n_transform_element: bool = False,
) -> bytes:
    """Sign with signxml directly, bypassing the hub's Signer profile, to craft off-profile signatures.

    SHA-1 is refused by signxml's XMLSigner by default; the subclass lifts that refusal so the
    tests can produce a genuine (cryptographically valid) SHA-1 signature for the verifier to reject.
    """
    from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner

    class PermissiveSigner(XMLSigner):
        def check_deprecated_methods(self):  # allow SHA-1 on purpose
            return None

    signer = PermissiveSigner(
        signature_algorithm=signature_algorithm or SignatureMethod.RSA_SHA256,
        digest_algorithm=digest_algorithm or DigestAlgorithm.SHA256,
        c14n_algorithm=c14n_algorithm or CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(
        root,
        key=identity.private_key,
        cert=certs or [identity.certificate],
        reference_uri=reference_uri,
        exclude_c14n_transform_element=exclude_c14n_transform_element,
    )
    return etree.tostring(signed, encoding="UTF-8")


def parse(data: bytes) -> etree._Element:
    from lienthong.hub.xmlsafe import parse_xml

    return parse_xml(data)


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, encoding="UTF-8")
