"""Export archives for inspectors and their offline verification (`audit export`, `audit verify-archive`)."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta

import pytest
from audit_ledger_helpers import HUB, clock, exchange, ledger
from lienthong.hub.audit.archive import ArchiveInvalid, export_archive, parse_when, verify_archive
from lienthong.hub.audit.seal import create_seal
from lienthong.hub.errors import AuditChainBroken, ConfigurationError
from lienthong.hub.store.models import AuditEntry, AuditExport
from sqlalchemy import select, update


@pytest.fixture
def led(conn_home, tmp_path):
    return ledger(conn_home, f"sqlite:///{tmp_path / 'hub.db'}")


def _export(led, out, now, **kw):
    return export_archive(led.engine, led.signer, out, ca_paths=[led.ca], now=now, **kw)


def test_export_writes_a_self_contained_archive_that_verifies_offline(conn_home, db_url, tmp_path):
    led = ledger(conn_home, db_url)
    now = clock(led)
    exchange(led, 6)
    create_seal(led.engine, led.signer, now=now)
    result = _export(led, tmp_path / "a1.zip", now, from_seq=3, to_seq=8)
    assert (result.first_seq, result.last_seq, result.entries, result.prev_archive_sha256) == (3, 8, 6, None)
    names = zipfile.ZipFile(result.path).namelist()
    assert names[0] == "README.txt" and names[-1] == "manifest.xml"  # the manifest is signed once all is written
    assert {"entries.jsonl", "messages/3-out-NhanHoSo.xml", "messages/8-in-NhanHoSo.xml", "seals/1.xml",
            "chain/after.jsonl", "certs/hub.pem", "certs/ca.pem"} <= set(names)
    # the exact bytes, and every column of every entry
    assert zipfile.ZipFile(result.path).read("messages/4-in-NhanHoSo.xml") == led.trail.body(4)
    line = json.loads(zipfile.ZipFile(result.path).read("entries.jsonl").splitlines()[0])
    assert {"seq", "recorded_at", "prev_hash", "entry_hash", "stored_body_sha256", "body_sha256", "file"} <= set(line)
    report = verify_archive(result.path, led.ca)
    assert (report.entries, report.seals, report.signatures_verified, report.hub_agency) == (6, 1, 6, HUB)
    with led.engine.connect() as conn:
        row = conn.execute(select(AuditExport.__table__)).one()
    assert (row.first_seq, row.last_seq, row.archive_sha256) == (3, 8, result.archive_sha256)


def test_exports_chain_to_the_previous_one(led, tmp_path):
    now = clock(led)
    exchange(led, 6)
    first = _export(led, tmp_path / "a1.zip", now, to_seq=5)
    second = _export(led, tmp_path / "a2.zip", now, from_seq=6)
    assert second.prev_archive_sha256 == first.archive_sha256
    report = verify_archive(second.path, led.ca, previous=first.path)
    assert report.previous_checked and report.first_seq == 6
    unlinked = verify_archive(second.path, led.ca)
    assert unlinked.warnings and "give --previous to check the link" in unlinked.warnings[0]
    with pytest.raises(ArchiveInvalid, match="a1.zip is the first export: it names no previous archive"):
        verify_archive(first.path, led.ca, previous=second.path)


def test_export_seals_the_range_when_no_seal_covers_its_end(led, tmp_path):
    now = clock(led)
    exchange(led, 2)
    create_seal(led.engine, led.signer, now=now)
    exchange(led, 2, start=led.t0 + timedelta(hours=1))
    result = _export(led, tmp_path / "a.zip", now)
    assert result.sealed_now and result.seals == 2
    assert verify_archive(result.path, led.ca).seals == 2


def test_export_by_day_includes_the_whole_last_day(led, tmp_path):
    now = clock(led)
    exchange(led, 2, start=led.t0)
    exchange(led, 2, start=led.t0 + timedelta(days=1))
    exchange(led, 2, start=led.t0 + timedelta(days=2))
    day = (led.t0 + timedelta(days=1)).date().isoformat()
    result = _export(led, tmp_path / "day.zip", now, start=parse_when(day), end=parse_when(day, end=True))
    assert (result.first_seq, result.last_seq) == (5, 8)
    assert parse_when("2026-11-30", end=True).isoformat() == "2026-12-01T00:00:00+00:00"
    with pytest.raises(ConfigurationError, match="'30/11/2026' is not a date"):
        parse_when("30/11/2026")


def test_export_names_a_body_damaged_after_its_range_was_sealed(led, tmp_path):
    now = clock(led)
    exchange(led, 2)
    create_seal(led.engine, led.signer, now=now)  # covers entries 1..4: the export will not seal again
    log = AuditEntry.__table__
    with led.engine.begin() as conn:
        conn.execute(update(log).where(log.c.seq == 2).values(body=b"not zlib"))
    with pytest.raises(AuditChainBroken, match="cannot export entry 2: the stored body is not valid compressed data"):
        _export(led, tmp_path / "broken.zip", now)
    assert not (tmp_path / "broken.zip").exists() and not (tmp_path / "broken.zip.partial").exists()


def test_export_refuses_what_it_cannot_do_well(led, tmp_path):
    now = clock(led)
    with pytest.raises(ConfigurationError, match="no audit entries to export"):
        _export(led, tmp_path / "empty.zip", now)
    exchange(led, 2)
    (tmp_path / "taken.zip").write_bytes(b"")
    with pytest.raises(ConfigurationError, match="taken.zip exists already; an export never overwrites a file"):
        _export(led, tmp_path / "taken.zip", now)
    log = AuditEntry.__table__
    with led.engine.begin() as conn:
        conn.execute(update(log).where(log.c.seq == 2).values(body=b"not zlib"))
    # exporting seals the range first, and a ledger that does not verify is never sealed
    with pytest.raises(AuditChainBroken, match="not sealing: the ledger does not verify from its first entry: "
                                               "entry 2 body edited: the stored body is not valid compressed data"):
        _export(led, tmp_path / "broken.zip", now)
    assert not (tmp_path / "broken.zip").exists() and not (tmp_path / "broken.zip.partial").exists()


def test_unsigned_failures_do_not_fail_the_archive_but_a_bad_accepted_reply_does(led, tmp_path):
    now = clock(led)
    exchange(led, 1)
    led.trail.record(direction="in", partner="dvc_portal", operation="NhanHoSo", raw=b"", outcome="timeout",
                     error="no answer in 30 s", recorded_at=led.t0 + timedelta(minutes=5))
    led.trail.record(direction="in", partner="dvc_portal", operation="NhanHoSo", raw=b"<broken", outcome="rejected",
                     recorded_at=led.t0 + timedelta(minutes=6))
    report = verify_archive(_export(led, tmp_path / "a.zip", now).path, led.ca)
    assert (report.signatures_verified, report.signatures_not_required) == (2, 2)
    # a reply the hub accepted ('ok') must carry a valid signature by the partner it is recorded from
    led.trail.record(direction="in", partner="dvc_portal", operation="NhanHoSo", outcome="ok", from_agency="000.00.00.G22",
                     raw=exchange_body(led), recorded_at=led.t0 + timedelta(minutes=7))
    with pytest.raises(ArchiveInvalid, match=r"messages/5-in-NhanHoSo.xml \(entry 5, ok\) signature does not verify "
                                             r"\[SIGNATURE_INVALID\]: signed by agency 000.00.00.G10, but the entry "
                                             r"records it as from 000.00.00.G22"):
        verify_archive(_export(led, tmp_path / "b.zip", now, from_seq=5).path, led.ca)


def exchange_body(led) -> bytes:
    from audit_ledger_helpers import signed_message

    return signed_message(led.signer, 99, "NhanHoSo")  # signed by the hub, claimed to be from the national side


def test_verify_archive_needs_the_right_ca(led, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from lienthong.signing.pki import create_ca

    now = clock(led)
    exchange(led, 1)
    result = _export(led, tmp_path / "a.zip", now)
    other = tmp_path / "other-ca.pem"
    other.write_bytes(create_ca().certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ArchiveInvalid, match=r"a.zip: manifest.xml signature does not verify \[CERTIFICATE_UNTRUSTED\]"):
        verify_archive(result.path, other)
    assert verify_archive(result.path, led.ca, hub_agency=HUB).hub_agency == HUB
    with pytest.raises(ArchiveInvalid, match=r"a.zip was written and signed by agency 000.00.00.G10, not by "
                                             r"000.00.00.G22"):
        verify_archive(result.path, led.ca, hub_agency="000.00.00.G22")


def test_cli_export_and_verify_archive(led, tmp_path, monkeypatch, capsys):
    from lienthong.hub.cli import main

    monkeypatch.setenv("LIENTHONG_HOME", str(led.settings.home))
    monkeypatch.setenv("LIENTHONG_DB_URL", led.settings.db_url)
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", led.settings.key_password)
    exchange(led, 3)
    out = tmp_path / "cli.zip"
    assert main(["audit", "export", "--from-seq", "1", "--to-seq", "4", str(out), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["entries"] == 4 and exported["sealed_now"] is True
    assert main(["audit", "verify-archive", str(out), "--ca", str(led.ca), "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["ok"] and checked["archive_sha256"] == exported["sha256"] and checked["signatures_verified"] == 4
    assert main(["audit", "verify-archive", str(out), "--ca", str(led.ca)]) == 0
    assert "hash chain intact" in capsys.readouterr().out
    out.write_bytes(out.read_bytes()[:-300])
    assert main(["audit", "verify-archive", str(out), "--ca", str(led.ca)]) == 1
    assert "cli.zip is not a complete zip archive (truncated or damaged)" in capsys.readouterr().err


def test_a_damaged_member_is_named(led, tmp_path):
    now = clock(led)
    exchange(led, 2)
    path = _export(led, tmp_path / "a.zip", now).path
    name = "messages/2-in-NhanHoSo.xml"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(name) + 40] ^= 0xFF  # inside the member's compressed bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveInvalid, match=rf"a.zip: {name} cannot be read \(truncated or damaged\)"):
        verify_archive(path, led.ca)


def test_export_and_verification_memory_does_not_grow_with_the_archive(led, tmp_path):
    """Archives of 100 and 200 messages of 64 KiB: doubling the archive (+6.4 MB) barely moves the
    peak memory of either side (export holds one fetch batch, verification one message)."""
    import os
    import tracemalloc

    now = clock(led)
    size = 64 * 1024

    def add(count: int, offset: int) -> None:
        led.trail.record_many([dict(direction="in", partner="dvc_portal", operation="NhanHoSo", raw=os.urandom(size),
                                    outcome="error", recorded_at=led.t0 + timedelta(seconds=offset + i))
                               for i in range(count)])

    def peaks(name: str) -> tuple[int, int]:
        tracemalloc.start()
        path = _export(led, tmp_path / name, now).path
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert verify_archive(path, led.ca).signatures_not_required > 0
        _, verify_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return export_peak, verify_peak

    add(100, 0)
    verify_archive(_export(led, tmp_path / "warm-up.zip", now, to_seq=2).path, led.ca)  # imports, caches
    small = peaks("100.zip")
    add(100, 100)
    large = peaks("200.zip")
    grown = 100 * size
    assert large[0] - small[0] < grown / 4 and large[1] - small[1] < grown / 4, (small, large)
