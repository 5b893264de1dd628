"""The sandbox: an HTTP server emulating the three national services, faithfully enough to test against.

It speaks the same contract as production (the WSDL/XSD in ``schemas/``) and applies the same
checks a careful national endpoint would, in this order, answering each failure with a SOAP Fault
whose ``detail/lt:MaLoi`` is the specific error code (so the hub's error classification can be
tested end to end):

1. bounded body read (``XML_TOO_LARGE``), hardened parse (``XML_*``), SOAP 1.1 unwrap;
2. SOAPAction names an operation of the service at that path (``UNKNOWN_OPERATION``);
3. the envelope validates against the service XSD, header and payload together (``SCHEMA_INVALID``);
4. the enveloped signature verifies against the sandbox's trust store (``SIGNATURE_*``,
   ``CERTIFICATE_*``); only the verified subtree is read from here on;
5. Subject = SOAPAction and the payload is that operation's request element (``ENVELOPE_INVALID``);
   the signer's certificate speaks for the From agency (``WRONG_SENDER``); To names the national
   agency (``WRONG_RECIPIENT``);
6. a state-changing message whose (sender, DocumentId) was already applied gets the first answer
   again (outcome ``DUPLICATE``), or ``DUPLICATE_DOCUMENT_ID`` if the content differs;
7. the operation runs (``NOT_FOUND``, ``BUSINESS_REJECTED``, upload codes...), and the reply
   envelope (From national, To the requester, ResponseFor the request) is validated, signed with
   the national key and returned.

Every POST is recorded in the sandbox store with its outcome. Faults can be injected: a share of
requests answered ``503 SERVICE_UNAVAILABLE`` (not processed), a share refused with a fatal
``BUSINESS_REJECTED`` fault (not processed), a share that *is processed* but whose reply never
comes (the connection hangs, then closes: the case where only idempotent resends are safe), plus
a fixed latency. Draws come from one seeded generator, so a run is reproducible.

``GET <service>?wsdl`` serves the WSDL with the real address; the XSDs it imports are served
beside it, and ``GET /dvc/ket-qua/<GiayToId>`` returns an uploaded result file.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import mimetypes
import os
import random
import re
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from lxml import etree

from ..connectors.services import SERVICES, ServiceSpec, schemas_dir
from ..connectors.soapframe import build_fault, unwrap_soap, wrap_soap
from ..hub.envelope import Party, build_envelope, header_fields, new_document_id
from ..hub.errors import (
    ConfigurationError,
    EnvelopeError,
    HubError,
    XmlTooLarge,
)
from ..hub.inbound import open_envelope
from ..hub.settings import NATIONAL_AGENCY_CODE, NATIONAL_AGENCY_NAME, Settings
from ..hub.validation import validate
from ..hub.xmlsafe import DEFAULT_MAX_BYTES, parse_xml
from ..signing import Signer, TrustStore, Verifier, load_identity
from ..signing.pki import resolve_password
from .catalogue import (
    DEFAULT_ADD_RATE,
    DEFAULT_CHANGE_RATE,
    DEFAULT_REMOVE_RATE,
    DEFAULT_UNPUBLISH_RATE,
    Catalogue,
)
from .json_adapter import ROOT as JSON_ROOT
from .json_adapter import JsonAdapter
from .operations import STATE_CHANGING, Call, OperationFault, Operations
from .response import Response
from .store import SandboxStore

log = logging.getLogger(__name__)

MEMORY = ":memory:"
#: where completed result files are served (the link KetThucTaiTepKetQua hands out)
_RESULTS_PREFIX = SERVICES["dvc_portal"].path + "/ket-qua/"


@dataclass
class SandboxConfig:
    """Everything the sandbox needs; defaults follow the hub's own settings (``LIENTHONG_HOME``)."""

    host: str = "127.0.0.1"
    #: 0 = pick a free port (read it back from :meth:`SandboxServer.start`)
    port: int = 0
    procedures: int = 300
    seed: int = 1
    # -- catalogue revisions (see sandbox/catalogue.py): where it starts, how much each step moves
    revision: int = 0
    change_rate: float = DEFAULT_CHANGE_RATE
    add_rate: float = DEFAULT_ADD_RATE
    unpublish_rate: float = DEFAULT_UNPUBLISH_RATE
    remove_rate: float = DEFAULT_REMOVE_RATE
    #: advance the catalogue one revision every so many seconds while serving (None = never)
    advance_every: float | None = None
    #: SQLite file; ``None`` = ``$LIENTHONG_HOME/sandbox/sandbox.db``; ``":memory:"`` = nothing on disk
    store_path: Path | str | None = None
    #: development PKI directory (``lienthong keys init``); default ``$LIENTHONG_HOME/pki``
    pki_dir: Path | None = None
    #: PKCS#12 the replies are signed with; default ``pki_dir/national.p12``
    signing_key: Path | None = None
    #: CA certificates request signatures must chain to; default ``(pki_dir/ca.crt,)``
    trust: tuple[Path, ...] = ()
    #: CRLs to honour; default ``pki_dir/crl.pem`` when it exists
    crls: tuple[Path, ...] | None = None
    #: password of ``signing_key``; default ``LIENTHONG_KEY_PASSWORD`` or ``pki_dir/key-password``
    key_password: str | bytes | None = None
    signature_algorithm: str | None = None
    national_agency: str = NATIONAL_AGENCY_CODE
    national_name: str = NATIONAL_AGENCY_NAME
    # -- fault injection (shares of requests, drawn from one generator seeded with fault_seed)
    fail_rate: float = 0.0  # → HTTP 503 SERVICE_UNAVAILABLE, not processed
    fatal_rate: float = 0.0  # → SOAP Fault BUSINESS_REJECTED, not processed
    timeout_rate: float = 0.0  # → processed, then no reply: the connection hangs and closes
    timeout_seconds: float = 60.0  # how long an injected timeout hangs
    latency_ms: float = 0.0  # added to every service request
    fault_seed: int | None = None
    # -- behaviour
    max_body_bytes: int = DEFAULT_MAX_BYTES
    #: a received report reads DA_DUYET after this many seconds (DANG_XU_LY before)
    report_review_seconds: float = 0.0
    #: check every reply against the XSD before signing it (cheap; catches emulator bugs)
    validate_replies: bool = True
    #: indent replies before signing (readable sample messages; costs a little per reply)
    pretty_replies: bool = False
    #: base URL put into links handed out (result files); default the listening URL
    public_url: str | None = None
    #: the sandbox's notion of "now" (UTC, aware): tests pin it; certificates are checked at real time
    clock: Callable[[], datetime] | None = None
    # -- the portal's JSON adapter (sandbox/json_adapter.py), under /adapter
    json_username: str = "lienthong"
    json_password: str = "sandbox-adapter"
    json_dstcode: str = NATIONAL_AGENCY_CODE
    #: seconds a login session lasts (``--session-ttl``)
    session_ttl: float = 1800.0


