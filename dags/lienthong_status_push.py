"""Every minute: deliver the outbox to the national portal, several workers in parallel.

A thin DAG: each mapped task is one worker running :func:`lienthong.hub.flows.status_push.drain`
until nothing is claimable. Workers claim whole dossiers (partitions) safely against each other
(``SKIP LOCKED`` on PostgreSQL), so the mapped tasks never deliver the same event twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from lienthong_defaults import FAIL_FAST_ON_FATAL, default_args, on_failure

DOC_MD = """
### Liên thông: dossier status push to Cổng DVC quốc gia

Delivers what the intake put in the outbox: dossier snapshots in `DongBoHoSoMC` batches (param
`batch_size`), `isUpdating` known locally or asked with `TraCuuHoSo`, processing steps with
`CapNhatTienDoHoSoMC`; every message signed, verified and audited. `workers` mapped tasks run in
parallel; each claims whole dossiers, so a dossier's events are delivered strictly in order and
never by two workers, and keeps two messages in flight. A message cut off by a crash is sent
again whole, under the same DocumentId.

Retryable failures (timeouts, 5xx) are retried per event with exponential backoff and jitter; a
per-partner circuit breaker stops sending while the portal is down and probes until it is back.
Fatal ones (schema, signature, business rejection) and exhausted retries become dead letters with
the signed request, the portal's answer and the reason (`lienthong dlq list|show|replay|discard`).

**On failure** the log says what failed; `lienthong status` shows outbox depth, the oldest pending
event's age, dead letters, the breaker and delivery freshness (p50/p95).
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="lienthong_status_push",
    description="Outbox → Cổng DVC quốc gia (DongBoHoSoMC, CapNhatTienDoHoSoMC), parallel workers",
    schedule="* * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    tags=["lienthong", "dvc_portal", "push"],
    doc_md=DOC_MD,
    on_failure_callback=on_failure,
    params={
        "workers": Param(2, type="integer", minimum=1, maximum=16, description="parallel delivery workers"),
        "batch_size": Param(50, type="integer", minimum=1, maximum=500, description="dossiers per DongBoHoSoMC"),
        "senders": Param(2, type="integer", minimum=1, maximum=8,
                         description="messages of different dossiers in flight per worker"),
    },
    default_args=default_args(retry_delay=timedelta(seconds=30), max_retry_delay=timedelta(minutes=5),
                              execution_timeout=timedelta(minutes=25)),
)
def lienthong_status_push():
    @task
    def worker_slots(params: dict | None = None) -> list[int]:
        return list(range(int((params or {}).get("workers") or 2)))

    @task(map_index_template="worker {{ slot }}", multiple_outputs=False, retry_policy=FAIL_FAST_ON_FATAL,
          on_failure_callback=on_failure)
    def deliver(slot: int, params: dict | None = None, run_id: str | None = None) -> dict:
        """One worker: claim, deliver, repeat until nothing is claimable; returns its totals."""
        from lienthong.hub.airflow_conn import settings_from_airflow
        from lienthong.hub.flows.status_push import drain, open_portal
        from lienthong.hub.store import open_store

        settings = settings_from_airflow("dvc_portal")
        store = open_store(settings)
        worker_id = f"{run_id or 'airflow'}:{slot}"
        totals = drain(store, open_portal(settings, store), worker_id=worker_id,
                       batch_size=int((params or {}).get("batch_size") or 50),
                       senders=int((params or {}).get("senders") or 2),
                       sole_feed_since=settings.portal_sole_feed_since)
        counts = {key: getattr(totals, key) for key in ("delivered", "retried", "dead", "messages")}
        log.info("worker %s: %s (breaker %s)", worker_id, counts, totals.breaker)
        return {**counts, "breaker": totals.breaker, "stopped": totals.stopped}

    deliver.expand(slot=worker_slots())


lienthong_status_push()
