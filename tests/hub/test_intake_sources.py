"""A source's progress belongs to that source (issue 9): no silent skips when one-stop databases
share a mapping, move, are restored or replicated.

Each test reads real one-stop databases (the sandbox simulator, one agency each, all read with the
one shipped mapping) into a hub store on SQLite and on PostgreSQL, and checks the outbox against
the databases row by row: every current row is an event, none is one twice.
"""

from __future__ import annotations

import json

import pytest
from lienthong.connectors.sources.base import (
    SourceBehindCursor,
    SourceCursorUnclaimed,
    SourceKeysMoved,
    SourceLocationChanged,
    SourceMappingChanged,
    derived_source_id,
    sql_location,
)
from lienthong.connectors.sources.filedrop import FileDropSource
from lienthong.connectors.sources.sql import SqlSource
from lienthong.hub.audit import AuditTrail
from lienthong.hub.errors import ConfigurationError
from lienthong.hub.flows.intake import CursorDecision, intake_once, source_states, stored_cursor
from lienthong.sandbox.onestop import OneStopDatabase, export_files
from onestop_helpers import (
    advance,
    agency_db,
    assert_each_once,
    audit_entries,
    change_count,
    copy_db,
    mapping,
    outbox,
    rows,
)
from sqlalchemy import text


def read(engine, url, **kw):
    with SqlSource(url, mapping()) as source:
        return intake_once(engine, source, **kw)


# ------------------------------------------------------------------------------------------------
# two agencies' databases, one mapping
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["a_then_b", "b_then_a"])
def test_two_databases_sharing_a_mapping_are_each_read_fully(engine, tmp_path, order):
    url_a = agency_db(tmp_path / "a.db", 0, seed=11, dossiers=60)
    url_b = agency_db(tmp_path / "b.db", 1, seed=12, dossiers=70)
    first, second = (url_a, url_b) if order == "a_then_b" else (url_b, url_a)
    one = read(engine, first)
    two = read(engine, second)
    # each read all of its own changes, none taken for another's
    assert one.read == one.enqueued == change_count(first)
    assert two.read == two.enqueued == change_count(second)
    assert one.duplicates == two.duplicates == 0 and one.dead_lettered == two.dead_lettered == 0
    # both number their steps 1, 2, 3...: the second source's step ids collide with the first's
    # idempotency keys, and every one of them is a new change with a key of its own, not a duplicate
    assert one.key_reused == 0
    assert two.key_reused == min(len(rows(first)[1]), len(rows(second)[1]))
    assert one.source != two.source and one.mapping == two.mapping == "onestop_sandbox"
    assert_each_once(engine, url_a, url_b)
    # a second pass over either reads nothing new
    assert read(engine, url_a).read == 0 and read(engine, url_b).read == 0


def test_two_databases_interleaved_each_resume_from_their_own_position(engine, tmp_path):
    url_a = agency_db(tmp_path / "a.db", 0, seed=21, dossiers=40)
    a1 = read(engine, url_a)
    url_b = agency_db(tmp_path / "b.db", 1, seed=22, dossiers=50)
    b1 = read(engine, url_b)
    advance(url_a, 0, seed=21, changes=120)
    a2 = read(engine, url_a)
    advance(url_b, 1, seed=22, changes=90)
    b2 = read(engine, url_b)
    a3 = read(engine, url_a)
    assert a3.read == 0
    assert a1.read + a2.read and b1.read + b2.read
    assert a2.enqueued == a2.read and b2.enqueued == b2.read  # nothing of B taken for A's, or back
    assert_each_once(engine, url_a, url_b)
    states = {s.source: s for s in source_states(engine)}
    assert set(states) == {a1.source, b1.source}
    assert states[a1.source].location == sql_location(url_a) and states[b1.source].location == sql_location(url_b)
    assert states[a1.source].last_run["ok"] and states[a1.source].last_run["read"] == 0


