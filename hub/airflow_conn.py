"""The hub's :class:`~lienthong.hub.settings.Settings` for an Airflow task, from Airflow Connections.

In production the endpoints, agency codes and key references of the national services live in
Airflow Connections (``lienthong_csdl``, ``lienthong_dvc``, ``lienthong_baocao``; the ids come from
:data:`lienthong.connectors.services.SERVICES`), so operators manage them with Airflow's UI, CLI,
``AIRFLOW_CONN_*`` variables or a secrets backend, and secrets stay masked in task logs. Outside
Airflow (CLI, tests, demo) the same settings come from the environment
(:meth:`Settings.from_env`); this module overlays the first on the second, so a missing
connection, or a field a connection leaves empty, keeps its environment value.

Airflow is imported lazily, inside :func:`airflow_connection`: the module imports (and its pure
functions run) with no Airflow installed or running, and a DAG file that imports it stays cheap
to parse. Inside a task the lookup goes through the Task SDK, that is through the API server or
the secrets backends, never the metadata database.

How a connection maps to settings
---------------------------------
Endpoint URL (for the service the connection belongs to):

- ``host`` holding a full URL (``https://gateway.example.gov.vn/csdl-tthc``) is used as is;
  ``port``, ``schema`` and extra ``path`` must then be empty (one source of truth).
- otherwise ``schema``://``host``[:``port``]``path``: ``schema`` is the URL scheme, as in
  Airflow's HTTP connections (``https`` when empty; only ``http``/``https``), ``path`` comes
  from extra ``path`` or defaults to the service's path (``/csdl-tthc``, ``/dvc``, ``/baocao``).
- no ``host``: the environment's URL (``LIENTHONG_CSDL_URL`` …), else the WSDL's address.

``password``: the password of the hub's signing key (Airflow encrypts it and masks it in logs).

Extra (JSON object; unknown keys are refused so that a typo cannot silently fall back to a default):

========================= =====================================================================
``agency_code``           our own agency code (``From/OrganId`` of what we send; replies must be
                          addressed to it). Default ``LIENTHONG_AGENCY_CODE`` / ``000.00.00.G10``.
``agency_name``           our agency's name in the envelope.
``partner_agency_code``   the service's agency code (``To/OrganId``; replies must come from it).
                          Default ``LIENTHONG_NATIONAL_AGENCY_CODE`` / ``000.00.00.G22``.
``partner_agency_name``   the service's agency name.
``path``                  URL path when ``host`` is a bare host name.
``key_path``              the hub's signing key, PKCS#12. Default ``$LIENTHONG_HOME/pki/hub.p12``.
``key_password_file``     file holding the key password (instead of the ``password`` field).
``key_password_env``      name of an environment variable holding the key password.
``trust_ca``              CA certificate(s) the service's signatures must chain to: a path or a
                          list of paths. Default ``$LIENTHONG_HOME/pki/ca.crt``.
``crl``                   certificate revocation list(s): a path or a list of paths.
``tls_verify``            ``true`` / ``false``, or a CA bundle path for the TLS server certificate.
``tls_client_cert``       client certificate for mutual TLS: ``"cert.pem"`` (key inside) or
                          ``"cert.pem,key.pem"`` or ``["cert.pem", "key.pem"]``.
``transport``             how the service is reached (``connectors.transport``): ``soap`` or ``json``
                          (the portal's JSON adapter: ``host`` is then its base URL, ``login`` and
                          ``password`` its account, and the key password comes from
                          ``key_password_file`` / ``key_password_env``).
``dstcode``, ``auth_path``, ``integration_path``, ``share_path``
                          json: the adapter's ``dstcode`` header and its three paths.
``operation_timeout``     the deadline of one exchange in seconds, connect + send + receive (> 0).
``signature_algorithm``   ``rsa-sha256`` or ``ecdsa-sha256`` for our outgoing signatures.
========================= =====================================================================

Relative file paths are taken from ``LIENTHONG_HOME``; ``~`` and ``$VARS`` are expanded.

Only one of ``password``, ``key_password_file`` and ``key_password_env`` may be set. The hub-wide
values (our agency, key, trust, timeout, algorithm) belong to the one :class:`Settings` a task
gets; when a task asks for several services, connections that set the same hub-wide value must
agree, or :class:`~lienthong.hub.errors.ConfigurationError` says which ones differ.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..connectors.services import SERVICES, TRANSPORTS, ServiceSpec, service
from .errors import ConfigurationError
from .settings import PartnerEndpoint, Settings

log = logging.getLogger(__name__)

#: Every key the ``extra`` JSON of a ``lienthong_*`` connection may hold, with its meaning.
EXTRA_KEYS: dict[str, str] = {
    "agency_code": "our own agency code",
    "agency_name": "our own agency name",
    "partner_agency_code": "the national service's agency code",
    "partner_agency_name": "the national service's agency name",
    "path": "URL path when host is a bare host name",
    "key_path": "PKCS#12 signing key of the hub",
    "key_password_file": "file holding the signing key's password",
    "key_password_env": "environment variable holding the signing key's password",
    "trust_ca": "CA certificate path(s) for the service's signatures",
    "crl": "CRL path(s) for the service's signatures",
    "tls_verify": "true/false or a CA bundle path for TLS",
    "tls_client_cert": "client certificate (and key) for mutual TLS",
    "operation_timeout": "the deadline of one exchange, in seconds",
    "signature_algorithm": "rsa-sha256 or ecdsa-sha256",
    "transport": "how the service is reached: soap or json",
    "dstcode": "json: the dstcode header the portal's adapter expects",
    "auth_path": "json: the adapter's login path",
    "integration_path": "json: the adapter's data-services path",
    "share_path": "json: the adapter's dictionary path",
}

SIGNATURE_ALGORITHMS = ("rsa-sha256", "ecdsa-sha256")

# The shapes the envelope XSD accepts for OrganId (schemas/edxml_envelope.xsd, type AgencyCode):
# checked here so a mistyped code fails at configuration time, not as a schema violation later.
_AGENCY_CODE = re.compile(r"(?:[0-9A-Z]{2,3}\.){1,3}[0-9A-Z]{2,3}|[GH][0-9]{2}(?:\.[0-9A-Z]{2,3}){0,3}")


class ConnectionLike(Protocol):
    """What this module reads from an Airflow Connection (Task SDK or core; fakes in tests)."""

    conn_id: str
    host: str | None
    schema: str | None
    port: int | None
    password: str | None
    extra: str | None


#: ``conn_id -> connection or None when it is not defined``
ConnectionLookup = Callable[[str], "ConnectionLike | None"]


def airflow_connection(conn_id: str) -> ConnectionLike | None:
    """The Airflow Connection ``conn_id`` through the Task SDK, or None when it is not defined.

    Inside a task the SDK asks the secrets backends (``AIRFLOW_CONN_*`` variables first) and then
    the API server; it never opens the metadata database.
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def settings_from_airflow(
    *service_names: str,
    base: Settings | None = None,
    lookup: ConnectionLookup | None = None,
) -> Settings:
    """Settings for a task that talks to ``service_names`` (all services when none are given).

    ``base`` defaults to :meth:`Settings.from_env`; ``lookup`` defaults to
    :func:`airflow_connection` (pass a fake in tests). Services whose connection is not defined
    keep their ``base`` values, so the same task runs unchanged against a sandbox configured
    only through ``LIENTHONG_*`` variables.
    """
    in_airflow = lookup is None
    base = Settings.from_env() if base is None else base
    lookup = airflow_connection if lookup is None else lookup
    specs = [service(name) for name in (service_names or tuple(SERVICES))]
    connections: dict[str, ConnectionLike | None] = {}
    for spec in specs:
        conn = lookup(spec.airflow_conn_id)
        if conn is None:
            log.info("Airflow connection %r is not defined: %s uses LIENTHONG_* settings",
                     spec.airflow_conn_id, spec.name)
        connections[spec.name] = conn
    settings = settings_from_connections(connections, base=base)
    if in_airflow and settings.key_password:
        # The SDK masks a connection's password field by itself; a password read from a file or
        # an environment variable is registered here so that task logs never show it either.
        from airflow.sdk.log import mask_secret

        mask_secret(settings.key_password)
    return settings


