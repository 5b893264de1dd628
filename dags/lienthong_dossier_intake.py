"""Every five minutes: dossier changes from the ministry's one-stop system into the hub's outbox.

A thin DAG: the work is :func:`lienthong.hub.intake.intake_once`. ``lienthong`` is imported inside
the task so that parsing this file stays cheap.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from lienthong_defaults import FAIL_FAST_ON_FATAL, default_args, on_failure

#: Updated when new events are in the outbox; the status push can be scheduled on it.
OUTBOX = Asset("lienthong://outbox/dossiers")

DOC_MD = """
### Liên thông: dossier intake from the one-stop system

Reads what changed in the one-stop system since the stored cursor, from its database (param
`sql`, or `LIENTHONG_ONESTOP_URL`) or from export files in an inbox folder (param `inbox`, or
`LIENTHONG_INBOX`), maps every row with the source mapping (param `mapping`, default
`onestop_sandbox`; local status codes → TrangThaiHoSo, channels, subject types) and writes one
outbox event per change **in the same transaction as the cursor**: a crash loses nothing and a
re-run adds nothing. A row that cannot be mapped (unknown code, missing field, malformed date…)
becomes a dead letter with its reason; it is never dropped or guessed, and it holds back later
changes of its dossier until it is replayed (`lienthong dlq replay`) or discarded.

On success the asset `lienthong://outbox/dossiers` is updated. **On failure** the log names the
error code; `lienthong status` and `lienthong dlq list` show the outbox.
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="lienthong_dossier_intake",
    description="One-stop system → outbox (dossier snapshots and processing steps)",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    tags=["lienthong", "dvc_portal", "intake"],
    doc_md=DOC_MD,
    on_failure_callback=on_failure,
    params={
        "sql": Param(None, type=["null", "string"], description="one-stop database URL (else LIENTHONG_ONESTOP_URL)"),
        "inbox": Param(None, type=["null", "string"], description="export-file folder (else LIENTHONG_INBOX)"),
        "mapping": Param("onestop_sandbox", type="string", description="shipped mapping name or YAML path"),
    },
    default_args=default_args(retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=10),
                              execution_timeout=timedelta(minutes=20)),
)
def lienthong_dossier_intake():
    @task(outlets=[OUTBOX], multiple_outputs=False, retry_policy=FAIL_FAST_ON_FATAL, on_failure_callback=on_failure)
    def intake(params: dict | None = None) -> dict:
        """One intake pass; returns the counts (read, enqueued, duplicates, dead letters, outcomes)."""
        import os
        from pathlib import Path

        from lienthong.connectors.sources.filedrop import FileDropSource
        from lienthong.connectors.sources.sql import SqlSource
        from lienthong.hub.airflow_conn import settings_from_airflow
        from lienthong.hub.errors import ConfigurationError
        from lienthong.hub.intake import intake_once, load_source_mapping
        from lienthong.hub.store import open_store

        params = params or {}
        sql = params.get("sql") or os.environ.get("LIENTHONG_ONESTOP_URL")
        inbox = params.get("inbox") or os.environ.get("LIENTHONG_INBOX")
        if bool(sql) == bool(inbox):
            raise ConfigurationError("configure exactly one source: param sql / LIENTHONG_ONESTOP_URL, "
                                     "or param inbox / LIENTHONG_INBOX")
        store = open_store(settings_from_airflow())
        mapping = load_source_mapping(params.get("mapping") or "onestop_sandbox", store.engine)
        source = SqlSource(sql, mapping) if sql else FileDropSource(Path(inbox), mapping)
        summary = intake_once(store.engine, source)
        log.info("intake from %s: read %d, enqueued %d, duplicates %d, dead letters %d, outcomes %s",
                 summary.source, summary.read, summary.enqueued, summary.duplicates, summary.dead_lettered,
                 dict(summary.outcomes))
        return summary.as_dict()

    intake()


lienthong_dossier_intake()
