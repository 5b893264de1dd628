"""The DAG folder as Airflow's DAG processor sees it, and the committed airflow.cfg.

Fast checks, no Airflow component running: every file imports cleanly and quickly, the DAGs
serialize, their scheduling and retry settings are the intended ones, and ``airflow.cfg`` gives
an embedded set-up whose processes agree on their shared secrets.
"""

from __future__ import annotations

import ast
import concurrent.futures
import configparser
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from airflow_cluster import AIRFLOW_CFG, DAGS_FOLDER, TEST_AIRFLOW_HOME

EXPECTED_DAG_IDS = {"lienthong_healthcheck", "lienthong_tthc_sync", "lienthong_dossier_intake",
                    "lienthong_status_push", "lienthong_results_push", "lienthong_audit_stats",
                    "lienthong_audit_seal"}
#: helper modules the DAG files share, kept out of the DagBag by dags/.airflowignore
IGNORED = set((DAGS_FOLDER / ".airflowignore").read_text().split())
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if p.name not in IGNORED)
#: a DAG file's own parse cost, with Airflow already imported as it is in the DAG processor
MAX_PARSE_SECONDS = 0.5
#: modules a DAG file must not import at module level: they belong inside task functions
HEAVY_MODULES = ("lienthong", "zeep", "lxml", "sqlalchemy", "requests", "cryptography", "signxml", "xmlschema")


@pytest.fixture(scope="module")
def dagbag():
    """Parsed as the DAG processor does: the DAGs folder is the bundle, on sys.path (shared helpers)."""
    import sys

    from airflow.dag_processing.dagbag import DagBag

    if str(DAGS_FOLDER) not in sys.path:
        sys.path.append(str(DAGS_FOLDER))

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_dag_folder_has_dag_files():
    assert DAG_FILES, f"no DAG files in {DAGS_FOLDER}"


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert EXPECTED_DAG_IDS <= set(dagbag.dag_ids)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_each_dag_file_parses_fast(path: Path, dagbag):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path), collect_dags=False)
    started = time.perf_counter()
    dags = bag.process_file(str(path), only_if_updated=False)
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    assert dags, f"{path.name} defines no DAG"
    assert elapsed < MAX_PARSE_SECONDS, f"{path.name} took {elapsed:.3f} s to parse"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_do_no_heavy_imports_at_module_level(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = []
    for node in tree.body:  # module level only; imports inside task functions are the point
        if isinstance(node, ast.Import):
            top_level += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.append(node.module)
    heavy = [m for m in top_level if m.split(".")[0] in HEAVY_MODULES]
    assert heavy == [], f"{path.name} imports {heavy} at module level"


def test_dags_serialize_like_the_dag_processor_does(dagbag):
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id in EXPECTED_DAG_IDS:
        data = DagSerialization.to_dict(dagbag.dags[dag_id])
        round_tripped = DagSerialization.from_dict(data)
        assert set(round_tripped.task_dict) == set(dagbag.dags[dag_id].task_dict)


def test_healthcheck_dag_settings(dagbag):
    dag = dagbag.dags["lienthong_healthcheck"]
    assert dag.timetable.expression == "0 * * * *"  # @hourly
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert {"lienthong", "healthcheck"} <= set(dag.tags)
    assert "On failure" in dag.doc_md and "audit trail" in dag.doc_md
    assert set(dag.task_dict) == {"configured_services", "roundtrip"}
    roundtrip = dag.task_dict["roundtrip"]
    assert roundtrip.upstream_task_ids == {"configured_services"}
    assert roundtrip.map_index_template == "{{ service_name }}"
    for task in dag.tasks:
        assert task.retries == 3
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay.total_seconds() == 600
        assert task.retry_policy is not None


def test_healthcheck_fails_fast_on_fatal_errors_and_retries_the_rest(dagbag):
    from airflow.sdk import RetryAction
    from lienthong.hub.errors import ConfigurationError, ServiceUnavailable, TransportTimeout, UntrustedCertificate

    policy = dagbag.dags["lienthong_healthcheck"].task_dict["roundtrip"].retry_policy
    assert policy.evaluate(UntrustedCertificate("reply signed by an unknown CA"), 1, 4).action is RetryAction.FAIL
    assert policy.evaluate(ConfigurationError("no endpoint"), 1, 4).action is RetryAction.FAIL
    assert policy.evaluate(TransportTimeout("no answer"), 1, 4).action is RetryAction.DEFAULT
    assert policy.evaluate(ServiceUnavailable("503", status=503), 1, 4).action is RetryAction.DEFAULT
    assert policy.evaluate(RuntimeError("unexpected"), 1, 4).action is RetryAction.DEFAULT


def test_catalogue_sync_dag_settings(dagbag):
    dag = dagbag.dags["lienthong_tthc_sync"]
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    assert dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.params.keys()) == {"mode", "since"}
    assert dag.params["mode"] == "incremental"
    assert "full" in dag.doc_md and "watermark" in dag.doc_md
    sync = dag.task_dict["sync"]
    assert [o.uri for o in sync.outlets] == ["lienthong://catalogue/tthc"]
    assert sync.retries == 3 and sync.retry_exponential_backoff == 2.0
    assert sync.retry_policy is not None


