"""The retry policy: pure delay arithmetic, fatal errors never retried."""

import pytest
from lienthong.hub.delivery.retry import RetryPolicy
from lienthong.hub.errors import SchemaViolation, ServiceUnavailable, TransportTimeout


def test_delays_grow_by_the_multiplier_and_stop_at_the_cap():
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_within_its_band():
    policy = RetryPolicy(initial_delay=10.0, jitter=0.2)
    assert policy.delay(1, rng=lambda: 0.0) == pytest.approx(8.0)
    assert policy.delay(1, rng=lambda: 0.5) == pytest.approx(10.0)
    assert policy.delay(1, rng=lambda: 0.999999) == pytest.approx(12.0, rel=1e-5)


def test_retries_retryable_errors_until_success_without_real_sleeping():
    slept, calls = [], []

    def flaky(attempt):
        calls.append(attempt)
        if attempt < 3:
            raise ServiceUnavailable("503")
        return "ok"

    policy = RetryPolicy(initial_delay=0.1, jitter=0.0, max_attempts=5)
    assert policy.call(flaky, sleep=slept.append) == "ok"
    assert calls == [1, 2, 3] and slept == [0.1, 0.2]


def test_gives_up_after_max_attempts_with_the_last_error():
    policy = RetryPolicy(initial_delay=0, max_attempts=3)
    calls = []

    def always(attempt):
        calls.append(attempt)
        raise TransportTimeout(f"attempt {attempt}")

    with pytest.raises(TransportTimeout, match="attempt 3"):
        policy.call(always, sleep=lambda s: None)
    assert calls == [1, 2, 3]


def test_fatal_errors_are_never_retried():
    calls = []

    def fatal(attempt):
        calls.append(attempt)
        raise SchemaViolation("bad")

    with pytest.raises(SchemaViolation):
        RetryPolicy().call(fatal, sleep=lambda s: None)
    assert calls == [1]


@pytest.mark.parametrize("kw", [{"multiplier": 0.5}, {"jitter": 1.0}, {"max_attempts": 0}, {"initial_delay": -1}])
def test_nonsense_policies_are_refused(kw):
    with pytest.raises(ValueError):
        RetryPolicy(**kw)


def test_policy_is_a_frozen_value():
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]
    assert policy == RetryPolicy()
