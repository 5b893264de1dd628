"""A delivery worker as a process of its own, for the crash-safety test (``test_push_crash_safety``).

The test SIGKILLs this process at random moments and starts it again: only a separate process can
die the way a hub process really does (no ``finally``, no rollback from Python, a half-sent HTTP
request, an open SQLite write transaction). It reads its configuration from the environment like
the hub does (``LIENTHONG_HOME``, ``LIENTHONG_KEY_PASSWORD``, ``LIENTHONG_DVC_URL``,
``LIENTHONG_DB_URL``, ``LIENTHONG_DVC_TRANSPORT`` and the JSON adapter's account) and drains the outbox: pass after pass of ``deliver_once`` until nothing is
pending or claimed. Events still claimed by a killed predecessor are waited for, not stolen: they
come back when that worker's lease runs out, which is the takeover path the test is about.

Usage: ``python push_worker_proc.py WORKER_ID LEASE_SECONDS MAX_ATTEMPTS MAX_EVENTS``. Prints one JSON line per
pass (flushed, so the test can read what a killed worker managed) and exits 0 once drained.
"""

from __future__ import annotations

import json
import sys
import time

from lienthong.connectors.dvc_portal import DvcPortalClient
from lienthong.connectors.transport import transport_for
from lienthong.hub.audit import ledger
from lienthong.hub.delivery.engine import deliver_once
from lienthong.hub.delivery.retry import RetryPolicy
from lienthong.hub.settings import Settings
from lienthong.hub.store import open_store
from lienthong.hub.store.models import OutboxEvent
from sqlalchemy import func, select

#: how long to wait before claiming again when everything left is held by a dead worker's lease
IDLE_SECONDS = 0.1


def undelivered(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(OutboxEvent)
                                .where(OutboxEvent.state.in_(("pending", "claimed")))).scalar_one())


def main(argv: list[str]) -> int:
    worker_id, lease, max_attempts, max_events = argv[0], float(argv[1]), int(argv[2]), int(argv[3])
    settings = Settings.from_env()
    store = open_store(settings)
    portal = DvcPortalClient(transport_for(settings, "dvc_portal", audit=ledger(store)))  # LIENTHONG_DVC_TRANSPORT
    # Short backoff: a transient failure should not stall the run. Many attempts: every takeover of
    # a killed worker's claim counts as one, and the test kills on purpose, far more often than a
    # poison event would; giving up would turn the test's own kills into dead letters.
    policy = RetryPolicy(initial_delay=0.05, multiplier=2.0, max_delay=0.5, jitter=0.0, max_attempts=max_attempts)
    print(json.dumps({"worker": worker_id, "started": True}), flush=True)
    while True:
        began = time.monotonic()
        summary = deliver_once(store.engine, portal, worker_id=worker_id, batch_size=100, lease=lease, policy=policy,
                               max_events=max_events)
        if summary.claimed:
            line = {**summary.as_dict(), "seconds": round(time.monotonic() - began, 3)}
            print(json.dumps(line, ensure_ascii=False), flush=True)
            continue
        if summary.stopped is None and undelivered(store.engine) == 0:
            print(json.dumps({"worker": worker_id, "drained": True}), flush=True)
            return 0
        time.sleep(IDLE_SECONDS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