def test_dossier_dags_settings(dagbag):
    intake = dagbag.dags["lienthong_dossier_intake"]
    push = dagbag.dags["lienthong_status_push"]
    for dag in (intake, push):
        assert dag.max_active_runs == 1 and dag.catchup is False
        assert dag.on_failure_callback is not None
        for task in dag.tasks:
            assert task.retries == 3 and task.retry_exponential_backoff == 2.0
    assert [o.uri for o in intake.task_dict["intake"].outlets] == ["lienthong://outbox/dossiers"]
    deliver = push.task_dict["deliver"]
    assert deliver.upstream_task_ids == {"worker_slots"}  # mapped over worker slots
    assert set(push.params.keys()) == {"workers", "batch_size", "senders"}


def test_results_push_dag_settings(dagbag):
    dag = dagbag.dags["lienthong_results_push"]
    assert dag.max_active_runs == 1 and dag.catchup is False and dag.on_failure_callback is not None
    assert dag.timetable.expression == "*/5 * * * *"
    upload = dag.task_dict["upload"]
    assert upload.upstream_task_ids == {"worker_slots"}  # mapped over worker slots, as the status push
    assert upload.retries == 3 and upload.retry_exponential_backoff == 2.0 and upload.retry_policy is not None
    assert set(dag.params.keys()) == {"workers", "senders"}
    assert "KetThucTaiTepKetQua" in dag.doc_md and "LIENTHONG_RESULTS_ROOT" in dag.doc_md


def test_audit_seal_dag_settings(dagbag):
    dag = dagbag.dags["lienthong_audit_seal"]
    assert dag.timetable.expression == "0 * * * *"  # @hourly
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.on_failure_callback is not None
    seal = dag.task_dict["seal"]
    assert seal.retries == 3 and seal.retry_exponential_backoff == 2.0 and seal.retry_policy is not None
    assert "LIENTHONG_TSA_URL" in dag.doc_md and "lienthong audit verify" in dag.doc_md


def test_audit_seal_dag_task_seals_the_ledgers_head_once(dagbag, tmp_home, monkeypatch):
    from lienthong.hub import airflow_conn
    from lienthong.hub.audit import ledger
    from lienthong.hub.audit.seal import verify_ledger
    from lienthong.hub.settings import Settings
    from lienthong.hub.store import open_store
    from lienthong.signing.cli import cmd_keys_init, trust_store_for

    monkeypatch.setattr(airflow_conn, "airflow_connection", lambda conn_id: None)  # no Connections defined
    settings = Settings.from_env()
    cmd_keys_init(settings)
    store = open_store(settings)
    ledger(store).record(direction="out", partner="baocao", operation="GuiBaoCao", raw=b"<x/>", outcome="sent")
    seal = dagbag.dags["lienthong_audit_seal"].task_dict["seal"]
    first = seal.python_callable()
    assert first == {"created": True, "seal": 1, "head_seq": 1, "head_hash": first["head_hash"], "timestamped": False}
    assert seal.python_callable()["created"] is False  # nothing appended since: no new seal
    report = verify_ledger(store.engine, trust_store_for(settings), settings.agency_code)
    assert report.ok and report.seals == 1


def test_audit_stats_dag_writes_the_previous_days_reports(dagbag, tmp_home):
    import json as _json

    from lienthong.hub.errors import ConfigurationError

    dag = dagbag.dags["lienthong_audit_stats"]
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.on_failure_callback is not None
    task = dag.task_dict["write_report"]
    assert task.retries == 3 and task.retry_exponential_backoff == 2.0 and task.retry_policy is not None
    import pendulum

    result = task.python_callable(params={"day": ""}, data_interval_end=pendulum.datetime(2026, 11, 23, tz="UTC"))
    assert result["day"] == "2026-11-22" and result["messages"] == 0
    report = tmp_home / "reports" / "audit-stats-2026-11-22.json"
    assert result["json"] == str(report) and _json.loads(report.read_text())["totals"]["messages"] == 0
    assert (tmp_home / "reports" / "audit-stats-2026-11-22.csv").read_text().startswith("since,until,partner")
    assert task.python_callable(params={"day": "2026-01-31"})["day"] == "2026-01-31"
    with pytest.raises(ConfigurationError, match="param day '31/01/2026' is not a date"):
        task.python_callable(params={"day": "31/01/2026"})


