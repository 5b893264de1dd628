"""Daily sync of the national procedure catalogue (CSDL quốc gia về TTHC) into the hub's store.

A thin DAG: the work is :func:`lienthong.hub.flows.catalogue.sync_catalogue`. ``lienthong`` is imported
inside the task so that parsing this file costs no more than importing the Task SDK.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from lienthong_defaults import FAIL_FAST_ON_FATAL, default_args

#: Published when a sync commits: DAGs that need the catalogue (dossier mapping, reports)
#: schedule on this asset instead of guessing when the sync is done.
CATALOGUE = Asset("lienthong://catalogue/tthc", extra={"source": "CSDL quốc gia về TTHC"})

DOC_MD = """
### Liên thông: procedure catalogue sync (CSDL TTHC)

Keeps the ministry's copy of the national procedure catalogue complete and current.

- **incremental** (default, daily): asks `LayDanhSachTTHC` for procedures changed since the
  stored watermark minus a 10-minute safety overlap, fetches each with `LayThuTuc` (4 at a time),
  maps it to the canonical model and stores it in batches. The watermark moves in the same
  transaction as each batch, so a run that dies resumes where it stopped. Re-reading an unchanged
  procedure writes nothing.
- **full** (param `mode=full`, e.g. weekly or after an incident): re-reads the whole catalogue
  and marks procedures that are no longer listed as removed (never deleted).
- param `since` (ISO date/time) overrides the watermark for one run.

Outcome: new / changed / unchanged / unpublished / removed / quarantined counts, in the task log
and as the task's XCom. Quarantined records (schema, signature or mapping failures) are kept with
the reason and the exact bytes in the `quarantine` table; the run still succeeds.
On success the asset `lienthong://catalogue/tthc` is updated.

**On failure**: transient errors (`TIMEOUT`, `SERVICE_UNAVAILABLE`, …) were already retried per
request; the task retries with exponential backoff. `CONFIGURATION`, `SIGNATURE_*`,
`CERTIFICATE_*` fail at once: check the `lienthong_csdl` connection and the trust store.
Every request and reply is in the audit trail (`lienthong audit verify`).
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="lienthong_tthc_sync",
    description="Procedure catalogue from CSDL TTHC: incremental daily, full on demand",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=3),
    tags=["lienthong", "csdl_tthc", "catalogue"],
    doc_md=DOC_MD,
    params={
        "mode": Param("incremental", type="string", enum=["incremental", "full"],
                      description="incremental: changes since the watermark; full: everything, detects removals"),
        "since": Param(None, type=["null", "string"],
                       description="ISO date/time overriding the watermark for this run (incremental only)"),
    },
    default_args=default_args(retry_delay=timedelta(minutes=2), max_retry_delay=timedelta(minutes=30),
                              execution_timeout=timedelta(hours=2)),
)
def lienthong_tthc_sync():
    @task(outlets=[CATALOGUE], multiple_outputs=False, retry_policy=FAIL_FAST_ON_FATAL)
    def sync(params: dict | None = None) -> dict:
        """One catalogue sync; returns its summary (counts, watermark, duration)."""
        from datetime import UTC, datetime

        from lienthong.hub.airflow_conn import settings_from_airflow
        from lienthong.hub.flows.catalogue import open_catalogue, sync_catalogue
        from lienthong.hub.store import open_store

        params = params or {}
        since = params.get("since")
        since_dt = datetime.fromisoformat(since) if since else None
        if since_dt is not None and since_dt.tzinfo is None:
            since_dt = since_dt.replace(tzinfo=UTC)
        settings = settings_from_airflow("csdl_tthc")
        store = open_store(settings)
        summary = sync_catalogue(store.engine, open_catalogue(settings, store), full=params.get("mode") == "full", since=since_dt)
        log.info("catalogue sync %s: listed %d, new %d, changed %d, unchanged %d, unpublished %d, removed %d, "
                 "quarantined %d in %.1f s", summary.mode, summary.listed, summary.new, summary.changed,
                 summary.unchanged, summary.unpublished, summary.removed, summary.quarantined, summary.seconds)
        return summary.as_dict()

    sync()


lienthong_tthc_sync()
