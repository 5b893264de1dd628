"""Delivery of outbox events to the emulated national portal (the sandbox), end to end: signed,
audited, batched, in order per dossier, with retries, dead letters, the breaker and leases.

Time is injected: the outbox and the breaker run on a test clock moved by hand, so retries and
cool-downs are reached without sleeping (the sandbox and the certificates keep real time)."""

from __future__ import annotations

import re
import threading
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.soap import SoapConnector
from lienthong.hub.audit import AuditTrail
from lienthong.hub.delivery import outbox
from lienthong.hub.delivery.breaker import BreakerConfig, CircuitBreaker
from lienthong.hub.delivery.engine import deliver_once, message_document_id
from lienthong.hub.delivery.outbox import ClaimedEvent, OutboxChange
from lienthong.hub.delivery.retry import RetryPolicy
from lienthong.hub.envelope import VN_TZ
from lienthong.hub.errors import ConfigurationError
from lienthong.hub.store import session_factory
from lienthong.hub.store.models import DeadLetter, OutboxEvent
from national_helpers import over_json, settings_for
from sqlalchemy import select

FAST = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=8.0, jitter=0.0, max_attempts=5)
LIFE = [1, 2, 4, 5, 4, 9, 10]  # a dossier's statuses, one snapshot each
DOCUMENT_ID = re.compile(r"[A-Za-z0-9.,:_\-]{8,128}")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def ma(n: int) -> str:
    return f"G10-20260609-{n:07d}"


def hoso(n: int, status: int, version: int, **extra) -> dict:
    """A valid DongBoHoSoMC/HoSo; GhiChu carries the version so the portal's history shows order."""
    record = {
        "MaHoSo": ma(n), "MaTTHC": "1.001012", "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu",
        "MaLinhVuc": "G10-TY", "TenLinhVuc": "Thú y", "KenhThucHien": 2, "ChuHoSo": "Nguyễn Văn An",
        "LoaiDoiTuong": 1, "TrichYeuHoSo": "Kiểm dịch 50 con bò giống nhập khẩu", "NgayNopHoSo": "20260609081530",
        "TrangThaiHoSo": status, "GhiChu": f"v{version}",
    }
    record.update(extra)
    return record


def snapshot(n: int, version: int, status: int, **extra) -> OutboxChange:
    return OutboxChange("dossier", f"hoso:{ma(n)}:{version}", hoso(n, status, version, **extra))


def step(n: int, step_id: int, when: str, status: int = 4) -> OutboxChange:
    return OutboxChange("step", f"buoc:{step_id}", {
        "MaHoSo": ma(n), "NguoiXuLy": "Trần Văn Đức", "ChucDanh": "Chuyên viên", "ThoiDiemXuLy": when,
        "PhongBanXuLy": "Phòng Kiểm dịch động vật", "NoiDungXuLy": f"Bước {step_id}", "TrangThai": status})


def lives(numbers, statuses=LIFE) -> list[OutboxChange]:
    """Each dossier's snapshots, interleaved across dossiers as an intake would read them, with a
    processing step after the second snapshot."""
    changes = []
    for version, status in enumerate(statuses, 1):
        for n in numbers:
            changes.append(snapshot(n, version, status))
            if version == 2:
                changes.append(step(n, 1000 + n, "20260609100000"))
    return changes


def enqueue(engine, changes, clock: Clock | None = None) -> list[int]:
    with session_factory(engine).begin() as session:
        return list(outbox.enqueue(session, changes, now=clock() if clock else None).ids)


def portal_for(engine, conn_home, sandbox, **settings) -> DvcPortalClient:
    connector = SoapConnector(settings_for(conn_home, sandbox.base_url, **settings), "dvc_portal",
                              audit=AuditTrail(engine))
    return DvcPortalClient(connector)


def json_portal(engine, conn_home, sandbox, **settings) -> DvcPortalClient:
    """The portal client over the sandbox's emulation of the portal's JSON adapter."""
    from lienthong.connectors.transport import transport_for

    chosen = over_json(settings_for(conn_home, sandbox.base_url, **settings), sandbox.base_url)
    return DvcPortalClient(transport_for(chosen, "dvc_portal", audit=AuditTrail(engine)))