class FaultInjector:
    """Draws, per request, whether to inject a failure; rates may be changed while serving."""

    KINDS = ("unavailable", "fatal", "timeout")

    def __init__(self, *, fail_rate: float = 0.0, fatal_rate: float = 0.0, timeout_rate: float = 0.0,
                 seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.fail_rate = self.fatal_rate = self.timeout_rate = 0.0
        self.set(fail_rate=fail_rate, fatal_rate=fatal_rate, timeout_rate=timeout_rate)

    def set(self, *, fail_rate: float | None = None, fatal_rate: float | None = None,
            timeout_rate: float | None = None) -> None:
        """Change some rates (``None`` keeps the current one); they must stay within [0, 1] and sum ≤ 1."""
        rates = {
            "fail_rate": self.fail_rate if fail_rate is None else float(fail_rate),
            "fatal_rate": self.fatal_rate if fatal_rate is None else float(fatal_rate),
            "timeout_rate": self.timeout_rate if timeout_rate is None else float(timeout_rate),
        }
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{name} must be between 0 and 1, not {value}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ConfigurationError(f"fail_rate + fatal_rate + timeout_rate must not exceed 1 ({rates})")
        with self._lock:
            self.fail_rate, self.fatal_rate, self.timeout_rate = (
                rates["fail_rate"], rates["fatal_rate"], rates["timeout_rate"])

    def draw(self) -> str | None:
        with self._lock:
            if not (self.fail_rate or self.fatal_rate or self.timeout_rate):
                return None
            u = self._rng.random()
            if u < self.fail_rate:
                return "unavailable"
            if u < self.fail_rate + self.fatal_rate:
                return "fatal"
            if u < self.fail_rate + self.fatal_rate + self.timeout_rate:
                return "timeout"
            return None


class _Context:
    """What is known about a request so far: used to record failures with as much detail as exists."""

    __slots__ = ("root", "operation", "document_id", "from_agency")

    def __init__(self, operation: str | None) -> None:
        self.root: etree._Element | None = None
        self.operation = operation
        self.document_id: str | None = None
        self.from_agency: str | None = None


def _default_store_path() -> Path:
    return Settings.from_env().home / "sandbox" / "sandbox.db"


class SandboxServer:
    """The emulator. ``start()`` serves in a background thread and returns the base URL."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config = config or SandboxConfig()
        self.clock: Callable[[], datetime] = config.clock or (lambda: datetime.now(UTC))
        if config.advance_every is not None and not config.advance_every > 0:
            raise ConfigurationError(f"advance_every must be a positive number of seconds, not {config.advance_every}")
        self.catalogue = Catalogue(config.procedures, config.seed, config.revision,
                                   change_rate=config.change_rate, add_rate=config.add_rate,
                                   unpublish_rate=config.unpublish_rate, remove_rate=config.remove_rate)
        self._advancer: threading.Thread | None = None
        if config.store_path == MEMORY:
            self.store = SandboxStore(None)
        else:
            self.store = SandboxStore(Path(config.store_path) if config.store_path else _default_store_path())
        self.operations = Operations(self.catalogue, self.store, clock=self.clock,
                                     report_review_seconds=config.report_review_seconds)
        self.faults = FaultInjector(fail_rate=config.fail_rate, fatal_rate=config.fatal_rate,
                                    timeout_rate=config.timeout_rate, seed=config.fault_seed)
        self.national = Party(config.national_agency, config.national_name)
        self._load_pki()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None
        self._paths = {spec.path: spec for spec in SERVICES.values()}
        self.json_adapter = JsonAdapter(self)
        self._schema_files = {p.name for p in schemas_dir().glob("*.xsd")}

    # -- set-up ------------------------------------------------------------------------------
    def _load_pki(self) -> None:
        cfg = self.config
        pki_dir = Path(cfg.pki_dir) if cfg.pki_dir else Settings.from_env().pki_dir
        key_path = Path(cfg.signing_key) if cfg.signing_key else pki_dir / "national.p12"
        trust = tuple(Path(p) for p in cfg.trust) or (pki_dir / "ca.crt",)
        if cfg.crls is None:
            crls: tuple[Path, ...] = (pki_dir / "crl.pem",) if (pki_dir / "crl.pem").exists() else ()
        else:
            crls = tuple(Path(p) for p in cfg.crls)
        for path, what in [(key_path, "national signing key")] + [(p, "trust anchor") for p in trust]:
            if not path.exists():
                raise ConfigurationError(
                    f"sandbox {what} {path} does not exist: run 'lienthong keys init' (or start the sandbox with "
                    "--init-pki) so the hub and the sandbox share one development PKI")
        if cfg.key_password:
            password = cfg.key_password.encode() if isinstance(cfg.key_password, str) else cfg.key_password
        else:
            password, _ = resolve_password(key_path.parent, None, create=False)
        identity = load_identity(key_path, password)
        self.signer = Signer(identity, cfg.signature_algorithm or identity.default_algorithm)
        if self.signer.agency_code != self.national.code:
            raise ConfigurationError(
                f"{key_path} speaks for agency {self.signer.agency_code}, but the sandbox answers as "
                f"{self.national.code}: replies would fail the hub's sender check")
        self.verifier = Verifier(TrustStore.from_paths(trust, crls))
        self.pki = {"signing_key": key_path, "trust": trust, "crls": crls}
        self._tsa_source = (pki_dir / "ca.p12", password)
        self._tsa = None

    def tsa(self):
        """The sandbox's RFC 3161 TSA (``POST /tsa``), certified by the development CA on first use."""
        if self._tsa is None:
            from ..signing.pki import load_ca
            from .tsa import SandboxTsa

            ca_p12, password = self._tsa_source
            self._tsa = SandboxTsa.from_authority(load_ca(ca_p12, password), clock=self.clock)
        return self._tsa

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> str:
        """Bind, serve in a daemon thread, return the base URL (e.g. ``http://127.0.0.1:43121``)."""
        if self._httpd is not None:
            raise RuntimeError("sandbox already started")
        self._stopping.clear()
        httpd = _HTTPServer((self.config.host, self.config.port), _Handler)
        httpd.app = self
        host, port = httpd.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        self.base_url = f"http://{shown}:{port}"
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"sandbox-{port}", daemon=True)
        self._thread.start()
        if self.config.advance_every:
            self._advancer = threading.Thread(target=self._advance_periodically, name=f"sandbox-{port}-catalogue",
                                              daemon=True)
            self._advancer.start()
        log.info("sandbox listening on %s", self.base_url)
        return self.base_url

    def stop(self) -> None:
        """Stop serving (hanging injected timeouts are released). The store stays readable."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._advancer is not None:
            self._advancer.join(timeout=5)
            self._advancer = None

    def close(self) -> None:
        """Stop and release the store (an in-memory store and its files are gone afterwards)."""
        self.stop()
        self.store.close()

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, service_name: str) -> str:
        """Endpoint of one service, e.g. ``url("dvc_portal")`` → ``http://127.0.0.1:P/dvc``."""
        if self.base_url is None:
            raise RuntimeError("sandbox not started")
        return self.base_url + SERVICES[service_name].path

    def configure_faults(self, *, fail_rate: float | None = None, fatal_rate: float | None = None,
                         timeout_rate: float | None = None, latency_ms: float | None = None,
                         timeout_seconds: float | None = None) -> None:
        """Change fault injection while serving (tests flip a partner "down" and "up" again)."""
        self.faults.set(fail_rate=fail_rate, fatal_rate=fatal_rate, timeout_rate=timeout_rate)
        if latency_ms is not None:
            self.config = replace(self.config, latency_ms=latency_ms)
        if timeout_seconds is not None:
            self.config = replace(self.config, timeout_seconds=timeout_seconds)

    def advance_catalogue(self, n: int = 1) -> int:
        """Move the procedure catalogue ``n`` revisions forward while serving; returns the new revision.

        Thread-safe: a request in flight finishes on the snapshot it started with, the next one sees
        the new revision (see ``Catalogue.advance``).
        """
        revision = self.catalogue.advance(n)
        log.info("catalogue at revision %d (%d procedures listed)", revision, self.catalogue.count)
        return revision

    def _advance_periodically(self) -> None:
        interval = float(self.config.advance_every or 0)
        while not self._stopping.wait(interval):
            try:
                self.advance_catalogue()
            except ValueError:  # the last revision reached: the catalogue stays where it is
                log.warning("catalogue cannot advance beyond revision %d", self.catalogue.revision)
                return

    # -- the SOAP pipeline -------------------------------------------------------------------
    def handle_soap(self, spec: ServiceSpec, soap_action: str | None, data: bytes, *, base_url: str) -> Response:
        """Process one POST to a service path; never raises (every failure becomes a Fault)."""
        received_at = self.clock()
        operation = _clean_action(soap_action)
        ctx = _Context(operation if operation in spec.operations else None)
        if self.config.latency_ms > 0:
            self._stopping.wait(self.config.latency_ms / 1000.0)
        injected = self.faults.draw()
        if injected == "unavailable":
            message = f"{spec.title} is temporarily unavailable (sandbox fault injection); try again later"
            self._record_failure(spec, ctx, data, "SERVICE_UNAVAILABLE", 503, message, received_at)
            return Response(503, build_fault("SERVICE_UNAVAILABLE", message, client=False),
                            headers={"Retry-After": "1"})
        if injected == "fatal":
            message = f"{spec.title} rejected the request (sandbox fault injection: fatal fault)"
            self._record_failure(spec, ctx, data, "BUSINESS_REJECTED", 500, message, received_at)
            return Response(500, build_fault("BUSINESS_REJECTED", message, client=True))
        try:
            return self._process(spec, ctx, data, received_at, base_url, hang=injected == "timeout")
        except HubError as exc:
            self._record_failure(spec, ctx, data, exc.code, 500, str(exc), received_at)
            return Response(500, build_fault(exc.code, str(exc), client=not exc.retryable))
        except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer, and be visible
            log.exception("sandbox failed on %s %s", spec.name, operation)
            message = f"internal error in the sandbox: {type(exc).__name__}: {exc}"
            self._record_failure(spec, ctx, data, "INTERNAL_ERROR", 500, message, received_at)
            return Response(500, build_fault("INTERNAL_ERROR", message, client=False))

    def _process(self, spec: ServiceSpec, ctx: _Context, data: bytes, received_at: datetime,
                 base_url: str, *, hang: bool) -> Response:
        root = unwrap_soap(data, partner="requester", max_bytes=self.config.max_body_bytes)
        ctx.root = root
        operation = ctx.operation
        if operation is None:
            raise EnvelopeError(
                f"SOAPAction names no operation of {spec.name} (expected one of {', '.join(spec.operations)})",
                code="UNKNOWN_OPERATION")
        # The same acceptance checks the hub runs on every reply: signature (pinned algorithms, trust
        # store, only the verified subtree kept), schema, edXML prefixes, signer = From, recipient.
        accepted = open_envelope(root, service_name=spec.name, verifier=self.verifier,
                                 expected_recipient=self.national.code, what=f"{operation} request")
        env = accepted.envelope
        ctx.document_id, ctx.from_agency = env.document_id, env.sender.code
        if env.subject != operation:
            raise EnvelopeError(f"SOAPAction {operation} but envelope Subject {env.subject!r}: they must agree")
        expected_tag = f"{{{spec.namespace}}}{operation}"
        if env.payload.tag != expected_tag:
            raise EnvelopeError(f"{operation} request carries {env.payload.tag} in edXML:edXMLBody, "
                                f"expected {expected_tag}")

        call = Call(spec, operation, env, env.payload, received_at, self.config.public_url or self.base_url or base_url)
        handler = self.operations.handler(operation)
        reply_id = new_document_id()
        committed_fault: OperationFault | None = None
        if operation in STATE_CHANGING:
            payload_sha = hashlib.sha256(etree.tostring(env.payload, method="c14n", exclusive=True)).hexdigest()
            with self.store.write() as conn:
                previous = self.store.previous_reply(conn, env.sender.code, env.document_id)
                if previous is not None:
                    if previous[0] != payload_sha:
                        raise OperationFault(
                            f"DocumentId {env.document_id} from {env.sender.code} was already used for different "
                            "content; a resend must repeat the same payload, new content needs a new DocumentId",
                            code="DUPLICATE_DOCUMENT_ID")
                    result = parse_xml(previous[1], what="stored reply")
                    outcome = "DUPLICATE"
                    self.store.log_message(conn, service=spec.name, operation=operation, document_id=env.document_id,
                                           from_agency=env.sender.code, outcome=outcome, http_status=200, raw=data,
                                           reply_document_id=reply_id, payload_sha256=payload_sha,
                                           received_at=received_at)
                else:
                    try:
                        result = handler(call, conn)
                    except OperationFault as exc:
                        if not exc.keep_changes:
                            raise  # rolls the transaction back: a refused request changes nothing
                        committed_fault = exc
                        self.store.log_message(conn, service=spec.name, operation=operation,
                                               document_id=env.document_id, from_agency=env.sender.code,
                                               outcome=exc.code, http_status=500, raw=data, error=str(exc),
                                               payload_sha256=payload_sha, received_at=received_at)
                    else:
                        outcome = "TIMEOUT" if hang else "OK"
                        self.store.log_message(conn, service=spec.name, operation=operation,
                                               document_id=env.document_id, from_agency=env.sender.code,
                                               outcome=outcome, http_status=200, raw=data,
                                               reply_document_id=reply_id, payload_sha256=payload_sha,
                                               reply_payload=etree.tostring(result, encoding="UTF-8"),
                                               received_at=received_at)
            if committed_fault is not None:
                return Response(500, build_fault(committed_fault.code, str(committed_fault), client=True))
        else:
            result = handler(call, None)
            outcome = "TIMEOUT" if hang else "OK"
            self.store.log_message(None, service=spec.name, operation=operation, document_id=env.document_id,
                                   from_agency=env.sender.code, outcome=outcome, http_status=200, raw=data,
                                   reply_document_id=reply_id, received_at=received_at)

        reply = build_envelope(sender=self.national, recipients=[env.sender], subject=operation, payload=result,
                               document_id=reply_id, response_for=env.document_id,
                               response_for_agency=env.sender.code, response_for_date=env.promulgation_date,
                               signer_name=self.national.name, content=f"{spec.title}: {operation}",
                               now=self.clock())
        if self.config.pretty_replies:
            etree.indent(reply)
        if self.config.validate_replies:
            validate(reply, spec.name, what=f"sandbox {operation} reply")
        signed = self.signer.sign(reply)
        return Response(200, wrap_soap(signed), hang=hang)

    def _record_failure(self, spec: ServiceSpec, ctx: _Context, data: bytes, code: str, status: int,
                        message: str, received_at: datetime) -> None:
        document_id, from_agency = ctx.document_id, ctx.from_agency
        root = ctx.root
        if root is None and data:
            try:  # e.g. an injected fault answered before parsing: still say which message it was
                root = unwrap_soap(data, partner="requester", max_bytes=self.config.max_body_bytes)
            except HubError:
                root = None
        if document_id is None and root is not None:
            fields = header_fields(root)  # unverified: only for the record, never for decisions
            document_id, from_agency = fields.get("document_id"), fields.get("from_agency")
        try:
            self.store.log_message(None, service=spec.name, operation=ctx.operation, document_id=document_id,
                                   from_agency=from_agency, outcome=code, http_status=status, raw=data,
                                   error=message[:4000], received_at=received_at)
        except Exception:  # noqa: BLE001 - recording must not hide the answer
            log.exception("could not record a failed request")

    # -- GET -----------------------------------------------------------------------------------
    def wsdl(self, spec: ServiceSpec, base_url: str) -> bytes:
        text = spec.wsdl_path.read_text(encoding="utf-8")
        text = re.sub(r'(<soap:address\s+location=")[^"]*(")', lambda m: m.group(1) + base_url + spec.path + m.group(2),
                      text)
        return text.encode("utf-8")

    def schema_file(self, name: str) -> bytes | None:
        if name not in self._schema_files:
            return None
        return (schemas_dir() / name).read_bytes()

    def result_file(self, giay_to_id: str) -> tuple[bytes, str, str] | None:
        """(bytes, MIME type, file name) of a completed upload."""
        if not re.fullmatch(r"[A-Za-z0-9]{8,64}", giay_to_id):
            return None
        row = self.store.result_by_id(giay_to_id)
        if row is None:
            return None
        path = self.store.result_path(giay_to_id)
        if not path.exists():
            return None
        return path.read_bytes(), row["kieu_tep"], row["ten_tep"]


