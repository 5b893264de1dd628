"""Every outbound HTTP exchange of the hub: replies read with a limit, exchanges with a real deadline.

Why this module exists: a partner (or a proxy in front of it) that misbehaves must not be able to
stall or sink a worker. ``requests`` on its own reads a reply whole before anyone can look at its
size, and its ``timeout`` bounds each socket operation, not the exchange: a reply that trickles
one byte a second never times out, and a gzip body that expands to gigabytes is expanded before
it is refused. So every exchange here:

* **has a deadline** (:attr:`HttpLimits.deadline`) for connecting, sending and receiving together.
  A process-wide watchdog thread shuts the exchange's socket down when the deadline passes, in
  whatever phase it is (connecting, waiting for headers that never come, reading a drip); the
  blocked read returns at once and the exchange fails with :class:`TransportTimeout` (not one
  byte of a body came) or :class:`DeadlineExceeded` (a body was arriving), both retryable, so the caller's
  retry policy and circuit breaker count them like a partner that is down;
* **reads the reply with a limit** (:attr:`HttpLimits.max_bytes`, of the *decoded* body): a
  ``Content-Length`` over it is refused before the body is read, and the body is streamed in small
  pieces (urllib3 decompresses at most one piece at a time) and abandoned as soon as it passes the
  limit (:class:`ReplyTooLarge`), so memory stays flat whatever the partner sends;
* **checks the content type** of a successful reply against what the service speaks
  (:class:`UnexpectedContentType`: a proxy's HTML page is not an answer), and names a connection
  that closed mid-body (:class:`ReplyTruncated`).

Every error raised here carries ``received``: the first :data:`EVIDENCE_BYTES` of what arrived
(decoded), so the caller can put it in the audit trail with the error, bounded.

The watchdog needs the socket of each exchange: connections come from urllib3 pools whose
connection classes report their socket to the exchange running on the current thread
(:class:`WatchedAdapter`). A session passed in from outside should mount that adapter (or a
subclass) for the deadline to interrupt blocked reads; otherwise only per-read timeouts apply.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from ..hub.errors import (
    DeadlineExceeded,
    ReplyTooLarge,
    ReplyTruncated,
    TlsError,
    TransportError,
    TransportTimeout,
    UnexpectedContentType,
)

__all__ = ["EVIDENCE_BYTES", "HttpClient", "HttpLimits", "HttpReply", "WatchedAdapter"]

#: how much of a refused reply is kept as evidence (audit trail, dead letters)
EVIDENCE_BYTES = 64 * 1024
#: bytes read (and decompressed) at a time: the most memory one read can add
_PIECE = 64 * 1024


@dataclass(frozen=True)
class HttpLimits:
    """What one exchange may take: ``deadline`` seconds in all, ``max_bytes`` of decoded reply,
    ``connect_timeout`` seconds to connect (within the deadline)."""

    deadline: float
    max_bytes: int
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.deadline > 0:
            raise ValueError(f"deadline must be positive, not {self.deadline!r}")
        if not self.max_bytes > 0:
            raise ValueError(f"max_bytes must be positive, not {self.max_bytes!r}")


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: CaseInsensitiveDict
    content: bytes
    elapsed: float

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


# ============================================================================ deadlines
class _Exchange:
    """One exchange's deadline and the sockets it used; the watchdog shuts them down when it passes."""

    __slots__ = ("deadline", "expired", "finished", "_lock", "_sockets")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.expired = False
        self.finished = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self.finished:
                return
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def finish(self) -> bool:
        """Mark the exchange done (the watchdog leaves it alone); True when it had expired first."""
        with self._lock:
            self.finished = True
            self._sockets.clear()
            return self.expired

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the OS-level shutdown wakes a read blocked in
    # another thread at once, without touching the TLS object that thread is using
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Watchdog:
    """One thread per process that expires exchanges at their deadline (a heap, one condition)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Exchange]] = []
        self._count = itertools.count()
        self._cond = threading.Condition()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="lienthong-http-deadlines", daemon=True)
        self._thread.start()

    def watch(self, exchange: _Exchange) -> None:
        with self._cond:
            heapq.heappush(self._heap, (exchange.deadline, next(self._count), exchange))
            if self._heap[0][2] is exchange:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, exchange = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            if not exchange.finished:
                exchange.expire()


_watchdog: _Watchdog | None = None
_watchdog_lock = threading.Lock()
_current = threading.local()


def _watch(exchange: _Exchange) -> None:
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None or _watchdog._pid != os.getpid():  # a forked child has no watchdog thread
            _watchdog = _Watchdog()
        watchdog = _watchdog
    watchdog.watch(exchange)


def _report(sock: socket.socket | None) -> None:
    exchange = getattr(_current, "exchange", None)
    if exchange is not None:
        exchange.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _report(sock)  # the raw socket: a stalled TLS handshake is interrupted too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _report(self.sock)  # a kept-alive connection's socket
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _report(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _report(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections report their sockets to the exchange's deadline."""

    _pools = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(self._pools)
        return manager


