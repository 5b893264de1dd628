"""Every five minutes: dossier changes from the ministry's one-stop system into the hub's outbox.

A thin DAG: the work is :func:`lienthong.hub.flows.intake.run_source`, once per source of the sources
file (mapped tasks). ``lienthong`` is imported inside the tasks so that parsing this file stays cheap.
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
### Liên thông: dossier intake from the one-stop systems

Reads what changed in each one-stop source since its stored cursor and writes one outbox event per
change **in the same transaction as that source's cursor**: a crash loses nothing and a re-run adds
nothing. The sources are the **sources file** (param `sources`, else `LIENTHONG_SOURCES`, else
`$LIENTHONG_HOME/sources.yaml`): one mapped task per source, in parallel, so a failing source
(database down, a cursor that does not fit) fails alone and the others go on. Param `source_id`
reads only that one. Without a sources file, the single source of param `sql` (or
`LIENTHONG_ONESTOP_URL`) or `inbox` (or `LIENTHONG_INBOX`) is read with param `mapping`.

Every source has an identity (its `id` in the file; else `mapping@location`) under which its
cursor is kept **with the location it was taken from**. A cursor that does not fit its source
(another database under the same identity, a database restored from an older backup, keys that
moved backwards) is refused with one line naming both: nothing is read until an operator runs
`lienthong intake --source-id ID --reset-cursor` or `--adopt-cursor` with `--reason` (recorded in
the audit trail). A row that cannot be mapped becomes a dead letter with its reason; it holds back
later changes of its dossier until it is replayed (`lienthong dlq replay`) or discarded.

On success the asset `lienthong://outbox/dossiers` is updated. **On failure** the log names the
error code; `lienthong status` lists every source with its cursor and last run, and
`lienthong dlq list` the outbox's dead letters.
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="lienthong_dossier_intake",
    description="One-stop systems → outbox (dossier snapshots and processing steps), one task per source",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    tags=["lienthong", "dvc_portal", "intake"],
    doc_md=DOC_MD,
    on_failure_callback=on_failure,
    params={
        "sources": Param(None, type=["null", "string"],
                         description="sources file (else LIENTHONG_SOURCES, else $LIENTHONG_HOME/sources.yaml)"),
        "source_id": Param(None, type=["null", "string"], description="read only this source (its identity)"),
        "sql": Param(None, type=["null", "string"],
                     description="without a sources file: one-stop database URL (else LIENTHONG_ONESTOP_URL)"),
        "inbox": Param(None, type=["null", "string"],
                       description="without a sources file: export-file folder (else LIENTHONG_INBOX)"),
        "mapping": Param("onestop_sandbox", type="string",
                         description="without a sources file: shipped mapping name or YAML path"),
    },
    default_args=default_args(retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=10),
                              execution_timeout=timedelta(minutes=20)),
)
def lienthong_dossier_intake():
    @task(retry_policy=FAIL_FAST_ON_FATAL)
    def sources(params: dict | None = None) -> list[str]:
        """The identities to read (only identities cross to the next tasks: URLs may hold passwords)."""
        from lienthong.hub.flows.intake import dag_sources

        return [spec.id or spec.location for spec in dag_sources(params or {})]

    @task(outlets=[OUTBOX], multiple_outputs=False, retry_policy=FAIL_FAST_ON_FATAL, on_failure_callback=on_failure,
          map_index_template="{{ source }}")
    def intake(source: str, params: dict | None = None) -> dict:
        """One intake pass over one source; returns its counts (read, enqueued, duplicates, dead letters)."""
        from lienthong.hub.airflow_conn import settings_from_airflow
        from lienthong.hub.flows.intake import dag_sources, run_source
        from lienthong.hub.store import open_store

        spec = next(s for s in dag_sources(params or {}) if (s.id or s.location) == source)
        store = open_store(settings_from_airflow())
        summary = run_source(store, spec)
        log.info("intake %s (%s at %s): read %d, enqueued %d, duplicates %d, dead letters %d, position %s, outcomes %s",
                 summary.source, summary.mapping, summary.location, summary.read, summary.enqueued,
                 summary.duplicates, summary.dead_lettered, summary.position, dict(summary.outcomes))
        return summary.as_dict()

    intake.expand(source=sources())


lienthong_dossier_intake()
