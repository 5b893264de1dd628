"""Hourly signed round trip to each configured national service.

A thin DAG: the work is :func:`lienthong.hub.flows.healthcheck.roundtrip`; this file only schedules it,
maps it over the configured services and sets the retry policy. ``lienthong`` is imported inside
the task functions so that parsing this file costs no more than importing the Task SDK.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from lienthong_defaults import FAIL_FAST_ON_FATAL, default_args

DOC_MD = """
### Liên thông: health check of the national services

Every hour, for each national service that has an endpoint configured (CSDL TTHC `csdl_tthc`,
Cổng DVC quốc gia `dvc_portal`, national reporting `baocao`), one **read-only** operation goes the
whole way a real exchange goes: envelope → XSD check → XML-DSig signature with the hub's key →
TLS + SOAP to the endpoint → the reply's signature verified against the trusted CA → the reply's
schema, sender and `ResponseFor` checked. Request and reply are both written to the hub's audit
trail. Probes: `LayDanhSachTTHC` (csdl_tthc), `TraCuuHoSo` (dvc_portal), `LayTrangThaiBaoCao` (baocao).

**Tasks.** `configured_services` reads the Airflow Connections `lienthong_csdl`, `lienthong_dvc`,
`lienthong_baocao` (falling back to the `LIENTHONG_*` environment) and lists the services that
have an endpoint; `roundtrip` runs once per service (mapped, labelled with the service name)
and returns a summary as its XCom: endpoint, document ids, who signed the reply, latency, audit
sequence numbers. Trigger with the param `services` to check only some of them.

**On failure**, open the failed `roundtrip` instance's log (Grid → the red square, labelled with
the service): the error line names the code and what was wrong.

- `TRANSPORT`, `TIMEOUT`, `SERVICE_UNAVAILABLE`, `TRANSIENT_FAULT`: network, gateway or service
  down. Retried 3 times with exponential backoff (about 1, 2, 4 min, with jitter); if it still
  fails, check the endpoint URL in the connection and reachability from the worker.
- `CONFIGURATION`: a connection field or extra key is wrong or missing (the message names it);
  see `docs/airflow.md` for the extra keys. Not retried.
- `SIGNATURE_*`, `CERTIFICATE_*` (e.g. `CERTIFICATE_UNTRUSTED`, `CERTIFICATE_EXPIRED`,
  `CERTIFICATE_REVOKED`): the reply's signature does not verify with our trust store (`trust_ca`,
  `crl`): a partner key rollover or a wrong CA. `TLS_INVALID`: the server's TLS certificate
  (`tls_verify`). Not retried.
- `WRONG_SENDER`, `WRONG_RECIPIENT`: agency codes (`agency_code`, `partner_agency_code`) do not
  match what the service signs. `SCHEMA_INVALID`, `PARTNER_FAULT`: contract mismatch or the
  service rejected the probe. Not retried.

Both messages of every attempt are in the audit trail (`$LIENTHONG_HOME`, or `LIENTHONG_DB_URL`);
`lienthong audit verify` checks the chain.
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="lienthong_healthcheck",
    description="Signed SOAP round trip to each configured national service, verified and audited",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    tags=["lienthong", "healthcheck"],
    doc_md=DOC_MD,
    params={
        "services": Param(
            [],
            type="array",
            items={"type": "string", "enum": ["csdl_tthc", "dvc_portal", "baocao"]},
            description="Services to check; empty means every service that has an endpoint.",
        ),
    },
    default_args=default_args(retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=10),
                              execution_timeout=timedelta(minutes=5)),
)
def lienthong_healthcheck():
    @task(retry_policy=FAIL_FAST_ON_FATAL)
    def configured_services(params: dict | None = None) -> list[str]:
        """The services to probe: those asked for (or all), keeping the ones with an endpoint."""
        from lienthong.hub.airflow_conn import configured_services as with_endpoint
        from lienthong.hub.airflow_conn import settings_from_airflow
        from lienthong.hub.errors import ConfigurationError

        requested = list((params or {}).get("services") or [])
        settings = settings_from_airflow(*requested)
        names = with_endpoint(settings, requested or None)
        skipped = sorted(set(requested or settings.partners) - set(names))
        if skipped:
            log.warning("no endpoint configured for %s: not checked", ", ".join(skipped))
        if not names:
            raise ConfigurationError(
                "no national service has an endpoint: define the Airflow connections "
                "lienthong_csdl / lienthong_dvc / lienthong_baocao (or LIENTHONG_*_URL)"
            )
        return names

    @task(map_index_template="{{ service_name }}", multiple_outputs=False, retry_policy=FAIL_FAST_ON_FATAL)
    def roundtrip(service_name: str) -> dict:
        """One signed, verified and audited exchange with ``service_name``."""
        from lienthong.hub.airflow_conn import settings_from_airflow
        from lienthong.hub.errors import HubError
        from lienthong.hub.flows.healthcheck import roundtrip as signed_roundtrip

        settings = settings_from_airflow(service_name)
        try:
            summary = signed_roundtrip(settings, service_name)
        except HubError as exc:
            log.error("%s health check failed [%s]: %s", service_name, exc.code, exc)
            raise
        log.info("%s OK: %s at %s in %s ms, reply signed by %s", service_name, summary["operation"],
                 summary["endpoint"], summary["latency_ms"], summary["signed_by"])
        return summary

    roundtrip.expand(service_name=configured_services())


lienthong_healthcheck()
