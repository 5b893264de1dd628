"""Fixtures for the DAG tests (the helpers live in ``airflow_cluster.py``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# Importing the helpers also points AIRFLOW_HOME/AIRFLOW_CONFIG at a throw-away home: it must
# happen before any test module imports Airflow, which is why it happens in this conftest.
from airflow_cluster import AirflowCluster, cluster_logs


@pytest.fixture
def airflow_cluster_factory(tmp_path: Path) -> Iterator:
    """``make(dags_folder, extra_env) -> AirflowCluster`` (migrated, started); always torn down,
    pass or fail. A failed test's report carries the component and task logs (hook below)."""
    clusters: list[AirflowCluster] = []

    def make(dags_folder: Path, extra_env: Mapping[str, str] | None = None) -> AirflowCluster:
        cluster = AirflowCluster(tmp_path / f"airflow-{len(clusters)}", dags_folder, extra_env)
        clusters.append(cluster)
        cluster.migrate()
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Add the component and task logs to the report of a failed cluster test."""
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and tmp_path is not None and "airflow_cluster_factory" in item.fixturenames:
        for home in sorted(Path(tmp_path).glob("airflow-*")):
            report.sections.append((f"Airflow logs ({home.name})", cluster_logs(home)))
