"""The hub's signing identity: private key + certificate, loaded once per process.

Opening a PKCS#12 file means running its password-based key derivation and parsing the key and
certificates: tens of milliseconds, more than the signature itself. An outbox worker signs
thousands of messages, so :func:`load_identity` keeps what it parsed, keyed on the file's resolved
path, modification time and size (a rotated key is picked up without a restart) and on a keyed
fingerprint of the password (a wrong password is never answered from the cache, and the password
itself is not kept as a cache key).

The agency code the hub signs for is read from the certificate subject's ``OU``; ``O`` is the
agency name. That binding is what the partner checks against the envelope's ``From/OrganId``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs12
from cryptography.x509.oid import NameOID
from lienthong.hub.errors import ConfigurationError

__all__ = ["SigningIdentity", "load_identity", "agency_code_of", "CacheInfo"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def agency_code_of(certificate: x509.Certificate) -> str | None:
    """The agency code in the subject's single ``OU``; ``None`` if there is none or several."""
    values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(values) != 1:
        return None
    code = str(values[0].value).strip()
    return code or None


@dataclass(frozen=True)
class SigningIdentity:
    """A private key, its certificate, the issuing chain, and the agency code it signs for."""

    private_key: PrivateKey = field(repr=False)
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    agency_code: str
    #: where it was loaded from (``None`` when built in memory, e.g. in tests)
    source: Path | None = None

    @classmethod
    def from_objects(
        cls,
        private_key: PrivateKey,
        certificate: x509.Certificate,
        chain: tuple[x509.Certificate, ...] | list[x509.Certificate] = (),
        *,
        source: Path | None = None,
    ) -> SigningIdentity:
        """Build and check an identity from key objects (the same checks as :func:`load_identity`)."""
        where = str(source) if source is not None else "signing identity"
        if not isinstance(private_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise ConfigurationError(f"{where}: unsupported key type {type(private_key).__name__}; use RSA or ECDSA")
        pub = PublicFormat.SubjectPublicKeyInfo
        if private_key.public_key().public_bytes(Encoding.DER, pub) != certificate.public_key().public_bytes(
            Encoding.DER, pub
        ):
            raise ConfigurationError(f"{where}: the private key does not match the certificate")
        code = agency_code_of(certificate)
        if code is None:
            raise ConfigurationError(
                f"{where}: certificate subject {certificate.subject.rfc4514_string()} has no single OU "
                "holding the agency code"
            )
        return cls(private_key=private_key, certificate=certificate, chain=tuple(chain), agency_code=code,
                   source=source)

    @property
    def key_type(self) -> str:
        """``"rsa"`` or ``"ec"``."""
        return "rsa" if isinstance(self.private_key, rsa.RSAPrivateKey) else "ec"

    @property
    def default_algorithm(self) -> str:
        """The signature algorithm that matches the key: ``rsa-sha256`` or ``ecdsa-sha256``."""
        return "rsa-sha256" if self.key_type == "rsa" else "ecdsa-sha256"

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


# --------------------------------------------------------------------------------------------
# process-wide cache
# --------------------------------------------------------------------------------------------
class CacheInfo(NamedTuple):
    hits: int
    misses: int
    currsize: int
    maxsize: int


class _IdentityCache:
    """Small, thread-safe, keyed cache of parsed identities (a handful of keys per process at most)."""

    def __init__(self, maxsize: int = 16) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, SigningIdentity] = OrderedDict()
        self._maxsize = maxsize
        self._hits = 0
        self._misses = 0
        # Per-process secret: the cache key holds HMAC(secret, password), not the password or a
        # plain hash of it that could be brute-forced from a memory dump.
        self._secret = secrets.token_bytes(32)

    def fingerprint(self, password: bytes) -> bytes:
        return hmac.new(self._secret, password, hashlib.sha256).digest()

    def get(self, key: tuple) -> SigningIdentity | None:
        with self._lock:
            identity = self._entries.get(key)
            if identity is not None:
                self._entries.move_to_end(key)
                self._hits += 1
            return identity

    def put(self, key: tuple, identity: SigningIdentity) -> None:
        with self._lock:
            self._misses += 1
            # A new version of the same file replaces the old one.
            for stale in [k for k in self._entries if k[0] == key[0] and k != key]:
                del self._entries[stale]
            self._entries[key] = identity
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._entries), self._maxsize)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._hits = self._misses = 0


_CACHE = _IdentityCache()


def _parse_p12(path: Path, data: bytes, password: bytes) -> SigningIdentity:
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        # cryptography says "Invalid password or PKCS12 data"; never echo the password.
        raise ConfigurationError(f"cannot open signing key {path}: wrong password or not a PKCS#12 file") from None
    if key is None:
        raise ConfigurationError(f"{path} holds no private key")
    if cert is None:
        raise ConfigurationError(f"{path} holds no certificate for its private key")
    return SigningIdentity.from_objects(key, cert, tuple(extra or ()), source=path)


def load_identity(p12_path: Path | str, password: bytes | str) -> SigningIdentity:
    """Load the signing identity in ``p12_path``, parsing the file only the first time.

    The result is cached for the life of the process, keyed on (resolved path, mtime, size,
    password fingerprint). Missing file, unreadable file, wrong password, a file without a key or
    certificate, a key that does not match its certificate or a certificate without an ``OU``
    agency code all raise :class:`ConfigurationError` naming the file (never the password).
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    path = Path(p12_path).expanduser()
    try:
        resolved = path.resolve(strict=True)
        st = os.stat(resolved)
    except FileNotFoundError:
        raise ConfigurationError(
            f"signing key not found: {path} (run 'lienthong keys init' for a development key, "
            "or set LIENTHONG_KEY_PATH)"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot access signing key {path}: {exc.strerror}") from None
    key = (str(resolved), st.st_mtime_ns, st.st_size, _CACHE.fingerprint(password))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    try:
        data = resolved.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read signing key {path}: {exc.strerror}") from None
    identity = _parse_p12(resolved, data, password)
    _CACHE.put(key, identity)
    return identity


load_identity.cache_info = _CACHE.info  # type: ignore[attr-defined]
load_identity.cache_clear = _CACHE.clear  # type: ignore[attr-defined]
