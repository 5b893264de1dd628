"""Bad input from the one-stop system, end to end through ``lienthong intake``: each kind of defect is a
specific, counted outcome, and nothing is lost (issue 4, item 7).

The one-stop database is the sandbox simulator's: a few dozen dossiers living ordinary lives, then
every kind of defect :meth:`OneStopSimulator.inject` knows, each injected a *different* number of
times so that a count landing under the wrong outcome shows. The hub's catalogue is synced from the
sandbox through ``lienthong sync tthc`` first, since an unknown procedure code can only be told
apart from a known one against it. Then the real command runs, once on the SQL source and once on
export files (JSON, CSV, XML) in an inbox, and its ``--json`` summary, ``lienthong dlq list`` and the
outbox itself are checked against what was injected, row by row:

* refused rows (unknown status, missing field, malformed date, unknown procedure) are dead letters
  with their own reason code and a reason naming the field and the value, and nothing else is;
* an over-long TrichYeuHoSo is cut to 1000 characters with an ellipsis and counted ``truncated``;
  decomposed (NFD) Vietnamese is enqueued in NFC and counted ``normalised``;
* every other change, the good dossiers' and the injected ones' steps, is a pending event;
* read = enqueued + dead letters + duplicates on every run, and a run with nothing new changes nothing;
* for the file drop, processed files are moved aside, broken ones quarantined with their reason
  while the rest is read, and an export delivered twice adds nothing and is counted as duplicates.

The hub's store is SQLite and, with ``LIENTHONG_TEST_PG_URL``, PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lienthong.hub.cli import main
from lienthong.hub.settings import Settings
from lienthong.hub.store import open_store
from lienthong.hub.store.models import OutboxEvent
from lienthong.sandbox.onestop import (
    INJECTION_KINDS,
    MALFORMED_DATES,
    TRICH_YEU_MAX,
    UNKNOWN_STATUS,
    OneStopSimulator,
    write_broken_file,
)
from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer
from national_helpers import PASSWORD
from sqlalchemy import select

#: how many dossiers of each defect: all different, so a mix-up of outcomes cannot add up by chance
INJECTED = {"unknown_status": 1, "missing_field": 4, "malformed_date": 3, "overlong_text": 5, "non_nfc": 6,
            "unknown_procedure": 7}
GOOD_DOSSIERS = 30
CATALOGUE_SIZE = 20
#: the defects the mapping refuses, and the reason code each one's dead letter carries
REFUSED = {"unknown_status": "MAPPING_UNKNOWN_CODE", "missing_field": "MAPPING_MISSING_FIELD",
           "malformed_date": "MAPPING_MALFORMED_VALUE", "unknown_procedure": "MAPPING_UNKNOWN_PROCEDURE"}


def test_every_injection_kind_is_covered():
    assert set(INJECTED) == set(INJECTION_KINDS)
    assert len(set(INJECTED.values())) == len(INJECTED)


# ------------------------------------------------------------------------------------------------
# set-up: a hub whose catalogue is the sandbox's, and a one-stop database spoilt on purpose
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def national(conn_home):
    """The sandbox of the national services (read only here: one for the module)."""
    server = SandboxServer(SandboxConfig(port=0, store_path=MEMORY, pki_dir=conn_home / "pki", key_password=PASSWORD,
                                         procedures=CATALOGUE_SIZE, seed=1))
    server.start()
    yield server
    server.close()


@pytest.fixture
def hub(tmp_home, engine_url, conn_home, national, monkeypatch, capsys):
    """A hub (``LIENTHONG_HOME`` = ``tmp_home``, store on ``engine_url``) that has synced its
    procedure catalogue from the sandbox through the CLI; returns the sandbox."""
    monkeypatch.setenv("LIENTHONG_DB_URL", engine_url)
    monkeypatch.setenv("LIENTHONG_KEY_PATH", str(conn_home / "pki" / "hub.p12"))
    monkeypatch.setenv("LIENTHONG_TRUST", str(conn_home / "pki" / "ca.crt"))
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", PASSWORD)
    monkeypatch.setenv("LIENTHONG_CSDL_URL", national.base_url + "/csdl-tthc")
    synced = cli(capsys, "sync", "tthc", "--full")
    assert synced["new"] == CATALOGUE_SIZE and synced["quarantined"] == 0
    return national


@dataclass
class OneStop:
    """The simulated one-stop database and what the hub must make of each of its rows."""

    sim: OneStopSimulator
    url: str
    injected: dict[str, list[str]]  # defect -> dossier codes, in injection order
    #: idempotency key of every refused row -> (reason code, texts its reason must contain)
    refused: dict[str, tuple[str, tuple[str, ...]]]
    #: idempotency keys of the rows that must be pending events (good ones and adjusted ones)
    accepted: set[str]
    rows: dict[str, dict[str, Any]]  # dossier code -> its hoso row

    @property
    def read(self) -> int:
        return len(self.refused) + len(self.accepted)


@pytest.fixture
def onestop(hub, tmp_path) -> Iterator[OneStop]:
    url = f"sqlite:///{tmp_path / 'onestop.db'}"
    sim = OneStopSimulator(url, seed=11, catalogue=hub.catalogue, agencies=2, procedures=6)
    sim.populate(GOOD_DOSSIERS)
    injected = {kind: sim.inject(kind, count) for kind, count in INJECTED.items()}
    rows = {r["so_ho_so"]: r for r in sim.db.dossiers()}
    steps = sim.db.steps()
    assert len(rows) == GOOD_DOSSIERS + sum(INJECTED.values())

    refused: dict[str, tuple[str, tuple[str, ...]]] = {}
    for kind, code in REFUSED.items():
        for i, so in enumerate(injected[kind]):
            if kind == "unknown_status":
                why: tuple[str, ...] = ("TrangThaiHoSo", "trang_thai", repr(UNKNOWN_STATUS))
            elif kind == "missing_field":
                why = ("TrichYeuHoSo", "trich_yeu") if i % 2 == 0 else ("ChuHoSo", "chu_ho_so")
            elif kind == "malformed_date":
                why = ("NgayNopHoSo", "ngay_nop", repr(MALFORMED_DATES[i % len(MALFORMED_DATES)]))
            else:
                why = ("MaTTHC", "ma_thu_tuc", f"procedure 9.{999999 - i:06d} is not in the national catalogue")
            refused[f"hoso:{so}:{rows[so]['phien_ban']}"] = (code, (so, *why))
    # the step of a dossier in an unknown status is in that status too: refused for the same reason
    for step in steps:
        if step["so_ho_so"] in injected["unknown_status"]:
            refused[f"buoc:{step['id']}"] = ("MAPPING_UNKNOWN_CODE", (step["so_ho_so"], "TrangThai", "trang_thai",
                                                                      repr(UNKNOWN_STATUS)))
    every = {f"hoso:{so}:{row['phien_ban']}" for so, row in rows.items()} | {f"buoc:{s['id']}" for s in steps}
    yield OneStop(sim, url, injected, refused, every - set(refused), rows)
    sim.close()


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def cli(capsys, *args: str) -> Any:
    """Run ``lienthong <args> --json`` in this process; its JSON output."""
    capsys.readouterr()
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def outbox() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every outbox event: idempotency key -> (state, payload), read from the CLI's own store."""
    with open_store(Settings.from_env()).engine.connect() as conn:
        rows = conn.execute(select(OutboxEvent.idempotency_key, OutboxEvent.state, OutboxEvent.payload))
        return {key: (state, json.loads(payload)) for key, state, payload in rows}


