"""The functions behind ``lienthong keys init / sign / verify``."""

from __future__ import annotations

from dataclasses import replace

import pytest
from lienthong.hub.errors import ConfigurationError, DigestMismatch, MissingSignature, XmlMalformed
from lienthong.hub.settings import Settings
from lienthong.signing.cli import cmd_keys_init, cmd_sign, cmd_verify, signer_for, trust_store_for
from lienthong.signing.pki import PASSWORD_ENV
from signing_helpers import build_envelope, serialize


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home") / "lienthong"


@pytest.fixture(scope="module")
def settings(home) -> Settings:
    env = {"LIENTHONG_HOME": str(home), "LIENTHONG_AGENCY_CODE": "000.00.00.G10"}
    mp = pytest.MonkeyPatch()
    mp.delenv(PASSWORD_ENV, raising=False)
    settings = Settings.from_env(env)
    cmd_keys_init(settings)
    yield settings
    mp.undo()


def test_keys_init_is_idempotent_and_uses_settings(settings):
    files = cmd_keys_init(settings)
    assert files.pki_dir == settings.pki_dir
    assert files.hub_p12 == settings.signing_key_path
    assert files.password_file == settings.pki_dir / "key-password"
    assert settings.key_password_bytes() == files.password_file.read_text().strip().encode()
    assert cmd_keys_init(settings) == files
    identity = signer_for(settings).identity
    assert identity.agency_code == settings.agency_code
    assert identity.certificate.subject.rfc4514_string().endswith(f"O={settings.agency_name},C=VN")


def test_sign_then_verify_a_file(settings, tmp_path):
    unsigned = tmp_path / "envelope.xml"
    unsigned.write_bytes(serialize(build_envelope()))
    signed = cmd_sign(settings, unsigned)
    assert signed.rstrip().endswith(b"</ds:Signature></edXML:edXMLEnvelope>")
    out = tmp_path / "signed.xml"
    out.write_bytes(signed)
    doc = cmd_verify(settings, out)
    assert doc.signer_agency == "000.00.00.G10"

    out.write_bytes(signed.replace(b"Nguy", b"Nguu", 1))
    with pytest.raises(DigestMismatch) as info:
        cmd_verify(settings, out)
    assert "altered" in str(info.value)
    with pytest.raises(MissingSignature):
        cmd_verify(settings, unsigned)


def test_missing_and_malformed_files(settings, tmp_path):
    with pytest.raises(ConfigurationError, match="no such file"):
        cmd_sign(settings, tmp_path / "missing.xml")
    with pytest.raises(ConfigurationError, match="no such file"):
        cmd_verify(settings, tmp_path / "missing.xml")
    with pytest.raises(ConfigurationError, match="is a directory"):
        cmd_sign(settings, tmp_path)
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<edXML:edXMLEnvelope")
    with pytest.raises(XmlMalformed):
        cmd_sign(settings, broken)


def test_key_for_another_agency_is_refused(settings):
    with pytest.raises(ConfigurationError, match="is for agency 000.00.00.G10 but the hub is configured as G09.20"):
        signer_for(replace(settings, agency_code="G09.20"))


def test_missing_key_tells_how_to_create_one(tmp_path):
    settings = Settings(home=tmp_path, db_url="sqlite://", key_password="x")
    with pytest.raises(ConfigurationError, match="lienthong keys init"):
        signer_for(settings)


def test_trust_store_includes_the_dev_crl(settings):
    store = trust_store_for(settings)
    assert len(store.crls) == 1
    assert store.anchors[0].subject.rfc4514_string().startswith("CN=Liên thông Hub Development Root CA")