# ============================================================================ the client
@dataclass
class HttpClient:
    """Outbound HTTP for one partner: a ``requests`` session (pooled, TLS settings fixed once) used
    only through :meth:`post` / :meth:`get`, which apply :class:`HttpLimits`. One per thread."""

    name: str  # the partner, in error messages
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    proxies: Mapping[str, str] = field(default_factory=dict)
    session: requests.Session | None = None

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = requests.Session()
            adapter = WatchedAdapter()
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        # the environment (proxies, CA bundle) is read once, not on every request (requests re-scans
        # os.environ and ~/.netrc per call when trust_env is on)
        self.session.trust_env = False
        self.session.proxies = dict(self.proxies)
        self.session.verify = self.verify
        if self.cert:
            self.session.cert = self.cert

    @classmethod
    def for_url(cls, name: str, url: str, *, verify: bool | str = True, client_cert: str | None = None,
                session: requests.Session | None = None) -> HttpClient:
        """A client for ``url`` with the environment's proxies and CA bundle (read now, once)."""
        if verify is True:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        cert: str | tuple[str, str] | None = None
        if client_cert:
            parts = client_cert.split(",")
            cert = (parts[0], parts[1]) if len(parts) == 2 else parts[0]
        return cls(name, verify=verify, cert=cert, proxies=requests.utils.get_environ_proxies(url), session=session)

    def post(self, url: str, body: bytes, headers: Mapping[str, str], limits: HttpLimits, *,
             content_types: tuple[str, ...] = ()) -> HttpReply:
        """POST ``body`` and read the reply within ``limits`` (see the module docstring).

        ``content_types``: the media types a 2xx reply may have (prefix match; empty: any; a reply that
        names no type is left to the caller's parser). A 4xx/5xx reply is read (within the limit)
        whatever its type: the caller classifies it.
        """
        return self._exchange("POST", url, body, headers, limits, content_types)

    def get(self, url: str, limits: HttpLimits, *, headers: Mapping[str, str] | None = None,
            content_types: tuple[str, ...] = ()) -> HttpReply:
        return self._exchange("GET", url, None, headers or {}, limits, content_types)

    def _exchange(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], limits: HttpLimits,
                  content_types: tuple[str, ...]) -> HttpReply:
        started = time.monotonic()
        exchange = _Exchange(started + limits.deadline)
        _watch(exchange)
        _current.exchange = exchange
        response: requests.Response | None = None
        complete = False
        try:
            try:
                response = self.session.request(
                    method, url, data=body, headers=dict(headers), stream=True, allow_redirects=False,
                    timeout=(min(limits.connect_timeout, limits.deadline), max(exchange.remaining, 0.001)))
            except requests.exceptions.SSLError as exc:
                if exchange.expired:
                    raise self._no_answer(url, limits) from None
                raise TlsError(f"TLS verification of {url} failed: {exc}") from None
            except requests.exceptions.RequestException as exc:
                if exchange.expired or isinstance(exc, requests.exceptions.Timeout):
                    raise self._no_answer(url, limits) from None
                raise TransportError(f"cannot reach {self.name} at {url}: {exc}") from None
            status = response.status_code
            reply_headers = CaseInsensitiveDict(response.headers)
            kind = reply_headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if 200 <= status < 300 and content_types and kind and not kind.startswith(content_types):
                received = self._read(response, url, EVIDENCE_BYTES, exchange, limits, evidence_only=True)
                error = UnexpectedContentType(
                    f"{self.name} answered HTTP {status} with Content-Type {kind or '(none)'} at {url}, not "
                    f"{' or '.join(content_types)}: not the service's answer (a proxy or an error page?)",
                    status=status)
                error.received = received
                raise error
            announced = reply_headers.get("Content-Length")
            if announced is not None and announced.isdigit() and int(announced) > limits.max_bytes:
                error = ReplyTooLarge(f"{self.name} announced a reply of {int(announced):,} bytes at {url}, over the "
                                      f"limit of {limits.max_bytes:,}: refused without reading it")
                error.received = b""
                raise error
            content = self._read(response, url, limits.max_bytes, exchange, limits)
            complete = True
        finally:
            expired = exchange.finish()
            _current.exchange = None
            if response is not None:
                if complete and response.raw is not None and hasattr(response.raw, "release_conn"):
                    response.raw.release_conn()  # read to its end: the kept-alive connection goes back to the pool
                else:
                    response.close()  # abandoned mid-way: the connection is closed, never reused
        if expired and not content:  # (an answer read completely is kept, however late the watchdog)
            raise self._no_answer(url, limits)
        return HttpReply(status, reply_headers, content, time.monotonic() - started)

    def _read(self, response: requests.Response, url: str, limit: int, exchange: _Exchange, limits: HttpLimits,
              *, evidence_only: bool = False) -> bytes:
        body = bytearray()
        try:
            for piece in _pieces(response):
                if len(body) + len(piece) > limit:
                    if evidence_only:
                        return bytes((body + piece)[:limit])
                    received = len(body) + len(piece)
                    evidence = bytes((body + piece)[:EVIDENCE_BYTES])
                    del body[:]
                    error = ReplyTooLarge(f"{self.name}'s reply at {url} passed the limit of {limit:,} bytes (decoded) "
                                          f"after {received:,} bytes: refused, the rest not read")
                    error.received = evidence
                    raise error
                body += piece
        except (ProtocolError, ReadTimeoutError, DecodeError, requests.exceptions.RequestException, OSError) as exc:
            evidence = bytes(body[:EVIDENCE_BYTES])
            if (exchange.expired or isinstance(exc, ReadTimeoutError)) and not body:
                raise self._no_answer(url, limits) from None  # not one byte of the body: no answer
            if exchange.expired or isinstance(exc, ReadTimeoutError):
                error: TransportError = DeadlineExceeded(
                    f"{self.name}'s reply at {url} was still arriving when the exchange's deadline of "
                    f"{limits.deadline:g} s passed ({len(body):,} bytes received): abandoned")
            elif isinstance(exc, DecodeError):
                error = ReplyTruncated(f"{self.name}'s reply at {url} cannot be decoded ({exc}) after "
                                       f"{len(body):,} bytes")
            else:
                error = ReplyTruncated(f"{self.name}'s reply at {url} broke off after {len(body):,} bytes: {exc}")
            error.received = evidence
            raise error from None
        return bytes(body)

    def _no_answer(self, url: str, limits: HttpLimits) -> TransportTimeout:
        error = TransportTimeout(f"{self.name} did not answer within {limits.deadline:g} s ({url})")
        error.received = b""
        return error


