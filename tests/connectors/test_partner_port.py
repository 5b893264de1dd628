"""The partner port: partner modules speak fields through any transport; the SOAP one keeps the wire.

A partner module must work over a transport that is not SOAP at all (the next one is the portal's
JSON adapter): here an in-memory transport answers with plain dicts, and the clients' results are
what the flows rely on. The SOAP transport's decoding of replies must know every repeated field the
schemas declare, or a one-item list would arrive as a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import xmlschema
from lienthong.connectors.csdl_tthc import CsdlTthcClient
from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.port import PartnerAnswer, PartnerCall, PartnerTransport
from lienthong.connectors.reporting import ReportingClient
from lienthong.connectors.services import BAOCAO, CSDL_TTHC, DVC_PORTAL, SERVICES
from lienthong.connectors.soap import SoapConnector
from lienthong.connectors.transport import transport_for
from lienthong.hub.errors import ConfigurationError
from lienthong.hub.settings import Settings


@dataclass
class DictTransport:
    """A transport without a wire: answers from a table, records every call."""

    spec: Any
    answers: dict[str, dict[str, Any]]
    address: str = "memory://partner/path"
    audit: Any = None
    calls: list[PartnerCall] = field(default_factory=list)

    def handle(self, call: PartnerCall) -> PartnerAnswer:
        self.calls.append(call)
        return PartnerAnswer(operation=call.operation, result=self.answers[call.operation],
                             request_document_id=call.document_id or "doc-1", reply_document_id="reply-1",
                             latency_ms=0.1, audit_seqs=(), request_bytes=b"", response_bytes=b"{}")


def _repeated_in_schema(spec, operation: str) -> set[str]:
    schema = xmlschema.XMLSchema(str(spec.xsd_path))
    found: set[str] = set()

    def walk(element, seen: frozenset[int]) -> None:
        kind = element.type
        if kind.is_simple() or kind.content is None or id(kind) in seen:
            return
        for child in kind.content.iter_elements():
            if child.max_occurs is None or child.max_occurs > 1:
                found.add(child.local_name)
            walk(child, seen | {id(kind)})

    walk(schema.elements[f"{operation}Result"], frozenset())
    return found


@pytest.mark.parametrize("service_name,operation",
                         [(s.name, op) for s in SERVICES.values() for op in s.operations])
def test_every_repeated_field_of_every_answer_is_declared(service_name, operation):
    spec = SERVICES[service_name]
    assert set(spec.repeated_in(operation)) == _repeated_in_schema(spec, operation)


def test_the_portal_client_works_over_a_transport_that_is_not_soap():
    transport = DictTransport(DVC_PORTAL, {
        "DongBoHoSoMC": {"KetQua": [{"MaHoSo": "H1", "MaLoi": "0", "MoTa": ""},
                                    {"MaHoSo": "H2", "MaLoi": "HOSO_DA_TON_TAI", "MoTa": "đã có"}]},
        "CapNhatTienDoHoSoMC": {},  # no result at all: an empty list, not a crash
        "TraCuuHoSo": {"MaHoSo": "H1", "TonTai": "true", "TrangThaiHoSo": "4"},
    })
    portal = DvcPortalClient(transport)
    results = portal.sync_dossiers([{"TrangThaiHoSo": 2, "MaHoSo": "H1"}, {"MaHoSo": "H2"}], is_updating=True,
                                   document_id="msg-7", attempt=2)
    assert [(r.ma_ho_so, r.accepted, r.mo_ta) for r in results] == [("H1", True, ""), ("H2", False, "đã có")]
    call = transport.calls[0]
    assert (call.operation, call.document_id, call.attempt) == ("DongBoHoSoMC", "msg-7", 2)
    # the fields leave in the portal's order, whatever order the mapping produced them in
    assert call.params["isUpdating"] is True and list(call.params["HoSo"][0]) == ["MaHoSo", "TrangThaiHoSo"]
    assert portal.update_progress([{"MaHoSo": "H1", "TrangThai": 4}]) == []
    assert portal.lookup("H1") == {"MaHoSo": "H1", "TonTai": True, "TrangThaiHoSo": "4", "NgayCapNhat": None}
    with pytest.raises(ValueError, match="fields the portal does not know: Typo"):
        portal.sync_dossiers([{"MaHoSo": "H3", "Typo": 1}], is_updating=False)
    assert len(transport.calls) == 3  # the refused dossier never reached the transport


def test_the_catalogue_and_reporting_clients_work_over_a_transport_that_is_not_soap():
    catalogue = CsdlTthcClient(DictTransport(CSDL_TTHC, {
        "LayDanhSachTTHC": {"TongSo": "1", "Trang": "1", "SoBanGhi": "50",
                            "TTHC": [{"MATTHC": "1.001", "NGAYCAPNHAT": "2026-11-02T08:00:00+07:00",
                                      "TRANGTHAI": "1"}]},
        "LayThuTuc": {"ThuTuc": {"MATTHC": "1.001", "TENTTHC": "Cấp phép"}},
        "LayDanhMucCoQuan": {},
    }, address="https://user:secret@gw.example.vn:8443/csdl?x=1"))
    page = catalogue.list_page(1, 50, changed_since=datetime(2026, 11, 1, tzinfo=UTC))
    assert (page.total, page.items[0].code, page.items[0].modified.utcoffset().total_seconds()) == (1, "1.001", 25200)
    assert catalogue.procedure("1.001") == {"MATTHC": "1.001", "TENTTHC": "Cấp phép"}
    assert catalogue.agencies() == []
    assert catalogue.endpoint == "https://gw.example.vn:8443/csdl?x=1"  # the watermark's key: no credentials
    reporting = ReportingClient(DictTransport(BAOCAO, {"GuiBaoCao": {"MaBaoCao": "BC1", "TrangThai": "DA_NHAN"}}))
    sent = reporting.send_report(period_kind="THANG", year=2026, period=11, agency_code="G10",
                                 rows=[{"MaCoQuan": "G10", "TiepNhanTrucTuyen": 3}])
    assert (sent.ma_bao_cao, sent.trang_thai, sent.received_at) == ("BC1", "DA_NHAN", None)


def test_a_record_without_its_body_is_refused_by_the_partner_module():
    catalogue = CsdlTthcClient(DictTransport(CSDL_TTHC, {"LayThuTuc": {}}))
    with pytest.raises(ValueError, match="LayThuTucResult has no ThuTuc"):
        catalogue.procedure("1.001")


def test_a_client_refuses_a_transport_to_another_service():
    with pytest.raises(ValueError, match="DvcPortalClient needs a transport for dvc_portal, not csdl_tthc"):
        DvcPortalClient(DictTransport(CSDL_TTHC, {}))


def test_the_configuration_chooses_the_transport(settings, audit, tmp_path):
    transport = transport_for(settings, "dvc_portal", audit=audit)
    assert isinstance(transport, SoapConnector) and isinstance(transport, PartnerTransport)
    assert DvcPortalClient(transport).lookup("000.00.00.G10-20260101-0000001")["TonTai"] is False  # a real exchange
    wrong = Settings.from_env({"LIENTHONG_HOME": str(tmp_path), "LIENTHONG_DVC_TRANSPORT": "Carrier-Pigeon"})
    assert wrong.partner("csdl_tthc").transport == "soap"
    with pytest.raises(ConfigurationError, match="dvc_portal: unknown transport 'carrier-pigeon'; known: soap"):
        transport_for(wrong, "dvc_portal", audit=audit)