def states(engine) -> Counter:
    with engine.connect() as conn:
        return Counter(conn.execute(select(OutboxEvent.state)).scalars())


def drain(engine, portal, clock: Clock, *, passes: int = 40, step_seconds: float = 10.0,
          policy: RetryPolicy = FAST, **kw) -> list:
    """Run passes, moving the clock past any backoff between them, until a pass finds nothing to
    claim: what is left then is delivered, dead, or waiting behind a dead event of its dossier."""
    summaries = []
    for _ in range(passes):
        summary = deliver_once(engine, portal, worker_id="w1", policy=policy, clock=clock, **kw)
        summaries.append(summary)
        if summary.claimed == 0 and summary.stopped is None:
            return summaries
        clock.advance(step_seconds)
    raise AssertionError(f"outbox not drained after {passes} passes: {states(engine)}")


def accepted_versions(sandbox, n: int) -> list[int]:
    return [int(e.data["GhiChu"][1:]) for e in sandbox.store.dossier_history(ma(n)) if e.kind == "HoSo" and e.accepted]


def assert_in_order(sandbox, numbers, statuses=LIFE) -> None:
    for n in numbers:
        versions = accepted_versions(sandbox, n)
        assert versions == sorted(versions), f"{ma(n)}: the portal saw versions {versions}"
        assert versions[-1] == len(statuses)
        portal = sandbox.store.get_dossier(ma(n))
        assert portal["trang_thai"] == statuses[-1] and portal["data"]["GhiChu"] == f"v{len(statuses)}"


# --- DocumentId ---------------------------------------------------------------------------------------
def claimed(key: str, payload: dict) -> ClaimedEvent:
    now = datetime.now(UTC)
    return ClaimedEvent(id=1, partition_key=payload["MaHoSo"], kind="dossier", idempotency_key=key, payload=payload,
                        attempts=0, source_changed_at=now, created_at=now)


def test_document_id_is_derived_from_the_events_and_stable():
    a, b = claimed("hoso:a:1", hoso(1, 2, 1)), claimed("hoso:b:1", hoso(2, 2, 1))
    first = message_document_id("DongBoHoSoMC", [a, b], is_updating=False)
    assert DOCUMENT_ID.fullmatch(first) and first.startswith("ob-hs0-")
    assert message_document_id("DongBoHoSoMC", [b, a], is_updating=False) == first  # order does not matter
    # the outbox hands over each payload's stored canonical text: the id is the same either way
    stored = [replace(e, payload_json=outbox.canonical_json(e.payload)) for e in (a, b)]
    assert message_document_id("DongBoHoSoMC", stored, is_updating=False) == first
    others = {
        message_document_id("DongBoHoSoMC", [a, b], is_updating=True),
        message_document_id("DongBoHoSoMC", [a], is_updating=False),
        message_document_id("DongBoHoSoMC", [a, claimed("hoso:b:1", hoso(2, 4, 1))], is_updating=False),
        message_document_id("CapNhatTienDoHoSoMC", [a, b]),
    }
    assert first not in others and len(others) == 4
    with pytest.raises(ValueError, match="isUpdating"):
        message_document_id("CapNhatTienDoHoSoMC", [a], is_updating=True)
    with pytest.raises(ValueError, match="at least one event"):
        message_document_id("DongBoHoSoMC", [], is_updating=False)