class PartnerHttp:
    """The bounded HTTP side of one partner for a transport: one :class:`HttpClient` per thread (so
    one pooled ``requests`` session each: connections and TLS sessions are reused), and each
    operation's deadline and reply limit (the settings' ``operation_timeout`` and
    ``max_reply_bytes``, else the service's own limit for the operation)."""

    def __init__(self, settings: Any, spec: Any, endpoint: Any, address: str,
                 session: requests.Session | None = None) -> None:
        self.settings, self.spec, self.endpoint, self.address = settings, spec, endpoint, address
        self._session = session
        self._local = threading.local()

    def client(self) -> HttpClient:
        client = getattr(self._local, "http", None)
        if client is None:
            client = HttpClient.for_url(self.spec.name, self.address, verify=self.endpoint.tls_verify,
                                        client_cert=self.endpoint.client_cert, session=self._session)
            self._local.http = client
        return client

    def limits(self, operation: str) -> HttpLimits:
        return HttpLimits(deadline=self.settings.operation_timeout,
                          max_bytes=self.settings.max_reply_bytes or self.spec.reply_limit(operation))


def _pieces(response: requests.Response) -> Iterator[bytes]:
    """The decoded body piece by piece, each from at most one read of the socket (``read1``), so a
    drip shows as it arrives and no piece decompresses to more than :data:`_PIECE` bytes."""
    raw = response.raw
    if raw is None or not hasattr(raw, "read1"):  # a body already read (a test double)
        yield response.content
        return
    while True:
        piece = raw.read1(_PIECE, decode_content=True)
        if not piece:
            return
        yield piece