def _clean_action(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().strip('"').strip()
    return value or None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()
    request_queue_size = 512
    allow_reuse_address = True
    app: SandboxServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections at high message rates
    server_version = "LienthongSandbox/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        if host and re.fullmatch(r"[A-Za-z0-9.\-\[\]:]{1,255}", host):
            return f"http://{host}"
        return self.server.app.base_url or ""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        app = self.server.app
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path == "/tsa":
            self._serve_tsa(app)
            return
        if path.startswith(JSON_ROOT + "/"):
            self._serve_json(app, path)
            return
        spec = app._paths.get(path)
        if spec is None:
            self._drain()
            self._send(404, build_fault("NOT_FOUND", f"no national service at {path}"))
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.strip().isdigit():
            self.close_connection = True
            self._send(411, build_fault("XML_MALFORMED", "a SOAP request needs a Content-Length"))
            return
        length = int(length_header)
        if length > app.config.max_body_bytes:
            self.close_connection = True  # do not read a body we refuse
            err = XmlTooLarge(f"request of {length} bytes exceeds the {app.config.max_body_bytes}-byte limit")
            app._record_failure(spec, _Context(_clean_action(self.headers.get("SOAPAction"))), b"",
                                err.code, 413, str(err), app.clock())
            self._send(413, build_fault(err.code, str(err)))
            return
        data = self.rfile.read(length)
        if len(data) < length:
            # The client went away mid-request (a worker killed while sending): the request never
            # arrived whole, so, as a real server, the portal neither processes nor records it.
            log.warning("request to %s ended after %d of %d bytes; dropped", path, len(data), length)
            self.close_connection = True
            return
        response = app.handle_soap(spec, self.headers.get("SOAPAction"), data, base_url=self._base_url())
        if response.hang:
            # processed, but the reply is lost: hold the connection, then drop it without answering
            app._stopping.wait(app.config.timeout_seconds)
            self.close_connection = True
            return
        if response.truncate_at is not None:
            # processed, and the reply breaks off: the announced length never arrives
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body[:response.truncate_at])
            self.close_connection = True
            return
        self._send(response.status, response.body, response.content_type, response.headers)

    def _serve_json(self, app: SandboxServer, path: str) -> None:
        length = self.headers.get("Content-Length") or ""
        if not length.isdigit() or int(length) > app.config.max_body_bytes:
            self.close_connection = True
            self._send(413 if length.isdigit() else 411, b'{"error_code": 1, "message": "bad Content-Length"}',
                       "application/json")
            return
        data = self.rfile.read(int(length))
        if len(data) < int(length):
            self.close_connection = True  # the sender went away mid-request: nothing arrived
            return
        response = app.json_adapter.handle(path, self.headers, data, base_url=self._base_url())
        if response.hang:
            app._stopping.wait(app.config.timeout_seconds)
            self.close_connection = True
            return
        self._send(response.status, response.body, response.content_type, response.headers)

    def _serve_tsa(self, app: SandboxServer) -> None:
        length = self.headers.get("Content-Length") or ""
        if not length.isdigit() or int(length) > 64 * 1024:
            self.close_connection = True
            self._send(400, b"a time-stamp query needs a Content-Length of at most 64 KiB", "text/plain")
            return
        data = self.rfile.read(int(length))
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/timestamp-query":
            self._send(415, b"expected Content-Type: application/timestamp-query", "text/plain")
            return
        try:
            tsa = app.tsa()
        except HubError as exc:
            self._send(503, f"the sandbox TSA has no CA key: {exc}".encode(), "text/plain")
            return
        self._send(200, tsa.respond(data), "application/timestamp-reply")

    def _drain(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= self.server.app.config.max_body_bytes:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        app = self.server.app
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        base = self._base_url()
        spec = app._paths.get(path)
        if spec is not None and parts.query.lower() == "wsdl":
            self._send(200, app.wsdl(spec, base))
            return
        if path in ("/", "/health"):
            body = ('{"status":"ok","services":{%s}}' % ",".join(
                f'"{s.name}":"{base}{s.path}"' for s in SERVICES.values())).encode()
            self._send(200, body, "application/json")
            return
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".xsd"):
            content = app.schema_file(name)
            if content is not None:
                self._send(200, content)
                return
        if path.startswith(_RESULTS_PREFIX):
            found = app.result_file(path[len(_RESULTS_PREFIX):])
            if found is not None:
                body, mime, filename = found
                self._send(200, body, mime or mimetypes.guess_type(filename)[0] or "application/octet-stream",
                           {"Content-Disposition": f"attachment; filename*=UTF-8''{_quote(filename)}"})
                return
        self._send(404, b"not found\n", "text/plain; charset=utf-8")


