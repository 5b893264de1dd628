"""Development PKI: a private root CA, the hub's signing certificate and the national side's.

Production keys come from a qualified CA (the government PKI) and are only *loaded* by the hub
(:mod:`lienthong.signing.keys`). Everything else — the demo, the sandbox, the test suite — needs a
self-consistent set of keys that behaves like the real one: certificates whose subject carries the
agency code in ``OU`` and the agency name in ``O``, a CA that issues and revokes them, and a CRL.
This module makes that set, and exposes the primitives (:func:`issue_certificate`,
:func:`revoke`, :func:`write_crl`) so tests can also make the *bad* certificates a verifier must
refuse: expired, not yet valid, revoked, without ``digitalSignature``, from a foreign CA.

Layout written by :func:`init_dev_pki` under ``pki_dir``::

    ca.crt          root CA certificate (PEM) – the trust anchor both sides pin
    ca.p12          root CA key + certificate (PKCS#12, password protected, 0600)
    hub.p12/.crt    the hub's signing identity for its agency code
    national.p12/.crt  the national side's identity (used by the sandbox to sign replies)
    crl.pem         CRL signed by the CA (empty at first)
    key-password    the generated password (0600), only when none was supplied

Private keys never touch the disk unencrypted, and every file holding one is created with mode
0600 *before* any byte is written (no window where it is world-readable). Files are written to a
temporary name and renamed, so an interrupted run never leaves a truncated key that a later,
idempotent run would mistake for a good one.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from lienthong.hub.errors import ConfigurationError
from lienthong.hub.files import write_atomic
from lienthong.hub.settings import DEFAULT_AGENCY_NAME, NATIONAL_AGENCY_NAME

__all__ = [
    "PASSWORD_ENV",
    "DEFAULT_LEAF_KEY_USAGE",
    "PkiFiles",
    "CertificateAuthority",
    "IssuedCertificate",
    "init_dev_pki",
    "create_ca",
    "load_ca",
    "issue_certificate",
    "write_crl",
    "revoke",
    "generate_private_key",
    "resolve_password",
]

#: Environment variable holding the password of every PKCS#12 file (same as hub.settings).
PASSWORD_ENV = "LIENTHONG_KEY_PASSWORD"

#: Key usages of a signing certificate: sign messages, and bind the signer to them (non-repudiation).
DEFAULT_LEAF_KEY_USAGE: frozenset[str] = frozenset({"digital_signature", "content_commitment"})

_KEY_USAGE_FIELDS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)

_CA_VALIDITY = dt.timedelta(days=3650)
_LEAF_VALIDITY = dt.timedelta(days=730)
_CRL_VALIDITY = dt.timedelta(days=365)
#: Backdating absorbs clock skew between the machine that issues and the one that verifies.
_BACKDATE = dt.timedelta(minutes=5)

_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------------------------
# value types
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PkiFiles:
    """Paths of a development PKI (see the module docstring for what each holds)."""

    pki_dir: Path
    ca_cert: Path
    ca_p12: Path
    hub_p12: Path
    hub_cert: Path
    national_p12: Path
    national_cert: Path
    crl: Path
    #: ``pki_dir/key-password`` when the password was generated (or an earlier run generated it),
    #: ``None`` when it came from the caller or ``LIENTHONG_KEY_PASSWORD``.
    password_file: Path | None

    @classmethod
    def in_dir(cls, pki_dir: Path, password_file: Path | None = None) -> PkiFiles:
        return cls(
            pki_dir=pki_dir,
            ca_cert=pki_dir / "ca.crt",
            ca_p12=pki_dir / "ca.p12",
            hub_p12=pki_dir / "hub.p12",
            hub_cert=pki_dir / "hub.crt",
            national_p12=pki_dir / "national.p12",
            national_cert=pki_dir / "national.crt",
            crl=pki_dir / "crl.pem",
            password_file=password_file,
        )


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA key and its certificate, enough to issue certificates and sign CRLs."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def write(self, p12_path: Path, cert_path: Path | None, password: bytes | str) -> None:
        """Write the CA as PKCS#12 (0600) and, when asked, its certificate as PEM (0644)."""
        name = _common_name(self.certificate) or "ca"
        blob = pkcs12.serialize_key_and_certificates(
            name.encode("utf-8"), self.private_key, self.certificate, None, _encryption(password)
        )
        _write_atomic(p12_path, blob, _PRIVATE_MODE)
        if cert_path is not None:
            _write_atomic(cert_path, self.certificate.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)


