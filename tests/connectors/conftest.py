"""Fixtures for connector tests: a real PKI, a real sandbox, a real store, the real connectors."""

from __future__ import annotations

from pathlib import Path

import pytest
from connector_helpers import PASSWORD, settings_for
from lienthong.hub.audit import AuditTrail
from lienthong.hub.settings import Settings
from lienthong.hub.store import make_engine, upgrade
from lienthong.sandbox.server import MEMORY, SandboxConfig, SandboxServer
from lienthong.signing import init_dev_pki


@pytest.fixture(scope="session")
def conn_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("connectors-home")
    init_dev_pki(home / "pki", "000.00.00.G10", "000.00.00.G22", PASSWORD)
    return home


@pytest.fixture
def audit(tmp_path) -> AuditTrail:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    yield AuditTrail(engine)
    engine.dispose()


@pytest.fixture
def make_sandbox(conn_home):
    servers: list[SandboxServer] = []

    def make(**overrides) -> SandboxServer:
        config = SandboxConfig(port=0, store_path=MEMORY, pki_dir=conn_home / "pki", key_password=PASSWORD,
                               procedures=50, seed=1, **overrides)
        server = SandboxServer(config)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def sandbox(make_sandbox) -> SandboxServer:
    return make_sandbox()


@pytest.fixture
def settings(conn_home, sandbox) -> Settings:
    return settings_for(conn_home, sandbox.base_url)
