"""Retry policy as a plain value: when to try again, and when to give up.

Modelled on Apache Camel's ``RedeliveryPolicy``: a frozen dataclass whose delays are pure
functions of the attempt number (and of an injected random source for jitter), so the policy is
unit-tested without sleeping and the same policy object can be shared by threads and processes.
Only :class:`~lienthong.hub.errors.RetryableError` is ever retried; a fatal error is returned to
the caller at once, whatever the attempt.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import RetryableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    #: seconds before the second attempt
    initial_delay: float = 0.5
    #: each further delay is the previous one times this
    multiplier: float = 2.0
    #: no single delay exceeds this
    max_delay: float = 30.0
    #: ± share of the delay drawn at random, so many workers do not retry in lockstep
    jitter: float = 0.2
    #: attempts in all, the first included
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("retry multiplier must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("retry jitter must be in [0, 1)")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def base_delay(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based), before jitter."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        return min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Delay after failed attempt ``attempt`` with jitter; ``rng`` returns floats in [0, 1)."""
        base = self.base_delay(attempt)
        return max(0.0, base * (1 + self.jitter * (2 * rng() - 1)))

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        return isinstance(error, RetryableError) and attempt < self.max_attempts

    def call(self, fn: Callable[[int], T], *, sleep: Callable[[float], None] = time.sleep,
             on_retry: Callable[[BaseException, int, float], None] | None = None) -> T:
        """Run ``fn(attempt)`` until it succeeds, a fatal error occurs or attempts run out."""
        attempt = 1
        while True:
            try:
                return fn(attempt)
            except RetryableError as exc:
                if not self.should_retry(exc, attempt):
                    raise
                wait = self.delay(attempt)
                if on_retry is not None:
                    on_retry(exc, attempt, wait)
                sleep(wait)
                attempt += 1