def dead_letters(capsys) -> dict[str, dict[str, Any]]:
    letters = cli(capsys, "dlq", "list", "--limit", "10000")
    by_key = {d["idempotency_key"]: d for d in letters}
    assert len(by_key) == len(letters)
    return by_key


def expected_outcomes(stop: OneStop) -> dict[str, int]:
    """The summary's ``outcomes``, computed from what was injected."""
    return {
        "mapped": len(stop.accepted),
        "MAPPING_UNKNOWN_CODE": 2 * INJECTED["unknown_status"],  # the dossier row and its step
        "MAPPING_MISSING_FIELD": INJECTED["missing_field"],
        "MAPPING_MALFORMED_VALUE": INJECTED["malformed_date"],
        "MAPPING_UNKNOWN_PROCEDURE": INJECTED["unknown_procedure"],
        "truncated": INJECTED["overlong_text"],  # TrichYeuHoSo only
        "normalised": 2 * INJECTED["non_nfc"],  # ChuHoSo and TrichYeuHoSo of each
    }


def assert_first_intake(summary: dict[str, Any], stop: OneStop, capsys) -> None:
    """The first run read every row once, and each row went exactly where it belongs."""
    assert summary["read"] == stop.read
    assert summary["outcomes"] == expected_outcomes(stop)
    assert summary["dead_lettered"] == len(stop.refused) == sum(
        n for kind, n in INJECTED.items() if kind in REFUSED) + INJECTED["unknown_status"]
    assert summary["enqueued"] == len(stop.accepted) and summary["duplicates"] == 0
    assert summary["read"] == summary["enqueued"] + summary["dead_lettered"] + summary["duplicates"]

    letters = dead_letters(capsys)
    assert set(letters) == set(stop.refused)  # exactly the refused rows, no other
    for key, (code, fragments) in stop.refused.items():
        letter = letters[key]
        assert letter["reason_code"] == code, (key, letter["reason"])
        assert letter["partition_key"] == fragments[0]
        for fragment in fragments:
            assert fragment in letter["reason"], (key, fragment, letter["reason"])

    events = outbox()
    assert {k for k, (state, _) in events.items() if state == "dead"} == set(stop.refused)
    assert {k for k, (state, _) in events.items() if state == "pending"} == stop.accepted
    assert len(events) == stop.read  # nothing else, nothing lost

    good = set(stop.rows) - {so for codes in stop.injected.values() for so in codes}
    assert len(good) == GOOD_DOSSIERS
    for so in good:
        state, payload = events[f"hoso:{so}:{stop.rows[so]['phien_ban']}"]
        assert state == "pending" and payload["MaHoSo"] == so
    for so in stop.injected["overlong_text"]:
        original = stop.rows[so]["trich_yeu"]
        assert len(original) > TRICH_YEU_MAX
        state, payload = events[f"hoso:{so}:1"]
        summary_text = payload["TrichYeuHoSo"]
        assert state == "pending" and len(summary_text) <= TRICH_YEU_MAX and summary_text.endswith("…")
        assert original.startswith(summary_text[:-1].rstrip())
    for so in stop.injected["non_nfc"]:
        row = stop.rows[so]
        assert not unicodedata.is_normalized("NFC", row["chu_ho_so"])
        state, payload = events[f"hoso:{so}:1"]
        assert state == "pending"
        assert payload["ChuHoSo"] == unicodedata.normalize("NFC", row["chu_ho_so"])
        assert payload["TrichYeuHoSo"] == unicodedata.normalize("NFC", row["trich_yeu"])


