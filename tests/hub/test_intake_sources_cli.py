"""The sources file and ``lienthong intake --all / --source-id / --list`` (issue 9).

Several agencies' databases and inboxes in one YAML file, each with its identity; a failing source
is reported and the others still read; the file is checked completely with errors naming the key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lienthong.connectors.sources.base import sql_location
from lienthong.connectors.sources.config import SourcesFileError, load_sources
from lienthong.hub.cli import main
from lienthong.hub.flows.intake import dag_sources, source_states
from lienthong.hub.store import make_engine
from lienthong.sandbox.onestop import OneStopDatabase, export_files
from onestop_helpers import agency_db, assert_each_once, change_count


def cli(capsys, *argv: str) -> tuple[int, object]:
    """Run ``lienthong intake ... --json``: the exit status, and the JSON printed (or the error line)."""
    capsys.readouterr()
    rc = main(["intake", *argv, "--json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out) if captured.out.strip() else captured.err


@pytest.fixture
def hub(tmp_home, engine_url, monkeypatch):
    monkeypatch.setenv("LIENTHONG_DB_URL", engine_url)
    engine = make_engine(engine_url)
    yield engine
    engine.dispose()


def write_sources(path: Path, entries: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"sources": entries}, allow_unicode=True), encoding="utf-8")
    return path


def test_all_sources_of_the_file_each_read_fully_and_a_failing_one_stands_alone(hub, tmp_path, capsys, monkeypatch):
    url_a = agency_db(tmp_path / "a.db", 0, seed=71, dossiers=40)
    url_b = agency_db(tmp_path / "b.db", 1, seed=72, dossiers=45)
    inbox = tmp_path / "inbox-c"
    inbox.mkdir()
    url_c = agency_db(tmp_path / "c.db", 2, seed=73, dossiers=20)
    with OneStopDatabase(url_c, create=False) as db:
        export_files(db, inbox, format="csv")
    monkeypatch.setenv("ONESTOP_B_URL", url_b)
    sources = write_sources(tmp_path / "sources.yaml", [
        {"id": "so-a", "mapping": "onestop_sandbox", "sql": url_a},
        {"id": "so-gone", "mapping": "onestop_sandbox", "sql": f"sqlite:///{tmp_path / 'missing.db'}"},
        {"id": "so-b", "mapping": "onestop_sandbox", "sql": "${ONESTOP_B_URL}", "batch_size": 50},
        {"id": "so-c", "mapping": "onestop_sandbox", "inbox": "inbox-c"},  # relative to the file
        {"id": "so-off", "mapping": "onestop_sandbox", "inbox": "inbox-off", "enabled": False,
         "description": "switched off: not read by --all"},
    ])
    rc, results = cli(capsys, "--all", "--sources", str(sources))
    assert rc == 1  # one source failed, and the exit status says so
    by_id = {r["source"]: r for r in results}
    assert set(by_id) == {"so-a", "so-gone", "so-b", "so-c"}
    assert not by_id["so-gone"]["ok"] and by_id["so-gone"]["code"] == "CONFIGURATION"
    assert "missing.db" in by_id["so-gone"]["error"]
    for sid, url in (("so-a", url_a), ("so-b", url_b), ("so-c", url_c)):
        assert by_id[sid]["ok"] and by_id[sid]["read"] == by_id[sid]["enqueued"] == change_count(url), sid
    assert by_id["so-b"]["batches"] > by_id["so-a"]["batches"]  # the file's batch_size applies
    assert_each_once(hub, url_a, url_b, url_c)
    # one source alone, by its identity
    rc, one = cli(capsys, "--source-id", "so-a", "--sources", str(sources))
    assert rc == 0 and one["source"] == "so-a" and one["read"] == 0
    # the list and lienthong status show every source with its location, position and last run
    rc, listed = cli(capsys, "--list")
    states = {s["source"]: s for s in listed}
    assert set(states) == {"so-a", "so-b", "so-c"}
    assert states["so-a"]["location"] == sql_location(url_a) and states["so-c"]["kind"] == "filedrop"
    assert states["so-b"]["last_run"]["ok"] and states["so-b"]["last_run"]["read"] == change_count(url_b)
    capsys.readouterr()
    assert main(["status"]) == 0
    shown = capsys.readouterr().out
    assert "so-a" in shown and "so-c" in shown and "intake source" in shown
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {s["source"] for s in status["sources"]} == {"so-a", "so-b", "so-c"}


def test_a_decision_is_for_one_named_source_and_needs_a_reason(hub, tmp_path, capsys):
    url = agency_db(tmp_path / "a.db", 0, seed=74, dossiers=5)
    rc, err = cli(capsys, "--sql", url, "--reset-cursor")
    assert rc == 1 and "--reason" in err
    sources = write_sources(tmp_path / "s.yaml", [{"id": "so-a", "mapping": "onestop_sandbox", "sql": url},
                                                  {"id": "so-b", "mapping": "onestop_sandbox", "inbox": str(tmp_path)}])
    assert main(["intake", "--all", "--sources", str(sources), "--reset-cursor", "--reason", "x"]) == 1
    assert "one source" in capsys.readouterr().err
    rc, done = cli(capsys, "--source-id", "so-a", "--sources", str(sources), "--reset-cursor", "--reason", "first read")
    assert rc == 0 and done["decision"]["action"] == "reset" and done["read"] == change_count(url)


@pytest.mark.parametrize("entries, key, problem", [
    ([{"mapping": "onestop_sandbox", "sql": "sqlite:///x.db"}], "sources[0].id", "missing"),
    ([{"id": "a", "mapping": "onestop_sandbox", "sql": "sqlite:///x.db", "inbox": "/tmp"}], "sources[0]",
     "exactly one"),
    ([{"id": "a", "mapping": "onestop_sandbox"}], "sources[0]", "exactly one"),
    ([{"id": "a", "mapping": "onestop_sandbox", "sql": "sqlite:///x.db", "batchsize": 5}], "sources[0].batchsize",
     "unknown key"),
    ([{"id": "a b", "mapping": "onestop_sandbox", "sql": "sqlite:///x.db"}], "sources[0].id", "letters"),
    ([{"id": "a", "mapping": "onestop_sandbox", "sql": "sqlite:///x.db"},
      {"id": "a", "mapping": "onestop_sandbox", "sql": "sqlite:///y.db"}], "sources[1].id", "already the identity"),
    ([{"id": "a", "mapping": "onestop_sandbox", "sql": "sqlite:///x.db"},
      {"id": "b", "mapping": "onestop_sandbox", "sql": "sqlite:///./x.db?timeout=5"}], "sources[1]", "same place"),
    ([{"id": "a", "mapping": "onestop_sandbox", "sql": "${LT_TEST_UNSET_URL}"}], "sources[0].sql", "not set"),
    ([{"id": "a", "mapping": "onestop_sandbox", "inbox": "/tmp", "settle_seconds": 3}], "sources[0].settle_seconds",
     "only a SQL source"),
    ([{"id": "a", "mapping": "onestop_sandbox", "sql": "sqlite:///x.db", "batch_size": 0}], "sources[0].batch_size",
     "at least 1"),
    ([{"id": "a", "mapping": "onestop_sandbox", "sql": "sqlite:///x.db", "enabled": "yes"}], "sources[0].enabled",
     "true or false"),
    ([], "sources", "non-empty list"),
])
def test_the_sources_file_is_checked_with_the_file_and_key_named(tmp_path, monkeypatch, entries, key, problem):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LT_TEST_UNSET_URL", raising=False)
    path = write_sources(tmp_path / "sources.yaml", entries)
    with pytest.raises(SourcesFileError) as caught:
        load_sources(path)
    assert str(caught.value).startswith(f"{path}: {key}: ") and problem in str(caught.value)
    assert caught.value.key == key and caught.value.code == "SOURCES_FILE_INVALID"


def test_duplicate_keys_and_a_password_never_shown(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  - id: a\n    id: b\n    mapping: onestop_sandbox\n    sql: sqlite:///x.db\n")
    with pytest.raises(SourcesFileError, match="duplicate"):
        load_sources(path)
    path.write_text("sources:\n  - id: a\n    mapping: onestop_sandbox\n    sql: postgresql://u:pw123@h/db\n")
    (spec,) = load_sources(path)
    assert "pw123" not in repr(spec) and "pw123" not in spec.location


def test_the_dag_reads_the_sources_file_or_its_single_source(tmp_path, tmp_home):
    url = agency_db(tmp_path / "a.db", 0, seed=75)
    sources = write_sources(tmp_path / "s.yaml", [{"id": "so-a", "mapping": "onestop_sandbox", "sql": url},
                                                  {"id": "so-b", "mapping": "onestop_sandbox", "sql": url + "2",
                                                   "enabled": False}])
    env = {"LIENTHONG_HOME": str(tmp_home)}
    assert [s.id for s in dag_sources({"sources": str(sources)}, environ=env)] == ["so-a"]
    assert [s.id for s in dag_sources({"sources": str(sources), "source_id": "so-b"}, environ=env)] == ["so-b"]
    assert [s.id for s in dag_sources({}, environ={**env, "LIENTHONG_SOURCES": str(sources)})] == ["so-a"]
    (single,) = dag_sources({"sql": url}, environ=env)
    assert single.id is None and single.location == sql_location(url)
    from lienthong.hub.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="configure the sources"):
        dag_sources({}, environ=env)


# ------------------------------------------------------------------------------------------------
# kill -9 while two sources are read at once
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_during_one_source_while_another_runs_each_resumes_exactly(tmp_path, engine_url):
    url_a = agency_db(tmp_path / "a.db", 0, seed=81, dossiers=2500)
    url_b = agency_db(tmp_path / "b.db", 1, seed=82, dossiers=2500)
    sources = write_sources(tmp_path / "sources.yaml", [
        {"id": "so-a", "mapping": "onestop_sandbox", "sql": url_a, "batch_size": 100},
        {"id": "so-b", "mapping": "onestop_sandbox", "sql": url_b, "batch_size": 100},
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_") or k == "LIENTHONG_TEST_PG_URL"}
    env.update(LIENTHONG_HOME=str(tmp_path / "home"), LIENTHONG_DB_URL=engine_url)

    def start(source_id: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "lienthong.hub.cli", "intake", "--source-id", source_id,
                                 "--sources", str(sources), "--json"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    engine = make_engine(engine_url)
    try:
        from lienthong.hub.store import upgrade

        upgrade(engine)
        a, b = start("so-a"), start("so-b")
        # kill A three times, each once it has committed a batch more (its cursor moved), while B reads
        seen, kills = None, 0
        deadline = time.monotonic() + 240
        while kills < 3 and time.monotonic() < deadline:
            cursor = {s.source: s.cursor for s in source_states(engine)}.get("so-a")
            if cursor and cursor != seen:
                time.sleep(0.2)  # somewhere inside the next batch
                assert a.poll() is None, "source A finished before it could be killed: make it bigger"
                a.send_signal(signal.SIGKILL)
                a.wait(30)
                kills += 1
                seen = {s.source: s.cursor for s in source_states(engine)}["so-a"]
                a = start("so-a")  # it resumes from its last committed batch
            time.sleep(0.05)
        assert kills == 3
        out_a, err_a = a.communicate(timeout=300)
        assert a.returncode == 0, err_a
        resumed = json.loads(out_a)
        out_b, err_b = b.communicate(timeout=300)
        assert b.returncode == 0, err_b
        first_b = json.loads(out_b)
        # the last run of A took up exactly where the killed one's last commit ended: nothing read twice
        assert resumed["duplicates"] == 0 and resumed["read"] == resumed["enqueued"]
        assert 0 < resumed["read"] < change_count(url_a)
        assert first_b["read"] == first_b["enqueued"] == change_count(url_b)
        assert_each_once(engine, url_a, url_b)
        from onestop_helpers import outbox

        assert len(outbox(engine)) == change_count(url_a) + change_count(url_b)
    finally:
        engine.dispose()