@dataclass(frozen=True)
class IssuedCertificate:
    """A freshly issued end-entity (or intermediate) key pair with its certificate."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    issuer_certificate: x509.Certificate

    def to_p12(self, password: bytes | str, *, include_issuer: bool = True) -> bytes:
        """PKCS#12 bytes with the key, the certificate and (by default) the issuer as chain."""
        name = _common_name(self.certificate) or "key"
        cas = [self.issuer_certificate] if include_issuer else None
        return pkcs12.serialize_key_and_certificates(
            name.encode("utf-8"), self.private_key, self.certificate, cas, _encryption(password)
        )

    def write(self, p12_path: Path, cert_path: Path | None, password: bytes | str) -> None:
        """Write the key as PKCS#12 (0600) and, when asked, the certificate as PEM (0644)."""
        _write_atomic(p12_path, self.to_p12(password), _PRIVATE_MODE)
        if cert_path is not None:
            _write_atomic(cert_path, self.certificate.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)

    def private_key_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM of the key: for handing to external tools in tests, never to disk in production."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------
def generate_private_key(key_type: str = "rsa") -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """RSA-2048 (``"rsa"``, what the national CA issues today) or ECDSA P-256 (``"ec"``)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ConfigurationError(f"unknown key type {key_type!r}: use 'rsa' or 'ec'")


def _encryption(password: bytes | str) -> serialization.KeySerializationEncryption:
    pw = password.encode("utf-8") if isinstance(password, str) else password
    if not pw:
        raise ConfigurationError("refusing to write a private key with an empty password")
    # PBES2 / AES-256-CBC / PBKDF2-SHA256: readable by OpenSSL 3, xmlsec1 and Java keytool.
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(pw)
    )


def _common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


#: RFC 5280 upper bounds (ub-organization-name, ub-common-name, ...): 64 characters.
_NAME_MAX = 64


def _fit(value: str) -> str:
    """Cut a name to the 64-character X.520 bound (long ministry names exist; a CA would abbreviate)."""
    value = " ".join(value.split())
    return value if len(value) <= _NAME_MAX else value[: _NAME_MAX - 1].rstrip() + "…"


def _subject(*, organization: str, common_name: str, agency_code: str | None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _fit(organization)),
    ]
    if agency_code:
        if len(agency_code) > _NAME_MAX or not agency_code.strip():
            raise ValueError(f"agency code {agency_code!r} does not fit a certificate OU")
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, agency_code))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, _fit(common_name)))
    return x509.Name(attrs)


def _key_usage(names: Iterable[str]) -> x509.KeyUsage:
    wanted = set(names)
    unknown = wanted - set(_KEY_USAGE_FIELDS)
    if unknown:
        raise ValueError(f"unknown key usage(s) {sorted(unknown)}; known: {', '.join(_KEY_USAGE_FIELDS)}")
    flags = {name: name in wanted for name in _KEY_USAGE_FIELDS}
    if not flags["key_agreement"]:
        # encipher_only/decipher_only are only meaningful with key_agreement (RFC 5280 4.2.1.3).
        flags["encipher_only"] = flags["decipher_only"] = False
    return x509.KeyUsage(**flags)


def create_ca(
    *,
    common_name: str = "Liên thông Hub Development Root CA",
    organization: str = "Liên thông Hub (development)",
    key_type: str = "rsa",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertificateAuthority:
    """A self-signed root CA (keyCertSign + cRLSign, path length 1) valid ten years by default."""
    key = generate_private_key(key_type)
    now = _utcnow()
    not_before = not_before or now - _BACKDATE
    not_after = not_after or now + _CA_VALIDITY
    name = _subject(organization=organization, common_name=common_name, agency_code=None)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_key_usage({"key_cert_sign", "crl_sign"}), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(private_key=key, certificate=cert)


def load_ca(ca_p12: Path, password: bytes | str) -> CertificateAuthority:
    """Open ``ca.p12``; a wrong password or a file without key/certificate is a ConfigurationError."""
    ca_p12 = Path(ca_p12)
    pw = password.encode("utf-8") if isinstance(password, str) else password
    try:
        data = ca_p12.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"CA key file not found: {ca_p12}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read CA key file {ca_p12}: {exc.strerror}") from None
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, pw)
    except ValueError:
        raise ConfigurationError(f"cannot open {ca_p12}: wrong password or not a PKCS#12 file") from None
    if key is None or cert is None:
        raise ConfigurationError(f"{ca_p12} does not hold both a private key and a certificate")
    return CertificateAuthority(private_key=key, certificate=cert)


def _as_ca(ca: Path | str | CertificateAuthority, password: bytes | str | None) -> CertificateAuthority:
    if isinstance(ca, CertificateAuthority):
        return ca
    if password is None:
        raise ConfigurationError(f"a password is needed to open {ca}")
    return load_ca(Path(ca), password)


def issue_certificate(
    ca: Path | str | CertificateAuthority,
    password: bytes | str | None,
    agency_code: str,
    *,
    agency_name: str = DEFAULT_AGENCY_NAME,
    common_name: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key_usage: Iterable[str] | None = DEFAULT_LEAF_KEY_USAGE,
    key_type: str = "rsa",
    is_ca: bool = False,
) -> IssuedCertificate:
    """Issue a certificate for ``agency_code`` signed by ``ca`` (a ``ca.p12`` path or a loaded CA).

    Subject: ``C=VN, O=<agency_name>, OU=<agency_code>, CN=<common_name>``. ``key_usage`` is a set of
    :class:`cryptography.x509.KeyUsage` field names (critical extension); ``None`` leaves the
    extension out entirely. Validity defaults to now-5min .. now+2 years; pass explicit bounds to
    make expired or not-yet-valid certificates. ``is_ca`` makes an intermediate CA (for chain tests).
    """
    authority = _as_ca(ca, password)
    key = generate_private_key(key_type)
    now = _utcnow()
    not_before = not_before or now - _BACKDATE
    not_after = not_after or not_before + _LEAF_VALIDITY
    if not_after <= not_before:
        raise ValueError(f"not_after {not_after.isoformat()} is not after not_before {not_before.isoformat()}")
    common_name = common_name or f"Chữ ký số liên thông {agency_code}"
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(organization=agency_name, common_name=common_name, agency_code=agency_code))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.certificate.public_key()), critical=False
        )
    )
    if key_usage is not None:
        builder = builder.add_extension(_key_usage(key_usage), critical=True)
    cert = builder.sign(authority.private_key, hashes.SHA256())
    return IssuedCertificate(private_key=key, certificate=cert, issuer_certificate=authority.certificate)


def write_crl(
    crl_path: Path,
    ca: Path | str | CertificateAuthority,
    password: bytes | str | None = None,
    *,
    revoked: Iterable[tuple[int, dt.datetime]] = (),
    crl_number: int = 1,
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """Write a PEM CRL signed by ``ca`` listing ``revoked`` (serial, revocation time) pairs."""
    authority = _as_ca(ca, password)
    last_update = last_update or _utcnow() - _BACKDATE
    next_update = next_update or last_update + _CRL_VALIDITY
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.certificate.public_key()), critical=False
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(authority.private_key, hashes.SHA256())
    _write_atomic(Path(crl_path), crl.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
    return crl


def revoke(
    crl_path: Path,
    ca: Path | str | CertificateAuthority,
    certificate: x509.Certificate | int,
    password: bytes | str | None = None,
    *,
    when: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """Add ``certificate`` (or a serial number) to the CRL at ``crl_path`` and re-sign it.

    Existing entries are kept and the CRL number is incremented, as a real CA does; a missing CRL
    file starts a new one.
    """
    authority = _as_ca(ca, password)
    serial = certificate if isinstance(certificate, int) else certificate.serial_number
    entries: dict[int, dt.datetime] = {}
    number = 0
    crl_path = Path(crl_path)
    if crl_path.exists():
        existing = x509.load_pem_x509_crl(crl_path.read_bytes())
        if not existing.is_signature_valid(authority.certificate.public_key()):
            raise ConfigurationError(f"{crl_path} is not signed by {authority.certificate.subject.rfc4514_string()}")
        for entry in existing:
            entries[entry.serial_number] = entry.revocation_date_utc
        try:
            number = existing.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except x509.ExtensionNotFound:
            number = 0
    entries.setdefault(serial, when or _utcnow())
    return write_crl(crl_path, authority, revoked=sorted(entries.items()), crl_number=number + 1)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode`` from the start."""
    write_atomic(path, data, mode=mode)


