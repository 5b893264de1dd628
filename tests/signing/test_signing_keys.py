"""Loading the signing identity: parsed once per process, clear errors, never leaks the password."""

from __future__ import annotations

import os
import shutil

import pytest
from lienthong.hub.errors import ConfigurationError
from lienthong.signing.keys import SigningIdentity, load_identity
from lienthong.signing.pki import issue_certificate
from signing_helpers import HUB_AGENCY, PASSWORD


@pytest.fixture
def hub_p12_copy(pki, tmp_path):
    target = tmp_path / "hub.p12"
    shutil.copy2(pki.hub_p12, target)
    return target


def test_identity_fields(hub_identity, pki, ca):
    assert hub_identity.agency_code == HUB_AGENCY
    assert hub_identity.key_type == "rsa"
    assert hub_identity.default_algorithm == "rsa-sha256"
    assert hub_identity.chain == (ca.certificate,)
    assert f"OU={HUB_AGENCY}" in hub_identity.subject
    assert hub_identity.source == pki.hub_p12.resolve()
    assert "private_key" not in repr(hub_identity)


def test_second_load_is_served_from_the_cache(hub_p12_copy, monkeypatch):
    from lienthong.signing import keys

    calls = []
    real_parse = keys._parse_p12
    monkeypatch.setattr(keys, "_parse_p12", lambda *a: calls.append(a[0]) or real_parse(*a))
    before = load_identity.cache_info()
    first = load_identity(hub_p12_copy, PASSWORD.encode())
    second = load_identity(str(hub_p12_copy), PASSWORD)  # str path and str password hit the same entry
    after = load_identity.cache_info()
    assert first is second
    assert len(calls) == 1
    assert after.misses == before.misses + 1
    assert after.hits == before.hits + 1


def test_a_changed_file_is_reloaded(hub_p12_copy, ca):
    first = load_identity(hub_p12_copy, PASSWORD)
    replacement = issue_certificate(ca, None, "G09.20", key_type="ec")
    hub_p12_copy.write_bytes(replacement.to_p12(PASSWORD))
    st = os.stat(hub_p12_copy)
    os.utime(hub_p12_copy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # coarse-mtime filesystems
    second = load_identity(hub_p12_copy, PASSWORD)
    assert second is not first
    assert second.agency_code == "G09.20"
    assert second.certificate == replacement.certificate


def test_missing_file(tmp_path):
    with pytest.raises(ConfigurationError, match="signing key not found") as info:
        load_identity(tmp_path / "nope.p12", b"x")
    assert "nope.p12" in str(info.value)


def test_wrong_password_is_not_echoed_and_not_served_from_cache(hub_p12_copy):
    load_identity(hub_p12_copy, PASSWORD)  # cached with the right password
    secret = "mật-khẩu-sai-123"
    with pytest.raises(ConfigurationError, match="wrong password") as info:
        load_identity(hub_p12_copy, secret)
    assert secret not in str(info.value)
    assert secret not in repr(info.value.__cause__) and info.value.__cause__ is None


def test_not_a_pkcs12_file(tmp_path):
    bogus = tmp_path / "key.p12"
    bogus.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot really\n")
    with pytest.raises(ConfigurationError, match="not a PKCS#12"):
        load_identity(bogus, b"x")


def test_certificate_without_agency_code_is_refused(ca, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    issued = issue_certificate(ca, None, "G09.20", key_type="ec")
    no_ou = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "không có OU")]))
        .issuer_name(ca.certificate.subject)
        .public_key(issued.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued.certificate.not_valid_before_utc)
        .not_valid_after(issued.certificate.not_valid_after_utc)
        .sign(ca.private_key, hashes.SHA256())
    )
    with pytest.raises(ConfigurationError, match="no single OU"):
        SigningIdentity.from_objects(issued.private_key, no_ou)


def test_key_must_match_certificate(ca):
    a = issue_certificate(ca, None, "G09.20", key_type="ec")
    b = issue_certificate(ca, None, "G09.20", key_type="ec")
    with pytest.raises(ConfigurationError, match="does not match"):
        SigningIdentity.from_objects(a.private_key, b.certificate)
