"""What the sandbox's HTTP handler sends back, whichever side (SOAP services, JSON adapter) made it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/xml; charset=utf-8"
    #: processed, but the reply must never arrive (injected timeout)
    hang: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    #: processed, but the connection breaks after this many bytes of the body (a truncated reply:
    #: Content-Length announces the whole body)
    truncate_at: int | None = None
