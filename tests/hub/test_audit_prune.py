"""Retention: `audit prune --before` removes only exported entries and leaves a signed tombstone."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from audit_ledger_helpers import HUB, clock, exchange, foreign_signer, ledger, resign
from lienthong.hub.audit.archive import export_archive, verify_archive
from lienthong.hub.audit.query import update_index
from lienthong.hub.audit.seal import create_seal, plan_prune, prune, verify_ledger
from lienthong.hub.errors import AuditChainBroken, ConfigurationError
from lienthong.hub.store.models import AuditEntry, AuditSubject, AuditTombstone
from sqlalchemy import delete, func, insert, select, update

LOG = AuditEntry.__table__
TOMBS = AuditTombstone.__table__
SUBJECTS = AuditSubject.__table__


@pytest.fixture
def led(conn_home, tmp_path):
    return ledger(conn_home, f"sqlite:///{tmp_path / 'hub.db'}")


def _days(led, n: int = 3) -> None:
    """Four exchanges (eight entries) on each of ``n`` days."""
    for day in range(n):
        exchange(led, 4, start=led.t0 + timedelta(days=day))


def _count(led) -> int:
    with led.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(LOG)).scalar_one()


def test_prune_removes_exported_entries_and_verify_resumes_from_the_tombstone(conn_home, db_url, tmp_path):
    led = ledger(conn_home, db_url)
    now = clock(led, days=5)
    _days(led)
    create_seal(led.engine, led.signer, now=now)
    first = export_archive(led.engine, led.signer, tmp_path / "a1.zip", ca_paths=[led.ca], to_seq=8, now=now)
    update_index(led.engine)  # a search indexed the ledger (these test bodies name no dossier: add them)
    with led.engine.begin() as conn:
        conn.execute(insert(SUBJECTS), [{"seq": seq, "kind": "dossier", "value": f"G10-20261123-{seq:07d}"}
                                        for seq in range(1, 25)])
    plan, number = prune(led.engine, led.signer, led.trust, led.t0 + timedelta(days=1), now=now)
    assert (plan.first_seq, plan.last_seq, number) == (1, 8, 1)
    assert plan.archives == ((first.archive_sha256, 1, 8),)
    assert _count(led) == 16
    with led.engine.connect() as conn:  # the derived index leaves with the entries it was read from
        indexed = set(conn.execute(select(SUBJECTS.c.seq).distinct()).scalars())
    assert indexed and min(indexed) > 8
    report = verify_ledger(led.engine, led.trust, HUB)
    assert report.ok, report.problem
    assert (report.start, report.pruned_through, report.chain.checked, report.seals) == (9, 8, 16, 1)
    # the export chain stays unbroken: the next export links to the archive of the pruned entries
    second = export_archive(led.engine, led.signer, tmp_path / "a2.zip", ca_paths=[led.ca], to_seq=16, now=now)
    assert verify_archive(second.path, led.ca, previous=first.path).previous_checked
    # a second prune chains its tombstone to the first
    plan2, number2 = prune(led.engine, led.signer, led.trust, led.t0 + timedelta(days=2), now=now)
    assert (plan2.first_seq, plan2.last_seq, number2) == (9, 16, 2)
    report = verify_ledger(led.engine, led.trust, HUB)
    assert report.ok and (report.start, report.tombstones, report.chain.checked) == (17, 2, 8)


def test_prune_refuses_entries_no_export_holds_and_names_them(led, tmp_path):
    now = clock(led, days=5)
    _days(led)
    export_archive(led.engine, led.signer, tmp_path / "a.zip", ca_paths=[led.ca], from_seq=5, to_seq=10, now=now)
    plan = plan_prune(led.engine, led.t0 + timedelta(days=2))
    assert (plan.first_seq, plan.last_seq, plan.uncovered) == (1, 16, ((1, 4), (11, 16)))
    with pytest.raises(AuditChainBroken, match=r"refusing to prune entries 1\.\.16: entries 1\.\.4, 11\.\.16 are not "
                                               r"in any export; run 'lienthong audit export' for them first"):
        prune(led.engine, led.signer, led.trust, led.t0 + timedelta(days=2), now=now)
    assert _count(led) == 24


def test_prune_with_nothing_to_do_and_on_a_broken_ledger_is_refused(led, tmp_path):
    now = clock(led, days=5)
    _days(led, 1)
    with pytest.raises(ConfigurationError, match="nothing to prune: no entry still in the ledger was recorded before"):
        prune(led.engine, led.signer, led.trust, led.t0, now=now)
    export_archive(led.engine, led.signer, tmp_path / "a.zip", ca_paths=[led.ca], now=now)
    with led.engine.begin() as conn:
        conn.execute(update(LOG).where(LOG.c.seq == 3).values(outcome="fault"))
    with pytest.raises(AuditChainBroken, match=r"refusing to prune: the ledger does not verify \(entry 3: entry 3 "
                                               r"edited"):
        prune(led.engine, led.signer, led.trust, led.t0 + timedelta(days=1), now=now)
    assert _count(led) == 8


def test_tombstone_tampering_is_named(led, tmp_path):
    now = clock(led, days=5)
    _days(led, 2)
    export_archive(led.engine, led.signer, tmp_path / "a.zip", ca_paths=[led.ca], now=now)
    prune(led.engine, led.signer, led.trust, led.t0 + timedelta(days=1), now=now)
    with led.engine.begin() as conn:
        document = conn.execute(select(TOMBS.c.document)).scalar_one()
        conn.execute(update(TOMBS).values(document=resign(document, foreign_signer())))
    report = verify_ledger(led.engine, led.trust, HUB)
    assert report.where == "tombstone 1"
    assert report.problem.startswith("tombstone 1 signature does not verify [CERTIFICATE_UNTRUSTED]")
    with led.engine.begin() as conn:  # without its tombstone the pruned entries are simply missing
        conn.execute(delete(TOMBS))
    report = verify_ledger(led.engine, led.trust, HUB)
    assert report.where == "entry 1"
    assert report.problem == "entries 1..8 removed: the log starts at 9"


def test_cli_prune_is_a_dry_run_unless_told_yes(led, tmp_path, monkeypatch, capsys):
    from lienthong.hub.cli import main

    monkeypatch.setenv("LIENTHONG_HOME", str(led.settings.home))
    monkeypatch.setenv("LIENTHONG_DB_URL", led.settings.db_url)
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", led.settings.key_password)
    _days(led, 2)
    before = (led.t0 + timedelta(days=1)).date().isoformat()
    assert main(["audit", "prune", "--before", before]) == 1
    captured = capsys.readouterr()
    assert "would remove entries 1..8 (8)" in captured.out
    assert "entries 1..8 are not in any export" in captured.err
    assert main(["audit", "export", "--to-seq", "8", str(tmp_path / "a.zip")]) == 0
    capsys.readouterr()
    assert main(["audit", "prune", "--before", before]) == 0
    assert "dry run: nothing removed; add --yes" in capsys.readouterr().out
    assert _count(led) == 16
    assert main(["audit", "prune", "--before", before, "--yes", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["tombstone"] == 1 and done["entries"] == 8 and not done["dry_run"]
    assert main(["audit", "verify"]) == 0
    assert "entries up to 8 pruned, anchored by tombstone 1" in " ".join(capsys.readouterr().out.split())
    assert main(["audit", "exports", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["first_seq"], e["last_seq"]) for e in listed["exports"]] == [(1, 8)]
    assert listed["tombstones"][0]["archive_sha256"] == listed["exports"][0]["archive_sha256"]
    assert main(["audit", "exports"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1..8" in out and "tombstone 1: entries 1..8 pruned" in out