def settings_from_connections(
    connections: Mapping[str, ConnectionLike | None], *, base: Settings
) -> Settings:
    """Overlay ``{service name: connection or None}`` on ``base``, without asking Airflow anything."""
    hub_values: dict[str, tuple[Any, str]] = {}  # field -> (value, conn_id that set it)
    settings = base
    for service_name, conn in connections.items():
        spec = service(service_name)
        if conn is None:
            continue
        parsed = _ParsedConnection(conn, spec, base)
        for name, value in parsed.hub_fields.items():
            if name in hub_values and hub_values[name][0] != value:
                other = hub_values[name][1]
                raise ConfigurationError(
                    f"Airflow connections {other!r} and {parsed.conn_id!r} disagree on {name} "
                    f"({hub_values[name][0]!r} vs {value!r}); a task talking to both needs one value"
                )
            hub_values[name] = (value, parsed.conn_id)
        settings = settings.with_partner(parsed.endpoint(settings.partner(spec.name)))
    if hub_values:
        settings = replace(settings, **{name: value for name, (value, _) in hub_values.items()})
    return settings


def configured_services(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """The services (of ``names``, default all) that have an endpoint URL in ``settings``."""
    return [name for name in (names or SERVICES) if settings.partner(service(name).name).url]


class _ParsedConnection:
    """One connection read and checked once; every error names the connection and the field."""

    def __init__(self, conn: ConnectionLike, spec: ServiceSpec, base: Settings):
        self.conn = conn
        self.spec = spec
        self.base = base
        self.conn_id = getattr(conn, "conn_id", None) or spec.airflow_conn_id
        self.extra = self._extra()
        unknown = sorted(set(self.extra) - set(EXTRA_KEYS))
        if unknown:
            raise self._error(f"unknown extra key(s) {', '.join(unknown)}; known: {', '.join(EXTRA_KEYS)}")
        self.hub_fields = self._hub_fields()

    # --- helpers -----------------------------------------------------------------------------
    def _error(self, message: str) -> ConfigurationError:
        return ConfigurationError(f"Airflow connection {self.conn_id!r}: {message}")

    def _extra(self) -> dict[str, Any]:
        raw = getattr(self.conn, "extra", None)
        if raw is None or raw == "":
            # Core Connection objects carry ``extra`` as a string; some carry only extra_dejson.
            dejson = getattr(self.conn, "extra_dejson", None)
            return dict(dejson) if isinstance(dejson, Mapping) else {}
        if isinstance(raw, Mapping):
            return dict(raw)
        try:
            value = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise self._error(f"extra is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise self._error(f"extra must be a JSON object, got {type(value).__name__}")
        return value

    def _text(self, key: str) -> str | None:
        value = self.extra.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self._error(f"extra {key!r} must be a non-empty string, got {value!r}")
        return value.strip()

    def _path(self, value: str) -> Path:
        path = Path(os.path.expandvars(os.path.expanduser(value)))
        return path if path.is_absolute() else self.base.home / path

    def _paths(self, key: str) -> tuple[Path, ...] | None:
        value = self.extra.get(key)
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(p, str) and p.strip() for p in items):
            raise self._error(f"extra {key!r} must be a path or a non-empty list of paths, got {value!r}")
        return tuple(self._path(p.strip()) for p in items)

    def _agency_code(self, key: str) -> str | None:
        code = self._text(key)
        if code is not None and not _AGENCY_CODE.fullmatch(code):
            raise self._error(
                f"extra {key!r} = {code!r} is not an agency code (e.g. 000.00.00.G22, H37.02.02)"
            )
        return code

    # --- hub-wide values ---------------------------------------------------------------------
    def _hub_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if (code := self._agency_code("agency_code")) is not None:
            fields["agency_code"] = code
        if (name := self._text("agency_name")) is not None:
            fields["agency_name"] = name
        if (key_path := self._text("key_path")) is not None:
            fields["key_path"] = self._path(key_path)
        if (password := self._key_password()) is not None:
            fields["key_password"] = password
        if (trust := self._paths("trust_ca")) is not None:
            fields["trust_paths"] = trust
        if (crls := self._paths("crl")) is not None:
            fields["crl_paths"] = crls
        if "operation_timeout" in self.extra:
            fields["operation_timeout"] = self._timeout()
        if (algorithm := self._text("signature_algorithm")) is not None:
            if algorithm not in SIGNATURE_ALGORITHMS:
                raise self._error(
                    f"extra 'signature_algorithm' = {algorithm!r}; use one of {', '.join(SIGNATURE_ALGORITHMS)}"
                )
            fields["signature_algorithm"] = algorithm
        return fields

    def _json(self) -> bool:
        return (self._text("transport") or "soap").lower() == "json"

    def _key_password(self) -> str | None:
        # over json the connection's login and password are the adapter's account (see endpoint)
        password = None if self._json() else getattr(self.conn, "password", None) or None
        file_ref = self._text("key_password_file")
        env_ref = self._text("key_password_env")
        given = [name for name, value in (("password", password), ("extra 'key_password_file'", file_ref),
                                          ("extra 'key_password_env'", env_ref)) if value]
        if len(given) > 1:
            raise self._error(f"set only one of {', '.join(given)} for the key password")
        if file_ref:
            path = self._path(file_ref)
            try:
                secret = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise self._error(f"cannot read key password file {path}: {exc.strerror or exc}") from None
            if not secret:
                raise self._error(f"key password file {path} is empty")
            return secret
        if env_ref:
            secret = os.environ.get(env_ref)
            if not secret:
                raise self._error(f"environment variable {env_ref} (extra 'key_password_env') is not set")
            return secret
        return password

    def _timeout(self) -> float:
        value = self.extra["operation_timeout"]
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = float("nan")
        if isinstance(value, bool) or not seconds > 0 or seconds == float("inf"):
            raise self._error(f"extra 'operation_timeout' must be a positive number of seconds, got {value!r}")
        return seconds

    # --- the partner endpoint ------------------------------------------------------------------
    def endpoint(self, default: PartnerEndpoint) -> PartnerEndpoint:
        changes: dict[str, Any] = {}
        if (url := self._url()) is not None:
            changes["url"] = url
        if (code := self._agency_code("partner_agency_code")) is not None:
            changes["agency_code"] = code
        if (name := self._text("partner_agency_name")) is not None:
            changes["agency_name"] = name
        if "tls_verify" in self.extra:
            changes["tls_verify"] = self._tls_verify()
        if "tls_client_cert" in self.extra:
            changes["client_cert"] = self._client_cert()
        if (transport := self._text("transport")) is not None:
            if transport.lower() not in TRANSPORTS:
                raise self._error(f"extra 'transport' {transport!r} is not one of {', '.join(TRANSPORTS)}")
            changes["transport"] = transport.lower()
        if self._json():
            changes["username"] = (getattr(self.conn, "login", None) or "").strip() or default.username
            changes["password"] = getattr(self.conn, "password", None) or default.password
            for key in ("dstcode", "auth_path", "integration_path", "share_path"):
                if (value := self._text(key)) is not None:
                    changes[key] = value
        return replace(default, service=self.spec.name, **changes)

    def _url(self) -> str | None:
        host = (getattr(self.conn, "host", None) or "").strip()
        schema = (getattr(self.conn, "schema", None) or "").strip()
        port = getattr(self.conn, "port", None)
        path = self._text("path")
        if not host:
            if schema or port or path:
                raise self._error("schema/port/path are set but host is empty")
            return None
        if "://" in host:
            given = [name for name, value in (("port", port), ("schema", schema), ("extra 'path'", path)) if value]
            if given:
                raise self._error(f"host is a full URL; leave {', '.join(given)} empty or put them in the URL")
            parts = urlsplit(host)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self._error(f"host {host!r} is not an http(s) URL")
            try:
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError as exc:
                raise self._error(f"host {host!r}: {exc}") from None
            return host
        if "/" in host or "?" in host or "#" in host:
            raise self._error(f"host {host!r} holds a path; give a full URL in host or the path in extra 'path'")
        scheme = (schema or "https").lower()
        if scheme not in ("http", "https"):
            raise self._error(
                f"schema {schema!r} is not a URL scheme (http or https); put the path in extra 'path'"
            )
        if port is not None:
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise self._error(f"port {port!r} is not a number") from None
            if not 0 < port < 65536:
                raise self._error(f"port {port} is out of range")
        netloc = f"[{host}]" if ":" in host else host
        if port:
            netloc += f":{port}"
        path = path or self.spec.path
        if not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{netloc}{path}"

    def _tls_verify(self) -> bool | str:
        value = self.extra["tls_verify"]
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            if lowered:
                return str(self._path(value.strip()))
        raise self._error(f"extra 'tls_verify' must be true, false or a CA bundle path, got {value!r}")

    def _client_cert(self) -> str | None:
        value = self.extra["tls_client_cert"]
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else value
        if (not isinstance(items, list) or not 1 <= len(items) <= 2
                or not all(isinstance(p, str) and p.strip() for p in items)):
            raise self._error(
                f"extra 'tls_client_cert' must be 'cert.pem', 'cert.pem,key.pem' or a list of 1-2 paths, got {value!r}"
            )
        return ",".join(str(self._path(p.strip())) for p in items)
