"""The portal's JSON integration adapter, emulated beside the SOAP services on the same store.

``POST /adapter/auth`` logs in (``{"username", "password"}`` and a ``dstcode`` header → ``{"session",
"error_code": 0, "expires_in"}``); ``POST /adapter/integration`` serves ``DongBoHoSoMC``,
``CapNhatTienDoHoSoMC`` and ``TraCuuHoSo`` with ``{"session", "madonvi", "service", ...}``, and
``POST /adapter/share`` the catalogue's dictionary services (``LayDanhSachTTHC`` with ``tungay``,
``trang``, ``sobanghi`` and a ``total`` in the answer; ``LayThuTuc`` with ``maTTHC``;
``LayDanhMucCoQuan``; ``LayDanhMucLinhVuc``) from the same catalogue as the SOAP side. A request
is turned into the same payload element the SOAP side receives, checked against the same XSD and
handled by the same operation (``sandbox/operations.py``), so the portal's rules (a dossier created
twice, a step older than the last one, a terminal status changed) hold over both transports.
Answers are ``{"error_code", "message", "result"}``:

==========  ===============================================================================
error_code  meaning
==========  ===============================================================================
0           success (per-dossier refusals are in ``result`` with their ``MaLoi``)
1           the request is invalid (a field missing or badly formatted): fatal
2           the session is not valid (expired after ``session_ttl`` seconds, or unknown)
3           temporarily unavailable (fault injection): try again later
4           refused (fault injection: a business rejection)
==========  ===============================================================================
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..connectors.dvc_portal import HOSO_FIELDS, QUATRINH_FIELDS, ordered_record
from ..connectors.payload import element, iso_moment, to_dict
from ..connectors.services import CSDL_TTHC, DVC_PORTAL
from ..hub.envelope import Party, build_envelope, new_document_id, parse_envelope
from ..hub.errors import HubError
from ..hub.validation import validate
from .operations import Call, OperationFault
from .response import Response

ROOT = "/adapter"
AUTH, INTEGRATION, SHARE = f"{ROOT}/auth", f"{ROOT}/integration", f"{ROOT}/share"
JSON = "application/json"
SERVICES = ("DongBoHoSoMC", "CapNhatTienDoHoSoMC", "TraCuuHoSo")
DICTIONARY = ("LayDanhSachTTHC", "LayThuTuc", "LayDanhMucCoQuan", "LayDanhMucLinhVuc")


class JsonAdapter:
    def __init__(self, app: Any) -> None:
        self.app = app  # the SandboxServer: its config, store, operations, fault injector and clock
        self._sessions: dict[str, float] = {}
        self._lock = threading.Lock()

    def expire_sessions(self) -> None:
        """Every session ends now (tests: an expired session mid-batch)."""
        with self._lock:
            self._sessions.clear()

    def handle(self, path: str, headers: Mapping[str, str], data: bytes, *, base_url: str) -> Response:
        config = self.app.config
        if config.latency_ms > 0:
            self.app._stopping.wait(config.latency_ms / 1000.0)
        if (headers.get("dstcode") or "") != config.json_dstcode:
            return _answer(1, f"dstcode {headers.get('dstcode')!r} is not this adapter's ({config.json_dstcode})")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Response(400, b"<html><body>400 Bad Request</body></html>", "text/html")
        if not isinstance(body, dict):
            return _answer(1, "the request must be a JSON object")
        if path == AUTH:
            return self._login(body)
        if not self._valid(body.get("session")):
            return _answer(2, "session expired or invalid: log in again")
        injected = self.app.faults.draw()
        if injected == "unavailable":
            return _answer(3, "the portal is temporarily unavailable (sandbox fault injection)")
        if injected == "fatal":
            return _answer(4, "the portal refused the request (sandbox fault injection)")
        service = body.get("service")
        offered = SERVICES if path == INTEGRATION else DICTIONARY if path == SHARE else ()
        if service not in offered:
            return _answer(1, f"{path} offers no service {service!r} (offered: {', '.join(offered) or 'none'})")
        try:
            answer = self._serve(service, body, base_url) if path == INTEGRATION else self._dictionary(service, body)
        except OperationFault as exc:
            return _answer(1, f"{exc.code}: {exc}")
        except HubError as exc:
            return _answer(1, f"{exc.code}: {exc}")
        response = Response(200, json.dumps(answer, ensure_ascii=False).encode("utf-8"), JSON)
        response.hang = injected == "timeout"
        return response

    # --- the session --------------------------------------------------------------------------
    def _login(self, body: Mapping[str, Any]) -> Response:
        config = self.app.config
        if body.get("username") != config.json_username or body.get("password") != config.json_password:
            return _answer(1, "wrong user name or password")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[token] = time.monotonic() + config.session_ttl
        answer = {"session": token, "error_code": 0, "message": "ok", "expires_in": config.session_ttl}
        return Response(200, json.dumps(answer).encode(), JSON)

    def _valid(self, token: Any) -> bool:
        with self._lock:
            expires = self._sessions.get(token) if isinstance(token, str) else None
            if expires is not None and expires < time.monotonic():
                del self._sessions[token]
                return False
            return expires is not None

    # --- the services ---------------------------------------------------------------------------
    def _serve(self, service: str, body: Mapping[str, Any], base_url: str) -> dict[str, Any]:
        app = self.app
        agency = body.get("madonvi")
        if not isinstance(agency, str) or not agency:
            raise OperationFault("madonvi (the caller's agency code) is missing", code="THIEU_MA_DON_VI")
        if service == "DongBoHoSoMC":
            flag = body.get("isUpdating")
            if flag not in ("True", "False"):
                raise OperationFault(f"isUpdating must be \"True\" or \"False\", not {flag!r}", code="SAI_DINH_DANG")
            fields = {"isUpdating": flag == "True", "HoSo": [_ordered(d, HOSO_FIELDS) for d in _records(body)]}
        elif service == "CapNhatTienDoHoSoMC":
            fields = {"QuaTrinhXuLy": [_ordered(d, QUATRINH_FIELDS) for d in _records(body)]}
        else:
            fields = {"MaHoSo": body.get("mahoso") or body.get("MaHoSo")}
        payload = element(DVC_PORTAL.namespace, service, fields, prefix="dvc")
        document = build_envelope(sender=Party(agency, agency), recipients=[app.national], subject=service,
                                  payload=payload, now=app.clock())
        validate(document, DVC_PORTAL.name, what=f"{service} data")  # the same checks as over SOAP
        envelope = parse_envelope(document)
        received_at = app.clock()
        call = Call(DVC_PORTAL, service, envelope, envelope.payload, received_at, app.config.public_url or base_url)
        handler = app.operations.handler(service)
        raw = json.dumps({k: v for k, v in body.items() if k != "session"}, ensure_ascii=False).encode()
        if service == "TraCuuHoSo":
            result = handler(call, None)
            app.store.log_message(None, service=DVC_PORTAL.name, operation=service, document_id=new_document_id(),
                                  from_agency=agency, outcome="OK", http_status=200, raw=raw, received_at=received_at)
            found = to_dict(result)
            exists = found.get("TonTai") in ("true", "1")
            return {"error_code": 0, "message": "ok",
                    "result": [{k: v for k, v in found.items() if k != "TonTai"}] if exists else []}
        with app.store.write() as conn:
            result = handler(call, conn)
            app.store.log_message(conn, service=DVC_PORTAL.name, operation=service, document_id=new_document_id(),
                                  from_agency=agency, outcome="OK", http_status=200, raw=raw, received_at=received_at)
        items = to_dict(result, lists=frozenset({"KetQua"})).get("KetQua", [])
        refused = sum(1 for i in items if i.get("MaLoi") != "0")
        return {"error_code": 0, "message": f"{len(items) - refused} accepted, {refused} refused",
                "result": [{"MaHoSo": i.get("MaHoSo"), "MaLoi": i.get("MaLoi"), "MoTa": i.get("MoTa", "")}
                           for i in items]}


    def _dictionary(self, service: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The national catalogue's dictionary services, from the same catalogue as the SOAP side."""
        app = self.app
        agency = body.get("madonvi")
        if not isinstance(agency, str) or not agency:
            raise OperationFault("madonvi (the caller's agency code) is missing", code="THIEU_MA_DON_VI")
        fields: dict[str, Any] = {}
        if service == "LayDanhSachTTHC":
            since = body.get("tungay")
            fields = {"TuNgay": iso_moment(since) if isinstance(since, str) else since, "Trang": body.get("trang") or 1, "SoBanGhi": body.get("sobanghi") or 100}
        elif service == "LayThuTuc":
            fields = {"MATTHC": body.get("maTTHC")}
        payload = element(CSDL_TTHC.namespace, service, fields, prefix="tthc")
        document = build_envelope(sender=Party(agency, agency), recipients=[app.national], subject=service,
                                  payload=payload, now=app.clock())
        validate(document, CSDL_TTHC.name, what=f"{service} request")
        envelope = parse_envelope(document)
        received_at = app.clock()
        call = Call(CSDL_TTHC, service, envelope, envelope.payload, received_at, app.config.public_url or "")
        result = to_dict(app.operations.handler(service)(call, None), lists=CSDL_TTHC.repeated_in(service))
        raw = json.dumps({k: v for k, v in body.items() if k != "session"}, ensure_ascii=False).encode()
        app.store.log_message(None, service=CSDL_TTHC.name, operation=service, document_id=new_document_id(),
                              from_agency=agency, outcome="OK", http_status=200, raw=raw, received_at=received_at)
        if service == "LayDanhSachTTHC":
            return {"error_code": 0, "message": "ok", "total": int(result.get("TongSo") or 0),
                    "result": result.get("TTHC", [])}
        if service == "LayThuTuc":
            return {"error_code": 0, "message": "ok", "result": [result["ThuTuc"]] if "ThuTuc" in result else []}
        key = "CoQuan" if service == "LayDanhMucCoQuan" else "LinhVuc"
        return {"error_code": 0, "message": "ok", "result": result.get(key, [])}


def _records(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    data = body.get("data")
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise OperationFault("data must be a non-empty list of records", code="SAI_DINH_DANG")
    return data


def _ordered(record: Mapping[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    try:
        return ordered_record(dict(record), order, "record")
    except ValueError as exc:
        raise OperationFault(str(exc), code="SAI_DINH_DANG") from None


def _answer(code: int, message: str) -> Response:
    return Response(200, json.dumps({"error_code": code, "message": message, "result": []},
                                    ensure_ascii=False).encode("utf-8"), JSON)
