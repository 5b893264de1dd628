"""``lienthong_results_push`` under a real Airflow 3 scheduler, against the sandbox portal.

The hub has taken in a one-stop system's dossiers and result files and pushed the statuses; the
DAG's two mapped workers, each in its own task process reaching Airflow only through the
execution API, upload every file: each once, with the announced SHA-256, the totals in XComs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from airflow_cluster import DAGS_FOLDER

DAG_ID = "lienthong_results_push"
RUN_BUDGET_SECONDS = 240


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.timeout(RUN_BUDGET_SECONDS + 120)
def test_results_dag_uploads_every_file_once_with_two_mapped_workers(airflow_cluster_factory, tmp_home: Path,
                                                                     tmp_path: Path, monkeypatch):
    from lienthong.hub.delivery.engine import STATUS_KINDS, deliver_once
    from lienthong.hub.flows.results_push import backlog
    from lienthong.hub.flows.status_push import open_portal
    from lienthong.hub.settings import Settings
    from lienthong.hub.store import open_store
    from lienthong.sandbox.onestop_results import attach_results, result_rows
    from lienthong.sandbox.server import SandboxConfig, SandboxServer
    from lienthong.signing.pki import init_dev_pki
    from results_helpers import CATALOGUE_SIZE, onestop, take_in

    init_dev_pki(tmp_home / "pki", "000.00.00.G10", "000.00.00.G22")
    sandbox = SandboxServer(SandboxConfig(port=0, pki_dir=tmp_home / "pki", store_path=":memory:",
                                          procedures=CATALOGUE_SIZE))
    base_url = sandbox.start()
    try:
        results_dir = tmp_path / "ket-qua"
        monkeypatch.setenv("LIENTHONG_DVC_URL", base_url + "/dvc")
        settings = Settings.from_env()
        store = open_store(settings)
        sim = onestop(tmp_path / "onestop.db")
        report = attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
        take_in(store.engine, sim.db.url)
        portal = open_portal(settings, store)
        while deliver_once(store.engine, portal, worker_id="status", kinds=STATUS_KINDS).claimed:
            pass  # the dossiers on the portal first
        assert backlog(store.engine).pending == report.files

        started = time.monotonic()
        env = {"LIENTHONG_HOME": str(tmp_home), "LIENTHONG_DVC_URL": base_url + "/dvc",
               "LIENTHONG_RESULTS_ROOT": str(results_dir)}
        cluster = airflow_cluster_factory(DAGS_FOLDER, env)
        run_id, run, tis, states = cluster.run_once(DAG_ID, started + RUN_BUDGET_SECONDS)
        assert run["state"] == "success", states
        assert states == {("worker_slots", -1): "success", ("upload", "worker 0"): "success",
                          ("upload", "worker 1"): "success"}
        totals = [cluster.xcom(DAG_ID, run_id, "upload", ti["map_index"]) for ti in tis if ti["task_id"] == "upload"]
        assert sum(t["uploads"] for t in totals) == report.files
        assert sum(t["uploaded_bytes"] for t in totals) == report.bytes
        assert all(t["dead"] == 0 for t in totals)

        after = backlog(store.engine)
        assert (after.pending, after.in_flight, after.dead, after.uploaded) == (0, 0, 0, report.files)
        for row in result_rows(sim.db):
            done = [u for u in sandbox.store.uploads_for(row["so_ho_so"])
                    if u["status"] == "done" and u["sha256"] == row["sha256"]]
            assert len(done) == 1, row["so_ho_so"]
    finally:
        sandbox.stop()