# --- the happy path -------------------------------------------------------------------------------------
@pytest.mark.parametrize("senders", [1, 3])
def test_events_reach_the_portal_batched_in_order_and_once(engine, make_sandbox, conn_home, senders):
    sandbox = make_sandbox()
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    numbers = range(1, 6)
    ids = enqueue(engine, lives(numbers), clock)
    # three messages per round (⌈5/2⌉): with senders > 1 they are in flight together
    summary = deliver_once(engine, portal, worker_id="w1", batch_size=2, policy=FAST, clock=clock, senders=senders)
    assert (summary.claimed, summary.delivered, summary.dead, summary.retried) == (len(ids), len(ids), 0, 0)
    assert summary.lookups == 5 and summary.stopped is None and summary.breaker == "closed"
    assert states(engine) == Counter({"delivered": len(ids)})
    assert_in_order(sandbox, numbers)

    by_message = defaultdict(list)
    for n in numbers:
        history = sandbox.store.dossier_history(ma(n))
        assert [e.is_updating for e in history if e.kind == "HoSo"] == [False] + [True] * (len(LIFE) - 1)
        assert [e.kind for e in history].index("QuaTrinhXuLy") == 2  # the step after the second snapshot
        for e in history:
            by_message[e.document_id].append(e.ma_ho_so)
    for document_id, dossiers in by_message.items():
        assert len(dossiers) == len(set(dossiers)) <= 2, f"{document_id} carries {dossiers}"
    assert sandbox.store.count("dvc_portal", "DongBoHoSoMC") == 3 * len(LIFE)  # ⌈5/2⌉ per round

    with engine.connect() as conn:
        documents = dict(conn.execute(select(OutboxEvent.id, OutboxEvent.document_id)).all())
    assert set(documents.values()) <= set(by_message)  # each event names the message that delivered it

    # a later pass knows from the outbox that the portal holds these dossiers: no lookup needed
    enqueue(engine, [snapshot(1, 8, 10)], clock)
    again = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock)
    assert (again.delivered, again.lookups) == (1, 0)
    figures = outbox.stats(engine, now=clock())
    assert figures.depth["delivered"] == len(ids) + 1 and figures.freshness_samples == len(ids) + 1


def test_a_resend_after_a_lost_reply_is_the_same_message(engine, make_sandbox, conn_home):
    sandbox = make_sandbox(timeout_seconds=1.0)
    portal = portal_for(engine, conn_home, sandbox, operation_timeout=0.3)
    clock = Clock()
    enqueue(engine, [snapshot(1, 1, 1), snapshot(2, 1, 1)], clock)
    drain(engine, portal, clock)
    enqueue(engine, [snapshot(1, 2, 2), snapshot(2, 2, 2)], clock)
    sandbox.configure_faults(timeout_rate=1.0)  # the portal applies the message, the reply is lost
    lost = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock)
    assert (lost.messages, lost.retried, lost.delivered) == (1, 2, 0)
    sandbox.configure_faults(timeout_rate=0.0)
    clock.advance(60)
    resent = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock)
    assert resent.delivered == 2
    updates = [m for m in sandbox.store.received("dvc_portal", "DongBoHoSoMC") if m.document_id.startswith("ob-hs1-")]
    assert [m.outcome for m in updates] == ["TIMEOUT", "DUPLICATE"]
    assert updates[0].document_id == updates[1].document_id
    assert accepted_versions(sandbox, 1) == [1, 2]  # applied once, answered twice
    assert sandbox.store.get_dossier(ma(1))["versions"] == 2


class Killed(BaseException):
    """The worker dies right after the portal applied its message, before it learns the answer."""


class DiesAfterApplying:
    """A portal client whose first DongBoHoSoMC reaches the portal and is applied, then the worker dies."""

    def __init__(self, portal: DvcPortalClient) -> None:
        self.portal = portal
        self.transport = portal.transport

    def __getattr__(self, name):
        return getattr(self.portal, name)

    def sync_dossiers(self, dossiers, **kw):
        self.portal.sync_dossiers(dossiers, **kw)
        raise Killed


NEW_SINCE = datetime(2026, 6, 1, tzinfo=UTC)  # before every hoso()'s NgayNopHoSo


