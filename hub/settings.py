"""Where the hub keeps its state and how it reaches its partners.

One frozen value, read from the environment (or built by the Airflow DAGs from Airflow
Connections), so the CLI, the DAGs and the tests all see the same configuration. Everything the
hub writes lives under ``LIENTHONG_HOME`` (default ``./.lienthong``) unless ``LIENTHONG_DB_URL``
points the store elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from .errors import ConfigurationError

#: The hub's own agency code when nothing else is configured (a ministry, level-1 group ``Gnn``).
DEFAULT_AGENCY_CODE = "000.00.00.G10"
DEFAULT_AGENCY_NAME = "Bộ Nông nghiệp và Môi trường"
#: The national side's agency code: the Government Office operates CSDL TTHC, the portal and reporting.
NATIONAL_AGENCY_CODE = "000.00.00.G22"
NATIONAL_AGENCY_NAME = "Văn phòng Chính phủ"


def _env_moment(env: os._Environ | dict, name: str) -> datetime | None:
    """An ISO-8601 date or date-time from the environment; naive values are Vietnam time."""
    value = (env.get(name) or "").strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{name} is not an ISO date or date-time (e.g. 2026-01-01 or "
                                 f"2026-01-01T08:00:00+07:00): {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    return moment


def _secret(env: os._Environ | dict, name: str) -> str | None:
    """A secret from ``NAME`` or from the file ``NAME_FILE`` names (its first line), never both."""
    value, path = env.get(name) or None, env.get(f"{name}_FILE") or None
    if value and path:
        raise ConfigurationError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).expanduser().read_text(encoding="utf-8").splitlines()[0].strip() or None
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{name}_FILE: cannot read {path}: {exc}") from None
    return value


def _env_bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class PartnerEndpoint:
    """How to reach one national service (from env or an Airflow Connection)."""

    service: str  # "csdl_tthc" | "dvc_portal" | "baocao"
    url: str | None = None
    agency_code: str = NATIONAL_AGENCY_CODE
    agency_name: str = NATIONAL_AGENCY_NAME
    #: ``True``, ``False`` or a CA bundle path for the TLS connection (not for signatures).
    tls_verify: bool | str = True
    #: optional client certificate for mutual TLS: a PEM path, or "cert.pem,key.pem"
    client_cert: str | None = None
    #: how the service is reached (``lienthong.connectors.transport.transport_for``): ``soap`` or ``json``
    transport: str = "soap"
    #: the portal's JSON adapter (``transport == "json"``; ``url`` is then the adapter's base URL)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    dstcode: str | None = None
    auth_path: str | None = None
    integration_path: str | None = None
    share_path: str | None = None


@dataclass(frozen=True)
class Settings:
    home: Path
    db_url: str
    agency_code: str = DEFAULT_AGENCY_CODE
    agency_name: str = DEFAULT_AGENCY_NAME
    #: the deadline of one exchange with a partner, in seconds: connecting, sending and receiving
    #: together end by then whatever the partner's pace (``LIENTHONG_OPERATION_TIMEOUT``)
    operation_timeout: float = 30.0
    #: the largest reply any operation may have (decoded bytes); None: each operation's own limit
    #: (``connectors.services``). ``LIENTHONG_MAX_REPLY_BYTES``
    max_reply_bytes: int | None = None
    #: the hub's signing key (PKCS#12); default ``$LIENTHONG_HOME/pki/hub.p12``
    key_path: Path | None = None
    #: password of the key; default ``LIENTHONG_KEY_PASSWORD`` or ``pki/key-password``
    key_password: str | None = field(default=None, repr=False)
    #: CA certificates that partner signatures must chain to; default ``pki/ca.crt``
    trust_paths: tuple[Path, ...] = ()
    #: optional CRLs checked when verifying partner signatures
    crl_paths: tuple[Path, ...] = ()
    #: signature algorithm for outgoing messages: "rsa-sha256" or "ecdsa-sha256"
    signature_algorithm: str = "rsa-sha256"
    #: RFC 3161 time-stamp authority for audit seals (``LIENTHONG_TSA_URL``); None: seals are not time-stamped
    tsa_url: str | None = None
    partners: dict[str, PartnerEndpoint] = field(default_factory=dict)
    #: dossiers submitted since this moment reach the national portal only through this hub, so one
    #: the hub never delivered is new there and needs no TraCuuHoSo lookup; None: since the outbox's
    #: first event (``LIENTHONG_PORTAL_SOLE_FEED_SINCE``, ISO date or date-time, Vietnam time if naive)
    portal_sole_feed_since: datetime | None = None
    #: the folder the one-stop system shares its result files in (``LIENTHONG_RESULTS_ROOT``);
    #: result documents name their file by a path under it. None: results come by URL only
    results_root: Path | None = None

    @property
    def results_spool(self) -> Path:
        """Where result files fetched by URL wait for their upload."""
        return self.home / "spool" / "results"

    @property
    def pki_dir(self) -> Path:
        return self.home / "pki"

    @property
    def signing_key_path(self) -> Path:
        return self.key_path or self.pki_dir / "hub.p12"

    @property
    def trust_anchor_paths(self) -> tuple[Path, ...]:
        return self.trust_paths or (self.pki_dir / "ca.crt",)

    def key_password_bytes(self) -> bytes:
        """The signing key's password: env/config first, then the generated file beside the key."""
        if self.key_password:
            return self.key_password.encode()
        pw_file = self.pki_dir / "key-password"
        if pw_file.exists():
            return pw_file.read_text().strip().encode()
        raise ConfigurationError(
            f"no key password: set LIENTHONG_KEY_PASSWORD or run 'lienthong keys init' (expected {pw_file})"
        )

    def partner(self, service: str) -> PartnerEndpoint:
        try:
            return self.partners[service]
        except KeyError:
            return PartnerEndpoint(service=service)

    def with_partner(self, endpoint: PartnerEndpoint) -> Settings:
        partners = dict(self.partners)
        partners[endpoint.service] = endpoint
        return replace(self, partners=partners)

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("LIENTHONG_HOME") or ".lienthong").expanduser().resolve()
        db_url = env.get("LIENTHONG_DB_URL") or f"sqlite:///{home / 'lienthong.db'}"
        tls_verify: bool | str = env.get("LIENTHONG_TLS_CA") or _env_bool(env.get("LIENTHONG_TLS_VERIFY"), True)
        partners = {}
        for service, var in (("csdl_tthc", "LIENTHONG_CSDL"), ("dvc_portal", "LIENTHONG_DVC"),
                             ("baocao", "LIENTHONG_BAOCAO")):
            partners[service] = PartnerEndpoint(
                service=service,
                url=env.get(f"{var}_URL") or None,
                transport=(env.get(f"{var}_TRANSPORT") or "soap").strip().lower(),
                username=env.get(f"{var}_USERNAME") or None,
                password=_secret(env, f"{var}_PASSWORD"),
                dstcode=env.get(f"{var}_DSTCODE") or None,
                auth_path=env.get(f"{var}_AUTH_PATH") or None,
                integration_path=env.get(f"{var}_INTEGRATION_PATH") or None,
                share_path=env.get(f"{var}_SHARE_PATH") or None,
                agency_code=env.get("LIENTHONG_NATIONAL_AGENCY_CODE") or NATIONAL_AGENCY_CODE,
                tls_verify=tls_verify,
                client_cert=env.get("LIENTHONG_CLIENT_CERT") or None,
            )
        trust = tuple(Path(p) for p in (env.get("LIENTHONG_TRUST") or "").split(os.pathsep) if p)
        crls = tuple(Path(p) for p in (env.get("LIENTHONG_CRL") or "").split(os.pathsep) if p)
        try:
            timeout = float(env.get("LIENTHONG_OPERATION_TIMEOUT") or 30.0)
        except ValueError as exc:
            raise ConfigurationError(f"LIENTHONG_OPERATION_TIMEOUT is not a number: {exc}") from None
        if not timeout > 0:
            raise ConfigurationError(f"LIENTHONG_OPERATION_TIMEOUT must be a positive number of seconds, not {timeout:g}")
        max_reply = (env.get("LIENTHONG_MAX_REPLY_BYTES") or "").strip()
        if max_reply and (not max_reply.isdigit() or int(max_reply) < 1024):
            raise ConfigurationError(f"LIENTHONG_MAX_REPLY_BYTES must be a whole number of bytes, at least 1024, "
                                     f"not {max_reply!r}")
        return cls(
            home=home,
            db_url=db_url,
            agency_code=env.get("LIENTHONG_AGENCY_CODE") or DEFAULT_AGENCY_CODE,
            agency_name=env.get("LIENTHONG_AGENCY_NAME") or DEFAULT_AGENCY_NAME,
            operation_timeout=timeout,
            max_reply_bytes=int(max_reply) if max_reply else None,
            key_path=Path(env["LIENTHONG_KEY_PATH"]) if env.get("LIENTHONG_KEY_PATH") else None,
            key_password=env.get("LIENTHONG_KEY_PASSWORD") or None,
            trust_paths=trust,
            crl_paths=crls,
            signature_algorithm=env.get("LIENTHONG_SIGNATURE_ALGORITHM") or "rsa-sha256",
            tsa_url=env.get("LIENTHONG_TSA_URL") or None,
            partners=partners,
            portal_sole_feed_since=_env_moment(env, "LIENTHONG_PORTAL_SOLE_FEED_SINCE"),
            results_root=Path(env["LIENTHONG_RESULTS_ROOT"]).expanduser() if env.get("LIENTHONG_RESULTS_ROOT") else None,
        )
