"""``lienthong audit search | show | dossier | stats`` through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
import zlib

import pytest
from audit_ledger_data import EMAIL, ID_NUMBER, MA_HO_SO, OWNER, OWNER_2, PHONE, fill_ledger
from lienthong.hub.audit import ledger
from lienthong.hub.cli import main
from lienthong.hub.settings import Settings
from lienthong.hub.store import open_store
from lienthong.hub.store.models import AuditEntry
from national_helpers import PASSWORD
from sqlalchemy import update

MASKED_OWNER = "N*** V** A*"


@pytest.fixture
def cli_ledger(tmp_home, engine_url, conn_home, sandbox, monkeypatch):
    """A hub home whose store (SQLite or PostgreSQL) holds real exchanges, and the hub's PKI."""
    shutil.copytree(conn_home / "pki", tmp_home / "pki")
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", PASSWORD)
    monkeypatch.setenv("LIENTHONG_DB_URL", engine_url)
    monkeypatch.setenv("LIENTHONG_OPERATOR", "Kiểm toán viên Hoàng")
    store = open_store(Settings.from_env())
    fill_ledger(store.engine, conn_home, sandbox)
    return store


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def head(store):
    return ledger(store).head()[0]


def test_search_prints_a_table_and_json(cli_ledger, capsys):
    code, out, _ = run(capsys, "audit", "search", "--dossier", MA_HO_SO, "--operation", "DongBoHoSoMC")
    assert code == 0
    assert "4 audit entries (newest first)" in out and "DongBo" in out and "TraCuu" not in out
    rows = [line.split() for line in out.splitlines()]
    assert [r[0] for r in rows if len(r) > 2 and r[0].isdigit() and r[1][4:5] == "-"] == ["8", "7", "2", "1"]
    code, out, _ = run(capsys, "audit", "search", "--dossier", MA_HO_SO, "--oldest-first", "--limit", "3", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[0]["direction"] == "out" and rows[1]["correlation_id"] == rows[0]["document_id"]


def test_search_json_masks_personal_data_in_error_text(cli_ledger, capsys):
    ledger(cli_ledger).record(direction="in", partner="dvc_portal", operation="DongBoHoSoMC", outcome="fault",
                            raw=b"", error=f"portal refused: owner phone {PHONE}, e-mail {EMAIL}")
    _, out, _ = run(capsys, "audit", "search", "--outcome", "fault", "--json")
    (row,) = json.loads(out)
    assert PHONE not in row["error"] and EMAIL not in row["error"]
    assert "09******78" in row["error"] and "n***@example.vn" in row["error"]


def test_search_refuses_bad_options_with_clear_errors(cli_ledger, capsys):
    code, _, err = run(capsys, "audit", "search", "--since", "hôm qua")
    assert code == 1 and "error [CONFIGURATION]: --since 'hôm qua' is not an ISO date" in err
    code, _, err = run(capsys, "audit", "search", "--limit", "0")
    assert code == 1 and "--limit must be at least 1" in err
    code, _, err = run(capsys, "audit", "search", "--reason", "tò mò")
    assert code == 1 and "--reason goes with --unmask" in err


def test_search_reindex_rebuilds_the_subject_index(cli_ledger, capsys):
    code, out, err = run(capsys, "audit", "search", "--reindex", "--procedure", "1.001012", "--json")
    assert code == 0 and "subject index rebuilt: 12 entries" in err
    assert [r["seq"] for r in json.loads(out)] == [8, 7, 2, 1]


def test_show_prints_the_masked_message_and_the_signature_result(cli_ledger, capsys):
    code, out, _ = run(capsys, "audit", "show", "1")
    assert code == 0
    assert "body intact" in out and "signature valid" in out and "000.00.00.G10" in out
    assert f"<dvc:ChuHoSo>{MASKED_OWNER}</dvc:ChuHoSo>" in out
    for secret in (OWNER, OWNER_2, ID_NUMBER, PHONE, EMAIL):
        assert secret not in out
    code, out, _ = run(capsys, "audit", "show", "2", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["masked"] is True
    assert shown["signature"]["status"] == "valid" and shown["signature"]["signer_agency"] == "000.00.00.G22"
    assert shown["body_check"]["ok"] is True and OWNER not in shown["body"]


def test_unmask_needs_a_reason_and_records_who_asked_before_showing(cli_ledger, capsys):
    before = head(cli_ledger)
    for reason in ([], ["--reason", "   "]):
        code, out, err = run(capsys, "audit", "show", "1", "--unmask", *reason)
        assert code == 1 and "--unmask shows personal data and needs --reason" in err and OWNER not in out
    assert head(cli_ledger) == before  # nothing recorded, nothing shown

    code, out, err = run(capsys, "audit", "show", "1", "--unmask", "--reason", "Thanh tra yêu cầu số 12/TTr")
    assert code == 0 and f"<dvc:ChuHoSo>{OWNER}</dvc:ChuHoSo>" in out and PHONE in out
    unmask_seq = before + 1
    assert f"recorded as audit entry {unmask_seq}" in err
    code, out, _ = run(capsys, "audit", "search", "--partner", "hub", "--operation", "AuditUnmask", "--json")
    (entry,) = json.loads(out)
    assert entry["seq"] == unmask_seq and entry["outcome"] == "ok" and entry["direction"] == "out"
    record = json.loads(ledger(cli_ledger).body(unmask_seq))
    assert record["operator"] == "Kiểm toán viên Hoàng" and record["reason"] == "Thanh tra yêu cầu số 12/TTr"
    assert record["command"] == "audit show 1" and record["entries"] == [1] and record["os_user"]


def test_raw_bytes_only_with_unmask_and_then_exactly_as_stored(cli_ledger, capsysbinary, tmp_path):
    assert main(["audit", "show", "1", "--raw"]) == 1
    assert b"--raw/--output write the exact stored bytes" in capsysbinary.readouterr().err
    assert main(["audit", "show", "1", "--raw", "--unmask", "--reason", "gửi bản gốc cho thanh tra"]) == 0
    assert capsysbinary.readouterr().out == ledger(cli_ledger).body(1)
    target = tmp_path / "entry-2.xml"
    assert main(["audit", "show", "2", "--output", str(target), "--unmask", "--reason", "lưu hồ sơ thanh tra"]) == 0
    assert target.read_bytes() == ledger(cli_ledger).body(2)


def test_show_names_missing_and_tampered_entries(cli_ledger, capsys):
    code, _, err = run(capsys, "audit", "show", "99")
    assert code == 1 and "error [CONFIGURATION]: no audit entry 99 (the ledger has entries 1..12)" in err
    with cli_ledger.engine.begin() as conn:
        conn.execute(AuditEntry.__table__.delete().where(AuditEntry.seq == 5))
    code, _, err = run(capsys, "audit", "show", "5")
    assert code == 1 and "audit entry 5 is no longer in the store" in err
    with cli_ledger.engine.begin() as conn:
        conn.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(body=zlib.compress(b"<forged/>")))
    code, out, _ = run(capsys, "audit", "show", "3")
    assert code == 1 and "body does not match its record" in out and "signature not_checked" in out


def test_dossier_timeline_in_order_with_statuses_steps_and_masking(cli_ledger, capsys):
    code, out, _ = run(capsys, "audit", "dossier", MA_HO_SO)
    assert code == 0
    assert f"dossier {MA_HO_SO}: 4 exchange(s)" in out
    positions = [out.index(marker) for marker in ("#1/2", "#3/4", "#5/6", "#7/8")]
    assert positions == sorted(positions)
    assert "status 2 Được tiếp nhận" in out and "status 10 Đã trả kết quả" in out
    assert f"Tiếp nhận hồ sơ của {MASKED_OWNER}" in out and "step 4 Đang xử lý" in out
    assert "answer found" in out and OWNER not in out
    code, out, _ = run(capsys, "audit", "dossier", MA_HO_SO, "--json")
    shown = json.loads(out)
    assert [x["status"] for x in shown["exchanges"]] == ["2", "4", "2", "10"]
    first = shown["exchanges"][0]["request_records"][0]
    assert first["ChuHoSo"] == MASKED_OWNER and first["SoGiayToChuHoSo"] == "00********67"
    assert OWNER not in out and ID_NUMBER not in out


def test_dossier_unmask_records_every_entry_shown(cli_ledger, capsys):
    code, out, _ = run(capsys, "audit", "dossier", MA_HO_SO, "--json", "--unmask", "--reason", "khiếu nại của công dân")
    assert code == 0 and json.loads(out)["exchanges"][0]["request_records"][0]["ChuHoSo"] == OWNER
    record = json.loads(ledger(cli_ledger).body(head(cli_ledger)))
    assert record["entries"] == [1, 2, 3, 4, 5, 6, 7, 8] and record["command"] == f"audit dossier {MA_HO_SO}"


def test_dossier_that_no_message_mentions(cli_ledger, capsys):
    code, _, err = run(capsys, "audit", "dossier", "000.00.04.G10-20991231-0000001")
    assert code == 1 and "no audit entry mentions dossier 000.00.04.G10-20991231-0000001" in err


def test_stats_as_table_json_and_csv(cli_ledger, capsys):
    code, out, _ = run(capsys, "audit", "stats")
    assert code == 0 and "12 messages, 0 failure(s)" in out and "dvc_portal" in out and "csdl_tthc" in out
    code, out, _ = run(capsys, "audit", "stats", "--json", "--since", "2020-01-01", "--until", "2999-12-31")
    stats = json.loads(out)
    assert stats["totals"]["messages"] == 12 and stats["until"] == "3000-01-01T00:00:00+00:00"
    code, out, _ = run(capsys, "audit", "stats", "--csv")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("since,until,partner,operation,messages") and len(lines) == 6
    code, _, err = run(capsys, "audit", "stats", "--csv", "--json")
    assert code == 1 and "choose one of --json and --csv" in err
    code, out, _ = run(capsys, "audit", "stats", "--json", "--until", "2020-01-01")
    assert json.loads(out)["totals"]["messages"] == 0


def test_search_unmask_records_the_filters_and_the_entries_listed(cli_ledger, capsys):
    code, out, err = run(capsys, "audit", "search", "--outcome", "ok", "--partner", "csdl_tthc", "--json",
                         "--unmask", "--reason", "đối soát với Văn phòng Chính phủ")
    assert code == 0 and [r["seq"] for r in json.loads(out)] == [12, 10]
    record = json.loads(ledger(cli_ledger).body(head(cli_ledger)))
    assert record["command"] == "audit search --partner csdl_tthc --outcome ok --limit 50"
    assert record["entries"] == [12, 10] and record["action"] == "audit.unmask"