def test_a_message_cut_off_by_a_crash_is_sent_again_whole_under_its_document_id(engine, sandbox, conn_home):
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    ids = enqueue(engine, [snapshot(1, 1, 1), snapshot(2, 1, 1), snapshot(3, 1, 1)], clock)
    with pytest.raises(Killed):
        deliver_once(engine, DiesAfterApplying(portal), worker_id="w1", policy=FAST, clock=clock, lease=30,
                     sole_feed_since=NEW_SINCE)
    (applied,) = sandbox.store.received("dvc_portal", "DongBoHoSoMC")
    assert applied.outcome == "OK" and applied.document_id.startswith("ob-hs0-")

    # Another worker takes over with a smaller claim (one dossier) and would look the dossiers up:
    # the portal has them now, so regrouping would send an update, a new message applied again.
    clock.advance(31)
    first = deliver_once(engine, portal, worker_id="w2", policy=FAST, clock=clock, max_events=1)
    assert (first.claimed, first.resent, first.delivered, first.lookups) == (1, 1, 1, 0)
    rest = deliver_once(engine, portal, worker_id="w2", policy=FAST, clock=clock)
    assert (rest.resent, rest.delivered, rest.lookups) == (1, 2, 0)

    sent = sandbox.store.received("dvc_portal", "DongBoHoSoMC")
    assert [m.outcome for m in sent] == ["OK", "DUPLICATE", "DUPLICATE"]
    assert {m.document_id for m in sent} == {applied.document_id}
    for n in (1, 2, 3):
        assert accepted_versions(sandbox, n) == [1]
    with engine.connect() as conn:
        rows = conn.execute(select(OutboxEvent.state, OutboxEvent.document_id).where(OutboxEvent.id.in_(ids))).all()
    assert set(rows) == {("delivered", applied.document_id)}


def test_a_dossier_submitted_since_the_hub_became_the_only_feed_needs_no_lookup(engine, sandbox, conn_home):
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    # dossier 2 reached the portal some other way (an earlier integration): a create is refused,
    # and the hub sends it again as an update, once
    portal.sync_dossiers([hoso(2, 1, 1)], is_updating=False)
    enqueue(engine, [snapshot(1, 1, 1), snapshot(2, 2, 2), snapshot(3, 1, 1)], clock)
    summary = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock, sole_feed_since=NEW_SINCE)
    assert (summary.delivered, summary.lookups, summary.presumed_new, summary.dead) == (3, 0, 3, 0)
    assert accepted_versions(sandbox, 2) == [1, 2]
    assert sandbox.store.received("dvc_portal", "TraCuuHoSo") == []

    # dossiers submitted before that moment may be on the portal already: looked up once each
    enqueue(engine, [snapshot(4, 1, 1), snapshot(5, 1, 1)], clock)
    later = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock,
                         sole_feed_since=datetime(2026, 7, 1, tzinfo=UTC))
    assert (later.delivered, later.lookups, later.presumed_new) == (2, 2, 0)


def test_by_default_the_hub_is_the_only_feed_since_its_first_outbox_event(engine, sandbox, conn_home):
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    enqueue(engine, [snapshot(1, 1, 1)], clock)  # submitted 2026-06-09, long before the outbox began
    fresh = (clock.now + timedelta(days=1)).astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")
    enqueue(engine, [snapshot(2, 1, 1, NgayNopHoSo=fresh)], clock)
    summary = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock)
    assert (summary.delivered, summary.lookups, summary.presumed_new) == (2, 1, 1)


