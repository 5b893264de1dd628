"""The outbox: idempotent enqueue in the caller's transaction, ordered and exclusive claims,
leases and takeover, retries, dead letters (replay, discard) and the status figures.

Every test runs on SQLite and, with LIENTHONG_TEST_PG_URL, on PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from lienthong.hub.audit import AuditTrail
from lienthong.hub.delivery import outbox
from lienthong.hub.delivery.outbox import OutboxChange
from lienthong.hub.delivery.retry import RetryPolicy
from lienthong.hub.store import make_engine, session_factory
from lienthong.hub.store.models import DeadLetter, OutboxEvent
from sqlalchemy import func, select

T0 = datetime(2026, 6, 9, 8, 0, tzinfo=UTC)
NO_JITTER = RetryPolicy(initial_delay=10.0, multiplier=2.0, max_delay=300.0, jitter=0.0, max_attempts=3)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ma(n: int) -> str:
    return f"G10-20260609-{n:07d}"


def snapshot(n: int, version: int, status: int = 2, changed: datetime | None = None) -> OutboxChange:
    return OutboxChange(kind="dossier", source_key=f"hoso:{ma(n)}:{version}",
                        payload={"MaHoSo": ma(n), "TrangThaiHoSo": status, "GhiChu": f"v{version}"},
                        source_changed_at=changed or T0)


def step(n: int, step_id: int) -> OutboxChange:
    return OutboxChange(kind="step", source_key=f"buoc:{step_id}",
                        payload={"MaHoSo": ma(n), "NguoiXuLy": "Trần Văn Đức", "ThoiDiemXuLy": "20260609090000",
                                 "NoiDungXuLy": "Thẩm định", "TrangThai": 4},
                        source_changed_at=T0)


def enqueue(engine, changes, now: datetime = T0) -> outbox.EnqueueResult:
    with session_factory(engine).begin() as session:
        return outbox.enqueue(session, changes, now=now)


def events(engine) -> dict[int, dict]:
    with engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(OutboxEvent.__table__)).mappings()}


def ids_by_partition(claim: outbox.OutboxClaim) -> dict[str, list[int]]:
    return {key: [e.id for e in evs] for key, evs in claim.partitions.items()}


# --- enqueue ----------------------------------------------------------------------------------------
def test_enqueue_is_idempotent_on_the_source_key(engine):
    first = enqueue(engine, [snapshot(1, 1), snapshot(1, 2), step(1, 7), snapshot(2, 1), snapshot(1, 1)])
    assert (first.inserted, first.duplicates) == (4, 1)
    assert list(first.ids) == sorted(first.ids)
    again = enqueue(engine, [snapshot(1, 2), snapshot(2, 1), snapshot(2, 2)])
    assert (again.inserted, again.duplicates) == (1, 2)
    stored = events(engine)
    assert len(stored) == 5
    keys_in_order = [row["idempotency_key"] for _, row in sorted(stored.items())]
    assert keys_in_order == [f"hoso:{ma(1)}:1", f"hoso:{ma(1)}:2", "buoc:7", f"hoso:{ma(2)}:1", f"hoso:{ma(2)}:2"]
    row = stored[first.ids[0]]
    assert (row["state"], row["attempts"], row["partition_key"], row["kind"]) == ("pending", 0, ma(1), "dossier")
    assert json.loads(row["payload"]) == {"MaHoSo": ma(1), "TrangThaiHoSo": 2, "GhiChu": "v1"}
    assert row["source_changed_at"] == T0 and row["next_attempt_at"] == T0


def test_enqueue_belongs_to_the_callers_transaction(engine):
    sessions = session_factory(engine)
    with pytest.raises(RuntimeError), sessions.begin() as session:
        outbox.enqueue(session, [snapshot(1, 1)], now=T0)
        raise RuntimeError("the intake failed to move its cursor")
    assert events(engine) == {}
    with engine.begin() as conn:  # a Connection works as well as a Session
        assert outbox.enqueue(conn, [snapshot(1, 1)], now=T0).inserted == 1
    assert len(events(engine)) == 1


def test_enqueue_accepts_mappings_and_objects_with_the_change_fields(engine):
    as_mapping = {"kind": "dossier", "source_key": "hoso:x:1", "payload": {"MaHoSo": ma(1), "TrangThaiHoSo": 1}}
    as_object = SimpleNamespace(kind="step", source_key="buoc:1", source_changed_at=at(-60),
                                payload={"MaHoSo": ma(1), "NguoiXuLy": "A", "ThoiDiemXuLy": "20260609090000",
                                         "NoiDungXuLy": "x", "TrangThai": 2})
    assert enqueue(engine, [as_mapping, as_object]).inserted == 2
    stored = sorted(events(engine).values(), key=lambda r: r["id"])
    assert stored[0]["source_changed_at"] == T0  # defaults to the time of enqueueing
    assert stored[1]["source_changed_at"] == at(-60)


@pytest.mark.parametrize("change, message", [
    (OutboxChange("hoso", "k1", {"MaHoSo": "G10-20260609-0000001"}), "k1: kind must be one of dossier, step"),
    (OutboxChange("dossier", "k2", {"TrangThaiHoSo": 2}), "k2: MaHoSo"),
    (OutboxChange("dossier", "k3", {"MaHoSo": "G10-20260609-0000001", "TrangThai": 2}),
     "k3: dossier payload has fields the portal does not know: TrangThai"),
    (OutboxChange("step", "k4", {"MaHoSo": "G10-20260609-0000001", "TrangThaiHoSo": 2}),
     "k4: step payload has fields the portal does not know: TrangThaiHoSo"),
    (OutboxChange("dossier", "k5", {"MaHoSo": "G10-20260609-0000001"}, source_changed_at=datetime(2026, 6, 9)),
     "k5: source_changed_at must be a timezone-aware datetime"),
    (OutboxChange("dossier", "", {"MaHoSo": "G10-20260609-0000001"}), "source_key must be a non-empty string"),
    (OutboxChange("dossier", "k7", {"MaHoSo": "G10-20260609-0000001", "GhiChu": {1, 2}}), "k7: payload is not JSON"),
    ({"kind": "dossier", "payload": {}}, "lacks source_key"),
])
def test_malformed_changes_are_refused_before_anything_is_written(engine, change, message):
    with pytest.raises(ValueError, match=message):
        enqueue(engine, [snapshot(9, 1), change])
    assert events(engine) == {}


# --- claiming ---------------------------------------------------------------------------------------
def test_claim_takes_each_dossier_from_its_oldest_event_in_order(engine):
    ids = enqueue(engine, [snapshot(1, 1), snapshot(2, 1), snapshot(1, 2), step(1, 1), snapshot(3, 1),
                           snapshot(2, 2)]).ids
    claim = outbox.claim(engine, "w1", max_events=10, now=T0)
    assert ids_by_partition(claim) == {ma(1): [ids[0], ids[2], ids[3]], ma(2): [ids[1], ids[5]], ma(3): [ids[4]]}
    assert list(claim.partitions) == [ma(1), ma(2), ma(3)]  # oldest partition first
    assert claim.event_ids == ids and len(claim) == 6
    assert claim.lease_expires_at == at(300) and not claim.taken_over
    first = claim.partitions[ma(1)][0]
    assert (first.kind, first.idempotency_key, first.payload["GhiChu"], first.attempts) == (
        "dossier", f"hoso:{ma(1)}:1", "v1", 0)
    assert not outbox.claim(engine, "w2", now=T0)  # a partition belongs to one worker at a time


def test_claim_budget_goes_to_breadth_first_and_respects_per_partition(engine):
    changes = [snapshot(n, v) for v in (1, 2, 3, 4) for n in (1, 2, 3)]
    ids = enqueue(engine, changes).ids
    claim = outbox.claim(engine, "w1", max_events=7, per_partition=3, now=T0)
    by = ids_by_partition(claim)
    assert [len(by[ma(n)]) for n in (1, 2, 3)] == [3, 2, 2]  # everyone's second before anyone's third
    assert by[ma(1)] == [ids[0], ids[3], ids[6]]
    rest = outbox.claim(engine, "w2", max_events=10, now=T0)
    assert not rest  # the unclaimed tails wait behind their claimed heads


def test_a_later_event_is_never_claimable_while_an_earlier_one_waits(engine):
    ids = enqueue(engine, [snapshot(1, 1), snapshot(1, 2), snapshot(2, 1)]).ids
    claim = outbox.claim(engine, "w1", now=T0)
    outcome = outbox.retry_later(engine, "w1", [ids[0]], error_code="SERVICE_UNAVAILABLE", error="503",
                                 policy=NO_JITTER, now=T0)
    assert outcome.rescheduled == (ids[0],)
    assert outbox.release(engine, "w1", [ids[1]]) == 1
    outbox.complete(engine, [ids[2]], document_id="ob-hs0-x", now=T0)
    assert claim.event_ids == ids
    # the dossier's first event is not due before 10 s: its second must not overtake it
    assert not outbox.claim(engine, "w2", now=at(9))
    again = outbox.claim(engine, "w2", now=at(10))
    assert ids_by_partition(again) == {ma(1): [ids[0], ids[1]]}
    assert again.partitions[ma(1)][0].attempts == 1


def test_lease_expiry_hands_the_events_to_another_worker_and_fences_the_old_one(engine):
    ids = enqueue(engine, [snapshot(1, 1), snapshot(1, 2), snapshot(2, 1)]).ids
    outbox.claim(engine, "crashed", lease=60, now=T0)
    assert not outbox.claim(engine, "w2", now=at(59))
    taken = outbox.claim(engine, "w2", lease=60, now=at(60))
    assert ids_by_partition(taken) == {ma(1): [ids[0], ids[1]], ma(2): [ids[2]]}
    assert taken.taken_over == frozenset(ids)
    assert {e.attempts for e in taken.events} == {1}  # the lost try counts
    assert events(engine)[ids[0]]["last_error_code"] == "LEASE_EXPIRED"
    # the old holder can no longer change them ...
    assert outbox.renew(engine, "crashed", ids, lease=60, now=at(61)) == set()
    assert outbox.release(engine, "crashed", ids) == 0
    assert outbox.dead_letter(engine, "crashed", ids, reason_code="X", reason="late") == {}
    assert outbox.retry_later(engine, "crashed", ids, error_code="X", error="late", policy=NO_JITTER) == \
        outbox.RetryOutcome()
    assert {row["claimed_by"] for row in events(engine).values()} == {"w2"}
    # ... but a delivery it did get through is a fact, whoever holds the event now
    assert outbox.complete(engine, [ids[2]], document_id="ob-hs0-late", now=at(62)) == 1
    assert outbox.complete(engine, [ids[2]], document_id="ob-hs0-again", now=at(63)) == 0  # final stays final
    assert outbox.renew(engine, "w2", ids, lease=60, now=at(100)) == {ids[0], ids[1]}
    assert events(engine)[ids[0]]["lease_expires_at"] == at(160)


def test_retries_back_off_by_the_policy_then_give_up_into_dead_letters(engine):
    (event_id,) = enqueue(engine, [snapshot(1, 1)]).ids
    now = T0
    delays = []
    for _ in range(2):
        outbox.claim(engine, "w1", now=now)
        result = outbox.retry_later(engine, "w1", [event_id], error_code="TIMEOUT", error="no answer in 30 s",
                                    policy=NO_JITTER, now=now)
        assert result.rescheduled == (event_id,)
        row = events(engine)[event_id]
        delays.append((row["next_attempt_at"] - now).total_seconds())
        assert (row["state"], row["last_error_code"], row["last_error"]) == ("pending", "TIMEOUT", "no answer in 30 s")
        now = row["next_attempt_at"]
    assert delays == [10.0, 20.0]
    outbox.claim(engine, "w1", now=now)
    result = outbox.retry_later(engine, "w1", [event_id], error_code="TIMEOUT", error="no answer in 30 s",
                                policy=NO_JITTER, now=now, document_id="ob-hs0-abc", request_bytes=b"<signed/>")
    assert result.exhausted == (event_id,) and len(result.dead_letter_ids) == 1
    row = events(engine)[event_id]
    assert (row["state"], row["attempts"]) == ("dead", 3)
    (letter,) = outbox.dead_letters(engine)
    assert letter.reason_code == "RETRIES_EXHAUSTED"
    assert "gave up after 3 attempt(s); last error TIMEOUT: no answer in 30 s" in letter.reason
    assert (letter.document_id, letter.has_request, letter.has_response) == ("ob-hs0-abc", True, False)


# --- dead letters -----------------------------------------------------------------------------------
def test_a_dead_event_blocks_its_dossier_until_replayed_in_its_place(engine):
    ids = enqueue(engine, [snapshot(1, 1), snapshot(1, 2), snapshot(2, 1)]).ids
    outbox.claim(engine, "w1", now=T0)
    letters = outbox.dead_letter(engine, "w1", [ids[0]], reason_code="TRANG_THAI_KHONG_HOP_LE",
                                 reason="the portal refused the status", document_id="ob-hs1-1",
                                 request_bytes=b"<req/>", response_bytes=b"<resp/>", now=T0)
    assert list(letters) == [ids[0]]
    outbox.release(engine, "w1", [ids[1]])
    outbox.complete(engine, [ids[2]], document_id="ob-hs0-2", now=T0)
    assert not outbox.claim(engine, "w2", now=at(3600))  # v2 must not overtake the dead v1

    with engine.connect() as conn:
        stored = conn.execute(select(DeadLetter.__table__)).mappings().one()
    assert (stored["request_bytes"], stored["response_bytes"], stored["event_id"]) == (b"<req/>", b"<resp/>", ids[0])

    assert outbox.replay(engine, [letters[ids[0]]], now=at(10)) == [ids[0]]
    row = events(engine)[ids[0]]
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, at(10))
    assert ids_by_partition(outbox.claim(engine, "w2", now=at(10))) == {ma(1): [ids[0], ids[1]]}
    assert outbox.dead_letters(engine) == []
    (closed,) = outbox.dead_letters(engine, open_only=False)
    assert closed.replayed_at == at(10)


def test_a_message_is_recorded_on_the_events_it_carries_before_it_is_sent(engine):
    ids = enqueue(engine, [snapshot(1, 1), snapshot(2, 1), snapshot(3, 1)]).ids
    outbox.claim(engine, "w1", max_events=2, now=T0)  # dossiers 1 and 2
    marked = outbox.assign(engine, "w1", [ids[0], ids[1], ids[2]], document_id="ob-hs0-aaaa", now=T0)
    assert marked == {ids[0], ids[1]}  # not the event w1 does not hold
    assert [e.idempotency_key for e in outbox.message_events(engine, "ob-hs0-aaaa")] == [
        f"hoso:{ma(1)}:1", f"hoso:{ma(2)}:1"]
    # the claim that takes them over (lease expired) hands the recorded DocumentId along
    taken = outbox.claim(engine, "w2", now=at(3600))
    assert {e.partition_key: e.document_id for e in taken.events} == {
        ma(1): "ob-hs0-aaaa", ma(2): "ob-hs0-aaaa", ma(3): None}
    # a worker that lost its lease records nothing, and renews nothing
    assert outbox.assign(engine, "w1", [ids[0]], document_id="ob-hs0-bbbb", renew_ids=[ids[1]], lease=60,
                         now=at(3601)) == set()
    assert events(engine)[ids[0]]["document_id"] == "ob-hs0-aaaa"
    # w2 renews its lease on the rest of its claim while marking
    assert outbox.assign(engine, "w2", [ids[2]], document_id="ob-hs0-cccc", renew_ids=[ids[0], ids[1]], lease=600,
                         now=at(3700)) == {ids[2]}
    assert {events(engine)[i]["lease_expires_at"] for i in ids} == {at(4300)}


def test_a_replayed_event_forgets_the_message_that_carried_it(engine):
    (first,) = enqueue(engine, [snapshot(1, 1)]).ids
    outbox.claim(engine, "w1", now=T0)
    outbox.assign(engine, "w1", [first], document_id="ob-hs0-dddd", now=T0)
    letters = outbox.dead_letter(engine, "w1", [first], reason_code="TRANG_THAI_KHONG_HOP_LE", reason="refused",
                                 document_id="ob-hs0-dddd", now=T0)
    outbox.replay(engine, [letters[first]], payloads={letters[first]: {**json.loads(events(engine)[first]["payload"]),
                                                                        "TrangThaiHoSo": 4}}, now=at(10))
    # the portal answered that message; the (amended) replay is a new one
    assert events(engine)[first]["document_id"] is None
    assert outbox.message_events(engine, "ob-hs0-dddd") == []


def test_first_enqueued_at_is_the_outbox_go_live(engine):
    assert outbox.first_enqueued_at(engine) is None
    enqueue(engine, [snapshot(1, 1)], now=at(5))
    enqueue(engine, [snapshot(2, 1)], now=at(50))
    assert outbox.first_enqueued_at(engine) == at(5)


def test_replay_refuses_unknown_and_closed_letters_all_or_nothing(engine):
    ids = enqueue(engine, [snapshot(1, 1), snapshot(2, 1)]).ids
    outbox.claim(engine, "w1", now=T0)
    letters = outbox.dead_letter(engine, "w1", ids, reason_code="BUSINESS_REJECTED", reason="no", now=T0)
    first, second = letters[ids[0]], letters[ids[1]]
    with pytest.raises(LookupError, match="no dead letter 999"):
        outbox.replay(engine, [first, 999])
    assert events(engine)[ids[0]]["state"] == "dead"
    outbox.replay(engine, [first])
    with pytest.raises(ValueError, match=f"{first}.*already replayed or discarded"):
        outbox.replay(engine, [first, second])
    assert events(engine)[ids[1]]["state"] == "dead"
    with pytest.raises(ValueError, match="not being replayed"):
        outbox.replay(engine, [second], payloads={first: {"MaHoSo": ma(1)}})


def test_an_unmappable_change_is_kept_dead_and_replayed_with_a_corrected_payload(engine):
    raw = OutboxChange(kind="dossier", source_key=f"hoso:{ma(1)}:1",
                       payload={"so_ho_so": ma(1), "trang_thai": "CHO_THAM_DINH_LAI"}, partition_key=ma(1))
    with session_factory(engine).begin() as session:
        letter = outbox.enqueue_rejected(session, raw, reason_code="UNMAPPED_STATUS",
                                         reason="trang_thai 'CHO_THAM_DINH_LAI' has no mapping (mappings/x.yaml)",
                                         now=T0)
        outbox.enqueue(session, [snapshot(1, 2)], now=T0)
    with session_factory(engine).begin() as session:
        assert outbox.enqueue_rejected(session, raw, reason_code="UNMAPPED_STATUS", reason="again", now=T0) is None
    assert not outbox.claim(engine, "w1", now=T0)  # the dossier waits for its unmapped change
    (view,) = outbox.dead_letters(engine)
    assert (view.id, view.reason_code, view.has_request) == (letter, "UNMAPPED_STATUS", False)

    with pytest.raises(ValueError, match="fields the portal does not know: so_ho_so, trang_thai"):
        outbox.replay(engine, [letter], payloads={letter: raw.payload})
    fixed = {"MaHoSo": ma(1), "TrangThaiHoSo": 4}
    (event_id,) = outbox.replay(engine, [letter], payloads={letter: fixed}, now=T0)
    claim = outbox.claim(engine, "w1", now=T0)
    assert [e.payload for e in claim.partitions[ma(1)]] == [fixed, snapshot(1, 2).payload]


def test_a_rejected_row_naming_no_dossier_blocks_nothing_until_replayed_into_its_dossier(engine):
    # the shape the intake hands over for a row it could not map (mappings' SourceItem.rejected())
    orphan = {"kind": "dossier", "source_key": "dossier:raw:3f9a", "partition_key": None,
              "payload": {"so_ho_so": None, "trang_thai": "DA_TIEP_NHAN"}}
    with session_factory(engine).begin() as session:
        letter = outbox.enqueue_rejected(session, orphan, reason_code="MISSING_FIELD",
                                         reason="so_ho_so is empty", now=T0)
        (later,) = outbox.enqueue(session, [snapshot(1, 2)], now=T0).ids
    (view,) = outbox.dead_letters(engine)
    assert view.partition_key == outbox.unkeyed_partition("dossier:raw:3f9a")
    assert view.partition_key.startswith("unkeyed:") and len(view.partition_key) <= 64
    assert ids_by_partition(outbox.claim(engine, "w1", now=T0)) == {ma(1): [later]}  # nothing waits for it
    outbox.release(engine, "w1", [later])

    (event_id,) = outbox.replay(engine, [letter], payloads={letter: snapshot(1, 1).payload}, now=T0)
    assert events(engine)[event_id]["partition_key"] == ma(1)
    # read before v2, it now goes first in its dossier
    assert ids_by_partition(outbox.claim(engine, "w1", now=T0)) == {ma(1): [event_id, later]}


def test_discard_gives_up_with_a_reason_unblocks_the_dossier_and_reaches_the_audit_ledger(engine):
    ids = enqueue(engine, [snapshot(1, 1), snapshot(1, 2)]).ids
    outbox.claim(engine, "w1", now=T0)
    letter = outbox.dead_letter(engine, "w1", [ids[0]], reason_code="HOSO_CHUA_TON_TAI", reason="unknown",
                                document_id="ob-td-1", now=T0)[ids[0]]
    outbox.release(engine, "w1", [ids[1]])
    with pytest.raises(ValueError, match="needs a reason"):
        outbox.discard(engine, letter, "  ")
    audit = AuditTrail(engine)
    seen = []

    def hook(decided):
        seen.append(decided)
        outbox.audit_discard(audit)(decided)

    decided = outbox.discard(engine, letter, "superseded by a corrected dossier", actor="operator@bo",
                             on_discarded=hook, now=at(5))
    assert seen == [decided]
    assert (decided.event_id, decided.partition_key, decided.reason_code, decided.actor) == (
        ids[0], ma(1), "HOSO_CHUA_TON_TAI", "operator@bo")
    assert events(engine)[ids[0]]["state"] == "discarded"
    (closed,) = outbox.dead_letters(engine, open_only=False)
    assert (closed.discarded_at, closed.discard_reason) == (at(5), "superseded by a corrected dossier")
    assert ids_by_partition(outbox.claim(engine, "w2", now=at(5))) == {ma(1): [ids[1]]}
    with pytest.raises(ValueError, match="already replayed or discarded"):
        outbox.discard(engine, letter, "twice")
    with pytest.raises(LookupError):
        outbox.discard(engine, 12345, "no such letter")
    assert audit.head()[0] == 1
    assert audit.verify().ok
    body = json.loads(audit.body(1))
    assert body["dead_letter_id"] == letter and body["discard_reason"] == "superseded by a corrected dossier"


# --- status -----------------------------------------------------------------------------------------
def test_stats_show_depth_age_dead_letters_and_freshness(engine):
    changes = [snapshot(n, 1, changed=at(-n)) for n in range(1, 21)] + [snapshot(30, 1), snapshot(31, 1)]
    ids = enqueue(engine, changes, now=T0).ids
    outbox.claim(engine, "w1", max_events=21, now=T0)
    outbox.complete(engine, ids[:20], document_id="ob-hs0-x", now=at(0))  # freshness 1..20 s
    outbox.dead_letter(engine, "w1", [ids[20]], reason_code="X", reason="y", now=T0)
    figures = outbox.stats(engine, now=at(90))
    assert figures.depth == {"pending": 1, "claimed": 0, "delivered": 20, "dead": 1, "discarded": 0}
    assert figures.oldest_pending_age == 90.0
    assert figures.dead_letters == 1
    assert (figures.freshness_p50, figures.freshness_p95, figures.freshness_samples) == (10.0, 19.0, 20)
    assert outbox.stats(engine, now=at(90), window=60).freshness_samples == 0
    empty = outbox.stats(engine, now=at(90), window=1)
    assert (empty.freshness_p50, empty.freshness_p95) == (None, None)
    assert figures.as_dict()["depth"]["delivered"] == 20
    assert outbox.delivered_dossiers(engine, [ma(1), ma(30), ma(99)]) == {ma(1)}


# --- several workers at once ------------------------------------------------------------------------
PARTITIONS, PER_PARTITION = 30, 5


def _fill(engine) -> list[int]:
    changes = [snapshot(n, v) for v in range(1, PER_PARTITION + 1) for n in range(PARTITIONS)]
    return list(enqueue(engine, changes).ids)


def _work(engine, worker: str, sends: list, seed: int, deadline: float) -> None:
    """Claim, "send" each partition's events in order (recording when), fail some at random."""
    rng = random.Random(seed)
    policy = RetryPolicy(initial_delay=0.0, jitter=0.0, max_attempts=1000)
    idle = 0
    while time.monotonic() < deadline and idle < 20:
        claim = outbox.claim(engine, worker, max_events=12, per_partition=3, now=datetime.now(UTC))
        if not claim:
            idle += 1
            time.sleep(0.005)
            continue
        idle = 0
        for events_ in claim.partitions.values():
            for position, event in enumerate(events_):
                if rng.random() < 0.15:  # this send fails: retry it later, release what follows
                    outbox.retry_later(engine, worker, [event.id], error_code="SERVICE_UNAVAILABLE", error="503",
                                       policy=policy)
                    outbox.release(engine, worker, [e.id for e in events_[position + 1:]])
                    break
                sends.append((event.partition_key, event.id, time.monotonic_ns(), worker))
                assert outbox.complete(engine, [event.id], document_id=f"ob-hs1-{event.id:08d}") == 1


