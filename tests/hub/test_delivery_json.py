"""The status push over the portal's JSON adapter: the same delivery engine, the same guarantees.

The engine does not know which transport carries its messages; these runs repeat the SOAP ones of
``test_delivery.py`` over the sandbox's JSON adapter: events delivered once and in each dossier's
order, retries through injected failures, a session that ends in the middle of the push.
"""

from __future__ import annotations

from collections import Counter

from lienthong.hub.delivery.engine import deliver_once
from lienthong.hub.store.models import AuditEntry
from sqlalchemy import func, select
from test_delivery import FAST, LIFE, Clock, assert_in_order, drain, enqueue, json_portal, lives, ma, states


def test_events_reach_the_portal_in_order_and_once_over_json(engine, make_sandbox, conn_home):
    sandbox = make_sandbox()
    portal = json_portal(engine, conn_home, sandbox)
    clock = Clock()
    numbers = range(1, 9)
    ids = enqueue(engine, lives(numbers), clock)
    summaries = drain(engine, portal, clock, batch_size=3)
    assert sum(s.delivered for s in summaries) == len(ids) and not any(s.dead for s in summaries)
    assert states(engine) == Counter({"delivered": len(ids)})
    assert_in_order(sandbox, numbers)
    with engine.connect() as conn:
        logins = conn.execute(select(func.count()).where(AuditEntry.operation == "DangNhap",
                                                         AuditEntry.direction == "out")).scalar_one()
    assert logins == 1  # one session for the whole push
    for n in numbers:
        history = sandbox.store.dossier_history(ma(n))
        assert [e.is_updating for e in history if e.kind == "HoSo"] == [False] + [True] * (len(LIFE) - 1)


def test_injected_failures_are_retried_and_an_ended_session_renewed_over_json(engine, make_sandbox, conn_home):
    sandbox = make_sandbox(fail_rate=0.25, fault_seed=7)
    portal = json_portal(engine, conn_home, sandbox)
    clock = Clock()
    numbers = range(1, 7)
    ids = enqueue(engine, lives(numbers), clock)
    first = deliver_once(engine, portal, worker_id="w1", batch_size=2, policy=FAST, clock=clock)
    sandbox.json_adapter.expire_sessions()  # the session ends between two passes of the push
    clock.advance(10)
    summaries = [first, *drain(engine, portal, clock, batch_size=2, passes=80)]
    assert sum(s.retried for s in summaries) > 0  # the injected "later" answers were retried
    assert states(engine) == Counter({"delivered": len(ids)})
    assert_in_order(sandbox, numbers)
    with engine.connect() as conn:
        logins = conn.execute(select(func.count()).where(AuditEntry.operation == "DangNhap",
                                                         AuditEntry.direction == "out")).scalar_one()
    assert logins == 2  # once at the start, once after the session ended
    with engine.connect() as conn:
        logins = conn.execute(select(func.count()).where(AuditEntry.operation == "DangNhap",
                                                         AuditEntry.direction == "out")).scalar_one()
    assert logins == 2  # once at the start, once after the session ended