def resolve_password(pki_dir: Path, password: str | bytes | None = None, *, create: bool = True) -> tuple[bytes, Path | None]:
    """The PKI password and the file it came from (``None`` unless it is ``pki_dir/key-password``).

    Order: explicit argument, ``LIENTHONG_KEY_PASSWORD``, an existing ``key-password`` file, and —
    when ``create`` — a new random password written to ``key-password`` with mode 0600.
    """
    if password:
        return (password.encode("utf-8") if isinstance(password, str) else password), None
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env.encode("utf-8"), None
    pw_file = Path(pki_dir) / "key-password"
    if pw_file.exists():
        value = pw_file.read_text(encoding="utf-8").strip()
        if not value:
            raise ConfigurationError(f"{pw_file} is empty; delete it and the PKI, or set {PASSWORD_ENV}")
        return value.encode("utf-8"), pw_file
    if not create:
        raise ConfigurationError(f"no key password: set {PASSWORD_ENV} or create {pw_file}")
    generated = secrets.token_urlsafe(32)  # 256 bits
    _write_atomic(pw_file, (generated + "\n").encode("ascii"), _PRIVATE_MODE)
    return generated.encode("ascii"), pw_file


def _load_p12_cert(p12: Path, password: bytes) -> x509.Certificate:
    try:
        _, cert, _ = pkcs12.load_key_and_certificates(p12.read_bytes(), password)
    except ValueError:
        raise ConfigurationError(f"cannot open {p12}: wrong password or not a PKCS#12 file") from None
    if cert is None:
        raise ConfigurationError(f"{p12} holds no certificate")
    return cert


