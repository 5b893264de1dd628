"""The delivery engine: guaranteed, ordered delivery of outbox events to a partner.

- :mod:`.outbox`: the durable queue (enqueue in the intake's transaction, claim with leases,
  settle, dead letters, replay and discard);
- :mod:`.engine`: one pass of one worker (:func:`deliver_once`): rounds per dossier, batching,
  idempotent resend under the same DocumentId;
- :mod:`.breaker`: the circuit breaker per partner, shared by every worker through the store;
- :mod:`.retry`: the retry policy (exponential backoff with jitter) for transient errors.

It uses the store and the audit ledger; the flows (:mod:`lienthong.hub.flows`) drive it.
"""

from .breaker import BreakerConfig, CircuitBreaker
from .engine import DeliverySummary, deliver_once, message_document_id
from .retry import RetryPolicy

__all__ = ["BreakerConfig", "CircuitBreaker", "DeliverySummary", "RetryPolicy", "deliver_once", "message_document_id"]
