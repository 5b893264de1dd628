"""A signed round trip to a national service: the smallest proof that an exchange works.

Used by the ``lienthong_healthcheck`` DAG, ``lienthong healthcheck`` and ``lienthong demo``. Each
probe is a read-only operation, so it can run every hour against production without side effects:
it exercises the whole path (envelope, schema, signing, TLS, SOAP, signature verification of the
reply, audit trail) and reports what it saw.
"""

from __future__ import annotations

from typing import Any

from ...connectors.port import PartnerCall
from ...connectors.services import SERVICES, service
from ...connectors.transport import transport_for
from ..audit import AuditTrail, ledger
from ..settings import Settings
from ..store import open_store

#: service → (operation, payload fields): read-only operations every national service offers.
PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "csdl_tthc": ("LayDanhSachTTHC", {"Trang": 1, "SoBanGhi": 1}),
    "dvc_portal": ("TraCuuHoSo", {"MaHoSo": "000.00.00.G10-20260101-0000001"}),
    "baocao": ("LayTrangThaiBaoCao", {"MaBaoCao": "HEALTHCHECK-PROBE"}),
}


def roundtrip(settings: Settings, service_name: str, *, audit: AuditTrail | None = None) -> dict[str, Any]:
    """One exchange (signed, over SOAP) with ``service_name``; returns a JSON-able summary or raises a HubError."""
    spec = service(service_name)
    if audit is None:
        audit = ledger(open_store(settings))
    operation, fields = PROBES[spec.name]
    transport = transport_for(settings, spec.name, audit=audit)
    answer = transport.handle(PartnerCall(operation, fields))
    return {
        "service": spec.name,
        "endpoint": transport.address,
        "operation": operation,
        "request_document_id": answer.request_document_id,
        "reply_document_id": answer.reply_document_id,
        "signed_by": answer.signer_subject,
        "signer_agency": answer.signer_agency,
        "latency_ms": round(answer.latency_ms, 1),
        "audit_seqs": list(answer.audit_seqs),
    }


def all_services() -> list[str]:
    return list(SERVICES)