def init_dev_pki(
    pki_dir: Path,
    hub_agency: str,
    national_agency: str,
    password: str | None = None,
    *,
    hub_name: str = DEFAULT_AGENCY_NAME,
    national_name: str = NATIONAL_AGENCY_NAME,
    key_type: str = "rsa",
) -> PkiFiles:
    """Create (or complete) a development PKI under ``pki_dir`` and return its paths.

    Idempotent: a file that exists is never rewritten, so running ``lienthong keys init`` twice
    keeps the keys a partner already trusts. Only missing pieces are made; a missing leaf is
    re-issued by the existing CA. If the CA key is gone while certificates it issued remain, the
    run stops with a ConfigurationError instead of minting a new CA that would silently orphan them.
    """
    pki_dir = Path(pki_dir)
    files = PkiFiles.in_dir(pki_dir)
    pw_file = pki_dir / "key-password"
    targets = (files.ca_cert, files.ca_p12, files.hub_p12, files.hub_cert,
               files.national_p12, files.national_cert, files.crl)
    if all(p.exists() for p in targets):
        used_file = pw_file if (not password and not os.environ.get(PASSWORD_ENV) and pw_file.exists()) else None
        return PkiFiles.in_dir(pki_dir, used_file)

    if not pki_dir.exists():
        pki_dir.mkdir(parents=True, mode=0o700)
    pw, used_file = resolve_password(pki_dir, password)

    if files.ca_p12.exists():
        authority = load_ca(files.ca_p12, pw)
        if not files.ca_cert.exists():
            _write_atomic(files.ca_cert, authority.certificate.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
    else:
        orphans = [p.name for p in (files.hub_p12, files.national_p12, files.crl, files.ca_cert) if p.exists()]
        if orphans:
            raise ConfigurationError(
                f"{files.ca_p12} is missing but {', '.join(orphans)} exist in {pki_dir}: restore the CA key "
                "or remove the directory to start a new development PKI"
            )
        authority = create_ca(key_type=key_type)
        authority.write(files.ca_p12, files.ca_cert, pw)

    for agency, name, p12, crt, role in (
        (hub_agency, hub_name, files.hub_p12, files.hub_cert, "hub"),
        (national_agency, national_name, files.national_p12, files.national_cert, "national"),
    ):
        if p12.exists():
            if not crt.exists():
                cert = _load_p12_cert(p12, pw)
                _write_atomic(crt, cert.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
            continue
        cn = f"Liên thông Hub {agency}" if role == "hub" else f"Hệ thống quốc gia {agency}"
        issued = issue_certificate(authority, None, agency, agency_name=name, common_name=cn, key_type=key_type)
        issued.write(p12, crt, pw)

    if not files.crl.exists():
        write_crl(files.crl, authority)
    return PkiFiles.in_dir(pki_dir, used_file)
