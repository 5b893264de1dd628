"""Settings from Airflow Connections: fake connection objects, no Airflow running."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from lienthong.hub.airflow_conn import (
    EXTRA_KEYS,
    configured_services,
    settings_from_airflow,
    settings_from_connections,
)
from lienthong.hub.errors import ConfigurationError
from lienthong.hub.settings import NATIONAL_AGENCY_CODE, Settings


@dataclass
class FakeConnection:
    """The fields of an Airflow Connection that the hub reads."""

    conn_id: str
    host: str | None = None
    schema: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    extra: str | None = None
    conn_type: str = "http"


def conn(conn_id: str = "lienthong_csdl", *, extra: dict | None = None, **fields) -> FakeConnection:
    return FakeConnection(conn_id=conn_id, extra=json.dumps(extra) if extra is not None else None, **fields)


def lookup_of(*connections: FakeConnection):
    table = {c.conn_id: c for c in connections}
    asked: list[str] = []

    def lookup(conn_id: str):
        asked.append(conn_id)
        return table.get(conn_id)

    lookup.asked = asked
    return lookup


@pytest.fixture
def base(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LIENTHONG_DVC_URL", "http://127.0.0.1:9/env-dvc")
    return Settings.from_env()


def test_module_imports_without_airflow():
    """The CLI and the sandbox import the hub without Airflow: this module must not pull it in."""
    import subprocess

    code = ("import sys; import lienthong.hub.airflow_conn; "
            "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_connections_fall_back_to_the_environment(base: Settings):
    lookup = lookup_of()
    settings = settings_from_airflow(base=base, lookup=lookup)
    assert lookup.asked == ["lienthong_csdl", "lienthong_dvc", "lienthong_baocao"]
    assert settings == base
    assert settings.partner("dvc_portal").url == "http://127.0.0.1:9/env-dvc"
    assert configured_services(settings) == ["dvc_portal"]


def test_only_the_requested_services_are_looked_up(base: Settings):
    lookup = lookup_of(conn("lienthong_baocao", host="https://report.example.gov.vn/ws"))
    settings = settings_from_airflow("baocao", base=base, lookup=lookup)
    assert lookup.asked == ["lienthong_baocao"]
    assert settings.partner("baocao").url == "https://report.example.gov.vn/ws"
    assert settings.partner("dvc_portal").url == "http://127.0.0.1:9/env-dvc"  # untouched


def test_full_url_in_host_is_used_verbatim(base: Settings):
    settings = settings_from_connections(
        {"csdl_tthc": conn(host="http://127.0.0.1:8099/csdl-tthc")}, base=base)
    assert settings.partner("csdl_tthc").url == "http://127.0.0.1:8099/csdl-tthc"
    assert configured_services(settings) == ["csdl_tthc", "dvc_portal"]


def test_url_from_host_port_schema_and_default_path(base: Settings):
    settings = settings_from_connections(
        {"dvc_portal": conn("lienthong_dvc", host="gw.example.gov.vn", port=8443, schema="https")}, base=base)
    assert settings.partner("dvc_portal").url == "https://gw.example.gov.vn:8443/dvc"


def test_url_defaults_to_https_and_takes_the_path_from_extra(base: Settings):
    settings = settings_from_connections(
        {"csdl_tthc": conn(host="gw.example.gov.vn", extra={"path": "lgsp/csdl"})}, base=base)
    assert settings.partner("csdl_tthc").url == "https://gw.example.gov.vn/lgsp/csdl"


def test_every_extra_key_is_applied(base: Settings, tmp_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HUB_KEY_PW", "s3cret-from-env")
    extra = {
        "agency_code": "000.00.00.G09",
        "agency_name": "Bộ Thử nghiệm",
        "partner_agency_code": "H37.02.02",
        "partner_agency_name": "Cổng thử nghiệm",
        "key_path": "keys/hub.p12",
        "key_password_env": "HUB_KEY_PW",
        "trust_ca": ["/etc/lienthong/ca1.crt", "ca2.crt"],
        "crl": "/etc/lienthong/crl.pem",
        "tls_verify": "/etc/ssl/gateway-ca.pem",
        "tls_client_cert": ["client.crt", "/etc/lienthong/client.key"],
        "operation_timeout": "12.5",
        "signature_algorithm": "ecdsa-sha256",
        "transport": "soap",
    }
    json_only = {"dstcode", "auth_path", "integration_path", "share_path"}  # see the json test below
    assert set(extra) | {"path", "key_password_file"} | json_only == set(EXTRA_KEYS)
    settings = settings_from_connections(
        {"baocao": conn("lienthong_baocao", host="https://r.example.gov.vn/baocao", extra=extra)}, base=base)
    assert settings.agency_code == "000.00.00.G09"
    assert settings.agency_name == "Bộ Thử nghiệm"
    assert settings.signing_key_path == tmp_home / "keys" / "hub.p12"
    assert settings.key_password_bytes() == b"s3cret-from-env"
    assert settings.trust_anchor_paths == (Path("/etc/lienthong/ca1.crt"), tmp_home / "ca2.crt")
    assert settings.crl_paths == (Path("/etc/lienthong/crl.pem"),)
    assert settings.operation_timeout == 12.5
    assert settings.signature_algorithm == "ecdsa-sha256"
    partner = settings.partner("baocao")
    assert (partner.agency_code, partner.agency_name) == ("H37.02.02", "Cổng thử nghiệm")
    assert partner.tls_verify == "/etc/ssl/gateway-ca.pem"
    assert partner.client_cert == f"{tmp_home / 'client.crt'},/etc/lienthong/client.key"
    assert partner.transport == "soap"
    # fields the connection does not set keep their environment values
    assert settings.partner("dvc_portal").agency_code == NATIONAL_AGENCY_CODE
    assert settings.db_url == base.db_url


def test_key_password_from_the_password_field_or_a_file(base: Settings, tmp_home: Path):
    from_field = settings_from_connections({"csdl_tthc": conn(password="pw-field")}, base=base)
    assert from_field.key_password_bytes() == b"pw-field"
    (tmp_home / "kp").write_text("pw-file\n")
    from_file = settings_from_connections({"csdl_tthc": conn(extra={"key_password_file": "kp"})}, base=base)
    assert from_file.key_password_bytes() == b"pw-file"


@pytest.mark.parametrize("value, expected", [(False, False), ("false", False), ("TRUE", True), (True, True)])
def test_tls_verify_booleans(base: Settings, value, expected):
    settings = settings_from_connections({"csdl_tthc": conn(extra={"tls_verify": value})}, base=base)
    assert settings.partner("csdl_tthc").tls_verify is expected


def test_client_cert_as_one_comma_separated_string(base: Settings):
    settings = settings_from_connections(
        {"csdl_tthc": conn(extra={"tls_client_cert": "/a/cert.pem,/a/key.pem"})}, base=base)
    assert settings.partner("csdl_tthc").client_cert == "/a/cert.pem,/a/key.pem"


def test_a_json_connection_carries_the_adapter_account_and_paths(base: Settings, tmp_home: Path):
    (tmp_home / "kp").write_text("key-secret\n")
    settings = settings_from_connections({"dvc_portal": conn(
        "lienthong_dvc", host="https://adapter.example.gov.vn/api", login="bo-g10", password="adapter-secret",
        extra={"transport": "json", "dstcode": "000.00.00.G22", "auth_path": "/xacthuc", "integration_path": "/tichhop",
               "share_path": "/chiase", "key_password_file": "kp"})}, base=base)
    portal = settings.partner("dvc_portal")
    assert (portal.transport, portal.url, portal.username, portal.password) == (
        "json", "https://adapter.example.gov.vn/api", "bo-g10", "adapter-secret")
    assert (portal.dstcode, portal.auth_path, portal.integration_path, portal.share_path) == (
        "000.00.00.G22", "/xacthuc", "/tichhop", "/chiase")
    assert settings.key_password_bytes() == b"key-secret"  # the password field is the adapter's, not the key's
    assert "adapter-secret" not in repr(portal)


def test_the_transport_comes_from_the_connection(base: Settings):
    settings = settings_from_connections({"dvc_portal": conn("lienthong_dvc", extra={"transport": "SOAP"})}, base=base)
    assert settings.partner("dvc_portal").transport == "soap"
    assert settings.partner("csdl_tthc").transport == "soap"  # the default


def test_connections_that_agree_on_hub_values_merge(base: Settings):
    same = {"agency_code": "000.00.00.G09", "operation_timeout": 10}
    settings = settings_from_connections({
        "csdl_tthc": conn("lienthong_csdl", host="https://a.example/x", extra=same),
        "dvc_portal": conn("lienthong_dvc", host="https://b.example/y", extra=same),
    }, base=base)
    assert settings.agency_code == "000.00.00.G09"
    assert settings.operation_timeout == 10.0
    assert configured_services(settings, ["csdl_tthc", "dvc_portal", "baocao"]) == ["csdl_tthc", "dvc_portal"]


# --- failure paths: each names the connection and the field ----------------------------------------
@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(extra={"tls_verfy": False}), "unknown extra key(s) tls_verfy"),
        (dict(extra={"operation_timeout": "soon"}), "'operation_timeout' must be a positive number"),
        (dict(extra={"operation_timeout": 0}), "'operation_timeout' must be a positive number"),
        (dict(extra={"operation_timeout": True}), "'operation_timeout' must be a positive number"),
        (dict(extra={"agency_code": "000-00-00-G10"}), "'agency_code' = '000-00-00-G10' is not an agency code"),
        (dict(extra={"partner_agency_code": "000.00.00.g22"}), "'partner_agency_code' = '000.00.00.g22'"),
        (dict(extra={"signature_algorithm": "rsa-sha1"}), "use one of rsa-sha256, ecdsa-sha256"),
        (dict(extra={"trust_ca": []}), "'trust_ca' must be a path or a non-empty list"),
        (dict(extra={"tls_verify": 3}), "'tls_verify' must be true, false or a CA bundle path"),
        (dict(extra={"tls_client_cert": ["a", "b", "c"]}), "'tls_client_cert' must be"),
        (dict(extra={"agency_name": ""}), "'agency_name' must be a non-empty string"),
        (dict(extra={"transport": "json-rpc"}), "extra 'transport' 'json-rpc' is not one of soap"),
        (dict(host="https://gw.example/x", port=443), "host is a full URL; leave port empty"),
        (dict(host="https://gw.example/x", extra={"path": "/y"}), "leave extra 'path' empty"),
        (dict(host="ftp://gw.example/x"), "is not an http(s) URL"),
        (dict(host="https://gw.example:99999/x"), "gw.example:99999"),
        (dict(host="gw.example/csdl"), "holds a path"),
        (dict(host="gw.example", schema="csdl"), "schema 'csdl' is not a URL scheme"),
        (dict(host="gw.example", port=70000), "port 70000 is out of range"),
        (dict(schema="https"), "schema/port/path are set but host is empty"),
        (dict(password="x", extra={"key_password_env": "X"}), "set only one of password, extra 'key_password_env'"),
        (dict(extra={"key_password_env": "LIENTHONG_TEST_UNSET_VAR"}), "LIENTHONG_TEST_UNSET_VAR"),
        (dict(extra={"key_password_file": "missing.txt"}), "cannot read key password file"),
    ],
)
def test_bad_connections_are_refused_with_a_clear_message(base: Settings, fields, message):
    with pytest.raises(ConfigurationError) as err:
        settings_from_connections({"csdl_tthc": conn(**fields)}, base=base)
    assert "Airflow connection 'lienthong_csdl'" in str(err.value)
    assert message in str(err.value)


def test_extra_must_be_a_json_object(base: Settings):
    with pytest.raises(ConfigurationError, match="extra is not valid JSON"):
        settings_from_connections({"csdl_tthc": FakeConnection("lienthong_csdl", extra="{not json")}, base=base)
    with pytest.raises(ConfigurationError, match="extra must be a JSON object, got list"):
        settings_from_connections({"csdl_tthc": FakeConnection("lienthong_csdl", extra="[1]")}, base=base)


def test_empty_key_password_file_is_refused(base: Settings, tmp_home: Path):
    (tmp_home / "empty").write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        settings_from_connections({"csdl_tthc": conn(extra={"key_password_file": "empty"})}, base=base)


def test_connections_that_disagree_on_a_hub_value_are_refused(base: Settings):
    with pytest.raises(ConfigurationError) as err:
        settings_from_connections({
            "csdl_tthc": conn("lienthong_csdl", extra={"agency_code": "000.00.00.G09"}),
            "baocao": conn("lienthong_baocao", extra={"agency_code": "000.00.00.G10"}),
        }, base=base)
    assert "'lienthong_csdl' and 'lienthong_baocao' disagree on agency_code" in str(err.value)


def test_unknown_service_is_refused(base: Settings):
    with pytest.raises(KeyError, match="unknown service 'portal'"):
        settings_from_airflow("portal", base=base, lookup=lookup_of())
