"""Search, show and dossier timeline over a ledger of real signed exchanges (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from audit_ledger_data import MA_HO_SO, MA_HO_SO_2, MA_TTHC, OWNER, fill_ledger
from lienthong.hub.audit import AuditTrail
from lienthong.hub.audit.query import (
    SearchQuery,
    dossier_timeline,
    extract_subjects,
    index_position,
    load_entry,
    rebuild_index,
    search,
    update_index,
    verify_entry_signature,
)
from lienthong.hub.store.models import AuditEntry, AuditSubject
from lienthong.signing.cli import trust_store_for
from national_helpers import settings_for
from sqlalchemy import func, select, update


@pytest.fixture
def ledger(engine, conn_home, sandbox):
    return fill_ledger(engine, conn_home, sandbox)


@pytest.fixture
def trust(conn_home):
    return trust_store_for(settings_for(conn_home, None))


def seqs(entries):
    return [e.seq for e in entries]


def subject_rows(engine):
    with engine.connect() as conn:
        return sorted(conn.execute(select(AuditSubject.kind, AuditSubject.value, AuditSubject.seq)).all())


def test_search_by_dossier_finds_every_request_and_reply_about_it(engine, ledger):
    newest = search(engine, SearchQuery(dossier=MA_HO_SO))
    assert seqs(newest) == [8, 7, 6, 5, 4, 3, 2, 1]
    assert seqs(search(engine, SearchQuery(dossier=MA_HO_SO, oldest_first=True, limit=3))) == [1, 2, 3]
    # the second dossier was only in the first DongBoHoSoMC
    assert seqs(search(engine, SearchQuery(dossier=MA_HO_SO_2))) == [2, 1]
    assert search(engine, SearchQuery(dossier="000.00.04.G10-20991231-9999999")) == []


def test_search_by_procedure_covers_dossier_pushes_and_catalogue_reads(engine, ledger):
    assert seqs(search(engine, SearchQuery(procedure=MA_TTHC))) == [8, 7, 2, 1]
    found = search(engine, SearchQuery(procedure=ledger.procedure_code))
    assert {e.operation for e in found} >= {"LayThuTuc"}
    assert set(ledger.procedure) <= set(seqs(found))


def test_filters_combine(engine, ledger):
    assert seqs(search(engine, SearchQuery(partner="csdl_tthc", direction="in"))) == [12, 10]
    assert seqs(search(engine, SearchQuery(dossier=MA_HO_SO, operation="DongBoHoSoMC", outcome="ok"))) == [8, 2]
    first = load_entry(engine, 1).entry
    # DocumentId matches the request's id and the reply's correlation id: both show
    assert seqs(search(engine, SearchQuery(document=first.document_id))) == [2, 1]
    now = datetime.now(UTC)
    assert len(search(engine, SearchQuery(since=now - timedelta(minutes=5), limit=None))) == 12
    assert search(engine, SearchQuery(until=now - timedelta(minutes=5))) == []
    assert search(engine, SearchQuery(since=now + timedelta(minutes=5))) == []


def test_the_index_is_filled_lazily_and_never_twice(engine, ledger, conn_home, sandbox):
    assert index_position(engine) == (0, 0)  # appending did not parse anything
    search(engine, SearchQuery(dossier=MA_HO_SO))
    assert index_position(engine) == (12, 0)
    before = subject_rows(engine)
    assert update_index(engine).indexed == 0
    assert subject_rows(engine) == before
    # new exchanges are found by the next search without any explicit step
    fill_ledger(engine, conn_home, sandbox)
    assert seqs(search(engine, SearchQuery(dossier=MA_HO_SO, limit=2))) == [20, 19]
    assert index_position(engine)[0] == 24
    assert len(subject_rows(engine)) == 2 * len(before)


def test_unparseable_bodies_are_indexed_as_such_and_do_not_block_the_rest(engine, ledger):
    audit = AuditTrail(engine)
    bad = audit.record(direction="in", partner="dvc_portal", operation="DongBoHoSoMC", outcome="rejected",
                       raw=b"<soap:Envelope><MaHoSo>" + MA_HO_SO.encode())
    later = audit.record(direction="out", partner="dvc_portal", operation="TraCuuHoSo", outcome="sent",
                         raw=f"<TraCuuHoSo><MaHoSo>{MA_HO_SO}</MaHoSo></TraCuuHoSo>".encode())
    report = update_index(engine)
    assert (report.indexed, report.unparsed, report.last_seq) == (14, 1, later)
    assert seqs(search(engine, SearchQuery(unparsed=True))) == [bad]
    assert later in seqs(search(engine, SearchQuery(dossier=MA_HO_SO)))
    reason = [v for k, v, s in subject_rows(engine) if s == bad]
    assert reason and reason[0].startswith("[XML_MALFORMED]")


def test_rebuild_gives_the_same_index(engine, ledger):
    update_index(engine)
    before = subject_rows(engine)
    with engine.begin() as conn:  # the index is derived data: damage it
        conn.execute(AuditSubject.__table__.delete().where(AuditSubject.seq < 5))
    report = rebuild_index(engine, batch_size=5)
    assert report.indexed == 12 and subject_rows(engine) == before


def test_concurrent_indexers_index_each_entry_once(engine):
    audit = AuditTrail(engine)
    audit.record_many([{"direction": "out", "partner": "dvc_portal", "operation": "TraCuuHoSo", "outcome": "sent",
                        "raw": f"<TraCuuHoSo><MaHoSo>H-{i % 50}</MaHoSo></TraCuuHoSo>".encode()} for i in range(3000)])
    errors = []

    def run():
        try:
            update_index(engine, batch_size=100)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AuditSubject)).scalar_one() == 3000
    assert len(search(engine, SearchQuery(dossier="H-7", limit=None))) == 60


def test_extract_subjects_reads_json_records_of_the_hub():
    found, problem = extract_subjects(b'{"partition_key": "H-1", "MaTTHC": "1.2"}', "outbox.discard")
    assert problem is None and found == {("dossier", "H-1"), ("procedure", "1.2")}
    assert extract_subjects(b"", "DongBoHoSoMC") == (set(), None)  # a timeout has no body: nothing wrong
    assert extract_subjects(b"{oops", "x")[1].startswith("JSON body does not parse")


# --- show: the stored bytes and their signature ---------------------------------------------------
def test_show_reverifies_the_signature_of_requests_and_replies(engine, ledger, trust):
    request, reply = load_entry(engine, 1), load_entry(engine, 2)
    assert request.body_problem is None and request.raw.startswith(b"<?xml")
    check = verify_entry_signature(request.entry, request.raw, trust)
    assert check.status == "valid" and check.signer_agency == "000.00.00.G10"
    assert check.verified_at == request.entry.recorded_at
    check = verify_entry_signature(reply.entry, reply.raw, trust)
    assert check.status == "valid" and check.signer_agency == "000.00.00.G22"


def test_an_edited_message_fails_verification_with_the_specific_check(engine, ledger, trust):
    detail = load_entry(engine, 1)
    forged = detail.raw.replace(OWNER.encode(), "Nguyễn Văn Bình".encode())
    assert forged != detail.raw
    seq = AuditTrail(engine).record(direction="out", partner="dvc_portal", operation="DongBoHoSoMC", raw=forged,
                                    outcome="sent", from_agency="000.00.00.G10")
    forged_entry = load_entry(engine, seq)
    check = verify_entry_signature(forged_entry.entry, forged_entry.raw, trust)
    assert check.status == "invalid" and check.code == "SIGNATURE_DIGEST_MISMATCH"


def test_a_message_signed_by_another_agency_than_the_recorded_sender_is_invalid(engine, ledger, trust):
    detail = load_entry(engine, 1)
    seq = AuditTrail(engine).record(direction="in", partner="dvc_portal", operation="DongBoHoSoMC", raw=detail.raw,
                                    outcome="ok", from_agency="000.00.00.G22")
    moved = load_entry(engine, seq)
    check = verify_entry_signature(moved.entry, moved.raw, trust)
    assert check.status == "invalid" and check.code == "WRONG_SENDER"
    assert "000.00.00.G10" in check.message and "000.00.00.G22" in check.message


def test_certificates_are_checked_at_the_time_of_recording(engine, ledger, trust):
    detail = load_entry(engine, 1)
    later = datetime.now(UTC) + timedelta(days=365 * 20)
    seq = AuditTrail(engine).record(direction="out", partner="dvc_portal", operation="DongBoHoSoMC", raw=detail.raw,
                                    outcome="sent", from_agency="000.00.00.G10", recorded_at=later)
    replayed = load_entry(engine, seq)
    check = verify_entry_signature(replayed.entry, replayed.raw, trust)
    assert check.status == "invalid" and check.code == "CERTIFICATE_EXPIRED"


def test_bodies_without_a_signature_say_why(engine, trust):
    audit = AuditTrail(engine)
    timeout = audit.record(direction="in", partner="dvc_portal", operation="TraCuuHoSo", raw=b"", outcome="timeout",
                           error="dvc_portal did not answer within 30 s")
    record = audit.record(direction="out", partner="hub", operation="AuditUnmask", raw=b'{"reason": "x"}',
                          outcome="ok")
    from lienthong.connectors.soapframe import build_fault

    fault = audit.record(direction="in", partner="dvc_portal", operation="TraCuuHoSo", outcome="fault",
                         raw=build_fault("BUSINESS_REJECTED", "Hồ sơ không tồn tại"))
    checks = {seq: verify_entry_signature(load_entry(engine, seq).entry, load_entry(engine, seq).raw, trust)
              for seq in (timeout, record, fault)}
    assert checks[timeout].status == "absent" and "did not answer within 30 s" in checks[timeout].message
    assert checks[record].status == "unsigned" and "not XML" in checks[record].message
    assert checks[fault].status == "unsigned" and "BUSINESS_REJECTED" in checks[fault].message


def test_a_body_edited_in_the_database_is_reported(engine, ledger):
    import zlib

    with engine.begin() as conn:
        conn.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(body=zlib.compress(b"<x/>")))
    detail = load_entry(engine, 3)
    assert detail.body_problem and "bytes" in detail.body_problem
    assert load_entry(engine, 999) is None


# --- the dossier's timeline -------------------------------------------------------------------------------
def test_dossier_timeline_pairs_requests_with_replies_in_order(engine, ledger):
    items, unparsed = dossier_timeline(engine, MA_HO_SO)
    assert unparsed == 0
    assert [(i.request.seq, i.reply.seq) for i in items] == [(1, 2), (3, 4), (5, 6), (7, 8)]
    assert [i.first.operation for i in items] == ["DongBoHoSoMC", "CapNhatTienDoHoSoMC", "TraCuuHoSo",
                                                   "DongBoHoSoMC"]
    assert [i.status for i in items] == ["2", "4", "2", "10"]
    assert [s["TrangThai"] for s in items[1].steps] == ["2", "4"]
    assert items[0].answer.startswith("0 ") and items[2].answer == "found"
    assert all(i.outcome == "ok" for i in items)
    assert items[0].request_records[0]["ChuHoSo"] == OWNER  # raw data; views mask it (see the CLI tests)


def test_timeline_keeps_a_timed_out_reply_with_its_request(engine, ledger):
    audit = AuditTrail(engine)
    request = audit.record(direction="out", partner="dvc_portal", operation="TraCuuHoSo", outcome="sent",
                           raw=f"<TraCuuHoSo><MaHoSo>{MA_HO_SO}</MaHoSo></TraCuuHoSo>".encode(),
                           document_id="REQ-1", correlation_id="REQ-1")
    reply = audit.record(direction="in", partner="dvc_portal", operation="TraCuuHoSo", outcome="timeout",
                         raw=b"", document_id="REQ-1", correlation_id="REQ-1", error="no answer within 30 s")
    items, _ = dossier_timeline(engine, MA_HO_SO)
    assert (items[-1].request.seq, items[-1].reply.seq, items[-1].outcome) == (request, reply, "timeout")


def test_a_discarded_dead_letter_joins_its_dossiers_timeline(engine, ledger):
    import json

    from lienthong.hub.delivery.outbox import DiscardedDeadLetter, audit_discard

    decided = DiscardedDeadLetter(dead_letter_id=3, event_id=17, partition_key=MA_HO_SO, idempotency_key="k-17",
                                  reason_code="SCHEMA_INVALID", document_id=None, discard_reason="trùng hồ sơ",
                                  actor="vận hành", discarded_at=datetime(2026, 11, 22, 8, 0, tzinfo=UTC))
    audit_discard(AuditTrail(engine))(decided)
    items, _ = dossier_timeline(engine, MA_HO_SO)
    last = items[-1]
    assert (last.first.operation, last.outcome, last.reply) == ("outbox.discard", "discarded", None)
    assert last.request_records[0]["discard_reason"] == "trùng hồ sơ"
    assert json.loads(AuditTrail(engine).body(last.first.seq))["partition_key"] == MA_HO_SO


def test_messages_in_the_earlier_envelope_shape_still_verify(engine, conn_home, trust):
    """Years of messages in the hub's earlier shape (bare edXMLEnvelope, signature as its last child)
    stay verifiable after the switch to the edXML document the axis reads."""
    from lienthong.connectors.payload import element
    from lienthong.connectors.soapframe import wrap_soap
    from lienthong.hub.envelope import Party, build_legacy_envelope
    from lienthong.signing.cli import signer_for

    signer = signer_for(settings_for(conn_home, None))
    payload = element("urn:lienthong:dvc:1", "TraCuuHoSo", {"MaHoSo": MA_HO_SO}, prefix="dvc")
    message = wrap_soap(signer.sign(build_legacy_envelope(
        sender=Party(signer.agency_code, "Bộ"), recipients=[Party("000.00.00.G22", "Văn phòng Chính phủ")],
        subject="TraCuuHoSo", payload=payload)))
    assert b"<edXML:edXMLEnvelope" in message and b"<edXML xmlns" not in message
    audit = AuditTrail(engine)
    seqs = [audit.record(direction="out", partner="dvc_portal", operation="TraCuuHoSo", raw=raw, outcome="sent",
                         from_agency=signer.agency_code)
            for raw in (message, message.replace(MA_HO_SO.encode(), b"000.00.00.G10-20260101-0000009"))]
    checks = [verify_entry_signature(load_entry(engine, s).entry, load_entry(engine, s).raw, trust) for s in seqs]
    assert checks[0].status == "valid" and checks[0].signer_agency == signer.agency_code
    assert checks[1].status == "invalid" and checks[1].code == "SIGNATURE_DIGEST_MISMATCH"
