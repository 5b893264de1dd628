"""Helpers for the DAG tests: an Airflow configured like the hub's, and a real local cluster.

Airflow reads ``AIRFLOW_HOME`` / ``AIRFLOW_CONFIG`` once, when it is first imported, so importing
this module (``conftest.py`` does, before any test module imports Airflow) points them at a
throw-away home and at the repository's own ``airflow.cfg``. That keeps the tests off the
developer's ``~/airflow`` and makes every DAG test also a test of the committed configuration.

:class:`AirflowCluster` runs the real components as subprocesses (``api-server``,
``scheduler``, ``dag-processor``) on a temporary SQLite database. It exists because
``dag.test()`` runs tasks in-process with database access, so it cannot catch a task that
breaks Airflow 3's rule that tasks talk only to the execution API.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
AIRFLOW_CFG = REPO / "airflow.cfg"
#: the ``airflow`` command of the interpreter running the tests (a virtualenv's, usually)
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
if not AIRFLOW_BIN.exists():
    AIRFLOW_BIN = Path(shutil.which("airflow") or AIRFLOW_BIN)


def _airflow_env_for(home: Path, dags_folder: Path) -> dict[str, str]:
    """The variables the Makefile exports for Airflow, pointed at ``home`` and ``dags_folder``."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(AIRFLOW_CFG),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def _isolate_airflow_at_import() -> Path:
    home = Path(tempfile.mkdtemp(prefix="lienthong-airflow-tests-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    for name in [n for n in os.environ if n.startswith("AIRFLOW")]:
        del os.environ[name]
    os.environ.update(_airflow_env_for(home, DAGS_FOLDER))
    return home


TEST_AIRFLOW_HOME = _isolate_airflow_at_import()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClusterError(AssertionError):
    """The cluster did not get where a test needed it; the message says where it stopped."""


class AirflowCluster:
    """api-server + scheduler + dag-processor for one test, each in its own process group.

    Configuration comes from the repository's ``airflow.cfg`` with only test-specific overrides
    (a free port, no log server, no login, no cron scheduling). Components log to
    ``<home>/<component>.log``; :func:`cluster_logs` gathers those and the task logs.
    """

    COMPONENTS: dict[str, list[str]] = {
        "api-server": ["api-server"],
        # The executor's log server is not needed (task logs are local files) and would bind a
        # fixed port on all interfaces, clashing with any other Airflow on the machine.
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
    }

    def __init__(self, home: Path, dags_folder: Path, extra_env: Mapping[str, str] | None = None):
        import requests

        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(_airflow_env_for(home, dags_folder))
        env.update({
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            # Only the runs a test triggers: unpausing a DAG whose start date is past would
            # otherwise also create a scheduled run for the latest cron point.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # Loopback-only test cluster: the REST API needs no login.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra_env or {})
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.http = requests.Session()

    # --- lifecycle ----------------------------------------------------------------------------
    def migrate(self, timeout: float = 120) -> float:
        started = time.monotonic()
        with open(self.home / "db-migrate.log", "wb") as out:
            result = subprocess.run([str(AIRFLOW_BIN), "db", "migrate"], env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=timeout)
        if result.returncode != 0:
            raise ClusterError(f"airflow db migrate failed ({result.returncode}), see db-migrate.log")
        return time.monotonic() - started

    def start(self) -> None:
        for name, args in self.COMPONENTS.items():
            log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed by the child's exit
            try:
                self.procs[name] = subprocess.Popen(
                    [str(AIRFLOW_BIN), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home,
                )
            finally:
                log.close()

    def stop(self, grace: float = 20) -> None:
        """SIGTERM every component's process group, then SIGKILL what is left after ``grace`` s."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            # also reaps workers/tasks left in the group after their leader exited
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.http.close()

    # --- REST helpers -------------------------------------------------------------------------
    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}, see {name}.log")

    def _wait(self, what: str, deadline: float, probe, interval: float = 0.5):
        import requests

        last = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                value = probe()
            except requests.RequestException as exc:
                last, value = exc, None
            if value:
                return value
            time.sleep(interval)
        raise ClusterError(f"timed out waiting for {what} (last error: {last})")

    def api(self, method: str, path: str, **kwargs):
        return self.http.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)

    def wait_until_ready(self, deadline: float) -> None:
        """API up, scheduler and DAG processor heartbeating, execution API answering."""
        def healthy():
            health = self.api("GET", "/api/v2/monitor/health")
            if not health.ok:
                return False
            body = health.json()
            if not all(body.get(c, {}).get("status") == "healthy" for c in ("scheduler", "dag_processor")):
                return False
            # The execution API builds its versioned routes on first use (seconds of CPU on a
            # small machine); warm it up here rather than inside the first task's start call.
            return self.api("GET", "/execution/health").ok

        self._wait("the Airflow components to be healthy", deadline, healthy)

    def wait_for_dag(self, dag_id: str, deadline: float) -> dict:
        def parsed():
            response = self.api("GET", f"/api/v2/dags/{dag_id}")
            if response.ok:
                return response.json()
            errors = self.import_errors()
            if errors:  # a broken DAG file never shows up: say why instead of waiting
                raise ClusterError(f"DAG import errors: {errors}")
            return None

        return self._wait(f"DAG {dag_id} to be parsed", deadline, parsed)

    def import_errors(self) -> list[dict]:
        return self.api("GET", "/api/v2/importErrors").json().get("import_errors", [])

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        unpause = self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        if not unpause.ok:
            raise ClusterError(f"cannot unpause {dag_id}: {unpause.status_code} {unpause.text}")
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        if not run.ok:
            raise ClusterError(f"cannot trigger {dag_id}: {run.status_code} {run.text}")
        return run.json()["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, deadline: float) -> dict:
        def finished():
            run = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
            return run if run.get("state") in ("success", "failed") else None

        return self._wait(f"run {run_id} of {dag_id} to finish", deadline, finished, interval=1.0)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        response = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        response.raise_for_status()
        return response.json()["task_instances"]

    def run_once(self, dag_id: str, deadline: float) -> tuple[str, dict, list[dict], dict]:
        """Wait for the components and the DAG (parsed without import errors), trigger one run and
        wait for its end; returns the run id, the run, its task instances and their states by
        (task id, rendered map index or map index)."""
        self.wait_until_ready(deadline)
        self.wait_for_dag(dag_id, deadline)
        errors = self.import_errors()
        if errors:
            raise ClusterError(f"the DAGs folder has import errors: {errors}")
        run_id = self.trigger(dag_id)
        run = self.wait_for_run(dag_id, run_id, deadline)
        tis = self.task_instances(dag_id, run_id)
        states = {(ti["task_id"], ti["rendered_map_index"] or ti["map_index"]): ti["state"] for ti in tis}
        return run_id, run, tis, states

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1):
        response = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"map_index": map_index, "deserialize": True},
        )
        response.raise_for_status()
        return response.json()["value"]


def cluster_logs(home: Path, tail: int = 120) -> str:
    """The last ``tail`` lines of every component log and task log under a cluster's home."""
    parts = []
    task_logs = sorted((home / "logs").glob("dag_id=*/**/*.log")) if (home / "logs").exists() else []
    for path in [*sorted(home.glob("*.log")), *task_logs]:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        parts.append(f"----- {path.relative_to(home)} (last {tail} lines) -----")
        parts.extend(lines[-tail:])
    return "\n".join(parts)


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session=True: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass
