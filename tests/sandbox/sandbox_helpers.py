"""A minimal SOAP client for the sandbox tests, built from the hub's own pieces.

The tests talk to the sandbox the way the hub's connectors do (envelope builder, signer, SOAP
framing), but every step can be bent — unsigned, wrong recipient, mismatched SOAPAction, tampered
bytes — to check that the sandbox refuses each with the specific fault code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from lienthong.connectors.payload import element
from lienthong.connectors.services import SERVICES
from lienthong.connectors.soapframe import FAULT_NS, body_bytes, wrap_soap
from lienthong.hub.envelope import Envelope, Party, build_envelope, new_document_id, parse_envelope
from lienthong.hub.validation import validate
from lienthong.hub.xmlsafe import parse_xml
from lienthong.signing import Signer, Verifier
from lxml import etree
from national_helpers import PASSWORD as PASSWORD  # re-exported: the session dev PKI's password (conn_home)

HUB_AGENCY = "000.00.00.G10"
HUB = Party(HUB_AGENCY, "Bộ Nông nghiệp và Môi trường")
NATIONAL_AGENCY = "000.00.00.G22"
NATIONAL = Party(NATIONAL_AGENCY, "Văn phòng Chính phủ")
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


@dataclass
class Reply:
    http: requests.Response
    envelope: Envelope | None  # verified, for a 200
    fault_code: str | None  # for a fault

    @property
    def result(self) -> etree._Element:
        assert self.envelope is not None, f"expected a reply, got fault {self.fault_code}: {self.http.text[:400]}"
        return self.envelope.payload


class SandboxClient:
    def __init__(self, base_url: str, signer: Signer, verifier: Verifier) -> None:
        self.base_url = base_url
        self.signer = signer
        self.verifier = verifier
        self.session = requests.Session()

    def request_bytes(self, service: str, operation: str, content: dict[str, Any] | etree._Element, *,
                      sender: Party = HUB, to: Party = NATIONAL, subject: str | None = None,
                      document_id: str | None = None, signer: Signer | None | bool = True,
                      now: datetime | None = None,
                      mutate_signed: Callable[[bytes], bytes] | None = None) -> bytes:
        spec = SERVICES[service]
        payload = content if isinstance(content, etree._Element) else element(spec.namespace, operation, content)
        env = build_envelope(sender=sender, recipients=[to], subject=subject or operation, payload=payload,
                             document_id=document_id or new_document_id(), now=now)
        if signer is False or signer is None:
            signed = etree.tostring(env, encoding="UTF-8")
        else:
            signed = (self.signer if signer is True else signer).sign(env)
        if mutate_signed is not None:
            signed = mutate_signed(signed)
        return wrap_soap(signed)

    def post_raw(self, service: str, data: bytes, soap_action: str | None, *, timeout: float = 10.0) -> requests.Response:
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        if soap_action is not None:
            headers["SOAPAction"] = f'"{soap_action}"'
        return self.session.post(self.base_url + SERVICES[service].path, data=data, headers=headers, timeout=timeout)

    def call(self, service: str, operation: str, content: dict[str, Any] | etree._Element, *,
             soap_action: str | None = None, timeout: float = 10.0, **kw: Any) -> Reply:
        data = self.request_bytes(service, operation, content, **kw)
        return self.read(service, self.post_raw(service, data, soap_action or operation, timeout=timeout))

    def read(self, service: str, http: requests.Response) -> Reply:
        if http.status_code != 200:
            return Reply(http, None, fault_code(http.content))
        envelope_bytes = body_bytes(http.content)
        assert envelope_bytes is not None, "sandbox replies are framed by wrap_soap"
        verified = self.verifier.verify(envelope_bytes)
        assert verified.signer_agency == NATIONAL_AGENCY
        validate(verified.root, service, what="sandbox reply")
        return Reply(http, parse_envelope(verified.root), None)


def fault_code(data: bytes) -> str | None:
    root = parse_xml(data)
    fault = root.find(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault")
    if fault is None:
        return None
    return fault.findtext(f"detail/{{{FAULT_NS}}}MaLoi")


def dossier(ma: str, status: int = 2, **extra: Any) -> dict[str, Any]:
    """A minimal valid HoSo for DongBoHoSoMC."""
    out: dict[str, Any] = {
        "MaHoSo": ma, "MaTTHC": "1.001012", "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu",
        "MaLinhVuc": "G10-TY", "TenLinhVuc": "Thú y", "KenhThucHien": 2, "ChuHoSo": "Nguyễn Văn An",
        "LoaiDoiTuong": 1, "TrichYeuHoSo": "Kiểm dịch 50 con bò giống nhập khẩu", "NgayNopHoSo": "20260609081530",
        "NgayTiepNhan": "20260609093000", "NgayHenTra": "20260616170000", "TrangThaiHoSo": status,
    }
    out.update(extra)
    return out


def step(ma: str, when: str, status: int, content: str = "Chuyển phòng chuyên môn thẩm định") -> dict[str, Any]:
    return {"MaHoSo": ma, "NguoiXuLy": "Trần Văn Đức", "ChucDanh": "Chuyên viên", "ThoiDiemXuLy": when,
            "PhongBanXuLy": "Phòng Kiểm dịch động vật", "NoiDungXuLy": content, "TrangThai": status}