def test_two_export_inboxes_sharing_a_mapping(engine, tmp_path):
    inboxes = []
    for agency, seed in ((0, 31), (1, 32)):
        url = agency_db(tmp_path / f"{agency}.db", agency, seed=seed, dossiers=30)
        inbox = tmp_path / f"inbox-{agency}"
        inbox.mkdir()
        with OneStopDatabase(url, create=False) as db:
            export_files(db, inbox, format="json")
        inboxes.append((url, inbox))
    summaries = [intake_once(engine, FileDropSource(inbox, mapping())) for _, inbox in inboxes]
    for (url, _), summary in zip(inboxes, summaries, strict=True):
        assert summary.read == summary.enqueued == change_count(url)
    assert summaries[0].source != summaries[1].source
    assert_each_once(engine, *(url for url, _ in inboxes))
    assert {s.kind for s in source_states(engine)} == {"filedrop"}


# ------------------------------------------------------------------------------------------------
# identity, location, decisions
# ------------------------------------------------------------------------------------------------
def test_derived_identity_and_location_leave_credentials_out(tmp_path):
    location = sql_location("postgresql://hub:s3cret@db.example:5433/motcua?connect_timeout=5&options=-csearch_path%3Da")
    assert "s3cret" not in location and "hub" not in location and "connect_timeout" not in location
    assert location == sql_location("postgresql+psycopg://other@db.example:5433/motcua?options=-csearch_path%3Da")
    assert location != sql_location("postgresql://hub@db.example:5433/motcua2")
    assert sql_location(f"sqlite:///{tmp_path}/x/../a.db") == f"sqlite:///{tmp_path}/a.db"
    assert derived_source_id("onestop_sandbox", location) == f"onestop_sandbox@{location}"
    long = "sqlite:///" + "d/" * 100 + "a.db"
    derived = derived_source_id("onestop_sandbox", long)
    assert len(derived) <= 128 and derived.startswith("onestop_sandbox@sha256:")


def test_moved_database_under_an_explicit_identity_is_refused_until_adopted(engine, tmp_path):
    url = agency_db(tmp_path / "a.db", 0, seed=41, dossiers=40)
    first = read(engine, url, source_id="so-a")
    assert first.source == "so-a"
    replica = tmp_path / "replica.db"
    copy_db(tmp_path / "a.db", replica)
    replica_url = f"sqlite:///{replica}"
    with pytest.raises(SourceLocationChanged) as refused:
        read(engine, replica_url, source_id="so-a")
    message = str(refused.value)
    assert sql_location(url) in message and sql_location(replica_url) in message and "--adopt-cursor" in message
    assert source_states(engine)[0].last_run["code"] == "SOURCE_LOCATION_CHANGED"
    audit = AuditTrail(engine)
    with pytest.raises(ConfigurationError, match="--reason"):
        CursorDecision("adopt", "  ")
    adopted = read(engine, replica_url, source_id="so-a", audit=audit,
                   decision=CursorDecision("adopt", "the database moved to the new server", actor="tester"))
    assert adopted.read == 0 and adopted.decision["refused"]["code"] == "SOURCE_LOCATION_CHANGED"
    # the replica goes on where the primary would have: only the new changes are read
    advance(replica_url, 0, seed=41, changes=80)
    more = read(engine, replica_url, source_id="so-a")
    assert more.read == more.enqueued > 0 and more.duplicates == 0
    assert_each_once(engine, replica_url)
    entry = audit_entries(engine, "intake.adopt_cursor")
    assert len(entry) == 1
    body = json.loads(audit.body(entry[0]))
    assert body["actor"] == "tester" and body["reason"] == "the database moved to the new server"
    assert body["previous"]["location"] == sql_location(url) and body["location"] == sql_location(replica_url)
    # the decision was taken once: adopting again has nothing to adopt
    with pytest.raises(ConfigurationError, match="nothing to adopt"):
        read(engine, replica_url, source_id="so-a", audit=audit, decision=CursorDecision("adopt", "again"))


