"""What every Liên thông DAG shares: owner, retry schedule, and failing fast on fatal errors.

Not a DAG file (listed in ``.airflowignore``); the DAG files import it from the DAGs folder, which
Airflow puts on ``sys.path``. It imports nothing from ``lienthong``: the fatal error class is named
by its import path and resolved by Airflow only when a task fails.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

# Errors the hub classifies as fatal cannot be cured by waiting: fail at once rather than spend
# the retries. Retryable ones (and anything unexpected) use the exponential backoff.
FAIL_FAST_ON_FATAL = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="lienthong.hub.errors.FatalError",
            action=RetryAction.FAIL,
            reason="the hub classifies this error as fatal: retrying the same work cannot succeed",
        ),
    ],
)


def default_args(*, retry_delay: timedelta, max_retry_delay: timedelta, execution_timeout: timedelta) -> dict:
    """Three retries with exponential backoff (a float multiplier in Airflow 3) up to a cap."""
    return {
        "owner": "lienthong",
        "retries": 3,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": max_retry_delay,
        "execution_timeout": execution_timeout,
    }
