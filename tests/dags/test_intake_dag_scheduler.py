"""``lienthong_dossier_intake`` under a real Airflow 3 scheduler: one mapped task per source.

The sources file lists two agencies' one-stop databases read with the same mapping and a third
whose database is missing. Under the scheduler (DAG processor parsing ``dags/``, LocalExecutor, each
task in its own process talking only to the execution API) the run maps one ``intake`` task per
source; the broken one fails on its own (fatal: at once, no retries), and the two others take every
one of their changes into the outbox.
"""

from __future__ import annotations

import time

import pytest
import yaml
from airflow_cluster import DAGS_FOLDER
from onestop_helpers import agency_db, assert_each_once, change_count

DAG_ID = "lienthong_dossier_intake"
RUN_BUDGET_SECONDS = 240


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.timeout(RUN_BUDGET_SECONDS + 120)
def test_intake_dag_maps_one_task_per_source_and_isolates_a_failing_one(airflow_cluster_factory, tmp_home,
                                                                       tmp_path):
    url_a = agency_db(tmp_path / "a.db", 0, seed=91, dossiers=60)
    url_b = agency_db(tmp_path / "b.db", 1, seed=92, dossiers=80)
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [
        {"id": "so-a", "mapping": "onestop_sandbox", "sql": url_a},
        {"id": "so-gone", "mapping": "onestop_sandbox", "sql": f"sqlite:///{tmp_path / 'missing.db'}"},
        {"id": "so-b", "mapping": "onestop_sandbox", "sql": url_b},
    ]}), encoding="utf-8")
    started = time.monotonic()
    cluster = airflow_cluster_factory(DAGS_FOLDER, {"LIENTHONG_HOME": str(tmp_home), "LIENTHONG_SOURCES": str(sources)})
    run_id, run, tis, states = cluster.run_once(DAG_ID, started + RUN_BUDGET_SECONDS)
    assert run["state"] == "failed", states  # one source failed, and the run says so
    assert states == {("sources", -1): "success", ("intake", "so-a"): "success",
                      ("intake", "so-b"): "success", ("intake", "so-gone"): "failed"}
    gone = next(ti for ti in tis if ti["rendered_map_index"] == "so-gone")
    assert gone["try_number"] == 1  # a configuration error is fatal: not retried
    summaries = {}
    for ti in tis:
        if ti["task_id"] == "intake" and ti["state"] == "success":
            summary = cluster.xcom(DAG_ID, run_id, "intake", ti["map_index"])
            summaries[summary["source"]] = summary
    assert summaries["so-a"]["read"] == summaries["so-a"]["enqueued"] == change_count(url_a)
    assert summaries["so-b"]["read"] == summaries["so-b"]["enqueued"] == change_count(url_b)

    from lienthong.hub.settings import Settings
    from lienthong.hub.store import open_store

    store = open_store(Settings.from_env())
    assert_each_once(store.engine, url_a, url_b)