def test_another_mapping_under_the_same_identity_is_refused(engine, tmp_path):
    url = agency_db(tmp_path / "a.db", 0, seed=42, dossiers=10)
    read(engine, url, source_id="so-a")
    other = tmp_path / "renamed.yaml"
    from importlib import resources

    shipped = resources.files("lienthong.mappings").joinpath("sources", "onestop_sandbox.yaml").read_text("utf-8")
    other.write_text(shipped.replace("name: onestop_sandbox", "name: vendor_x"), encoding="utf-8")
    from lienthong.mappings.dossier import DossierMapping

    with SqlSource(url, DossierMapping.load(other)) as source, pytest.raises(SourceMappingChanged):
        intake_once(engine, source, source_id="so-a")


def _restored(tmp_path, engine, *, changes_after_restore: int):
    """A database read past its backup, then restored from it and written again (another future)."""
    db = tmp_path / "a.db"
    url = agency_db(db, 0, seed=51, dossiers=50)
    copy_db(db, tmp_path / "backup.db")
    advance(url, 0, seed=51, changes=200)
    first = read(engine, url)
    copy_db(tmp_path / "backup.db", db)  # the restore
    if changes_after_restore:
        advance(url, 0, seed=99, changes=changes_after_restore)  # the one-stop system works on, differently
    return url, first


@pytest.mark.parametrize("after, refusal", [(0, SourceBehindCursor), (60, SourceBehindCursor),
                                            (500, SourceKeysMoved)])
def test_a_restore_from_an_older_backup_is_refused_then_reset_without_skipping(engine, tmp_path, after, refusal):
    url, first = _restored(tmp_path, engine, changes_after_restore=after)
    before = len(outbox(engine))
    with pytest.raises(refusal) as refused:
        read(engine, url)
    assert "of hoso" in str(refused.value) and "--reset-cursor" in str(refused.value)
    assert len(outbox(engine)) == before  # nothing read past the refusal
    audit = AuditTrail(engine)
    again = read(engine, url, audit=audit, decision=CursorDecision("reset", "restored from the 02:00 backup"))
    assert again.decision["refused"]["code"] == refusal.code
    # the rows the backup holds unchanged were taken in before: duplicates; the rest is new
    assert again.read == change_count(url) == again.enqueued + again.duplicates
    assert again.duplicates > 0
    if after:
        assert again.enqueued > 0 and again.key_reused > 0  # ids written again after the restore
    assert_each_once(engine, url)
    assert stored_cursor(engine, first.source) == again.cursor
    assert len(audit_entries(engine, "intake.reset_cursor")) == 1


# ------------------------------------------------------------------------------------------------
# cursors stored before identities existed (migration 0008)
# ------------------------------------------------------------------------------------------------
def _legacy_store(db_url, onestop_url, tmp_path):
    """A store at revision 0007 whose intake read ``onestop_url`` under the mapping's name."""
    from lienthong.hub.store import make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine, "0007")
    with SqlSource(onestop_url, mapping()) as source:
        batch = next(iter(source.changes(None)))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO intake_cursors (source, cursor, updated_at) VALUES (:s, :c, :t)"),
                     {"s": "onestop_sandbox", "c": batch.cursor, "t": "2026-11-30 00:00:00"})
    return engine, batch


def test_a_cursor_from_before_identities_is_refused_until_adopted(db_url, tmp_path, monkeypatch):
    monkeypatch.delenv("LIENTHONG_ONESTOP_URL", raising=False)
    monkeypatch.delenv("LIENTHONG_INBOX", raising=False)
    from lienthong.hub.store import upgrade

    url = agency_db(tmp_path / "a.db", 0, seed=61, dossiers=300)  # more than one batch
    engine, batch = _legacy_store(db_url, url, tmp_path)
    try:
        upgrade(engine)
        (state,) = source_states(engine)
        assert state.unclaimed and state.mapping == "onestop_sandbox" and state.source == "onestop_sandbox"
        with pytest.raises(SourceCursorUnclaimed) as refused:
            read(engine, url)
        assert "onestop_sandbox" in str(refused.value) and "--adopt-cursor" in str(refused.value)
        adopted = read(engine, url, audit=AuditTrail(engine),
                       decision=CursorDecision("adopt", "this hub only ever read agency A's database"))
        # resumed after the legacy position: the first batch is not read again
        assert adopted.read == change_count(url) - len(batch)
        (state,) = source_states(engine)
        assert state.source == adopted.source and state.location == sql_location(url)
    finally:
        engine.dispose()


