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


def on_failure(context) -> None:
    """Say what failed and where to look, in the task log and the DAG run's failure record."""
    import logging

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    error = context.get("exception")
    logging.getLogger("lienthong").error(
        "%s.%s failed: %s. Look at: the task log (the error line names a code); `lienthong status` "
        "(outbox depth, oldest pending, dead letters, breaker); `lienthong dlq list` (what was set aside "
        "and why); `lienthong audit verify` and the audit trail for the exact messages exchanged.",
        dag_id, task_id, f"[{getattr(error, 'code', type(error).__name__)}] {error}" if error else "unknown error")
