"""XML-DSig for the hub: keys, signer, hardened verifier, trust store and a development PKI.

Typical use::

    identity = load_identity(settings.signing_key_path, settings.key_password_bytes())  # parsed once
    signed = Signer(identity, settings.signature_algorithm).sign(envelope_root)          # bytes
    doc = Verifier(TrustStore.from_paths(settings.trust_anchor_paths)).verify(reply)     # VerifiedDocument

Read only ``doc.root`` (the verified subtree) after verification, never the input tree.
"""

from .keys import SigningIdentity, load_identity
from .pki import PkiFiles, init_dev_pki, issue_certificate, revoke, write_crl
from .signer import Signer
from .verifier import TrustStore, VerifiedDocument, Verifier

__all__ = [
    "SigningIdentity",
    "load_identity",
    "Signer",
    "TrustStore",
    "Verifier",
    "VerifiedDocument",
    "PkiFiles",
    "init_dev_pki",
    "issue_certificate",
    "revoke",
    "write_crl",
]
