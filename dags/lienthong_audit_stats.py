"""Daily statistics of the audit ledger, written as JSON and CSV files for the IT centre.

A thin DAG: the figures are :func:`lienthong.hub.audit.stats.compute_stats` (the same as
``lienthong audit stats``); this file only schedules one run per day and names the day.
``lienthong`` is imported inside the task so that parsing this file costs no more than the Task SDK.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from lienthong_defaults import FAIL_FAST_ON_FATAL, default_args, on_failure

DOC_MD = """
### Liên thông: daily audit statistics

Every day shortly after 00:00 UTC, the figures of the previous UTC day are read from the audit
ledger and written to `$LIENTHONG_HOME/reports/audit-stats-YYYY-MM-DD.json` and `.csv`:
message counts by partner, operation and outcome, bytes out/in, failures (outcomes other than
`ok`/`sent`) and reply latency p50/p95. Both files are written atomically (temporary file, then
rename), so a reader never sees half a report; re-running a day rewrites its files.

Trigger with the param `day` (`YYYY-MM-DD`) to (re)write the report of a given day. The same
figures for any period: `lienthong audit stats --since ... --until ... [--json | --csv]`.

**On failure** the task log names the error; the usual cause is the store being unreachable
(`LIENTHONG_DB_URL`) or the reports folder not writable.
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="lienthong_audit_stats",
    description="Daily audit ledger statistics → $LIENTHONG_HOME/reports/audit-stats-YYYY-MM-DD.{json,csv}",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    tags=["lienthong", "audit"],
    doc_md=DOC_MD,
    on_failure_callback=on_failure,
    params={
        "day": Param("", type="string", description="UTC day to report on (YYYY-MM-DD); empty: the day before"),
    },
    default_args=default_args(retry_delay=timedelta(minutes=2), max_retry_delay=timedelta(minutes=30),
                              execution_timeout=timedelta(minutes=30)),
)
def lienthong_audit_stats():
    @task(retry_policy=FAIL_FAST_ON_FATAL, on_failure_callback=on_failure)
    def write_report(params: dict | None = None, data_interval_end=None) -> dict:
        """Write the day's JSON and CSV reports; return their paths and the day's totals."""
        from datetime import date

        from lienthong.hub.audit.stats import previous_day, write_daily_report
        from lienthong.hub.errors import ConfigurationError
        from lienthong.hub.settings import Settings
        from lienthong.hub.store import open_store

        requested = ((params or {}).get("day") or "").strip()
        try:
            day = date.fromisoformat(requested) if requested else previous_day(data_interval_end)
        except ValueError:
            raise ConfigurationError(f"param day {requested!r} is not a date (YYYY-MM-DD)") from None
        settings = Settings.from_env()
        json_path, csv_path, stats = write_daily_report(open_store(settings).engine, settings.home / "reports", day)
        log.info("audit statistics for %s: %d messages, %d failures → %s, %s", day, stats.messages,
                 stats.failures, json_path, csv_path)
        return {"day": day.isoformat(), "json": str(json_path), "csv": str(csv_path),
                "messages": stats.messages, "failures": stats.failures}

    write_report()


lienthong_audit_stats()
