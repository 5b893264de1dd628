"""Hourly seal of the audit ledger: a signed (optionally time-stamped) checkpoint of its head.

A thin DAG: the work is :func:`lienthong.hub.audit.seal.create_seal`. ``lienthong`` is imported
inside the task so that parsing this file costs no more than importing the Task SDK.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from lienthong_defaults import FAIL_FAST_ON_FATAL, default_args, on_failure

DOC_MD = """
### Liên thông: hourly seal of the audit ledger

Signs a checkpoint of the audit chain's head (last entry number and hash, time, previous seal's
hash) with the hub's key, so an entry rewritten later (even with every hash after it recomputed)
no longer matches a signature nobody without the key can make. When `LIENTHONG_TSA_URL` is set,
the seal is also time-stamped by that RFC 3161 authority. A ledger that did not move since the
last seal gets no new seal (the task says so and succeeds).

`lienthong audit verify` checks the chain and every seal and reports how many entries came after
the last one (the unsealed tail: at most an hour's worth while this DAG runs).

**On failure**: `CONFIGURATION` (signing key or its password missing, key of another agency) fails
at once: check `LIENTHONG_HOME/pki` or `LIENTHONG_KEY_PATH`/`LIENTHONG_KEY_PASSWORD`.
`TRANSPORT` / `TIMESTAMP_INVALID`: the TSA is unreachable or answered something that does not
verify (its certificate must chain to the pinned CA); retried with backoff, nothing is written
until a seal is complete. `AUDIT_CHAIN_BROKEN` "another seal was written": a manual
`lienthong audit seal` ran at the same moment; the retry succeeds.
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="lienthong_audit_seal",
    description="Sign (and time-stamp) a checkpoint of the audit ledger's head",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=20),
    tags=["lienthong", "audit"],
    doc_md=DOC_MD,
    on_failure_callback=on_failure,
    default_args=default_args(retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=10),
                              execution_timeout=timedelta(minutes=5)),
)
def lienthong_audit_seal():
    @task(multiple_outputs=False, retry_policy=FAIL_FAST_ON_FATAL, on_failure_callback=on_failure)
    def seal() -> dict:
        """One seal of the ledger's current head; returns what was sealed (or why nothing was)."""
        from lienthong.hub.airflow_conn import settings_from_airflow
        from lienthong.hub.audit.seal import create_seal
        from lienthong.hub.audit.tsa import timestamper_for
        from lienthong.hub.store import open_store
        from lienthong.signing.cli import signer_for

        settings = settings_from_airflow()
        result = create_seal(open_store(settings).engine, signer_for(settings), timestamper=timestamper_for(settings))
        if result.created:
            log.info("seal %d signed%s: entry %d (%s)", result.number,
                     " and time-stamped" if result.timestamped else "", result.head_seq, result.head_hash)
        else:
            log.info("no new seal: %s", result.reason)
        return {"created": result.created, "seal": result.number, "head_seq": result.head_seq,
                "head_hash": result.head_hash, "timestamped": result.timestamped}

    seal()


lienthong_audit_seal()
