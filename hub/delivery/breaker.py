"""A per-partner circuit breaker, shared by every worker through the store.

When a national service is down, hammering it with every queued message helps nobody: each call
waits for its timeout, every event burns a retry attempt, and the service gets no room to come
back. The breaker stops that. It is the classic three-state machine::

    closed ──N consecutive retryable failures──> open ──cool-down elapsed──> half_open
      ^                                           ^                             │ one probe
      └──────────────── probe succeeds ───────────┴──── probe fails (longer cool-down)

* **closed**: calls go through; retryable failures are counted, any success resets the count.
* **open**: calls are refused without touching the network (the delivery engine leaves the events
  pending, consuming no attempt) until ``next_probe_at``.
* **half_open**: exactly one caller is let through as a probe. Its success closes the breaker; its
  failure re-opens it with a cool-down ``multiplier`` times longer (up to ``max_cooldown``). A probe
  whose outcome never comes back (the worker died) is given up after ``probe_timeout``, and the
  next caller probes instead.

Only *retryable* failures (timeouts, 5xx, transient faults) count: a fatal answer, such as a
business rejection, proves the partner is up.

The transitions are pure functions of a frozen :class:`Breaker` value and an explicit ``now``, so
they are unit-tested without sleeping. :class:`CircuitBreaker` persists the value in the
``breaker_state`` table, one row per partner, and applies each transition inside a write
transaction (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): all workers of
all processes see one breaker, and only one of them wins the probe.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, insert, select, update

from ..store import write_transaction
from ..store.models import BreakerState

__all__ = [
    "CLOSED", "HALF_OPEN", "OPEN", "Admission", "Breaker", "BreakerConfig", "CircuitBreaker", "Decision",
    "admit", "cooldown_for", "on_failure", "on_success", "release_probe",
]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

_TABLE = BreakerState.__table__


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class BreakerConfig:
    #: consecutive retryable failures that open a closed breaker
    failure_threshold: int = 5
    #: seconds an open breaker waits before the first probe
    cooldown: float = 30.0
    #: each failed probe multiplies the cool-down by this
    multiplier: float = 2.0
    #: no cool-down is longer than this
    max_cooldown: float = 600.0
    #: seconds after which a probe that never reported back is given up (its worker died); keep
    #: it above the operation timeout so a slow probe is not doubled by a second one
    probe_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.cooldown < 0 or self.max_cooldown < 0 or self.probe_timeout <= 0:
            raise ValueError("cool-downs must not be negative and probe_timeout must be positive")
        if self.multiplier < 1:
            raise ValueError("the cool-down multiplier must be at least 1")


@dataclass(frozen=True)
class Breaker:
    """The breaker of one partner as a value. ``failures``: consecutive retryable failures;
    ``trips``: openings since the last success (drives the growing cool-down)."""

    partner: str
    state: str = CLOSED
    failures: int = 0
    trips: int = 0
    opened_at: datetime | None = None
    next_probe_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.state not in (CLOSED, OPEN, HALF_OPEN):
            raise ValueError(f"breaker state must be closed, open or half_open, not {self.state!r}")
        if self.state != CLOSED and self.next_probe_at is None:
            raise ValueError(f"an {self.state} breaker needs next_probe_at")


class Decision(enum.Enum):
    ALLOW = "allow"  # closed: go ahead
    PROBE = "probe"  # half-open: you are the one probe; report the outcome
    REJECT = "reject"  # open (or someone else is probing): do not call


def cooldown_for(trips: int, config: BreakerConfig) -> float:
    """Cool-down in seconds after the ``trips``-th consecutive opening (1-based)."""
    if trips < 1:
        raise ValueError("trips are counted from 1")
    return min(config.max_cooldown, config.cooldown * config.multiplier ** (trips - 1))


def admit(breaker: Breaker, now: datetime, config: BreakerConfig) -> tuple[Decision, Breaker]:
    """May a call go out at ``now``? Returns the decision and the breaker after it."""
    if breaker.state == CLOSED:
        return Decision.ALLOW, breaker
    assert breaker.next_probe_at is not None
    if now < breaker.next_probe_at:
        return Decision.REJECT, breaker
    # open and cooled down, or half-open with a probe that never reported: this caller probes
    probing = replace(breaker, state=HALF_OPEN, next_probe_at=now + timedelta(seconds=config.probe_timeout))
    return Decision.PROBE, probing


def on_success(breaker: Breaker, now: datetime, config: BreakerConfig) -> Breaker:
    """The partner answered: close (from any state; a late success of a call admitted before the
    breaker opened is as good a sign of life as a probe)."""
    if breaker.state == CLOSED and breaker.failures == 0 and breaker.trips == 0:
        return breaker
    return Breaker(partner=breaker.partner)


def on_failure(breaker: Breaker, now: datetime, config: BreakerConfig) -> Breaker:
    """A call failed in a way worth retrying (timeout, 5xx, transient fault)."""
    failures = breaker.failures + 1
    if breaker.state == CLOSED:
        if failures < config.failure_threshold:
            return replace(breaker, failures=failures)
        return _open(breaker, failures, 1, now, config)
    if breaker.state == HALF_OPEN:
        # the probe (or a straggler) failed: open again, for longer
        return _open(breaker, failures, breaker.trips + 1, now, config)
    # already open: a call admitted before it opened reports late; the cool-down stands
    return replace(breaker, failures=failures)


def release_probe(breaker: Breaker, now: datetime, config: BreakerConfig) -> Breaker:
    """The probe ended without learning anything about the partner (nothing was sent, e.g. the
    message was refused locally): let the next caller probe at once."""
    if breaker.state != HALF_OPEN:
        return breaker
    return replace(breaker, next_probe_at=now)


def _open(breaker: Breaker, failures: int, trips: int, now: datetime, config: BreakerConfig) -> Breaker:
    return Breaker(partner=breaker.partner, state=OPEN, failures=failures, trips=trips, opened_at=now,
                   next_probe_at=now + timedelta(seconds=cooldown_for(trips, config)))


@dataclass(frozen=True)
class Admission:
    decision: Decision
    breaker: Breaker

    @property
    def allowed(self) -> bool:
        return self.decision is not Decision.REJECT

    @property
    def probe(self) -> bool:
        return self.decision is Decision.PROBE


class CircuitBreaker:
    """The breaker of ``partner`` kept in the store: every worker of every process shares it.

    Thread-safe (no state beyond configuration). ``clock`` returns aware datetimes; tests inject
    one to move time without sleeping. The hot path, a closed breaker with no failure to forget,
    costs one primary-key read per call and writes nothing.

    Do not call it while the same thread holds a write transaction on a SQLite store (as for the
    audit trail, it would wait for the lock that transaction holds).
    """

    def __init__(self, engine: Engine, partner: str, config: BreakerConfig | None = None, *,
                 clock: Callable[[], datetime] | None = None):
        if not partner or len(partner) > 64:
            raise ValueError(f"breaker partner must be 1..64 characters, not {partner!r}")
        self.engine = engine
        self.partner = partner
        self.config = config or BreakerConfig()
        self.clock = clock or _utcnow

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.partner!r})"

    # --- reading ----------------------------------------------------------------------------
    def current(self) -> Breaker:
        """The breaker as stored (a closed one if it has never been used)."""
        with self.engine.connect() as conn:
            return self._load(conn, lock=False)

    # --- transitions -------------------------------------------------------------------------
    def admit(self) -> Admission:
        """Ask before each call: ``allowed`` false means do not call; ``probe`` true means this
        call is the one probe of a half-open breaker (report its outcome)."""
        now = self.clock()
        current = self.current()
        decision, after = admit(current, now, self.config)
        if decision is not Decision.PROBE:
            return Admission(decision, after)
        # a probe is handed out under the row lock, so only one worker gets it
        with self._write() as conn:
            current = self._load(conn, lock=True)
            decision, after = admit(current, now, self.config)
            if after != current:
                self._store(conn, after, now)
        return Admission(decision, after)

    def record_success(self) -> Breaker:
        return self._apply(on_success, skip_if=lambda b: b.state == CLOSED and b.failures == 0 and b.trips == 0)

    def record_failure(self) -> Breaker:
        return self._apply(on_failure)

    def release_probe(self) -> Breaker:
        return self._apply(release_probe, skip_if=lambda b: b.state != HALF_OPEN)

    def reset(self) -> Breaker:
        """Close the breaker by hand (an operator knows the partner is back)."""
        return self._apply(lambda b, now, config: Breaker(partner=b.partner))

    # --- persistence -------------------------------------------------------------------------
    def _apply(self, transition: Callable[[Breaker, datetime, BreakerConfig], Breaker], *,
               skip_if: Callable[[Breaker], bool] | None = None) -> Breaker:
        if skip_if is not None:
            current = self.current()
            if skip_if(current):
                return current
        now = self.clock()
        with self._write() as conn:
            current = self._load(conn, lock=True)
            after = transition(current, now, self.config)
            if after != current:
                self._store(conn, after, now)
        return after

    def _write(self):
        return write_transaction(self.engine)

    def _load(self, conn: Connection, *, lock: bool) -> Breaker:
        query = select(_TABLE).where(_TABLE.c.partner == self.partner)
        if lock and conn.dialect.name == "postgresql":
            # The row must exist to be locked: two first-ever writers would otherwise both read
            # "no row", and one's count would overwrite the other's. (SQLite's BEGIN IMMEDIATE
            # already serialises writers, row or no row.)
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            fresh = Breaker(partner=self.partner)
            conn.execute(pg_insert(_TABLE).values(partner=self.partner, **self._values(fresh, self.clock()))
                         .on_conflict_do_nothing(index_elements=["partner"]))
            query = query.with_for_update()
        row = conn.execute(query).mappings().one_or_none()
        if row is None:
            return Breaker(partner=self.partner)
        return Breaker(partner=row["partner"], state=row["state"], failures=row["failures"], trips=row["trips"],
                       opened_at=row["opened_at"], next_probe_at=row["next_probe_at"])

    @staticmethod
    def _values(breaker: Breaker, now: datetime) -> dict:
        return dict(state=breaker.state, failures=breaker.failures, trips=breaker.trips,
                    opened_at=breaker.opened_at, next_probe_at=breaker.next_probe_at, updated_at=now)

    def _store(self, conn: Connection, breaker: Breaker, now: datetime) -> None:
        values = self._values(breaker, now)
        done = conn.execute(update(_TABLE).where(_TABLE.c.partner == self.partner).values(**values))
        if done.rowcount == 0:  # first write of this partner (on PostgreSQL _load made the row)
            conn.execute(insert(_TABLE).values(partner=self.partner, **values))
