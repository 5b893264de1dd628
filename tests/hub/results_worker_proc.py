"""A hub process that pushes statuses and uploads result files, for the results crash test.

Like ``push_worker_proc.py`` (which see), it lives in a process of its own so that the test can
SIGKILL it mid-upload. Each round it runs one pass of the status push and one of the results push
(``kinds``), so a dossier goes snapshot → result → the snapshot listing it, as with the two DAGs.
Configuration from the environment (``LIENTHONG_HOME``, ``LIENTHONG_DB_URL``, ``LIENTHONG_DVC_URL``,
``LIENTHONG_RESULTS_ROOT``, ...).

Usage: ``python results_worker_proc.py WORKER_ID LEASE_SECONDS MAX_ATTEMPTS CHUNK_BYTES``. Prints a
JSON line per pass that did something and exits 0 once nothing is pending or claimed.
"""

from __future__ import annotations

import json
import sys
import time

from lienthong.hub.delivery.engine import RESULT_KINDS, STATUS_KINDS, deliver_once
from lienthong.hub.delivery.retry import RetryPolicy
from lienthong.hub.flows.results_push import open_uploader
from lienthong.hub.flows.status_push import open_portal
from lienthong.hub.settings import Settings
from lienthong.hub.store import open_store
from push_worker_proc import IDLE_SECONDS, undelivered


def dead(engine) -> int:
    from lienthong.hub.store.models import OutboxEvent
    from sqlalchemy import func, select

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(OutboxEvent)
                                .where(OutboxEvent.state == "dead")).scalar_one())


def main(argv: list[str]) -> int:
    worker_id, lease, max_attempts, chunk = argv[0], float(argv[1]), int(argv[2]), int(argv[3])
    settings = Settings.from_env()
    store = open_store(settings)
    portal = open_portal(settings, store)
    uploader = open_uploader(settings, store, portal, chunk_size=chunk)
    policy = RetryPolicy(initial_delay=0.05, multiplier=2.0, max_delay=0.5, jitter=0.0, max_attempts=max_attempts)
    print(json.dumps({"worker": worker_id, "started": True}), flush=True)
    while True:
        began = time.monotonic()
        status = deliver_once(store.engine, portal, worker_id=f"{worker_id}:status", batch_size=100, lease=lease,
                              policy=policy, kinds=STATUS_KINDS)
        results = deliver_once(store.engine, portal, worker_id=worker_id, lease=lease, policy=policy,
                               kinds=RESULT_KINDS, uploader=uploader, per_partition=1, max_events=2)
        for summary in (status, results):
            if summary.claimed:
                line = {**summary.as_dict(), "seconds": round(time.monotonic() - began, 3)}
                print(json.dumps(line, ensure_ascii=False), flush=True)
        if status.claimed or results.claimed:
            continue
        if status.stopped is None and results.stopped is None and undelivered(store.engine) == 0:
            print(json.dumps({"worker": worker_id, "drained": True}), flush=True)
            return 0
        if dead(store.engine):  # nothing claimable and something dead: it would wait forever
            print(json.dumps({"worker": worker_id, "dead": dead(store.engine)}), flush=True)
            return 2
        time.sleep(IDLE_SECONDS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