# --- per-dossier rejections ------------------------------------------------------------------------------
def test_a_rejected_dossier_is_dead_lettered_with_its_evidence_and_blocks_only_itself(engine, make_sandbox, conn_home):
    sandbox = make_sandbox()
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    enqueue(engine, [snapshot(1, 1, 10), snapshot(2, 1, 2)], clock)
    drain(engine, portal, clock)
    # dossier 1 is closed on the portal: reopening it is refused; what follows it must wait
    ids = enqueue(engine, [snapshot(1, 2, 4), snapshot(2, 2, 4), snapshot(1, 3, 10)], clock)
    summary = deliver_once(engine, portal, worker_id="w1", batch_size=10, policy=FAST, clock=clock)
    assert (summary.delivered, summary.dead, summary.released) == (1, 1, 1)
    assert summary.dead_reasons == {"TRANG_THAI_KHONG_HOP_LE": 1}
    (letter,) = outbox.dead_letters(engine)
    assert (letter.event_id, letter.reason_code, letter.has_request, letter.has_response) == (
        ids[0], "TRANG_THAI_KHONG_HOP_LE", True, True)
    assert "đã kết thúc" in letter.reason and letter.document_id.startswith("ob-hs1-")
    with engine.connect() as conn:
        stored = conn.execute(select(DeadLetter.request_bytes, DeadLetter.response_bytes)).one()
    assert letter.document_id.encode() in stored.request_bytes and b"SignatureValue" in stored.request_bytes
    assert b"TRANG_THAI_KHONG_HOP_LE" in stored.response_bytes and b"SignatureValue" in stored.response_bytes

    clock.advance(3600)
    assert deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock).claimed == 0  # still blocked
    outbox.discard(engine, letter.id, "the one-stop system reopened a closed dossier by mistake", actor="ops")
    after = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock)
    assert after.delivered == 1 and states(engine)["discarded"] == 1


class LookupSaysUnknown(DvcPortalClient):
    """A portal whose TraCuuHoSo answer is already stale when the dossier is sent (it was created
    in between, e.g. by a message whose reply was lost)."""

    def lookup(self, ma_ho_so: str) -> dict:
        return {**super().lookup(ma_ho_so), "TonTai": False}


def test_hoso_da_ton_tai_is_resent_once_as_an_update(engine, make_sandbox, conn_home):
    sandbox = make_sandbox()
    real = portal_for(engine, conn_home, sandbox)
    real.sync_dossiers([hoso(1, 1, 1), hoso(2, 10, 1)], is_updating=False)  # created behind the outbox's back
    portal = LookupSaysUnknown(real.transport)
    clock = Clock()
    enqueue(engine, [snapshot(1, 2, 2), snapshot(2, 2, 4)], clock)
    summary = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock)
    # 1: refused as a create, accepted as an update; 2: refused as a create, then as an update too
    assert (summary.delivered, summary.dead, summary.messages) == (1, 1, 2)
    assert summary.dead_reasons == {"TRANG_THAI_KHONG_HOP_LE": 1}
    assert [(e.is_updating, e.ma_loi) for e in sandbox.store.dossier_history(ma(1))][1:] == [
        (False, "HOSO_DA_TON_TAI"), (True, "0")]
    assert sandbox.store.get_dossier(ma(1))["data"]["GhiChu"] == "v2"


def test_a_dossier_the_hub_cannot_send_is_isolated_from_its_batch(engine, make_sandbox, conn_home):
    sandbox = make_sandbox()
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    ids = enqueue(engine, [snapshot(1, 1, 1), snapshot(2, 1, 1, TrichYeuHoSo="x" * 1001), snapshot(3, 1, 1)], clock)
    summary = deliver_once(engine, portal, worker_id="w1", batch_size=10, policy=FAST, clock=clock)
    assert (summary.delivered, summary.dead) == (2, 1)
    (letter,) = outbox.dead_letters(engine)
    assert (letter.event_id, letter.reason_code, letter.has_request) == (ids[1], "SCHEMA_INVALID", False)
    assert "TrichYeuHoSo" in letter.reason
    assert sandbox.store.get_dossier(ma(2)) is None and sandbox.store.get_dossier(ma(3)) is not None


