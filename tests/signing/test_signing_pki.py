"""Development PKI: layout, file modes, certificate profile, idempotency, CRL helpers."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lienthong.hub.errors import ConfigurationError
from lienthong.signing.keys import load_identity
from lienthong.signing.pki import (
    PASSWORD_ENV,
    create_ca,
    init_dev_pki,
    issue_certificate,
    load_ca,
    revoke,
    write_crl,
)
from signing_helpers import HUB_AGENCY, HUB_NAME, NATIONAL_AGENCY, PASSWORD, utcnow


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_layout_and_modes(pki):
    for path in (pki.ca_cert, pki.ca_p12, pki.hub_p12, pki.hub_cert, pki.national_p12, pki.national_cert, pki.crl):
        assert path.is_file(), path
        assert path.parent == pki.pki_dir
    for private in (pki.ca_p12, pki.hub_p12, pki.national_p12):
        assert mode(private) == 0o600, private
    for public in (pki.ca_cert, pki.hub_cert, pki.national_cert, pki.crl):
        assert mode(public) == 0o644, public
    assert mode(pki.pki_dir) == 0o700
    # password given explicitly: nothing written to disk
    assert pki.password_file is None
    assert not (pki.pki_dir / "key-password").exists()
    # no temp files left behind by the atomic writes
    assert not [p for p in pki.pki_dir.iterdir() if p.name.startswith(".")]


def test_hub_certificate_profile(pki, ca):
    cert = x509.load_pem_x509_certificate(pki.hub_cert.read_bytes())
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "VN"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == HUB_NAME
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == HUB_AGENCY
    assert HUB_AGENCY in subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_cert_sign and not ku.value.key_encipherment
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=700) < lifetime < dt.timedelta(days=740)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    cert.verify_directly_issued_by(ca.certificate)

    national = x509.load_pem_x509_certificate(pki.national_cert.read_bytes())
    assert national.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == NATIONAL_AGENCY
    national.verify_directly_issued_by(ca.certificate)


def test_ca_profile_and_empty_crl(pki, ca):
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert cert == ca.certificate
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    crl = x509.load_pem_x509_crl(pki.crl.read_bytes())
    assert crl.issuer == cert.subject
    assert crl.is_signature_valid(cert.public_key())
    assert len(crl) == 0


def test_idempotent_second_call_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    first = init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, key_type="ec")
    snapshot = {p.name: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in first.pki_dir.iterdir()}
    second = init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, key_type="ec")
    assert second == first
    assert {p.name: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in second.pki_dir.iterdir()} == snapshot


def test_generated_password_is_written_0600_and_opens_the_keys(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    files = init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, key_type="ec")
    assert files.password_file == tmp_path / "pki" / "key-password"
    assert mode(files.password_file) == 0o600
    password = files.password_file.read_text().strip()
    assert len(password) >= 40  # 256 random bits, url-safe base64
    identity = load_identity(files.hub_p12, password.encode())
    assert identity.agency_code == HUB_AGENCY
    assert isinstance(identity.private_key, ec.EllipticCurvePrivateKey)
    with pytest.raises(ConfigurationError, match="wrong password"):
        load_ca(files.ca_p12, "not-the-password")


def test_password_from_environment_is_not_written(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "từ-biến-môi-trường")
    files = init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, key_type="ec")
    assert files.password_file is None
    assert not (tmp_path / "pki" / "key-password").exists()
    assert load_identity(files.hub_p12, "từ-biến-môi-trường".encode()).agency_code == HUB_AGENCY


def test_missing_pieces_are_regenerated_by_the_existing_ca(tmp_path):
    files = init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, key_type="ec")
    ca_before = files.ca_cert.read_bytes()
    national_before = files.national_p12.read_bytes()
    old_hub = x509.load_pem_x509_certificate(files.hub_cert.read_bytes())
    files.hub_p12.unlink()
    files.hub_cert.unlink()
    files.crl.unlink()
    init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, key_type="ec")
    new_hub = x509.load_pem_x509_certificate(files.hub_cert.read_bytes())
    assert new_hub.serial_number != old_hub.serial_number
    assert files.ca_cert.read_bytes() == ca_before
    assert files.national_p12.read_bytes() == national_before
    new_hub.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_before))
    assert files.crl.exists()
    # a lost certificate file is re-exported from its PKCS#12, not re-issued
    files.national_cert.unlink()
    init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, key_type="ec")
    assert files.national_p12.read_bytes() == national_before
    assert load_identity(files.national_p12, PASSWORD).certificate == x509.load_pem_x509_certificate(
        files.national_cert.read_bytes()
    )


def test_lost_ca_key_with_existing_leaves_is_refused(tmp_path):
    files = init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, key_type="ec")
    files.ca_p12.unlink()
    files.national_p12.unlink()
    with pytest.raises(ConfigurationError, match="ca.p12 is missing"):
        init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, key_type="ec")
    assert not files.ca_p12.exists()  # nothing minted


def test_wrong_password_for_existing_ca_is_a_configuration_error(tmp_path):
    files = init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, key_type="ec")
    files.hub_p12.unlink()
    with pytest.raises(ConfigurationError) as info:
        init_dev_pki(tmp_path / "pki", HUB_AGENCY, NATIONAL_AGENCY, "sai-mật-khẩu", key_type="ec")
    assert "sai-mật-khẩu" not in str(info.value)


def test_issue_certificate_options(ca):
    start = utcnow() - dt.timedelta(days=10)
    issued = issue_certificate(ca, None, "H37.02.02", agency_name="UBND tỉnh Ninh Bình",
                               not_before=start, not_after=start + dt.timedelta(days=1),
                               key_usage={"key_encipherment"}, key_type="ec")
    cert = issued.certificate
    assert cert.not_valid_before_utc == start.replace(microsecond=0)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature is False
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "H37.02.02"
    no_ku = issue_certificate(ca, None, "G09.20", key_usage=None, key_type="ec").certificate
    with pytest.raises(x509.ExtensionNotFound):
        no_ku.extensions.get_extension_for_class(x509.KeyUsage)
    with pytest.raises(ValueError, match="unknown key usage"):
        issue_certificate(ca, None, "G09.20", key_usage={"sign_everything"}, key_type="ec")
    with pytest.raises(ConfigurationError, match="unknown key type"):
        issue_certificate(ca, None, "G09.20", key_type="dsa")


def test_long_names_fit_the_x520_bounds(ca):
    name = "Sở Nông nghiệp và Môi trường tỉnh Thừa Thiên Huế - Chi cục Quản lý chất lượng nông lâm sản và thủy sản"
    cert = issue_certificate(ca, None, "000.00.01.H22", agency_name=name, key_type="ec").certificate
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert len(org) <= 64 and org.startswith("Sở Nông nghiệp")


def test_revoke_keeps_entries_and_bumps_crl_number(tmp_path, ca):
    crl_path = tmp_path / "crl.pem"
    write_crl(crl_path, ca)
    a = issue_certificate(ca, None, "G09.20", key_type="ec").certificate
    b = issue_certificate(ca, None, "G09.21", key_type="ec").certificate
    revoke(crl_path, ca, a)
    crl = revoke(crl_path, ca, b)
    assert {entry.serial_number for entry in crl} == {a.serial_number, b.serial_number}
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert crl.is_signature_valid(ca.certificate.public_key())
    foreign = create_ca(key_type="ec")
    with pytest.raises(ConfigurationError, match="not signed by"):
        revoke(crl_path, foreign, a)
