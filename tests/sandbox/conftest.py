"""Fixtures for the sandbox tests: one development PKI per session, a fresh in-process sandbox per test.

Key generation is the slow part, so the PKI (and a second, foreign CA for "untrusted signer" cases)
is made once. Each test gets its own sandbox on a free port with an in-memory store, so tests never
see each other's dossiers or messages; starting one costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer
from lienthong.signing import Signer, TrustStore, Verifier, init_dev_pki, load_identity
from lienthong.signing.keys import SigningIdentity
from lienthong.signing.pki import PkiFiles, create_ca, issue_certificate
from sandbox_helpers import HUB_AGENCY, NATIONAL_AGENCY, PASSWORD, SandboxClient


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PkiFiles:
    return init_dev_pki(tmp_path_factory.mktemp("sandbox-pki") / "pki", HUB_AGENCY, NATIONAL_AGENCY, PASSWORD)


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
def make_sandbox(pki) -> Iterator:
    started: list[SandboxServer] = []

    def make(**overrides) -> SandboxServer:
        config = SandboxConfig(port=0, store_path=MEMORY, pki_dir=pki.pki_dir, key_password=PASSWORD,
                               procedures=300, seed=1)
        for key, value in overrides.items():
            setattr(config, key, value)
        server = SandboxServer(config)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()


@pytest.fixture
def sandbox(make_sandbox) -> SandboxServer:
    return make_sandbox()


@pytest.fixture
def client(sandbox, hub_signer, hub_verifier) -> SandboxClient:
    return SandboxClient(sandbox.base_url, hub_signer, hub_verifier)
