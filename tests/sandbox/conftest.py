"""Fixtures for the sandbox tests: the session's development PKI, a fresh in-process sandbox per test.

Key generation is the slow part, so the sandbox tests use the PKI tests/conftest.py makes once per
session (``conn_home``), plus a foreign CA for "untrusted signer" cases. Each test gets its own
sandbox (tests/conftest.py's ``make_sandbox``: a free port, an in-memory store) so tests never see
each other's dossiers or messages; starting one costs a few milliseconds.
"""

from __future__ import annotations

import pytest
from lienthong.signing import Signer, TrustStore, Verifier, init_dev_pki, load_identity
from lienthong.signing.keys import SigningIdentity
from lienthong.signing.pki import PkiFiles, create_ca, issue_certificate
from sandbox_helpers import HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, SandboxClient


@pytest.fixture(scope="session")
def pki(conn_home) -> PkiFiles:
    """The session's development PKI (made by ``conn_home`` for the same two agencies)."""
    return init_dev_pki(conn_home / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD)


@pytest.fixture(scope="session")
def hub_signer(pki) -> Signer:
    return Signer(load_identity(pki.hub_p12, PASSWORD.encode()))


@pytest.fixture(scope="session")
def hub_verifier(pki) -> Verifier:
    return Verifier(TrustStore.from_paths([pki.ca_cert], [pki.crl]))


@pytest.fixture(scope="session")
def foreign_signer() -> Signer:
    """A signer for the hub's agency code whose certificate comes from a CA the sandbox does not trust."""
    ca = create_ca(common_name="Foreign Root CA", key_type="ec")
    issued = issue_certificate(ca, None, HUB_AGENCY, key_type="ec")
    return Signer(SigningIdentity.from_objects(issued.private_key, issued.certificate, (ca.certificate,)),
                  "ecdsa-sha256")


@pytest.fixture
def make_sandbox(make_sandbox):
    """tests/conftest.py's ``make_sandbox`` with the sandbox tests' default catalogue of 300 procedures."""
    return lambda **overrides: make_sandbox(**{"procedures": 300, **overrides})


@pytest.fixture
def client(sandbox, hub_signer, hub_verifier) -> SandboxClient:
    return SandboxClient(sandbox.base_url, hub_signer, hub_verifier)
