"""The per-partner circuit breaker: pure transitions (no sleeping: time is a parameter) and the
breaker shared through the store by several workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from lienthong.hub.delivery.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerConfig,
    CircuitBreaker,
    Decision,
    admit,
    cooldown_for,
    on_failure,
    on_success,
    release_probe,
)
from lienthong.hub.store.models import BreakerState
from sqlalchemy import func, select

T0 = datetime(2026, 6, 9, 8, 0, tzinfo=UTC)
CONFIG = BreakerConfig(failure_threshold=3, cooldown=10.0, multiplier=2.0, max_cooldown=35.0, probe_timeout=5.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fail(breaker: Breaker, times: int, now: datetime = T0) -> Breaker:
    for _ in range(times):
        breaker = on_failure(breaker, now, CONFIG)
    return breaker


# --- pure transitions ---------------------------------------------------------------------------
def test_closed_breaker_counts_consecutive_failures_and_a_success_forgets_them():
    b = fail(Breaker("dvc_portal"), 2)
    assert (b.state, b.failures) == (CLOSED, 2)
    assert admit(b, T0, CONFIG)[0] is Decision.ALLOW
    b = on_success(b, T0, CONFIG)
    assert b == Breaker("dvc_portal")
    assert fail(b, 2).state == CLOSED  # the count started again


def test_threshold_of_consecutive_failures_opens_it_until_the_cooldown():
    b = fail(Breaker("dvc_portal"), 3, at(1))
    assert (b.state, b.trips, b.opened_at, b.next_probe_at) == (OPEN, 1, at(1), at(11))
    assert admit(b, at(10.999), CONFIG) == (Decision.REJECT, b)


def test_after_the_cooldown_exactly_one_caller_probes():
    b = fail(Breaker("dvc_portal"), 3)
    decision, probing = admit(b, at(10), CONFIG)
    assert decision is Decision.PROBE
    assert (probing.state, probing.next_probe_at) == (HALF_OPEN, at(15))  # the probe's own deadline
    assert admit(probing, at(11), CONFIG) == (Decision.REJECT, probing)  # the others wait for its outcome


def test_a_successful_probe_closes_and_resets_everything():
    probing = admit(fail(Breaker("dvc_portal"), 3), at(10), CONFIG)[1]
    assert on_success(probing, at(11), CONFIG) == Breaker("dvc_portal")


def test_a_failed_probe_reopens_with_a_longer_cooldown_up_to_the_cap():
    b = fail(Breaker("dvc_portal"), 3)  # open, 10 s
    cooldowns = []
    now = T0
    for _ in range(4):
        now = b.next_probe_at
        decision, b = admit(b, now, CONFIG)
        assert decision is Decision.PROBE
        b = on_failure(b, now, CONFIG)
        assert b.state == OPEN
        cooldowns.append((b.next_probe_at - now).total_seconds())
    assert cooldowns == [20.0, 35.0, 35.0, 35.0]  # 10 × 2, then capped at 35
    assert b.trips == 5


def test_a_probe_that_never_reports_is_given_up_after_the_probe_timeout():
    probing = admit(fail(Breaker("dvc_portal"), 3), at(10), CONFIG)[1]
    assert admit(probing, at(14.9), CONFIG)[0] is Decision.REJECT
    decision, again = admit(probing, at(15), CONFIG)
    assert decision is Decision.PROBE and again.next_probe_at == at(20)


def test_released_probe_lets_the_next_caller_probe_at_once():
    probing = admit(fail(Breaker("dvc_portal"), 3), at(10), CONFIG)[1]
    released = release_probe(probing, at(11), CONFIG)
    assert admit(released, at(11), CONFIG)[0] is Decision.PROBE
    closed = Breaker("dvc_portal")
    assert release_probe(closed, at(11), CONFIG) is closed


def test_late_failures_of_calls_admitted_before_opening_do_not_extend_the_cooldown():
    b = fail(Breaker("dvc_portal"), 3)
    late = on_failure(b, at(5), CONFIG)
    assert (late.state, late.next_probe_at, late.failures) == (OPEN, b.next_probe_at, 4)


def test_cooldown_schedule_and_configuration_checks():
    assert [cooldown_for(n, CONFIG) for n in (1, 2, 3)] == [10.0, 20.0, 35.0]
    with pytest.raises(ValueError, match="from 1"):
        cooldown_for(0, CONFIG)
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ValueError, match="multiplier"):
        BreakerConfig(multiplier=0.5)
    with pytest.raises(ValueError, match="probe_timeout"):
        BreakerConfig(probe_timeout=0)
    with pytest.raises(ValueError, match="closed, open or half_open"):
        Breaker("dvc_portal", state="ajar")
    with pytest.raises(ValueError, match="next_probe_at"):
        Breaker("dvc_portal", state=OPEN)


# --- persisted and shared -----------------------------------------------------------------------
class Clock:
    def __init__(self, start: datetime = T0):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(BreakerState)).scalar_one()


def test_a_healthy_partner_costs_no_write(engine):
    breaker = CircuitBreaker(engine, "dvc_portal", CONFIG, clock=Clock())
    for _ in range(3):
        assert breaker.admit().decision is Decision.ALLOW
        breaker.record_success()
    assert rows(engine) == 0
    assert breaker.current() == Breaker("dvc_portal")


def test_workers_share_one_breaker_through_the_store(engine):
    clock = Clock()
    worker_a = CircuitBreaker(engine, "dvc_portal", CONFIG, clock=clock)
    worker_b = CircuitBreaker(engine, "dvc_portal", CONFIG, clock=clock)
    other_partner = CircuitBreaker(engine, "baocao", CONFIG, clock=clock)
    worker_a.record_failure()
    worker_b.record_failure()
    worker_a.record_failure()
    assert worker_b.admit().decision is Decision.REJECT  # b sees what a's failures did
    assert other_partner.admit().decision is Decision.ALLOW
    stored = worker_b.current()
    assert (stored.state, stored.failures, stored.opened_at, stored.next_probe_at) == (OPEN, 3, T0, at(10))

    clock.advance(10)
    assert worker_a.admit().decision is Decision.PROBE
    assert worker_b.admit().decision is Decision.REJECT  # one probe at a time
    worker_a.record_failure()  # the probe failed: open again, twice as long
    assert worker_b.current().next_probe_at == at(30)
    clock.advance(20)
    assert worker_b.admit().decision is Decision.PROBE
    worker_b.record_success()
    assert worker_a.current() == Breaker("dvc_portal")
    assert worker_a.admit().decision is Decision.ALLOW


def test_only_one_of_many_concurrent_callers_gets_the_probe(engine):
    clock = Clock()
    CircuitBreaker(engine, "dvc_portal", CONFIG, clock=clock).record_failure()
    for _ in range(2):
        CircuitBreaker(engine, "dvc_portal", CONFIG, clock=clock).record_failure()
    clock.advance(11)
    start = threading.Barrier(6)
    decisions: list[Decision] = []
    lock = threading.Lock()

    def caller() -> None:
        breaker = CircuitBreaker(engine, "dvc_portal", CONFIG, clock=clock)
        start.wait()
        decision = breaker.admit().decision
        with lock:
            decisions.append(decision)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(d.value for d in decisions) == ["probe"] + ["reject"] * 5


def test_reset_closes_by_hand_and_partner_names_are_checked(engine):
    clock = Clock()
    breaker = CircuitBreaker(engine, "dvc_portal", CONFIG, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    assert breaker.current().state == OPEN
    assert breaker.reset() == Breaker("dvc_portal")
    assert breaker.admit().allowed
    with pytest.raises(ValueError, match="partner"):
        CircuitBreaker(engine, "")
    with pytest.raises(ValueError, match="partner"):
        CircuitBreaker(engine, "x" * 65)