# --- failures of the whole exchange ----------------------------------------------------------------------
def test_a_fatal_fault_dead_letters_the_message_and_replay_delivers_it(engine, make_sandbox, conn_home):
    sandbox = make_sandbox()
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    enqueue(engine, [snapshot(1, 1, 1), snapshot(2, 1, 1)], clock)
    drain(engine, portal, clock)
    # known dossiers go straight to DongBoHoSoMC; a new one is looked up first
    enqueue(engine, [snapshot(1, 2, 2), snapshot(2, 2, 2), snapshot(3, 1, 1)], clock)
    sandbox.configure_faults(fatal_rate=1.0)
    summary = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock)
    assert (summary.messages, summary.lookups, summary.dead) == (1, 1, 3)
    assert summary.dead_reasons == {"BUSINESS_REJECTED": 3}
    letters = {letter.partition_key: letter for letter in outbox.dead_letters(engine)}
    for n in (1, 2):  # the refused message: its signed request and the partner's fault are kept
        letter = letters[ma(n)]
        assert letter.has_request and letter.has_response and letter.document_id.startswith("ob-hs1-")
        assert "DongBoHoSoMC refused" in letter.reason
    lookup = letters[ma(3)]
    assert "TraCuuHoSo" in lookup.reason and not lookup.has_request  # the event itself never left

    sandbox.configure_faults(fatal_rate=0.0)
    outbox.replay(engine, [letter.id for letter in letters.values()], now=clock())
    assert deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock).delivered == 3
    assert states(engine) == Counter({"delivered": 5})
    assert accepted_versions(sandbox, 1) == [1, 2]


def test_the_breaker_opens_on_an_unavailable_portal_and_closes_when_it_is_back(engine, make_sandbox, conn_home):
    sandbox = make_sandbox(fail_rate=1.0)
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    breaker = CircuitBreaker(engine, "dvc_portal", BreakerConfig(failure_threshold=3, cooldown=60.0), clock=clock)
    enqueue(engine, [snapshot(n, 1, 1) for n in range(1, 4)], clock)
    policy = RetryPolicy(initial_delay=1.0, jitter=0.0, max_attempts=10)
    first = deliver_once(engine, portal, worker_id="w1", policy=policy, breaker=breaker, clock=clock)
    # three lookups fail (503), the third opens the breaker: nothing more is tried
    assert (first.lookups, first.retried, first.messages) == (3, 3, 0)
    assert first.breaker == "open"
    requests_so_far = sandbox.store.count("dvc_portal")

    clock.advance(30)  # the events are due again, but the breaker is still cooling down
    idle = deliver_once(engine, portal, worker_id="w1", policy=policy, breaker=breaker, clock=clock)
    assert (idle.claimed, idle.stopped) == (0, "breaker open")
    assert sandbox.store.count("dvc_portal") == requests_so_far
    with engine.connect() as conn:
        assert set(conn.execute(select(OutboxEvent.attempts)).scalars()) == {1}  # no attempt burnt

    clock.advance(31)  # cooled down: one probe, which fails: open again for twice as long
    probe = deliver_once(engine, portal, worker_id="w1", policy=policy, breaker=breaker, clock=clock)
    assert (probe.lookups, probe.retried, probe.released, probe.breaker) == (1, 1, 2, "open")
    assert breaker.current().next_probe_at == clock() + timedelta(seconds=120)

    sandbox.configure_faults(fail_rate=0.0)
    clock.advance(121)
    back = deliver_once(engine, portal, worker_id="w1", policy=policy, breaker=breaker, clock=clock)
    assert (back.delivered, back.breaker, back.stopped) == (3, "closed", None)
    assert states(engine) == Counter({"delivered": 3})


class BrokenPortal:
    """A portal client whose connector is misconfigured: every call raises ConfigurationError."""

    def __init__(self, real: DvcPortalClient):
        self.transport = real.transport

    def lookup(self, ma_ho_so: str) -> dict:
        raise ConfigurationError("dvc_portal answered HTTP 404 at http://wrong/dvc: check the endpoint")


def test_a_misconfigured_hub_stops_the_pass_and_leaves_the_events_untouched(engine, make_sandbox, conn_home):
    portal = BrokenPortal(portal_for(engine, conn_home, make_sandbox()))
    clock = Clock()
    enqueue(engine, [snapshot(1, 1, 1), snapshot(1, 2, 2), snapshot(2, 1, 1)], clock)
    with pytest.raises(ConfigurationError, match="check the endpoint"):
        deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock)
    with engine.connect() as conn:
        rows = conn.execute(select(OutboxEvent.state, OutboxEvent.attempts, OutboxEvent.claimed_by)).all()
    assert set(rows) == {("pending", 0, None)}
    assert outbox.dead_letters(engine) == []