def test_a_cursor_from_before_identities_is_carried_over_when_the_environment_names_its_source(
        db_url, tmp_path, monkeypatch):
    from lienthong.hub.store import upgrade

    url = agency_db(tmp_path / "a.db", 0, seed=62, dossiers=300)
    engine, batch = _legacy_store(db_url, url, tmp_path)
    monkeypatch.setenv("LIENTHONG_ONESTOP_URL", url)
    monkeypatch.delenv("LIENTHONG_INBOX", raising=False)
    try:
        upgrade(engine)
        (state,) = source_states(engine)
        assert state.source == derived_source_id("onestop_sandbox", sql_location(url))
        assert state.location == sql_location(url) and state.kind == "sql"
        resumed = read(engine, url)
        assert resumed.read == change_count(url) - len(batch)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_after_a_restore_nothing_is_skipped_or_applied_twice_at_the_portal(engine, tmp_path, conn_home, make_sandbox):
    from collections import Counter

    from lienthong.connectors.dvc_portal import DvcPortalClient
    from lienthong.connectors.soap import SoapConnector
    from lienthong.hub.delivery.engine import deliver_once
    from lienthong.hub.delivery.retry import RetryPolicy
    from lienthong.hub.store.models import DeadLetter, OutboxEvent
    from national_helpers import settings_for
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    sandbox = make_sandbox(procedures=300)
    audit = AuditTrail(engine)
    portal = DvcPortalClient(SoapConnector(settings_for(conn_home, sandbox.base_url), "dvc_portal", audit=audit))
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_attempts=3)

    def push_all():
        for _ in range(500):
            done = deliver_once(engine, portal, worker_id="w", batch_size=50, policy=policy)
            if done.claimed == 0:
                return

    url, first = _restored(tmp_path, engine, changes_after_restore=0)
    push_all()
    advance(url, 0, seed=99, changes=400)  # after the restore the one-stop system works on, differently
    with pytest.raises(SourceKeysMoved):
        read(engine, url)
    read(engine, url, audit=audit, decision=CursorDecision("reset", "restored from the 02:00 backup"))
    push_all()
    assert_each_once(engine, url)  # nothing skipped: every row the database holds now is an event
    with Session(engine) as s:
        states = dict(s.execute(select(OutboxEvent.state, func.count()).group_by(OutboxEvent.state)).all())
        reasons = set(s.scalars(select(DeadLetter.reason_code)))
        blocked = set(s.scalars(select(OutboxEvent.partition_key).where(OutboxEvent.state == "pending")))
        dead = set(s.scalars(select(OutboxEvent.partition_key).where(OutboxEvent.state == "dead")))
    # every event reached the portal, or was refused by it for a reason it gave (a dossier that the
    # restore sent back in time against what the portal already holds), never dropped; what still
    # waits, waits behind such a refusal in its own dossier (for an operator's replay or discard)
    assert set(states) <= {"delivered", "dead", "pending"} and states["delivered"] > 0
    assert blocked <= dead
    assert reasons <= {"TRANG_THAI_KHONG_HOP_LE", "THU_TU_KHONG_HOP_LE"}, reasons
    # nothing applied twice: no step accepted twice, no snapshot of the same content accepted twice
    from lienthong.sandbox.onestop import OneStopDatabase

    with OneStopDatabase(url, create=False) as db:
        codes = {r["so_ho_so"] for r in db.dossiers()}
    accepted = Counter()
    for code in codes:
        for event in sandbox.store.dossier_history(code):
            assert not event.duplicate, f"{code}: a step reached the portal twice"
            if event.accepted:
                accepted[(code, event.kind, json.dumps(event.data, sort_keys=True))] += 1
    assert accepted and max(accepted.values()) == 1