def test_failure_callback_says_what_failed_and_where_to_look(caplog):
    import sys

    sys.path.append(str(DAGS_FOLDER))
    from lienthong.hub.errors import ServiceUnavailable
    from lienthong_defaults import on_failure

    class TI:
        dag_id, task_id = "lienthong_status_push", "deliver"

    on_failure({"ti": TI(), "exception": ServiceUnavailable("portal down", status=503)})
    text = caplog.text
    assert "lienthong_status_push.deliver failed" in text and "SERVICE_UNAVAILABLE" in text
    assert "lienthong status" in text and "dlq list" in text


# --- airflow.cfg ----------------------------------------------------------------------------------
def test_airflow_cfg_gives_the_embedded_setup():
    from airflow.configuration import conf

    assert conf.get("core", "executor") == "LocalExecutor"
    assert conf.getboolean("core", "load_examples") is False
    assert conf.getboolean("core", "unit_test_mode") is False
    assert conf.getint("core", "parallelism") == 4
    assert conf.get("core", "dags_folder") == str(DAGS_FOLDER)
    assert conf.get("database", "sql_alchemy_conn") == f"sqlite:///{TEST_AIRFLOW_HOME}/airflow.db"
    assert conf.get("logging", "base_log_folder") == f"{TEST_AIRFLOW_HOME}/logs"
    assert conf.get("api", "host") == "127.0.0.1"
    assert conf.get("core", "execution_api_server_url") == f"http://127.0.0.1:{conf.getint('api', 'port')}/execution/"


def test_airflow_cfg_dags_folder_is_the_repos_when_started_from_the_repo_root(monkeypatch):
    parser = configparser.ConfigParser()
    parser.read(AIRFLOW_CFG)
    monkeypatch.setenv("PWD", str(AIRFLOW_CFG.parent))
    assert Path(os.path.expandvars(parser.get("core", "dags_folder"))) == DAGS_FOLDER


def _secret_commands() -> dict[str, str]:
    parser = configparser.ConfigParser()  # the same interpolation rules Airflow applies to the file
    parser.read(AIRFLOW_CFG)
    return {f"{section}/{key}": parser.get(section, key)
            for section in parser.sections() for key in parser.options(section) if key.endswith("_cmd")}


def test_airflow_cfg_commits_no_secret():
    parser = configparser.ConfigParser()
    parser.read(AIRFLOW_CFG)
    for section, key in (("core", "fernet_key"), ("api", "secret_key"), ("api_auth", "jwt_secret")):
        assert not parser.has_option(section, key), f"[{section}] {key} must not be committed"
        assert parser.has_option(section, f"{key}_cmd")


def test_shared_secrets_are_generated_once_and_agreed_on_by_concurrent_processes(tmp_path: Path):
    """Components starting together must read one key, or tasks cannot authenticate."""
    from airflow.configuration import run_command
    from cryptography.fernet import Fernet

    commands = _secret_commands()
    assert set(commands) == {"core/fernet_key_cmd", "api/secret_key_cmd", "api_auth/jwt_secret_cmd"}
    home = tmp_path / "airflow-home"  # does not exist yet: the command creates it
    env = {**os.environ, "AIRFLOW_HOME": str(home)}

    def run(command: str) -> str:
        return subprocess.run(["sh", "-c", f"exec {command}"], env=env, capture_output=True, text=True,
                              check=True).stdout

    for name, command in commands.items():
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            values = set(pool.map(run, [command] * 8))
        assert len(values) == 1, f"{name}: concurrent first reads disagree: {values}"
        (value,) = values
        assert len(value) >= 40 and "\n" not in value
        assert run(command) == value  # stable afterwards
    assert sorted(p.name for p in home.iterdir()) == ["api_secret_key", "fernet_key", "jwt_secret"]
    for path in home.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet((home / "fernet_key").read_text())  # a valid Fernet key
    # and Airflow's own runner (shlex split, no shell) gets the same answer
    os.environ["AIRFLOW_HOME"], saved = str(home), os.environ["AIRFLOW_HOME"]
    try:
        assert run_command(commands["api_auth/jwt_secret_cmd"]) == (home / "jwt_secret").read_text()
    finally:
        os.environ["AIRFLOW_HOME"] = saved
