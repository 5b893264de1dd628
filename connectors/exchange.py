"""One audited exchange with a partner: what every transport does around its own wire format.

The request is recorded before it leaves; the answer (or what arrived of it) is recorded whatever
happens, with an outcome word saying how it ended; a failure carries its evidence (the message id,
the stored request and answer) so that a dead letter keeps it without a trip to the ledger. The
transport supplies the sending and its own reading of the answer; the audit discipline is here, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..hub.errors import (
    HubError,
    PartnerFault,
    ReplyTooLarge,
    ReplyTruncated,
    ServiceUnavailable,
    TransportTimeout,
    UnexpectedContentType,
)
from .http import HttpReply

T = TypeVar("T")

#: the audit outcome of a failed HTTP exchange, by error (most specific first)
TRANSPORT_OUTCOMES: tuple[tuple[type[HubError], str], ...] = (
    (TransportTimeout, "timeout"), (ReplyTooLarge, "too_large"), (ReplyTruncated, "truncated"),
    (UnexpectedContentType, "content_type"))
#: the audit outcome of an answer the transport refused, by error (first match; else "rejected")
ANSWER_OUTCOMES: tuple[tuple[type[HubError], str], ...] = ((PartnerFault, "fault"), (ServiceUnavailable, "unavailable"))


@dataclass(frozen=True)
class Exchanged(Generic[T]):
    accepted: T  # what the transport read from the answer
    response_bytes: bytes  # the answer as stored in the audit trail
    latency_ms: float
    audit_seqs: tuple[int, int]


def _word(exc: HubError, table: tuple[tuple[type[HubError], str], ...], default: str) -> str:
    return next((word for kind, word in table if isinstance(exc, kind)), default)


def audited_exchange(audit: Any, *, common: Mapping[str, Any], sender: str, recipient: str, request: bytes,
                     send: Callable[[], HttpReply], accept: Callable[[HttpReply], T],
                     stored: Callable[[bytes], bytes] = lambda raw: raw,
                     answer_id: Callable[[bytes], str | None] = lambda raw: None,
                     answer_outcomes: tuple[tuple[type[HubError], str], ...] = ANSWER_OUTCOMES) -> Exchanged[T]:
    """Record ``request`` (already as it must be stored), ``send`` it, ``accept`` the answer.

    ``common``: partner, operation, document_id, correlation_id, attempt of both entries;
    ``stored(raw)``: the answer's bytes as they may be kept (secrets replaced); ``answer_id(raw)``:
    the answer's own message id for the audit index, when it has one.
    """
    document_id = common["document_id"]
    out_seq = audit.record(direction="out", from_agency=sender, to_agency=recipient, raw=request, outcome="sent",
                           **common)
    started = time.perf_counter()
    outcome, error, received = "error", None, b""
    try:
        try:
            reply = send()
        except HubError as exc:
            received = getattr(exc, "received", b"") or b""  # what arrived before it was abandoned (bounded)
            outcome, error = _word(exc, TRANSPORT_OUTCOMES, "error"), str(exc)
            raise
        received = reply.content
        try:
            accepted = accept(reply)
        except HubError as exc:
            outcome, error = _word(exc, answer_outcomes, "rejected"), str(exc)
            raise
        outcome = "ok"
    except HubError as exc:
        exc.document_id, exc.request_bytes, exc.response_bytes = document_id, request, stored(received) or None
        raise
    finally:
        latency_ms = (time.perf_counter() - started) * 1000.0
        in_seq = audit.record(direction="in", from_agency=recipient, to_agency=sender, raw=stored(received),
                              outcome=outcome, latency_ms=latency_ms, error=error,
                              **{**common, "document_id": answer_id(received) or document_id})
    return Exchanged(accepted, stored(received), latency_ms, (out_seq, in_seq))
