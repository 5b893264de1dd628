"""The JSON transport: the national portal's integration adapter, as ministries' one-stop systems call it.

The second implementation of the partner port (:mod:`.port`), beside the SOAP one: the same
``PartnerCall`` from ``dvc_portal``, carried as the adapter expects it (``shared/DOMAIN.md``, "The
portal's JSON adapter"):

- **login**: ``POST {base}{auth path}`` with ``Accept``/``Content-Type: application/json``,
  ``Charset: utf-8`` and ``dstcode``; body ``{"username", "password"}`` → ``{"session", "error_code":
  0}``. The token is kept in memory only, reused by every thread, renewed before the ``expires_in``
  the adapter announced (when it does) and after any "session expired" answer: one new login, then
  the call once more;
- **data services** on ``{base}{integration path}``: ``{"session", "madonvi", "service": Name, ...}``
  with ``DongBoHoSoMC`` (``isUpdating`` "True"/"False", ``data``), ``CapNhatTienDoHoSoMC``
  (``data``) and ``TraCuuHoSo`` (``mahoso``);
- **answers** ``{"error_code", "message", "result"}``: 0 is success; anything else (another code,
  an HTTP status, an HTML page from a proxy, a body that is not JSON or misses a field) is
  classified once, here, into the hub's error tree with the adapter's own words kept.

Values go as the adapter expects them: strings, flags "1"/"0", dates as they come from the mapping
(``yyyyMMddHHmmss``, Vietnam time). Every request and answer is recorded in the audit trail
byte for byte, except the password and the session token, which are replaced by a marker in the
stored bytes (``«redacted:…»``): the chain covers exactly what is stored. The exchange itself is the
bounded one of :mod:`.http` (one deadline, replies read with the operation's size limit).

The dictionary services (``{base}{share path}``) feed the catalogue sync: ``LayDanhSachTTHC``,
``LayThuTuc`` (``maTTHC``), ``LayDanhMucCoQuan``, ``LayDanhMucLinhVuc``; the catalogue keeps its
watermark from each procedure's ``NGAYCAPNHAT``, so an adapter that lists procedures without it is
refused by name. Only what the adapter offers goes over it: the result-file upload and reporting
stay SOAP operations (a JSON transport refuses them, naming them).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..hub.envelope import new_document_id
from ..hub.errors import (
    ConfigurationError,
    FatalError,
    HubError,
    PartnerFault,
    ServiceUnavailable,
    TransientFault,
    UnexpectedContentType,
    UnexpectedResponse,
)
from .exchange import ANSWER_OUTCOMES, audited_exchange
from .http import HttpLimits, HttpReply, PartnerHttp
from .payload import iso_moment
from .port import PartnerAnswer, PartnerCall
from .services import CSDL_TTHC, DVC_PORTAL, THUTUC_LISTS, ServiceSpec, service

#: what a JSON answer may be labelled
JSON_CONTENT_TYPES = ("application/json", "text/json", "text/plain")
#: the markers that replace secrets in the audited bytes
REDACTED_PASSWORD = "«redacted:password»"
REDACTED_SESSION = "«redacted:session»"
#: the audit trail's operation name of a login
LOGIN = "DangNhap"
#: a login is renewed this long before the expiry the adapter announced
RENEW_BEFORE_S = 60.0
#: words of an answer that says the session is no longer valid (the adapter's codes differ between
#: deployments; its message says it)
_EXPIRED_WORDS = ("session expired", "session invalid", "invalid session", "hết hạn", "phiên đăng nhập",
                  "phien dang nhap", "token expired", "chưa đăng nhập")


@dataclass(frozen=True)
class JsonAdapterSettings:
    """How to reach one deployment of the adapter (``LIENTHONG_DVC_*``, or the Airflow connection)."""

    base_url: str
    username: str
    password: str
    dstcode: str
    auth_path: str = "/auth"
    integration_path: str = "/integration"
    share_path: str = "/share"

    @classmethod
    def of(cls, endpoint, service_name: str) -> JsonAdapterSettings:
        missing = [name for name, value in (("URL", endpoint.url), ("USERNAME", endpoint.username),
                                            ("PASSWORD", endpoint.password), ("DSTCODE", endpoint.dstcode))
                   if not value]
        if missing:
            prefix = {"dvc_portal": "LIENTHONG_DVC", "csdl_tthc": "LIENTHONG_CSDL"}.get(service_name, service_name)
            raise ConfigurationError(f"{service_name} over json needs {', '.join(f'{prefix}_{m}' for m in missing)} "
                                     "(or the Airflow connection's host, login, password and extra dstcode)")
        return cls(base_url=endpoint.url.rstrip("/"), username=endpoint.username, password=endpoint.password,
                   dstcode=endpoint.dstcode, auth_path=endpoint.auth_path or "/auth",
                   integration_path=endpoint.integration_path or "/integration",
                   share_path=endpoint.share_path or "/share")


def national_value(value: Any) -> Any:
    """A canonical value as the adapter expects it: strings, flags "1"/"0", lists and records kept."""
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is an int
        return "1" if value else "0"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, datetime):
        from ..hub.envelope import VN_TZ

        return value.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")
    if isinstance(value, Mapping):
        return {k: national_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [national_value(v) for v in value]
    return str(value)


# --- the operations the adapter offers: (path kind, request body, answer → the port's fields) ----
def _dongbo_body(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"isUpdating": "True" if params.get("isUpdating") else "False",
            "data": national_value(list(params.get("HoSo") or []))}


def _capnhat_body(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"data": national_value(list(params.get("QuaTrinhXuLy") or []))}


def _per_item(sent_key: str) -> Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]]:
    """One ``KetQua`` per dossier sent: from the answer's items when it names them, else the
    batch's own ``error_code`` 0 accepts each."""
    def decode(params: Mapping[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        sent = [item.get("MaHoSo") for item in params.get(sent_key) or []]
        items = answer.get("result") or []
        named = {str(i.get("MaHoSo")): i for i in items if isinstance(i, Mapping) and i.get("MaHoSo")}
        results = []
        for ma in sent:
            item = named.get(str(ma))
            if item is None:
                results.append({"MaHoSo": ma, "MaLoi": "0", "MoTa": str(answer.get("message") or "")})
            else:
                code = item.get("MaLoi", item.get("error_code", 0))
                results.append({"MaHoSo": ma, "MaLoi": str(code), "MoTa": str(item.get("MoTa", item.get("message")) or "")})
        return {"KetQua": results}
    return decode


def _tracuu_body(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"mahoso": str(params.get("MaHoSo") or "")}


def _tracuu_answer(params: Mapping[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    items = [i for i in answer.get("result") or [] if isinstance(i, Mapping)]
    found = items[0] if items else None
    return {"MaHoSo": str(params.get("MaHoSo") or ""), "TonTai": "true" if found is not None else "false",
            **({"TrangThaiHoSo": str(found["TrangThaiHoSo"])} if found and found.get("TrangThaiHoSo") is not None else {}),
            **({"NgayCapNhat": str(found["NgayCapNhat"])} if found and found.get("NgayCapNhat") else {})}


def _listing_body(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (("tungay", national_value(params.get("TuNgay"))), ("trang", national_value(params.get("Trang"))),
                              ("sobanghi", national_value(params.get("SoBanGhi")))) if v is not None}


def _listing_answer(params: Mapping[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The adapter's list of procedures as the catalogue reads a page of it. A deployment that
    pages gives ``total``; one that does not answers everything at once (page 1 is all of it). The
    catalogue keeps its watermark from NGAYCAPNHAT: an adapter that omits it cannot feed the sync."""
    items = [i for i in answer.get("result") or [] if isinstance(i, Mapping)]
    page = int(params.get("Trang") or 1)
    paged = "total" in answer
    if not paged and page > 1:
        items = []
    out = []
    for item in items:
        if not item.get("MATTHC") or not item.get("NGAYCAPNHAT"):
            raise UnexpectedResponse(f"the adapter's LayDanhSachTTHC lists {item.get('MATTHC') or 'a procedure'} without "
                                     "MATTHC/NGAYCAPNHAT: the catalogue sync needs both (reach csdl_tthc over soap)")
        # the adapter lists the published catalogue: an item that says nothing else is published
        out.append({"MATTHC": str(item["MATTHC"]), "NGAYCAPNHAT": iso_moment(str(item["NGAYCAPNHAT"])),
                    "TRANGTHAI": str(item.get("TRANGTHAI", "1"))})
    total = int(answer["total"]) if paged else (len(out) if page == 1 else 0)
    return {"TongSo": str(total), "Trang": str(page), "SoBanGhi": str(params.get("SoBanGhi") or len(out)), "TTHC": out}


def _thutuc_body(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"maTTHC": str(params.get("MATTHC") or "")}


def _thutuc_answer(params: Mapping[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    items = [i for i in answer.get("result") or [] if isinstance(i, Mapping)]
    if not items:
        raise PartnerFault(f"the adapter has no procedure {params.get('MATTHC')}: {answer.get('message') or 'empty result'}",
                           fault_code="KHONG_TON_TAI")
    return {"ThuTuc": _record(items[0])}


def _record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A procedure record with the catalogue's repeated fields as lists, leaves as text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            value = _record(value)
        elif isinstance(value, list):
            value = [_record(v) if isinstance(v, Mapping) else ("" if v is None else str(v)) for v in value]
        elif value is not None:
            value = str(value) if not isinstance(value, bool) else ("1" if value else "0")
        else:
            continue
        if key in THUTUC_LISTS and not isinstance(value, list):
            value = [value]
        out[key] = value
    return out


def _dictionary(key: str) -> Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]]:
    def decode(params: Mapping[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        return {key: [_record(i) for i in answer.get("result") or [] if isinstance(i, Mapping)]}
    return decode


OPERATIONS: dict[str, dict[str, tuple[str, Callable, Callable]]] = {
    CSDL_TTHC.name: {
        "LayDanhSachTTHC": ("share", _listing_body, _listing_answer),
        "LayThuTuc": ("share", _thutuc_body, _thutuc_answer),
        "LayDanhMucCoQuan": ("share", lambda params: {}, _dictionary("CoQuan")),
        "LayDanhMucLinhVuc": ("share", lambda params: {}, _dictionary("LinhVuc")),
    },
    DVC_PORTAL.name: {
        "DongBoHoSoMC": ("integration", _dongbo_body, _per_item("HoSo")),
        "CapNhatTienDoHoSoMC": ("integration", _capnhat_body, _per_item("QuaTrinhXuLy")),
        "TraCuuHoSo": ("integration", _tracuu_body, _tracuu_answer),
    },
}


class JsonTransport:
    """The portal's JSON adapter as a :class:`~.port.PartnerTransport`. Thread-safe; one per process."""

    def __init__(self, settings, service_name: str, *, audit, session=None) -> None:
        self.spec: ServiceSpec = service(service_name)
        if self.spec.name not in OPERATIONS:
            raise ConfigurationError(f"{self.spec.name} is not reached over the portal's JSON adapter; use soap for it")
        self.settings = settings
        self.endpoint = settings.partner(service_name)
        self.adapter = JsonAdapterSettings.of(self.endpoint, self.spec.name)
        self.address = self.adapter.base_url
        self.audit = audit
        self.agency = settings.agency_code
        self.http = PartnerHttp(settings, self.spec, self.endpoint, self.address, session)
        self._lock = threading.Lock()
        self._login_lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = float("inf")

    # --- the wire ------------------------------------------------------------------------------
    def limits(self, operation: str) -> HttpLimits:
        return self.http.limits(operation)

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Content-Type": "application/json", "Charset": "utf-8",
                "dstcode": self.adapter.dstcode}

    def _exchange(self, operation: str, path: str, body: dict[str, Any], *, document_id: str,
                  correlation_id: str | None, attempt: int, secrets: Mapping[str, str]) -> tuple[dict[str, Any], PartnerAnswer]:
        """One POST, audited (secrets replaced by markers), classified; the parsed answer."""
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        stored = _redact(raw, secrets)
        common = dict(partner=self.spec.name, operation=operation, document_id=document_id,
                      correlation_id=correlation_id or document_id, attempt=attempt)
        limits = self.limits(operation)

        def stored_answer(received: bytes) -> bytes:
            # a login's answer carries the new token: a secret too
            return _redact(received, {**secrets, **_session_in(received)} if operation == LOGIN else secrets)

        done = audited_exchange(
            self.audit, common=common, sender=self.agency, recipient=self.endpoint.agency_code, request=stored,
            send=lambda: self.http.client().post(self.address + path, raw, self._headers(), limits,
                                                 content_types=JSON_CONTENT_TYPES),
            accept=lambda reply: self._classify(operation, reply), stored=stored_answer,
            answer_outcomes=((_SessionExpired, "session_expired"), *ANSWER_OUTCOMES))
        return done.accepted, PartnerAnswer(
            operation=operation, result={}, request_document_id=document_id, reply_document_id=None,
            latency_ms=done.latency_ms, audit_seqs=done.audit_seqs, request_bytes=stored,
            response_bytes=done.response_bytes)

    def _classify(self, operation: str, reply: HttpReply) -> dict[str, Any]:
        name = self.spec.name
        status, content = reply.status, reply.content
        if status in (401, 403):
            raise _SessionExpired(f"{name} answered HTTP {status}")
        if status in (429, 502, 503, 504) or status >= 500:
            raise ServiceUnavailable(f"{name} answered HTTP {status}{_said(content)}", status=status)
        if status == 404:
            raise ConfigurationError(f"{name} answered HTTP 404 at {self.address}: check the adapter's URL and paths")
        if status >= 400:
            raise FatalError(f"{name} answered HTTP {status} to {operation}{_said(content)}")
        try:
            answer = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            shown = content[:120].decode("utf-8", "replace")
            if content.lstrip()[:1] == b"<":
                raise UnexpectedContentType(f"{name} answered {operation} with markup, not JSON (a proxy's "
                                            f"error page?): {shown!r}", status=status) from None
            raise UnexpectedResponse(f"{name} answered {operation} with a body that is not JSON: {shown!r}") from None
        if not isinstance(answer, dict) or "error_code" not in answer:
            raise UnexpectedResponse(f"{name} answer to {operation} has no error_code: {str(answer)[:120]!r}")
        code, message = answer.get("error_code"), str(answer.get("message") or "")
        if str(code) not in ("0", "0.0"):
            if any(word in message.lower() for word in _EXPIRED_WORDS):
                raise _SessionExpired(message)
            if str(code) in _TEMPORARY_CODES:
                raise TransientFault(f"{name} refused {operation} for now (error_code {code}): {message}")
            raise PartnerFault(f"{name} refused {operation} (error_code {code}): {message}", fault_code=str(code))
        result = answer.get("result", [])
        if result is not None and not isinstance(result, list):
            raise UnexpectedResponse(f"{name} answer to {operation}: result is a {type(result).__name__}, not a list")
        return answer

    # --- the session ---------------------------------------------------------------------------
    def _login(self) -> str:
        body = {"username": self.adapter.username, "password": self.adapter.password}
        answer, _ = self._exchange(LOGIN, self.adapter.auth_path, body, document_id=new_document_id(),
                                   correlation_id=None, attempt=1,
                                   secrets={self.adapter.password: REDACTED_PASSWORD})
        token = answer.get("session")
        if not isinstance(token, str) or not token:
            raise UnexpectedResponse(f"{self.spec.name} login answered no session token")
        expires_in = answer.get("expires_in")
        with self._lock:
            self._token = token
            self._renew_at = (time.monotonic() + float(expires_in) - RENEW_BEFORE_S
                              if isinstance(expires_in, (int, float)) and expires_in > 0 else float("inf"))
        return token

    def _token_now(self, *, renew: str | None = None) -> str:
        """The session token, logging in when there is none, it is due for renewal, or it is the
        ``renew`` token the adapter just refused. One login at a time: threads that asked meanwhile
        use the token it brought."""
        with self._login_lock:
            with self._lock:
                token = self._token if time.monotonic() < self._renew_at else None
            if token is None or token == renew:
                token = self._login()
            return token

    # --- the partner port ----------------------------------------------------------------------
    def handle(self, call: PartnerCall) -> PartnerAnswer:
        operations = OPERATIONS[self.spec.name]
        if call.operation not in operations:
            raise ConfigurationError(f"{call.operation} is not offered by the portal's JSON adapter; reach "
                                     f"{self.spec.name} over soap for it")
        kind, encode, decode = operations[call.operation]
        path = self.adapter.integration_path if kind == "integration" else self.adapter.share_path
        document_id = call.document_id or new_document_id()
        refused: str | None = None
        for renew in (False, True):
            token = self._token_now(renew=refused)
            body = {"session": token, "madonvi": self.agency, "service": call.operation, **encode(call.params)}
            try:
                answer, exchange = self._exchange(call.operation, path, body, document_id=document_id,
                                                  correlation_id=call.correlation_id, attempt=call.attempt,
                                                  secrets={token: REDACTED_SESSION})
            except _SessionExpired:
                refused = token
                if renew:
                    raise FatalError(f"{self.spec.name} refused a fresh session for {call.operation}: check the "
                                     "adapter account (LIENTHONG_DVC_USERNAME / _PASSWORD)") from None
                continue
            return PartnerAnswer(**{**exchange.__dict__, "result": decode(call.params, answer)})
        raise AssertionError("unreachable")  # pragma: no cover


class _SessionExpired(HubError):
    """The adapter no longer accepts the token: log in again (never leaves this module)."""

    code = "SESSION_EXPIRED"


#: adapter error codes that mean "later" rather than "never" (the sandbox's 3; deployments may add)
_TEMPORARY_CODES = frozenset({"3"})


def _session_in(received: bytes) -> dict[str, str]:
    try:
        token = json.loads(received.decode("utf-8")).get("session")
    except (UnicodeDecodeError, ValueError, AttributeError):
        return {}
    return {token: REDACTED_SESSION} if isinstance(token, str) and token else {}


def _said(content: bytes) -> str:
    text = content[:200].decode("utf-8", "replace").strip()
    return f": {text!r}" if text else ""


def _redact(raw: bytes, secrets: Mapping[str, str]) -> bytes:
    """``raw`` with each secret replaced by its marker, as it appears in JSON (escaped)."""
    for secret, marker in secrets.items():
        if not secret:
            continue
        for form in {secret, json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(secret)[1:-1]}:
            raw = raw.replace(form.encode("utf-8"), marker.encode("utf-8"))
    return raw
