"""Shared fixtures for the signing tests: one development PKI per test session, built in tmp.

Key generation dominates the cost of these tests, so the PKI and the hub identity are made once;
tests that need to change files (CRLs, idempotency) work on copies or on their own directories.
"""

from __future__ import annotations

import pytest
from lienthong.signing.keys import SigningIdentity, load_identity
from lienthong.signing.pki import CertificateAuthority, PkiFiles, init_dev_pki, issue_certificate, load_ca
from lienthong.signing.signer import Signer
from lienthong.signing.verifier import TrustStore, Verifier
from signing_helpers import HUB_AGENCY, HUB_NAME, NATIONAL_AGENCY, PASSWORD, build_envelope


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PkiFiles:
    return init_dev_pki(tmp_path_factory.mktemp("pki") / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD,
                        hub_name=HUB_NAME)


@pytest.fixture(scope="session")
def ca(pki) -> CertificateAuthority:
    return load_ca(pki.ca_p12, PASSWORD)


@pytest.fixture(scope="session")
def hub_identity(pki) -> SigningIdentity:
    return load_identity(pki.hub_p12, PASSWORD.encode())


@pytest.fixture(scope="session")
def signer(hub_identity) -> Signer:
    return Signer(hub_identity)


@pytest.fixture(scope="session")
def trust(pki) -> TrustStore:
    return TrustStore.from_paths([pki.ca_cert], [pki.crl])


@pytest.fixture(scope="session")
def verifier(trust) -> Verifier:
    return Verifier(trust)


@pytest.fixture(scope="session")
def make_identity(ca):
    """Issue a certificate from the test CA (or another CA) and wrap it as a SigningIdentity."""

    def make(agency: str = HUB_AGENCY, *, issuer: CertificateAuthority | None = None, key_type: str = "ec",
             **kwargs) -> SigningIdentity:
        issued = issue_certificate(issuer or ca, None, agency, key_type=key_type, **kwargs)
        return SigningIdentity.from_objects(issued.private_key, issued.certificate, (issued.issuer_certificate,))

    return make


@pytest.fixture(scope="session")
def signed_envelope(signer) -> bytes:
    return signer.sign(build_envelope())