def _check_sends(sends, ids: list[int]) -> None:
    assert sorted(i for _, i, _, _ in sends) == sorted(ids), "every event delivered exactly once"
    timeline = defaultdict(list)
    for key, event_id, _when, _worker in sorted(sends, key=lambda s: s[2]):
        timeline[key].append(event_id)
    for key, order in timeline.items():
        assert order == sorted(order), f"dossier {key} delivered out of order: {order}"


def test_threads_claiming_together_deliver_everything_once_and_in_order(engine):
    ids = _fill(engine)
    sends: list = []
    deadline = time.monotonic() + 60
    threads = [threading.Thread(target=_work, args=(engine, f"t{i}", sends, i, deadline)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    _check_sends(sends, ids)
    assert len({w for *_, w in sends}) > 1  # the work really was shared
    assert outbox.stats(engine).depth["delivered"] == len(ids)


def _process_worker(url: str, worker: str, seed: int, barrier, results) -> None:
    try:
        engine = make_engine(url)
        sends: list = []
        barrier.wait(timeout=30)
        _work(engine, worker, sends, seed, time.monotonic() + 60)
        engine.dispose()
        results.put(("ok", sends))
    except BaseException as exc:  # report, do not hang the parent
        results.put(("error", repr(exc)))


@pytest.mark.slow
@pytest.mark.postgres
def test_four_processes_on_postgresql_skip_each_others_partitions(engine, engine_url):
    if engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED across processes is the PostgreSQL path (SQLite is covered by the thread test)")
    ids = _fill(engine)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(engine_url, f"p{i}", i, barrier, results)) for i in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [detail for status, detail in outcomes if status != "ok"]
    assert not errors, errors
    sends = [s for _, batch in outcomes for s in batch]
    _check_sends(sends, ids)
    assert len({w for *_, w in sends}) > 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OutboxEvent)
                            .where(OutboxEvent.state != "delivered")).scalar_one() == 0
