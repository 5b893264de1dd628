"""The ``lienthong`` command as a user runs it: exit codes and the one line that explains a failure."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from lienthong.hub.cli import main


def run(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lienthong.hub.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture
def home(tmp_home, monkeypatch):
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", "mật khẩu CLI")
    assert main(["keys", "init"]) == 0
    return tmp_home


def test_sign_and_verify_round_trip_through_the_cli(home, tmp_path, capsysbinary):
    doc = tmp_path / "thu.xml"
    doc.write_bytes("<ThongBao><NoiDung>Hồ sơ đã được tiếp nhận</NoiDung></ThongBao>".encode())
    assert main(["sign", str(doc)]) == 0
    signed = capsysbinary.readouterr().out
    assert b"<ds:Signature" in signed and "Hồ sơ".encode() in signed
    out = tmp_path / "thu.signed.xml"
    out.write_bytes(signed)
    assert main(["verify", str(out)]) == 0
    assert b"000.00.00.G10" in capsysbinary.readouterr().out

    out.write_bytes(signed.replace("tiếp nhận".encode(), "từ chối".encode()))
    assert main(["verify", str(out)]) == 1
    err = capsysbinary.readouterr().err.decode()
    assert "SIGNATURE_DIGEST_MISMATCH" in err and "Traceback" not in err


def test_verify_of_a_hostile_file_names_the_problem(home, tmp_path, capsys):
    evil = tmp_path / "xxe.xml"
    evil.write_bytes(b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>')
    assert main(["verify", str(evil)]) == 1
    assert "XML_DTD_FORBIDDEN" in capsys.readouterr().err


def test_audit_verify_passes_then_names_the_tampered_entry(home, capsys):
    from lienthong.hub.audit import AuditTrail
    from lienthong.hub.settings import Settings
    from lienthong.hub.store import close_stores, open_store

    settings = Settings.from_env()
    trail = AuditTrail(open_store(settings).engine)
    for i in range(3):
        trail.record(direction="out", partner="dvc_portal", operation="DongBoHoSoMC", raw=b"<x>%d</x>" % i,
                     outcome="sent", document_id=f"doc-{i:08d}")
    close_stores()
    assert main(["audit", "verify"]) == 0
    assert "3 entries verified" in capsys.readouterr().out

    db = settings.home / "lienthong.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_log SET outcome = 'ok' WHERE seq = 2")
    assert main(["audit", "verify"]) == 1
    assert "entry 2" in capsys.readouterr().err


def test_usage_errors_exit_2():
    assert run("no-such-command").returncode == 2
    assert run("healthcheck", "--service", "unknown").returncode == 2


@pytest.mark.slow
def test_demo_runs_end_to_end_in_a_fresh_home(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env["LIENTHONG_HOME"] = str(tmp_path / "home")
    result = run("demo", "--procedures", "120", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit chain intact" in result.stdout and "1 seal(s)" in result.stdout
    assert "✗" not in result.stdout
    for service in ("csdl_tthc", "dvc_portal", "baocao"):
        assert service in result.stdout
    # a second run reuses the keys and extends the same chain
    again = run("demo", "--procedures", "120", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 seal(s)" in again.stdout  # the second run's seal chains to the first, and both verify
    assert (tmp_path / "home" / "pki" / "hub.p12").exists()


@pytest.mark.slow
def test_demo_runs_over_the_json_adapter(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env["LIENTHONG_HOME"] = str(tmp_path / "home")
    result = run("demo", "--procedures", "60", "--transport", "json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✗" not in result.stdout and "audit chain intact" in result.stdout
    assert "JSON adapter calls" in " ".join(result.stdout.split())  # the push went through the adapter
    from lienthong.hub.store import make_engine
    from lienthong.hub.store.models import AuditEntry
    from sqlalchemy import func, select

    engine = make_engine(f"sqlite:///{tmp_path / 'home' / 'lienthong.db'}")
    with engine.connect() as conn:
        logins = conn.execute(select(AuditEntry.partner, func.count()).where(AuditEntry.operation == "DangNhap",
                                                                             AuditEntry.direction == "out")
                              .group_by(AuditEntry.partner)).all()
    engine.dispose()
    assert dict(logins) == {"csdl_tthc": 1, "dvc_portal": 1}  # one session per service for the whole demo


def test_catalogue_sync_list_and_show_through_the_cli(tmp_home, monkeypatch, capsys):
    from lienthong.signing import init_dev_pki

    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", "mật khẩu CLI")
    init_dev_pki(tmp_home / "pki", "000.00.00.G10", "000.00.00.G22", "mật khẩu CLI")
    from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer

    server = SandboxServer(SandboxConfig(port=0, store_path=MEMORY, pki_dir=tmp_home / "pki",
                                         key_password="mật khẩu CLI", procedures=40))
    server.start()
    try:
        monkeypatch.setenv("LIENTHONG_CSDL_URL", server.base_url + "/csdl-tthc")
        assert main(["sync", "tthc", "--full", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["listed"] == 40 and summary["new"] == 40 and summary["mode"] == "full"

        assert main(["tthc", "list", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert len(rows) == 40
        code = rows[0]["code"]
        assert main(["tthc", "list", "--search", rows[0]["name"][:12], "--json"]) == 0
        assert code in {r["code"] for r in json.loads(capsys.readouterr().out)}

        assert main(["tthc", "show", code, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["record"]["code"] == code and shown["versions"][0]["kind"] == "new"

        assert main(["tthc", "show", "9.999999"]) == 1
        assert "not in the local catalogue" in capsys.readouterr().err
        assert main(["tthc", "show", code, "--diff", "1", "7"]) == 1
        assert main(["sync", "tthc", "--since", "not a date"]) == 1
        assert "not an ISO date" in capsys.readouterr().err
    finally:
        server.close()


def test_intake_push_status_and_dead_letters_through_the_cli(tmp_home, monkeypatch, capsys, tmp_path):
    from lienthong.sandbox.onestop import OneStopSimulator
    from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer
    from lienthong.signing import init_dev_pki

    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", "mật khẩu CLI")
    init_dev_pki(tmp_home / "pki", "000.00.00.G10", "000.00.00.G22", "mật khẩu CLI")
    sim = OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=9)
    sim.populate(25)
    bad = sim.inject("unknown_status", 1)[0]
    server = SandboxServer(SandboxConfig(port=0, store_path=MEMORY, pki_dir=tmp_home / "pki",
                                         key_password="mật khẩu CLI", procedures=300))
    server.start()
    try:
        monkeypatch.setenv("LIENTHONG_DVC_URL", server.base_url + "/dvc")
        assert main(["intake", "--sql", f"sqlite:///{tmp_path / 'onestop.db'}", "--json"]) == 0
        intake = json.loads(capsys.readouterr().out)
        assert intake["enqueued"] > 25 and intake["dead_lettered"] >= 1
        assert main(["push", "status", "--batch-size", "10", "--senders", "3", "--json"]) == 0
        pushed = json.loads(capsys.readouterr().out)
        assert pushed["delivered"] > 0 and pushed["outbox"]["depth"]["pending"] == 0
        assert main(["status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["outbox"]["dead_letters"] >= 1 and status["audit_entries"] > 0
        assert main(["dlq", "list", "--dossier", bad, "--json"]) == 0
        letters = json.loads(capsys.readouterr().out)
        assert letters and letters[0]["reason_code"] == "MAPPING_UNKNOWN_CODE"
        assert main(["dlq", "discard", str(letters[0]["id"]), "--reason", "   "]) == 1
        assert main(["dlq", "discard", str(letters[0]["id"]), "--reason", "mã trạng thái cũ, đã xử lý tay"]) == 0
        assert main(["audit", "verify"]) == 0
    finally:
        server.close()


def test_results_through_the_cli_onestop_intake_push_and_status(tmp_home, monkeypatch, capsys, tmp_path):
    from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer
    from lienthong.signing import init_dev_pki

    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", "mật khẩu CLI")
    init_dev_pki(tmp_home / "pki", "000.00.00.G10", "000.00.00.G22", "mật khẩu CLI")
    onestop, results = f"sqlite:///{tmp_path / 'onestop.db'}", tmp_path / "ket-qua"
    assert main(["sandbox", "onestop", "--db", onestop, "--dossiers", "40", "--arrivals-per-day", "5",
                 "--catalogue-size", "20", "--procedures", "20", "--results", "--results-dir", str(results),
                 "--large-share", "0", "--inject", "result_missing_file=1", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["results"]["files"] > 0 and len(made["injected"]["result_missing_file"]) == 1
    server = SandboxServer(SandboxConfig(port=0, store_path=MEMORY, pki_dir=tmp_home / "pki",
                                         key_password="mật khẩu CLI", procedures=20))
    server.start()
    try:
        monkeypatch.setenv("LIENTHONG_DVC_URL", server.base_url + "/dvc")
        monkeypatch.setenv("LIENTHONG_RESULTS_ROOT", str(results))
        assert main(["intake", "--sql", onestop, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["dead_lettered"] == 0
        assert main(["status", "--json"]) == 0
        waiting = json.loads(capsys.readouterr().out)["results"]
        assert waiting["pending"] == made["results"]["files"] + 1 and waiting["bytes_waiting"] > 0
        assert main(["push", "status", "--json"]) == 0
        capsys.readouterr()
        assert main(["push", "results", "--json"]) == 0
        pushed = json.loads(capsys.readouterr().out)
        assert pushed["uploads"] == made["results"]["files"] and pushed["dead_reasons"] == {"RESULT_FILE_MISSING": 1}
        assert pushed["uploaded_bytes"] == made["results"]["bytes"]
        assert main(["push", "status", "--json"]) == 0
        capsys.readouterr()
        assert main(["status", "--json"]) == 0
        after = json.loads(capsys.readouterr().out)["results"]
        assert (after["pending"], after["dead"], after["uploaded"]) == (0, 1, made["results"]["files"])
        assert main(["push", "results"]) == 0  # the human summary: nothing left to do
        assert "0 file(s) uploaded" in capsys.readouterr().out
    finally:
        server.close()
