"""A signed round trip to a national service: the smallest proof that an exchange works.

Used by the ``lienthong_healthcheck`` DAG, ``lienthong healthcheck`` and ``lienthong demo``. Each
probe is a read-only operation, so it can run every hour against production without side effects:
it exercises the whole path (envelope, schema, signing, TLS, SOAP, signature verification of the
reply, audit trail) and reports what it saw.
"""

from __future__ import annotations

from typing import Any

from ...connectors.payload import element
from ...connectors.services import SERVICES, service
from ...connectors.soap import SoapConnector
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
    """One signed exchange with ``service_name``; returns a JSON-able summary or raises a HubError."""
    spec = service(service_name)
    if audit is None:
        audit = ledger(open_store(settings))
    operation, fields = PROBES[spec.name]
    connector = SoapConnector(settings, spec.name, audit=audit)
    reply = connector.call(operation, element(spec.namespace, operation, fields))
    return {
        "service": spec.name,
        "endpoint": connector.address,
        "operation": operation,
        "request_document_id": reply.request_document_id,
        "reply_document_id": reply.envelope.document_id,
        "signed_by": reply.signer.signer_subject,
        "signer_agency": reply.signer.signer_agency,
        "latency_ms": round(reply.latency_ms, 1),
        "audit_seqs": list(reply.audit_seqs),
    }


def all_services() -> list[str]:
    return list(SERVICES)