def _quote(name: str) -> str:
    return quote(name, safe="")


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lienthong sandbox serve",
        description="Emulate the national services (CSDL TTHC, DVC portal, reporting) for tests and demos.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8099, help="port (0 = any free port; default 8099, clear of Airflow's 8080)")
    p.add_argument("--procedures", type=int, default=300, help="size of the synthetic procedure catalogue")
    p.add_argument("--seed", type=int, default=1, help="catalogue seed (same seed, same catalogue)")
    p.add_argument("--revision", type=int, default=0,
                   help="catalogue revision to start at (0 = as generated; each revision changes, adds, "
                        "abolishes and removes a share of the procedures)")
    p.add_argument("--change-rate", type=float, default=DEFAULT_CHANGE_RATE,
                   help=f"share of procedures a revision changes (default {DEFAULT_CHANGE_RATE})")
    p.add_argument("--add-rate", type=float, default=DEFAULT_ADD_RATE,
                   help=f"share of new procedures a revision adds (default {DEFAULT_ADD_RATE})")
    p.add_argument("--unpublish-rate", type=float, default=DEFAULT_UNPUBLISH_RATE,
                   help=f"share of procedures a revision abolishes, TRANGTHAI 2 (default {DEFAULT_UNPUBLISH_RATE})")
    p.add_argument("--remove-rate", type=float, default=DEFAULT_REMOVE_RATE,
                   help=f"share of procedures a revision withdraws from the listing (default {DEFAULT_REMOVE_RATE})")
    p.add_argument("--advance-every", type=float, default=None, metavar="SECONDS",
                   help="move the catalogue one revision forward every SECONDS while serving")
    p.add_argument("--store", help=f"SQLite file of what was received (default $LIENTHONG_HOME/sandbox/sandbox.db; "
                                   f"'{MEMORY}' keeps nothing)")
    p.add_argument("--pki-dir", type=Path, help="development PKI directory (default $LIENTHONG_HOME/pki)")
    p.add_argument("--init-pki", action="store_true",
                   help="create the development PKI in --pki-dir if it is missing (as 'lienthong keys init')")
    p.add_argument("--key", type=Path, help="PKCS#12 to sign replies with (default <pki-dir>/national.p12)")
    p.add_argument("--trust", type=Path, action="append", default=[],
                   help="CA certificate requests must chain to (repeatable; default <pki-dir>/ca.crt)")
    p.add_argument("--crl", type=Path, action="append", default=None, help="CRL to honour (repeatable)")
    p.add_argument("--agency-code", default=None, help=f"the national side's agency code (default {NATIONAL_AGENCY_CODE})")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 503 (0..1)")
    p.add_argument("--fatal-rate", type=float, default=0.0, help="share refused with a fatal fault (0..1)")
    p.add_argument("--timeout-rate", type=float, default=0.0,
                   help="share processed but never answered (0..1)")
    p.add_argument("--timeout-seconds", type=float, default=60.0, help="how long an injected timeout hangs")
    p.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every request")
    p.add_argument("--fault-seed", type=int, default=None, help="seed of the fault draws (reproducible runs)")
    p.add_argument("--report-review-seconds", type=float, default=0.0,
                   help="a report reads DA_DUYET after this delay")
    p.add_argument("--public-url", default=None, help="base URL to use in links handed out (result files)")
    p.add_argument("--session-ttl", type=float, default=1800.0,
                   help="seconds a login session of the JSON adapter (/adapter) lasts (default 1800)")
    p.add_argument("--json-username", default="lienthong", help="the JSON adapter's account (default lienthong)")
    p.add_argument("--json-password", default="sandbox-adapter", help="its password (default sandbox-adapter)")
    p.add_argument("--json-dstcode", default=NATIONAL_AGENCY_CODE, help="the dstcode header it expects")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def config_from_args(args: argparse.Namespace, settings: Settings | None = None) -> SandboxConfig:
    settings = settings or Settings.from_env()
    national = args.agency_code or os.environ.get("LIENTHONG_NATIONAL_AGENCY_CODE") or NATIONAL_AGENCY_CODE
    pki_dir = args.pki_dir or settings.pki_dir
    if args.init_pki:
        from ..signing import init_dev_pki

        init_dev_pki(pki_dir, settings.agency_code, national)
    return SandboxConfig(
        host=args.host, port=args.port, procedures=args.procedures, seed=args.seed,
        revision=args.revision, change_rate=args.change_rate, add_rate=args.add_rate,
        unpublish_rate=args.unpublish_rate, remove_rate=args.remove_rate, advance_every=args.advance_every,
        store_path=args.store or (settings.home / "sandbox" / "sandbox.db"),
        pki_dir=pki_dir, signing_key=args.key, trust=tuple(args.trust),
        crls=tuple(args.crl) if args.crl is not None else None,
        national_agency=national,
        fail_rate=args.fail_rate, fatal_rate=args.fatal_rate, timeout_rate=args.timeout_rate,
        timeout_seconds=args.timeout_seconds, latency_ms=args.latency_ms, fault_seed=args.fault_seed,
        report_review_seconds=args.report_review_seconds, public_url=args.public_url,
        session_ttl=args.session_ttl, json_username=args.json_username, json_password=args.json_password,
        json_dstcode=args.json_dstcode,
    )


def serve(config: SandboxConfig, *, ready: Callable[[str], None] | None = None,
          stop: threading.Event | None = None) -> None:
    """Run the sandbox in the foreground until ``stop`` is set, SIGINT or SIGTERM."""
    stop = stop or threading.Event()
    server = SandboxServer(config)
    base_url = server.start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        (ready or (lambda url: print(url, flush=True)))(base_url)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    """``lienthong sandbox serve`` / ``python -m lienthong.sandbox``: print the base URL once listening."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = config_from_args(args)
        serve(config)
    except (HubError, ValueError, OSError) as exc:
        print(f"lienthong sandbox: {exc}", file=sys.stderr)
        return 2
    return 0