def assert_nothing_changed(summary: dict[str, Any], before_events, before_letters, capsys) -> None:
    assert summary["read"] == summary["enqueued"] == summary["dead_lettered"] == summary["duplicates"] == 0
    assert summary["outcomes"] == {}
    assert outbox() == before_events
    assert dead_letters(capsys) == before_letters


# ------------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------------
def test_sql_source_bad_input_is_counted_dead_lettered_or_adjusted_and_nothing_is_lost(onestop, capsys):
    summary = cli(capsys, "intake", "--sql", onestop.url)
    assert summary["mapping"] == "onestop_sandbox" and summary["quarantined"] == []
    assert summary["source"] == f"onestop_sandbox@{summary['location']}"  # derived: mapping @ database
    assert_first_intake(summary, onestop, capsys)

    events, letters = outbox(), dead_letters(capsys)
    again = cli(capsys, "intake", "--sql", onestop.url)  # nothing new in the source
    assert again["cursor"] == summary["cursor"]
    assert_nothing_changed(again, events, letters, capsys)
    status = cli(capsys, "status")
    assert status["outbox"]["dead_letters"] == len(onestop.refused)
    assert status["outbox"]["depth"]["pending"] == len(onestop.accepted)


@pytest.mark.parametrize("fmt", ["json", "csv", "xml"])
def test_file_drop_bad_input_broken_files_and_a_resent_export(onestop, fmt, tmp_path, capsys):
    inbox = tmp_path / "inbox"
    exports = onestop.sim.export_files(inbox, format=fmt)
    broken = {write_broken_file(inbox, "truncated_json"): "EXPORT_FILE_MALFORMED",
              write_broken_file(inbox, "xml_malformed"): "XML_MALFORMED"}

    summary = cli(capsys, "intake", "--inbox", str(inbox))
    assert_first_intake(summary, onestop, capsys)
    assert summary["batches"] == len(exports)  # one per export file, none for the broken ones
    # the broken files are in the run's summary with their reason, not only in a log line
    assert {q["file"]: q["code"] for q in summary["quarantined"]} == {p.name: code for p, code in broken.items()}
    assert all(q["reason"].strip() for q in summary["quarantined"])
    assert summary["cursor"].split("|sha256:")[0] == exports[-1].name
    # processed files moved aside, broken ones quarantined with their reason, the inbox empty
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(p.name for p in exports)
    for path, code in broken.items():
        quarantined = inbox / "quarantine" / path.name
        assert quarantined.read_bytes()  # kept as it came, for the ministry to look at
        reason = (inbox / "quarantine" / f"{path.name}.reason.txt").read_text(encoding="utf-8")
        assert f"file: {path.name}\n" in reason and f"\nreason: {code}: " in reason, reason
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []

    events, letters = outbox(), dead_letters(capsys)
    again = cli(capsys, "intake", "--inbox", str(inbox))  # nothing new in the inbox
    assert_nothing_changed(again, events, letters, capsys)
    assert again["quarantined"] == []  # already out of the way, not reported twice
    assert len(list((inbox / "quarantine").iterdir())) == 2 * len(broken)

    # the same export delivered a second time (under new names): every row read again, all known
    for path in exports:
        shutil.copyfile(inbox / "processed" / path.name, inbox / f"{Path(path.name).stem}-resent{path.suffix}")
    resent = cli(capsys, "intake", "--inbox", str(inbox))
    assert resent["read"] == onestop.read and resent["outcomes"] == expected_outcomes(onestop)
    assert resent["enqueued"] == resent["dead_lettered"] == 0
    assert resent["duplicates"] == resent["read"]  # refused rows seen again are duplicates too
    assert outbox() == events and dead_letters(capsys) == letters
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []

    # without --json, an operator reads the quarantined file and why on the terminal
    late = write_broken_file(inbox, "truncated_json").rename(inbox / "onestop-late.json")
    capsys.readouterr()
    assert main(["intake", "--inbox", str(inbox)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"quarantined {late.name}: EXPORT_FILE_MALFORMED: {late.name}: not valid JSON" in out, out
    assert "read 0, enqueued 0, already known 0, dead letters 0" in out


def test_a_refused_row_read_again_is_counted_so_that_read_adds_up(tmp_path, audit):
    """Re-reading rows (a source whose cursor was reset, an export delivered twice) must count the
    refused ones among the duplicates: they are already dead letters, and a summary where
    read != enqueued + dead_lettered + duplicates would look like rows were dropped."""
    from lienthong.connectors.sources.sql import SqlSource
    from lienthong.hub.flows.intake import intake_once
    from lienthong.hub.store.models import IntakeCursor
    from lienthong.mappings.dossier import DossierMapping
    from sqlalchemy import delete
    from sqlalchemy.orm import Session

    sim = OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=12, agencies=2, procedures=4)
    sim.populate(5)
    sim.inject("unknown_status", 2)
    sim.inject("malformed_date", 1)
    with sim.db, SqlSource(sim.db.engine, DossierMapping.shipped("onestop_sandbox")) as source:
        first = intake_once(audit.engine, source)
        assert (first.dead_lettered, first.duplicates) == (5, 0)  # 2 dossiers + their 2 steps, 1 dossier
        with Session(audit.engine) as session, session.begin():
            session.execute(delete(IntakeCursor))  # read everything again
        again = intake_once(audit.engine, source)
    assert again.read == first.read and again.outcomes == first.outcomes
    assert (again.enqueued, again.dead_lettered, again.duplicates) == (0, 0, first.read)
    assert again.quarantined == [] and again.as_dict()["quarantined"] == []
