"""A partner that misbehaves cannot stall or sink the hub (issue 10).

A small server on the loopback (``tests/misbehaving_server.py``) answers the way a broken portal
or a faulty proxy does: gigabytes, an endless chunked body, a drip, silence, headers that never
end, a reset mid-body, an HTML page, a gzip bomb. Each is a specific, retryable error within the
exchange's deadline, audited with what arrived (bounded); memory stays flat in a real
``lienthong healthcheck`` process; and the circuit breaker counts a portal that drips as it counts
one that is down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from lienthong.connectors.http import EVIDENCE_BYTES
from lienthong.connectors.payload import element
from lienthong.connectors.services import CSDL_TTHC
from lienthong.connectors.soap import SoapConnector
from lienthong.hub import errors
from lienthong.hub.store.models import AuditEntry
from misbehaving_server import MisbehavingServer
from national_helpers import PASSWORD, settings_for
from sqlalchemy import select

DEADLINE = 2.0

#: path -> (error, audit outcome, most seconds the exchange may take)
CASES = {
    "/huge-announced": (errors.ReplyTooLarge, "too_large", 1.0),
    "/huge": (errors.ReplyTooLarge, "too_large", DEADLINE),
    "/chunked": (errors.ReplyTooLarge, "too_large", DEADLINE),
    "/gzip-bomb": (errors.ReplyTooLarge, "too_large", DEADLINE),
    "/drip": (errors.DeadlineExceeded, "timeout", DEADLINE + 1),
    "/silent": (errors.TransportTimeout, "timeout", DEADLINE + 1),
    "/header-drip": (errors.TransportTimeout, "timeout", DEADLINE + 1),
    "/reset": (errors.ReplyTruncated, "truncated", DEADLINE),
    "/html": (errors.UnexpectedContentType, "content_type", 1.0),
}


@pytest.fixture(scope="module")
def server():
    with MisbehavingServer() as s:
        yield s


def connector_to(conn_home, audit, url: str, service: str = "csdl_tthc") -> SoapConnector:
    settings = settings_for(conn_home, None, operation_timeout=DEADLINE)
    settings = settings.with_partner(replace(settings.partner(service), url=url))
    return SoapConnector(settings, service, audit=audit)


@pytest.mark.parametrize("path", list(CASES))
def test_each_misbehaviour_is_a_specific_retryable_error_within_the_deadline(server, conn_home, audit, sandbox, path):
    error, outcome, bound = CASES[path]
    connector = connector_to(conn_home, audit, server.url + path)
    started = time.monotonic()
    with pytest.raises(error) as caught:
        connector.call("LayDanhMucLinhVuc", element(CSDL_TTHC.namespace, "LayDanhMucLinhVuc"))
    elapsed = time.monotonic() - started
    exc = caught.value
    assert type(exc) is error and exc.retryable, f"{path}: {exc!r}"
    assert elapsed < bound, f"{path} took {elapsed:.1f} s"
    assert exc.request_bytes and len(exc.response_bytes or b"") <= EVIDENCE_BYTES
    with audit.engine.connect() as conn:
        out, received = conn.execute(select(AuditEntry.outcome, AuditEntry.error, AuditEntry.body_size)
                                     .order_by(AuditEntry.seq)).all()[-2:]
    assert out.outcome == "sent" and received.outcome == outcome and received.error == str(exc)
    assert received.body_size <= EVIDENCE_BYTES
    # the same worker goes on with a partner that behaves
    good = connector_to(conn_home, audit, sandbox.base_url + CSDL_TTHC.path)
    assert good.call("LayDanhMucLinhVuc", element(CSDL_TTHC.namespace, "LayDanhMucLinhVuc")).payload is not None


def test_an_announced_length_over_the_limit_is_refused_without_reading(server, conn_home, audit):
    with pytest.raises(errors.ReplyTooLarge, match="announced a reply of 2,147,483,648 bytes") as caught:
        connector_to(conn_home, audit, server.url + "/huge-announced").call(
            "LayDanhMucLinhVuc", element(CSDL_TTHC.namespace, "LayDanhMucLinhVuc"))
    assert caught.value.response_bytes is None  # nothing of the body was read


def test_the_limit_is_per_operation_and_the_setting_overrides_it(conn_home, audit, server):
    connector = connector_to(conn_home, audit, server.url + "/huge")
    assert connector.limits("LayDanhSachTTHC").max_bytes == 16 * 1024 * 1024
    assert connector.limits("LayThuTuc").max_bytes == 4 * 1024 * 1024
    dvc = connector_to(conn_home, audit, server.url, service="dvc_portal")
    assert dvc.limits("TraCuuHoSo").max_bytes == 1024 * 1024 < dvc.limits("DongBoHoSoMC").max_bytes
    capped = SoapConnector(replace(connector.settings, max_reply_bytes=64 * 1024), "csdl_tthc", audit=audit)
    assert capped.limits("LayDanhSachTTHC").max_bytes == 64 * 1024
    assert capped.limits("LayDanhSachTTHC").deadline == DEADLINE


def test_a_portal_that_drips_opens_the_breaker_like_one_that_is_down(server, conn_home, engine, tmp_path):
    from lienthong.connectors.dvc_portal import DvcPortalClient
    from lienthong.connectors.sources.sql import SqlSource
    from lienthong.hub.audit import AuditTrail
    from lienthong.hub.delivery.breaker import BreakerConfig, CircuitBreaker
    from lienthong.hub.delivery.engine import deliver_once
    from lienthong.hub.delivery.retry import RetryPolicy
    from lienthong.hub.flows.intake import intake_once
    from onestop_helpers import agency_db, mapping

    with SqlSource(agency_db(tmp_path / "a.db", 0, seed=5, dossiers=5), mapping()) as source:
        intake_once(engine, source)
    settings = settings_for(conn_home, None, operation_timeout=1.0)
    settings = settings.with_partner(replace(settings.partner("dvc_portal"), url=server.url + "/drip"))
    portal = DvcPortalClient(SoapConnector(settings, "dvc_portal", audit=AuditTrail(engine)))
    breaker = CircuitBreaker(engine, "dvc_portal", BreakerConfig(failure_threshold=3, cooldown=60))
    policy = RetryPolicy(initial_delay=0.0, max_delay=0.0, max_attempts=100)
    retried = 0
    for _ in range(5):
        started = time.monotonic()
        summary = deliver_once(engine, portal, worker_id="w", policy=policy, breaker=breaker,
                               sole_feed_since=None, senders=1)
        # every exchange ends at the 1 s deadline: a pass of a few messages never hangs
        assert time.monotonic() - started < (summary.messages + summary.lookups) * 1.5 + 1
        assert summary.dead == 0
        retried += summary.retried
        if summary.stopped == "breaker open":
            break
    assert breaker.current().state == "open" and retried >= 3


def _child_env(conn_home, tmp_path, url: str) -> dict:
    home = tmp_path / "home"
    shutil.copytree(conn_home / "pki", home / "pki")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env.update(LIENTHONG_HOME=str(home), LIENTHONG_KEY_PASSWORD=PASSWORD, LIENTHONG_CSDL_URL=url,
               LIENTHONG_OPERATION_TIMEOUT=str(DEADLINE * 3))
    return env


@pytest.mark.slow
@pytest.mark.parametrize("path, code", [("/huge", "REPLY_TOO_LARGE"), ("/chunked", "REPLY_TOO_LARGE"),
                                        ("/gzip-bomb", "REPLY_TOO_LARGE"), ("/drip", "DEADLINE_EXCEEDED")])
def test_lienthong_healthcheck_stays_small_and_on_time_against_a_hostile_partner(server, conn_home, tmp_path,
                                                                                 path, code):
    env = _child_env(conn_home, tmp_path, server.url + path)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "lienthong.hub.cli", "healthcheck", "--service", "csdl_tthc"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - started
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    print(json.dumps({"path": path, "peak_rss_mb": round(peak_mb, 1), "seconds": round(elapsed, 2)}))
    assert os.waitstatus_to_exitcode(status) == 1 and code in err, err
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"
    assert elapsed < DEADLINE * 3 + 1 + 15  # the deadline, plus a cold interpreter's start-up