def test_a_crashed_workers_claim_is_taken_over_after_its_lease(engine, make_sandbox, conn_home):
    sandbox = make_sandbox()
    portal = portal_for(engine, conn_home, sandbox)
    clock = Clock()
    enqueue(engine, lives([1, 2], [1, 2, 4]), clock)
    outbox.claim(engine, "crashed", lease=120, now=clock())
    assert deliver_once(engine, portal, worker_id="w2", policy=FAST, clock=clock).claimed == 0
    clock.advance(121)
    summary = deliver_once(engine, portal, worker_id="w2", policy=FAST, clock=clock, lease=120)
    assert summary.taken_over == summary.claimed == summary.delivered == 8
    assert_in_order(sandbox, [1, 2], [1, 2, 4])


@pytest.mark.parametrize("transport", ["soap", "json"])
def test_workers_in_threads_deliver_every_event_once_and_in_order(engine, make_sandbox, conn_home, transport):
    sandbox = make_sandbox()
    portal = (json_portal if transport == "json" else portal_for)(engine, conn_home, sandbox)
    clock = Clock()
    numbers = range(1, 13)
    ids = enqueue(engine, lives(numbers, [1, 2, 4, 9]), clock)
    totals: Counter = Counter()
    lock = threading.Lock()

    def worker(name: str) -> None:
        for _ in range(30):
            summary = deliver_once(engine, portal, worker_id=name, batch_size=4, max_events=10, per_partition=2,
                                   policy=FAST, clock=clock)
            with lock:
                totals[name] += summary.delivered
            if states(engine)["pending"] == 0 and states(engine)["claimed"] == 0:
                return

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(totals.values()) == len(ids) and len(+totals) > 1
    assert states(engine) == Counter({"delivered": len(ids)})
    assert_in_order(sandbox, numbers, [1, 2, 4, 9])
    for n in numbers:  # exactly one accepted snapshot per version: nothing delivered twice
        assert accepted_versions(sandbox, n) == [1, 2, 3, 4]


# --- everything at once --------------------------------------------------------------------------------
@pytest.mark.slow
def test_under_injected_faults_every_event_ends_delivered_or_dead_and_replay_finishes_the_job(
        engine, make_sandbox, conn_home):
    sandbox = make_sandbox(fail_rate=0.20, timeout_rate=0.05, fatal_rate=0.02, timeout_seconds=0.5, fault_seed=7)
    portal = portal_for(engine, conn_home, sandbox, operation_timeout=0.25)
    clock = Clock()
    numbers = range(1, 21)
    ids = enqueue(engine, lives(numbers), clock)
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=8.0, jitter=0.1, max_attempts=4)
    # four messages per round, three in flight at once: settling under failure must stay exact
    summaries = drain(engine, portal, clock, passes=60, batch_size=5, policy=policy, senders=3)
    totals = Counter()
    for s in summaries:
        totals.update({"retried": s.retried, "delivered": s.delivered, "dead": s.dead, "messages": s.messages})
    assert totals["retried"] > 0 and totals["delivered"] > 0

    with engine.connect() as conn:
        final = {row.id: row for row in conn.execute(select(OutboxEvent.id, OutboxEvent.state,
                                                             OutboxEvent.partition_key))}
    assert set(final) == set(ids)
    assert {row.state for row in final.values()} <= {"delivered", "dead", "pending"}
    dead = {row.id: row.partition_key for row in final.values() if row.state == "dead"}
    for row in final.values():  # anything not settled waits behind a dead event of its own dossier
        if row.state == "pending":
            assert any(key == row.partition_key and dead_id < row.id for dead_id, key in dead.items()), row
    letters = outbox.dead_letters(engine)
    assert {letter.event_id for letter in letters} == set(dead)
    assert all(letter.reason for letter in letters)
    assert {letter.reason_code for letter in letters} <= {"BUSINESS_REJECTED", "RETRIES_EXHAUSTED"}

    sandbox.configure_faults(fail_rate=0.0, timeout_rate=0.0, fatal_rate=0.0)
    outbox.replay(engine, [letter.id for letter in letters])
    drain(engine, portal, clock, batch_size=5)
    assert states(engine) == Counter({"delivered": len(ids)})
    assert_in_order(sandbox, numbers)
    assert outbox.stats(engine, now=clock()).dead_letters == 0


