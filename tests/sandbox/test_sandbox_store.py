"""The sandbox store on disk: what was received survives a restart and is queryable."""

from __future__ import annotations

import sqlite3

from lienthong.sandbox.server import SandboxConfig, SandboxServer
from lienthong.sandbox.store import SandboxStore
from sandbox_helpers import PASSWORD, SandboxClient, dossier


def test_received_messages_survive_a_restart(tmp_path, pki, hub_signer, hub_verifier):
    db = tmp_path / "sandbox" / "sandbox.db"
    config = SandboxConfig(port=0, store_path=db, pki_dir=pki.pki_dir, key_password=PASSWORD)
    with SandboxServer(config) as server:
        client = SandboxClient(server.base_url, hub_signer, hub_verifier)
        client.call("dvc_portal", "DongBoHoSoMC",
                    {"isUpdating": False, "HoSo": [dossier("000.00.04.G10-20260609-0000001")]},
                    document_id="G10-PERSIST-000001")
        client.call("csdl_tthc", "LayThuTuc", {"MATTHC": "1.001012"}, signer=False)
    server.store.close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    store = SandboxStore(db)
    try:
        [sync] = store.received(service="dvc_portal")
        assert (sync.operation, sync.document_id, sync.outcome, sync.ok) == (
            "DongBoHoSoMC", "G10-PERSIST-000001", "OK", True)
        assert sync.raw.startswith(b"<?xml") and len(sync.sha256) == 64
        assert sync.received_at.tzinfo is not None
        [refused] = store.received(operation="LayThuTuc")
        assert (refused.outcome, refused.ok) == ("SIGNATURE_MISSING", False)
        assert store.count() == 2 and store.count(service="csdl_tthc") == 1
        assert store.outcomes() == {"OK": 1, "SIGNATURE_MISSING": 1}
        assert store.dossier("000.00.04.G10-20260609-0000001")["ma_tthc"] == "1.001012"
        assert [e.document_id for e in store.dossier_history("000.00.04.G10-20260609-0000001")] == [
            "G10-PERSIST-000001"]
        assert store.received(document_id="G10-PERSIST-000001")[0].id == sync.id
    finally:
        store.close()


def test_in_memory_store_cleans_up_its_files():
    store = SandboxStore(None)
    files = store.files_dir
    assert (files / "partial").is_dir()
    store.close()
    assert not files.exists()
