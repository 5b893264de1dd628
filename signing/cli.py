"""The signing commands of the ``lienthong`` CLI (argument parsing lives in ``lienthong.hub.cli``).

Each function takes the resolved :class:`~lienthong.hub.settings.Settings`, does one thing and
either returns its result or raises a typed :class:`~lienthong.hub.errors.HubError` whose
``str()`` is the one line the CLI prints before exiting non-zero.

* ``lienthong keys init``  → :func:`cmd_keys_init`: development PKI under ``$LIENTHONG_HOME/pki``
* ``lienthong sign FILE``  → :func:`cmd_sign`: FILE signed with the hub key (bytes for stdout/--output)
* ``lienthong verify FILE`` → :func:`cmd_verify`: FILE's signature checked against the trust store
"""

from __future__ import annotations

from pathlib import Path

from lienthong.hub.errors import ConfigurationError
from lienthong.hub.settings import Settings
from lienthong.hub.xmlsafe import parse_xml

from .keys import load_identity
from .pki import PkiFiles, init_dev_pki
from .signer import SIGNATURE_ALGORITHMS, Signer
from .verifier import TrustStore, VerifiedDocument, Verifier

__all__ = ["cmd_keys_init", "cmd_sign", "cmd_verify", "trust_store_for", "signer_for"]


def _read_input(path: Path | str) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{path} is a directory, not an XML file") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None


def cmd_keys_init(settings: Settings) -> PkiFiles:
    """Create the development PKI (idempotent): CA, hub and national certificates, empty CRL.

    The hub certificate carries ``settings.agency_code``/``agency_name``; the national one the
    agency configured for the partners (``LIENTHONG_NATIONAL_AGENCY_CODE``, default the Government
    Office). The key type follows ``settings.signature_algorithm`` (ECDSA P-256 for
    ``ecdsa-sha256``, otherwise RSA-2048).
    """
    settings.ensure_home()
    national = settings.partner("dvc_portal")
    _, key_type = SIGNATURE_ALGORITHMS.get(settings.signature_algorithm, (None, "rsa"))
    return init_dev_pki(
        settings.pki_dir,
        settings.agency_code,
        national.agency_code,
        settings.key_password,
        hub_name=settings.agency_name,
        national_name=national.agency_name,
        key_type=key_type,
    )


def signer_for(settings: Settings) -> Signer:
    """The hub's :class:`Signer` (key parsed once per process, then served from the cache).

    Refuses a key whose certificate names another agency than ``settings.agency_code``: partners
    match the certificate ``OU`` against the envelope's ``From/OrganId`` and would reject every message.
    """
    identity = load_identity(settings.signing_key_path, settings.key_password_bytes())
    if identity.agency_code != settings.agency_code:
        raise ConfigurationError(
            f"signing key {settings.signing_key_path} is for agency {identity.agency_code} but the hub is "
            f"configured as {settings.agency_code} (LIENTHONG_AGENCY_CODE)"
        )
    return Signer(identity, settings.signature_algorithm)


def trust_store_for(settings: Settings) -> TrustStore:
    """Pinned CAs from the settings; CRLs from ``LIENTHONG_CRL`` or else ``pki/crl.pem`` when present."""
    crls = settings.crl_paths
    if not crls:
        default_crl = settings.pki_dir / "crl.pem"
        crls = (default_crl,) if default_crl.exists() else ()
    return TrustStore.from_paths(settings.trust_anchor_paths, crls)


def cmd_sign(settings: Settings, path: Path | str) -> bytes:
    """FILE signed with the hub key: UTF-8 bytes without XML declaration.

    The file is parsed with the hardened parser (it may come from anywhere) and must not already
    carry a signature.
    """
    root = parse_xml(_read_input(path), what=f"file {path}")
    return signer_for(settings).sign(root)


def cmd_verify(settings: Settings, path: Path | str) -> VerifiedDocument:
    """Verify FILE's enveloped signature against the configured trust store and CRLs."""
    data = _read_input(path)
    return Verifier(trust_store_for(settings)).verify(data)
