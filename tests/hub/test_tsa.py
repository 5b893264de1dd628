"""RFC 3161 time-stamping of seals against the sandbox TSA (`POST /tsa`), and bad tokens."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests
from audit_ledger_helpers import HUB, exchange, ledger
from lienthong.hub.audit.archive import export_archive, verify_archive
from lienthong.hub.audit.seal import create_seal, verify_ledger, verify_seal_document
from lienthong.hub.audit.tsa import (
    TimestampInvalid,
    build_request,
    check_token,
    parse_response,
    request_token,
    timestamper_for,
    token_checker,
)
from lienthong.hub.errors import TransportError
from lienthong.hub.store.models import AuditSeal
from lienthong.sandbox.tsa import SandboxTsa, issue_tsa_certificate
from lienthong.signing.pki import create_ca, issue_certificate, load_ca
from national_helpers import PASSWORD
from sqlalchemy import select, update

SEALS = AuditSeal.__table__


@pytest.fixture
def led(conn_home, tmp_path, sandbox):
    led = ledger(conn_home, f"sqlite:///{tmp_path / 'hub.db'}")
    led.settings = replace(led.settings, tsa_url=sandbox.base_url + "/tsa")
    return led


def _verify(led):
    return verify_ledger(led.engine, led.trust, HUB, check_timestamp=token_checker(led.trust))


def _seal_value(led, number: int) -> tuple[bytes, datetime]:
    with led.engine.connect() as conn:
        document = conn.execute(select(SEALS.c.document).where(SEALS.c.id == number)).scalar_one()
    doc = verify_seal_document(document, led.trust, HUB)
    return doc.signature_value, doc.sealed_at


def _store_token(led, number: int, token: bytes) -> None:
    with led.engine.begin() as conn:
        conn.execute(update(SEALS).where(SEALS.c.id == number).values(tsa_token=token))


def _token(tsa: SandboxTsa, signature_value: bytes) -> bytes:
    import hashlib

    return tsa.token(hashlib.sha256(signature_value).digest(), nonce=7).dump()


def test_seals_are_time_stamped_by_the_tsa_and_verified_on_the_hub_and_offline(led, tmp_path):
    stamper = timestamper_for(led.settings)
    exchange(led, 2, start=datetime.now(UTC) - timedelta(minutes=3))
    sealed = create_seal(led.engine, led.signer, timestamper=stamper)
    assert sealed.timestamped
    report = _verify(led)
    assert report.ok and report.timestamps == 1
    unchecked = verify_ledger(led.engine, led.trust, HUB)
    assert unchecked.warnings == ("1 seal time-stamp(s) not checked: no TSA trust configured",)
    archive = export_archive(led.engine, led.signer, tmp_path / "a.zip", ca_paths=[led.ca], timestamper=stamper)
    offline = verify_archive(archive.path, led.ca)
    assert offline.timestamps == 1 and offline.seals == 1


def test_no_tsa_url_means_no_time_stamping(conn_home, tmp_path):
    led = ledger(conn_home, f"sqlite:///{tmp_path / 'hub.db'}")
    assert led.settings.tsa_url is None and timestamper_for(led.settings) is None


def test_a_token_whose_imprint_does_not_match_the_seal_is_named(led):
    stamper = timestamper_for(led.settings)
    start = datetime.now(UTC) - timedelta(minutes=3)
    for i in range(2):
        exchange(led, 1, start=start + timedelta(seconds=i))
        create_seal(led.engine, led.signer, timestamper=stamper)
    with led.engine.connect() as conn:
        first_token = conn.execute(select(SEALS.c.tsa_token).where(SEALS.c.id == 1)).scalar_one()
    _store_token(led, 2, first_token)
    report = _verify(led)
    assert report.where == "seal 2" and report.timestamps == 1
    assert report.problem == ("seal 2 time-stamp does not verify [TIMESTAMP_INVALID]: the time-stamp token's message "
                              "imprint does not match the seal's signature value: the token stamps another document")


def test_a_token_from_a_tsa_outside_the_pinned_ca_is_refused(led):
    exchange(led, 1, start=datetime.now(UTC) - timedelta(minutes=3))
    create_seal(led.engine, led.signer)
    value, _ = _seal_value(led, 1)
    _store_token(led, 1, _token(SandboxTsa.from_authority(create_ca(common_name="Rogue TSA CA")), value))
    report = _verify(led)
    assert report.where == "seal 1"
    assert report.problem.startswith("seal 1 time-stamp does not verify [CERTIFICATE_UNTRUSTED]: signer certificate "
                                     "'CN=Sandbox TSA")


def test_a_token_signed_by_a_foreign_key_under_the_real_tsa_certificate_is_refused(led, conn_home):
    exchange(led, 1, start=datetime.now(UTC) - timedelta(minutes=3))
    create_seal(led.engine, led.signer)
    value, _ = _seal_value(led, 1)
    _, real_cert = issue_tsa_certificate(load_ca(conn_home / "pki" / "ca.p12", PASSWORD))
    impostor_key, _ = issue_tsa_certificate(create_ca())
    _store_token(led, 1, _token(SandboxTsa(impostor_key, real_cert), value))
    assert "the time-stamp token's signature does not verify with the TSA certificate it names" in _verify(led).problem


def test_a_token_from_a_certificate_without_the_time_stamping_usage_is_refused(led, conn_home):
    exchange(led, 1, start=datetime.now(UTC) - timedelta(minutes=3))
    create_seal(led.engine, led.signer)
    value, _ = _seal_value(led, 1)
    plain = issue_certificate(load_ca(conn_home / "pki" / "ca.p12", PASSWORD), None, "000.00.00.G99")
    _store_token(led, 1, _token(SandboxTsa(plain.private_key, plain.certificate), value))
    assert "the TSA certificate has no extendedKeyUsage (timeStamping required)" in _verify(led).problem


def test_a_token_older_than_its_seal_is_refused(led, conn_home):
    exchange(led, 1, start=datetime.now(UTC) - timedelta(minutes=3))
    create_seal(led.engine, led.signer, now=lambda: datetime.now(UTC) + timedelta(hours=1))
    value, _ = _seal_value(led, 1)
    key, cert = issue_tsa_certificate(load_ca(conn_home / "pki" / "ca.p12", PASSWORD))
    _store_token(led, 1, _token(SandboxTsa(key, cert), value))
    assert "is older than the seal it stamps" in _verify(led).problem


def test_a_back_dated_seal_is_not_supported_by_a_later_token(led, make_sandbox):
    """The TSA's clock is two hours ahead of the seal's claimed time, as for a seal back-dated by two hours."""
    later = make_sandbox(clock=lambda: datetime.now(UTC) + timedelta(hours=2))
    led.settings = replace(led.settings, tsa_url=later.base_url + "/tsa")
    exchange(led, 1, start=datetime.now(UTC) - timedelta(minutes=3))
    create_seal(led.engine, led.signer, timestamper=timestamper_for(led.settings))
    assert "was made more than 1:00:00 after the time the seal claims" in _verify(led).problem


def test_the_answer_must_carry_the_nonce_that_was_sent(led, conn_home):
    tsa = SandboxTsa(*issue_tsa_certificate(load_ca(conn_home / "pki" / "ca.p12", PASSWORD)))
    token = _token(tsa, b"value")
    assert check_token(token, b"value", led.trust, nonce=7) <= datetime.now(UTC)
    with pytest.raises(TimestampInvalid, match="the TSA answered with nonce 7, not the 8 that was sent"):
        check_token(token, b"value", led.trust, nonce=8)
    with pytest.raises(TimestampInvalid, match="the time-stamp token is not valid DER"):
        check_token(b"\x30\x03\x02\x01", b"value", led.trust)


def test_sandbox_tsa_http_contract(led, sandbox):
    url = sandbox.base_url + "/tsa"
    token, gen_time = request_token(url, b"value", led.trust)
    assert abs(gen_time - datetime.now(UTC)) < timedelta(minutes=1) and check_token(token, b"value", led.trust)
    wrong_type = requests.post(url, data=build_request(b"value", 1), headers={"Content-Type": "text/plain"}, timeout=5)
    assert wrong_type.status_code == 415
    with pytest.raises(TimestampInvalid, match=r"TSA .*/nowhere answered HTTP 404"):
        request_token(sandbox.base_url + "/nowhere", b"value", led.trust)
    garbage = requests.post(url, data=b"not DER", headers={"Content-Type": "application/timestamp-query"}, timeout=5)
    refused = parse_response(garbage.content)
    assert refused["status"]["status"].native == "rejection"
    assert refused["status"]["fail_info"].native == {"bad_data_format"}


def test_an_unreachable_tsa_fails_the_seal_and_writes_nothing(led):
    led.settings = replace(led.settings, tsa_url="http://127.0.0.1:9/tsa", operation_timeout=2)
    exchange(led, 1)
    with pytest.raises(TransportError, match=r"TSA http://127.0.0.1:9/tsa unreachable"):
        create_seal(led.engine, led.signer, timestamper=timestamper_for(led.settings))
    assert _verify(led).seals == 0


def test_cli_seal_is_time_stamped_when_lienthong_tsa_url_is_set(led, monkeypatch, capsys):
    import json

    from lienthong.hub.cli import main

    monkeypatch.setenv("LIENTHONG_HOME", str(led.settings.home))
    monkeypatch.setenv("LIENTHONG_DB_URL", led.settings.db_url)
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", led.settings.key_password)
    monkeypatch.setenv("LIENTHONG_TSA_URL", led.settings.tsa_url)
    exchange(led, 1, start=datetime.now(UTC) - timedelta(minutes=3))
    assert main(["audit", "seal", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timestamped"] is True
    assert main(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timestamps_verified"] == 1
