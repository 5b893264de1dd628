"""``python -m lienthong.sandbox``: the process the demo and the end-to-end tests start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from lienthong.hub.settings import Settings
from lienthong.sandbox.server import SandboxServer, build_parser, config_from_args
from sandbox_helpers import PASSWORD


@pytest.mark.slow
def test_module_prints_its_url_and_serves(pki, tmp_path):
    env = dict(os.environ, LIENTHONG_HOME=str(tmp_path / "home"), LIENTHONG_KEY_PASSWORD=PASSWORD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lienthong.sandbox", "--port", "0", "--pki-dir", str(pki.pki_dir),
         "--procedures", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else url
        health = requests.get(url + "/health", timeout=10).json()
        assert health["services"]["csdl_tthc"] == url + "/csdl-tthc"
        assert (tmp_path / "home" / "sandbox" / "sandbox.db").exists()
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


@pytest.mark.slow
def test_module_explains_a_missing_pki(tmp_path):
    env = dict(os.environ, LIENTHONG_HOME=str(tmp_path / "home"))
    env.pop("LIENTHONG_KEY_PASSWORD", None)
    done = subprocess.run([sys.executable, "-m", "lienthong.sandbox", "--port", "0"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "keys init" in done.stderr


def test_arguments_map_onto_the_config(tmp_home, tmp_path):
    args = build_parser().parse_args([
        "--port", "0", "--procedures", "20000", "--seed", "7", "--fail-rate", "0.1", "--fatal-rate", "0.05",
        "--timeout-rate", "0.02", "--timeout-seconds", "3", "--latency-ms", "15", "--fault-seed", "99",
        "--store", ":memory:", "--agency-code", "000.00.00.G99",
    ])
    config = config_from_args(args, Settings.from_env())
    assert (config.port, config.procedures, config.seed, config.store_path) == (0, 20000, 7, ":memory:")
    assert (config.fail_rate, config.fatal_rate, config.timeout_rate, config.timeout_seconds) == (0.1, 0.05, 0.02, 3.0)
    assert (config.latency_ms, config.fault_seed, config.national_agency) == (15.0, 99, "000.00.00.G99")
    assert config.pki_dir == tmp_home / "pki"


def test_init_pki_creates_a_shared_development_pki(tmp_home):
    args = build_parser().parse_args(["--port", "0", "--init-pki", "--store", ":memory:"])
    config = config_from_args(args, Settings.from_env())
    assert (tmp_home / "pki" / "national.p12").exists() and (tmp_home / "pki" / "hub.p12").exists()
    server = SandboxServer(config)  # loads the generated key with the generated password
    assert server.signer.agency_code == "000.00.00.G22"
    server.close()