def test_deliver_once_checks_its_arguments(engine, make_sandbox, conn_home):
    portal = portal_for(engine, conn_home, make_sandbox())
    with pytest.raises(ValueError, match="batch_size"):
        deliver_once(engine, portal, worker_id="w1", batch_size=0)
    with pytest.raises(ValueError, match="lease"):
        deliver_once(engine, portal, worker_id="w1", lease=0)
    with pytest.raises(ValueError, match="senders"):
        deliver_once(engine, portal, worker_id="w1", senders=0)
    empty = deliver_once(engine, portal, worker_id="w1")
    assert (empty.claimed, empty.messages, empty.stopped) == (0, 0, None)
    assert empty.as_dict()["worker_id"] == "w1"


# --- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-01", datetime(2026, 1, 1, tzinfo=VN_TZ)),
    ("2026-01-01T08:00:00+00:00", datetime(2026, 1, 1, 8, tzinfo=UTC)),
    ("", None),
])
def test_the_sole_feed_moment_is_read_from_the_environment(value, expected, tmp_path):
    from lienthong.hub.settings import Settings

    settings = Settings.from_env({"LIENTHONG_HOME": str(tmp_path), "LIENTHONG_PORTAL_SOLE_FEED_SINCE": value})
    assert settings.portal_sole_feed_since == expected


def test_a_malformed_sole_feed_moment_is_a_clear_configuration_error(tmp_path):
    from lienthong.hub.settings import Settings

    with pytest.raises(ConfigurationError, match=r"LIENTHONG_PORTAL_SOLE_FEED_SINCE is not an ISO date.*'last year'"):
        Settings.from_env({"LIENTHONG_HOME": str(tmp_path), "LIENTHONG_PORTAL_SOLE_FEED_SINCE": "last year"})


def test_a_resent_message_repeats_the_original_byte_for_byte_whatever_the_order_of_its_round(
        engine, make_sandbox, conn_home):
    """Round 2 of a pass takes each dossier's second event in the order of the dossiers' first
    events, which is not id order: dossier 1's step is newer than dossier 2's. The message carries
    its events in id order, as a resend rebuilt from the outbox does, so the portal recognises the
    resend (DUPLICATE) instead of refusing a known DocumentId with other content."""
    sandbox = make_sandbox(timeout_seconds=1.0)
    portal = portal_for(engine, conn_home, sandbox, operation_timeout=0.3)
    clock = Clock()
    enqueue(engine, [snapshot(1, 1, 1), snapshot(2, 1, 1), step(2, 2001, "20260609100000"),
                     step(1, 2002, "20260609100500")], clock)
    sandbox.configure_faults(timeout_rate=0.0)
    first = deliver_once(engine, portal, worker_id="w1", policy=FAST, clock=clock, sole_feed_since=NEW_SINCE)
    assert first.delivered == 4
    steps = [m for m in sandbox.store.received("dvc_portal", "CapNhatTienDoHoSoMC")]
    assert len(steps) == 1
    # as if its reply had been lost: the two steps undelivered, still naming their message
    with engine.begin() as conn:
        conn.execute(OutboxEvent.__table__.update().where(OutboxEvent.kind == "step")
                     .values(state="pending", delivered_at=None))
    clock.advance(60)
    again = deliver_once(engine, portal, worker_id="w2", policy=FAST, clock=clock)
    assert (again.delivered, again.dead, again.resent) == (2, 0, 1)
    steps = [m for m in sandbox.store.received("dvc_portal", "CapNhatTienDoHoSoMC")]
    assert [m.outcome for m in steps] == ["OK", "DUPLICATE"]
