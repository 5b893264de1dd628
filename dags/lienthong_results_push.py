"""Every five minutes: upload the one-stop system's result files to the national portal.

A thin DAG: each mapped task is one worker running :func:`lienthong.hub.flows.results_push.drain`
until no result event is claimable. Workers claim whole dossiers safely against each other, as the
status push does, and only result events, so large files never hold up the status feed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from lienthong_defaults import FAIL_FAST_ON_FATAL, default_args, on_failure

DOC_MD = """
### Liên thông: digitised results to Cổng DVC quốc gia

Uploads the result files the intake found in the one-stop system (`hoso_ket_qua` in the sandbox
mapping): each file is announced with its size and SHA-256 (`BatDauTaiTepKetQua`), streamed in
signed chunks of 512 KiB (`TaiPhanTepKetQua`) and ended once the portal confirms the hash
(`KetThucTaiTepKetQua`), which returns the GiayToId and link that the dossier's next snapshot lists
in `DanhSachGiayToKetQua` (the status push sends it). An upload cut off (a crash, a lost connection,
a retry) resumes at the byte the portal reports, never from zero; the same file twice is one copy.

Files are read under `LIENTHONG_RESULTS_ROOT` (the folder the one-stop system shares) or fetched
from the URL the system gives. A file that is missing, unreadable, outside the folder, changed since
it was announced, or of the wrong size is a dead letter with that reason (`lienthong dlq list`);
replay it once the file is put right. `lienthong status` shows results pending, in flight, bytes
waiting and dead.
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="lienthong_results_push",
    description="Result files → Cổng DVC quốc gia (BatDau/TaiPhan/KetThucTaiTepKetQua), parallel workers",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    tags=["lienthong", "dvc_portal", "push", "results"],
    doc_md=DOC_MD,
    on_failure_callback=on_failure,
    params={
        "workers": Param(2, type="integer", minimum=1, maximum=8, description="parallel upload workers"),
        "senders": Param(2, type="integer", minimum=1, maximum=4,
                         description="files of different dossiers uploading at once per worker"),
    },
    default_args=default_args(retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=10),
                              execution_timeout=timedelta(minutes=110)),
)
def lienthong_results_push():
    @task
    def worker_slots(params: dict | None = None) -> list[int]:
        return list(range(int((params or {}).get("workers") or 2)))

    @task(map_index_template="worker {{ slot }}", multiple_outputs=False, retry_policy=FAIL_FAST_ON_FATAL,
          on_failure_callback=on_failure)
    def upload(slot: int, params: dict | None = None, run_id: str | None = None) -> dict:
        """One worker: claim a result, upload it, repeat until none is claimable; returns its totals."""
        from lienthong.hub.airflow_conn import settings_from_airflow
        from lienthong.hub.flows.results_push import drain, open_uploader
        from lienthong.hub.flows.status_push import open_portal
        from lienthong.hub.store import open_store

        settings = settings_from_airflow("dvc_portal")
        store = open_store(settings)
        portal = open_portal(settings, store)
        worker_id = f"{run_id or 'airflow'}:results:{slot}"
        totals = drain(store, portal, open_uploader(settings, store, portal), worker_id=worker_id,
                       senders=int((params or {}).get("senders") or 2))
        counts = {key: getattr(totals, key) for key in ("uploads", "uploaded_bytes", "sent_bytes", "retried", "dead")}
        log.info("worker %s: %s (breaker %s, dead reasons %s)", worker_id, counts, totals.breaker, totals.dead_reasons)
        return {**counts, "breaker": totals.breaker, "stopped": totals.stopped, "dead_reasons": totals.dead_reasons}

    upload.expand(slot=worker_slots())


lienthong_results_push()
