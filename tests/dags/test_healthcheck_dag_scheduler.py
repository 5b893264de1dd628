"""``lienthong_healthcheck`` under a real Airflow 3 scheduler, against the sandbox.

The only test that proves the DAG works the way production runs it: the DAG processor parses
the repository's ``dags/``, the scheduler hands the tasks to the LocalExecutor, and each task runs
in its own process that can reach Airflow only through the execution API (a task that touched
the metadata database, or an XCom that does not serialize, fails here and nowhere else).
Connections arrive the way operators provide them, as ``AIRFLOW_CONN_*`` JSON, each written in
a different accepted form; the national services are the sandbox, in this process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from airflow_cluster import DAGS_FOLDER

DAG_ID = "lienthong_healthcheck"
SERVICES = ("csdl_tthc", "dvc_portal", "baocao")
HUB_AGENCY = "000.00.00.G10"
NATIONAL_AGENCY = "000.00.00.G22"
#: bound on everything from starting the components to the run's end
RUN_BUDGET_SECONDS = 240


@pytest.fixture
def sandbox(tmp_home: Path):
    from lienthong.sandbox.server import SandboxConfig, SandboxServer
    from lienthong.signing.pki import init_dev_pki

    init_dev_pki(tmp_home / "pki", HUB_AGENCY, NATIONAL_AGENCY)
    server = SandboxServer(SandboxConfig(port=0, pki_dir=tmp_home / "pki", store_path=":memory:"))
    base_url = server.start()
    try:
        yield base_url
    finally:
        server.stop()


def connections_for(base_url: str, home: Path) -> dict[str, str]:
    """One connection per service, each in a different form the hub accepts."""
    host_port = base_url.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    key_password = (home / "pki" / "key-password").read_text().strip()
    return {
        # full URL in host; agency codes and timeout in extra
        "AIRFLOW_CONN_LIENTHONG_CSDL": json.dumps({
            "conn_type": "http",
            "host": f"{base_url}/csdl-tthc",
            "extra": {"agency_code": HUB_AGENCY, "partner_agency_code": NATIONAL_AGENCY,
                      "operation_timeout": 30},
        }),
        # host / port / schema (the URL scheme, as in Airflow's HTTP connections), default path;
        # key password by file reference, relative to LIENTHONG_HOME
        "AIRFLOW_CONN_LIENTHONG_DVC": json.dumps({
            "conn_type": "http",
            "host": host,
            "port": int(port),
            "schema": "http",
            "extra": {"key_password_file": "pki/key-password", "key_path": "pki/hub.p12"},
        }),
        # key password in the (masked) password field, explicit trust anchor
        "AIRFLOW_CONN_LIENTHONG_BAOCAO": json.dumps({
            "conn_type": "http",
            "host": f"{base_url}/baocao",
            "password": key_password,
            "extra": {"trust_ca": "pki/ca.crt", "partner_agency_name": "Hệ thống báo cáo (sandbox)"},
        }),
    }


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.timeout(RUN_BUDGET_SECONDS + 120)
def test_healthcheck_dag_runs_under_the_scheduler(airflow_cluster_factory, sandbox: str, tmp_home: Path):
    started = time.monotonic()
    env = {"LIENTHONG_HOME": str(tmp_home), **connections_for(sandbox, tmp_home)}
    cluster = airflow_cluster_factory(DAGS_FOLDER, env)
    deadline = started + RUN_BUDGET_SECONDS

    cluster.wait_until_ready(deadline)
    dag = cluster.wait_for_dag(DAG_ID, deadline)
    assert cluster.import_errors() == []
    assert dag["is_paused"] is True  # new DAGs start paused (airflow.cfg)
    ready = time.monotonic()

    run_id = cluster.trigger(DAG_ID)
    run = cluster.wait_for_run(DAG_ID, run_id, deadline)
    finished = time.monotonic()
    print(f"cluster ready in {ready - started:.1f} s, run took {finished - ready:.1f} s")

    tis = cluster.task_instances(DAG_ID, run_id)
    states = {(ti["task_id"], ti["rendered_map_index"] or ti["map_index"]): ti["state"] for ti in tis}
    assert run["state"] == "success", states
    assert states == {("configured_services", -1): "success",
                      **{("roundtrip", name): "success" for name in SERVICES}}
    assert all(ti["try_number"] == 1 for ti in tis)
    assert cluster.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns").json()["total_entries"] == 1

    assert cluster.xcom(DAG_ID, run_id, "configured_services") == list(SERVICES)
    summaries = {}
    for ti in tis:
        if ti["task_id"] == "roundtrip":
            summary = cluster.xcom(DAG_ID, run_id, "roundtrip", ti["map_index"])
            summaries[summary["service"]] = summary
    assert set(summaries) == set(SERVICES)
    assert summaries["csdl_tthc"]["endpoint"] == f"{sandbox}/csdl-tthc"
    assert summaries["dvc_portal"]["endpoint"] == f"{sandbox}/dvc"  # built from host/port/schema
    for summary in summaries.values():
        assert summary["signer_agency"] == NATIONAL_AGENCY

    # Both messages of every round trip are in the hub's audit trail under LIENTHONG_HOME, and
    # the chain written by three concurrent task processes verifies.
    from lienthong.hub.audit import AuditTrail
    from lienthong.hub.settings import Settings
    from lienthong.hub.store import open_store
    from lienthong.hub.store.models import AuditEntry
    from sqlalchemy import select

    store = open_store(Settings.from_env())
    assert Path(store.url.removeprefix("sqlite:///")).is_relative_to(tmp_home)
    report = AuditTrail(store.engine).verify()
    assert report.ok, report.reason
    assert report.checked == 2 * len(SERVICES)
    with store.engine.connect() as conn:
        rows = conn.execute(select(AuditEntry.seq, AuditEntry.partner, AuditEntry.direction,
                                   AuditEntry.outcome, AuditEntry.from_agency, AuditEntry.to_agency)).all()
    by_seq = {row.seq: row for row in rows}
    for name, summary in summaries.items():
        out_seq, in_seq = summary["audit_seqs"]
        assert (by_seq[out_seq].partner, by_seq[out_seq].direction, by_seq[out_seq].outcome) == (name, "out", "sent")
        assert (by_seq[in_seq].partner, by_seq[in_seq].direction, by_seq[in_seq].outcome) == (name, "in", "ok")
        assert (by_seq[out_seq].from_agency, by_seq[out_seq].to_agency) == (HUB_AGENCY, NATIONAL_AGENCY)
