"""Crash safety of the status push over the portal's JSON adapter: kill -9 at random moments.

The adapter has no message id, so a message the portal applied whose answer the killed worker
never recorded is applied again when the next worker resends it. What must still hold: nothing
lost, every dossier's changes applied in the outbox's order, and anything applied twice only ever
the same change again, right after itself (a snapshot upserted twice, a step the portal records as
a duplicate) — never an older status after a newer one. The SOAP run (``test_push_crash_safety``)
proves the stronger property its DocumentIds allow.

``LIENTHONG_CRASH_JSON_EVENTS`` / ``LIENTHONG_CRASH_JSON_KILLS`` set the size (defaults 5,000 and 8).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict

import pytest
from lienthong.hub.audit import ledger
from lienthong.hub.store import open_store
from lienthong.hub.store.models import OutboxEvent
from national_helpers import PASSWORD, settings_for
from sqlalchemy import select
from test_push_crash_safety import _fill_outbox, _states, kill_repeatedly

EVENTS = int(os.environ.get("LIENTHONG_CRASH_JSON_EVENTS", "5000"))
KILLS = int(os.environ.get("LIENTHONG_CRASH_JSON_KILLS", "8"))
SEED = 20261208


def _watch_applied(sandbox):
    import threading

    applied = threading.Event()
    handle = sandbox.json_adapter.handle

    def watched(path, headers, data, **kw):
        response = handle(path, headers, data, **kw)
        if response.status == 200 and (b'"DongBoHoSoMC"' in data or b'"CapNhatTienDoHoSoMC"' in data):
            applied.set()
        return response

    sandbox.json_adapter.handle = watched
    return applied


def _collapsed(changes):
    out = []
    for change in changes:
        if not out or out[-1] != change:
            out.append(change)
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_during_the_push_over_json_loses_nothing_and_keeps_order(tmp_path, make_sandbox, conn_home):
    settings = settings_for(conn_home, None, db_url=f"sqlite:///{tmp_path / 'hub.db'}")
    store = open_store(settings)
    engine = store.engine
    total = _fill_outbox(engine, f"sqlite:///{tmp_path / 'onestop.db'}", EVENTS)
    with engine.connect() as conn:
        outbox_rows = conn.execute(select(OutboxEvent.partition_key, OutboxEvent.kind, OutboxEvent.payload)
                                   .order_by(OutboxEvent.id)).all()
    sandbox = make_sandbox(procedures=300)
    env = {name: value for name, value in os.environ.items() if not name.startswith("LIENTHONG_")}
    env.update(LIENTHONG_HOME=str(conn_home), LIENTHONG_KEY_PASSWORD=PASSWORD, LIENTHONG_DB_URL=settings.db_url,
               LIENTHONG_DVC_TRANSPORT="json", LIENTHONG_DVC_URL=sandbox.base_url + "/adapter",
               LIENTHONG_DVC_USERNAME="lienthong", LIENTHONG_DVC_PASSWORD="sandbox-adapter",
               LIENTHONG_DVC_DSTCODE="000.00.00.G22")
    applied = _watch_applied(sandbox)
    _, kills, _ = kill_repeatedly(engine, env, tmp_path, applied, random.Random(SEED), KILLS, "json-crash",
                                  final_timeout=400)

    assert _states(engine) == Counter({"delivered": total})
    expected: dict[str, list[tuple]] = defaultdict(list)
    for row in outbox_rows:
        payload = json.loads(row.payload)
        if row.kind == "dossier":
            expected[row.partition_key].append(("HoSo", int(payload["TrangThaiHoSo"])))
        else:
            expected[row.partition_key].append(("QuaTrinhXuLy", payload["ThoiDiemXuLy"]))
    problems, twice = [], 0
    for code, changes in expected.items():
        history = sandbox.store.dossier_history(code)
        applied_changes = [(e.kind, e.trang_thai if e.kind == "HoSo" else e.thoi_diem) for e in history if e.accepted]
        refusals = {e.ma_loi for e in history if not e.accepted}
        if _collapsed(applied_changes) != _collapsed(changes):
            problems.append(f"{code}: the portal applied {applied_changes}, the outbox holds {changes}")
        if refusals - {"HOSO_DA_TON_TAI", "HOSO_CHUA_TON_TAI"}:
            problems.append(f"{code}: refused {refusals}")
        twice += len(applied_changes) - len(changes)
    assert ledger(store).verify().ok
    print(f"\ncrash safety over json: {total} events, {KILLS} kills {dict(kills)}, {twice} changes applied again "
          "right after themselves")
    assert not problems, "\n".join(problems[:10])
