"""Crash safety of the result upload: the uploading process is SIGKILLed again and again, mid-file.

The one-stop system has result files for its finished dossiers (at least 50, several of 20+ MB);
the hub takes them in, and a worker process (``results_worker_proc.py``: the status push and the
results push in turn) is killed at random moments and started again, at least 10 times:

* *mid-upload*: just after the portal confirmed a chunk of this worker's (0–300 ms later: the
  reply on the wire, being verified and audited, the confirmed offset being written, the next
  chunk being read and signed; the status push's "just after the portal applied" kill);
* *anywhere*: 0–2 s after the worker claimed a result event (fingerprinting the file, announcing
  it, streaming, ending the upload, recording it, enqueuing the snapshot that lists it).

Then a last worker finishes. What must hold, checked against the portal (the sandbox) and the
hub's own audit trail:

* every file is on the portal exactly once (one finished upload per dossier and SHA-256) and the
  stored bytes hash to the one-stop system's SHA-256;
* each dossier's last accepted snapshot lists exactly its files' GiayToId;
* no upload restarted from zero after a chunk was confirmed: per upload session, the offsets of
  the chunks the hub sent (read back from the audit trail, every byte of which is recorded) never
  go back to 0 once a chunk was confirmed: a killed upload resumes at the portal's offset;
* the audit chain verifies, and every event is delivered.

``LIENTHONG_RESULTS_KILLS`` (default 12) and ``LIENTHONG_RESULTS_LARGE`` (default 5 files of
20–24 MB) may be lowered for a quick local run.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

import pytest
from lienthong.hub.audit import ledger
from lienthong.hub.store import open_store
from lienthong.hub.store.models import AuditEntry, OutboxEvent, ResultUpload
from lienthong.sandbox.onestop_results import attach_results, result_rows, write_result_file
from national_helpers import PASSWORD, settings_for
from results_helpers import CATALOGUE_SIZE, accepted_snapshots, onestop, take_in
from sqlalchemy import func, select, update
from test_push_crash_safety import Worker, _watch_applied, kill_repeatedly

KILLS = int(os.environ.get("LIENTHONG_RESULTS_KILLS", "12"))
LARGE = int(os.environ.get("LIENTHONG_RESULTS_LARGE", "5"))
MIN_FILES = 50
SEED = 20261208
LEASE = 2.0
MAX_ATTEMPTS = 10 * KILLS + 10
CHUNK = 512 * 1024
MID_UPLOAD = (0.0, 0.3)
ANYWHERE = (0.0, 2.0)
WORKER = Path(__file__).with_name("results_worker_proc.py")
VI_TRI = re.compile(rb"ViTri>(\d+)<")


def _claimed_results(engine, worker_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.kind == "result", OutboxEvent.state == "claimed",
            OutboxEvent.claimed_by == worker_id)).scalar_one())


def _results_file_set(sim, results_dir: Path) -> None:
    """Make ``LARGE`` of the results large scans (20-24 MB), rewriting their files and rows."""
    from lienthong.sandbox.onestop_results import hoso_ket_qua

    rows = result_rows(sim.db)
    rng = random.Random(SEED)
    for row in rng.sample(rows, LARGE):
        size = rng.randint(20 * 1024 * 1024, 24 * 1024 * 1024)
        sha = write_result_file(results_dir / row["tep"], size, random.Random(f"large|{row['id']}"))
        with sim.db.engine.begin() as conn:
            conn.execute(update(hoso_ket_qua).where(hoso_ket_qua.c.id == row["id"]).values(kich_thuoc=size, sha256=sha))


def _chunk_offsets(store) -> dict[str, list[int]]:
    """Per upload session, the ViTri of every TaiPhanTepKetQua the hub sent, in order (audit trail)."""
    trail = ledger(store)
    log = AuditEntry.__table__
    with store.engine.connect() as conn:
        rows = conn.execute(select(log.c.seq, log.c.correlation_id).where(
            log.c.operation == "TaiPhanTepKetQua", log.c.direction == "out").order_by(log.c.seq)).all()
    offsets: dict[str, list[int]] = defaultdict(list)
    for seq, session in rows:
        found = VI_TRI.search(trail.body(seq))
        assert found, f"audit entry {seq} has no ViTri"
        offsets[session].append(int(found.group(1)))
    return offsets


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_kill_9_during_uploads_puts_every_file_on_the_portal_once_and_never_restarts_from_zero(
        tmp_path, make_sandbox, conn_home):
    began = time.monotonic()
    results_dir = tmp_path / "ket-qua"
    settings = settings_for(conn_home, None, db_url=f"sqlite:///{tmp_path / 'hub.db'}")
    store = open_store(settings)
    engine = store.engine
    sim = onestop(tmp_path / "onestop.db", dossiers=30, changes=500)
    report = attach_results(sim.db, results_dir, seed=SEED, catalogue=sim.catalogue, large_share=0.0)
    assert report.files >= MIN_FILES, report
    _results_file_set(sim, results_dir)
    rows = result_rows(sim.db)
    assert sum(r["kich_thuoc"] >= 20 * 1024 * 1024 for r in rows) == LARGE
    take_in(engine, sim.db.url)
    total_bytes = sum(r["kich_thuoc"] for r in rows)
    prepared = time.monotonic()

    sandbox = make_sandbox(procedures=CATALOGUE_SIZE)
    env = {name: value for name, value in os.environ.items() if not name.startswith("LIENTHONG_")}
    env.update(LIENTHONG_HOME=str(conn_home), LIENTHONG_KEY_PASSWORD=PASSWORD,
               LIENTHONG_DVC_URL=sandbox.base_url + "/dvc", LIENTHONG_DB_URL=settings.db_url,
               LIENTHONG_RESULTS_ROOT=str(results_dir))
    confirmed = _watch_applied(sandbox, ("TaiPhanTepKetQua",))  # a chunk was just confirmed
    start = partial(Worker, script=WORKER, args=(LEASE, MAX_ATTEMPTS, CHUNK))
    _, kills, _ = kill_repeatedly(engine, env, tmp_path, confirmed, random.Random(SEED), KILLS, "results",
                                  final_timeout=900, start=start, held=_claimed_results,
                                  windows=(ANYWHERE, MID_UPLOAD))
    pushed = time.monotonic()

    with engine.connect() as conn:
        states = Counter(conn.execute(select(OutboxEvent.state)).scalars())
    assert set(states) == {"delivered"}, states

    # every file on the portal exactly once, with the one-stop system's bytes
    by_dossier: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_dossier[row["so_ho_so"]].append(row)
    for ma, own in by_dossier.items():
        done = [u for u in sandbox.store.uploads_for(ma) if u["status"] == "done"]
        assert Counter(u["sha256"] for u in done) == Counter(r["sha256"] for r in own), ma
        for upload in done:
            digest = hashlib.sha256()
            with open(sandbox.store.result_path(upload["giay_to_id"]), "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(block)
            assert digest.hexdigest() == upload["sha256"]
        listed = accepted_snapshots(sandbox, ma)[-1].get("DanhSachGiayToKetQua") or []
        assert sorted(e["GiayToId"] for e in listed) == sorted(u["giay_to_id"] for u in done), ma

    # no upload went back to byte 0 once the portal had confirmed a chunk of it
    offsets = _chunk_offsets(store)
    restarted = {session: seen for session, seen in offsets.items()
                 if any(v == 0 and any(w > 0 for w in seen[:i]) for i, v in enumerate(seen))}
    assert not restarted, f"uploads restarted from zero: {list(restarted)[:3]}"
    sent = sum(len(seen) for seen in offsets.values()) * CHUNK  # an upper bound: last chunks are shorter
    resent_chunks = sum(len(seen) - len(set(seen)) for seen in offsets.values())
    assert ledger(store).verify().ok
    with engine.connect() as conn:
        resumed, restarts = conn.execute(select(func.sum(ResultUpload.resumed), func.sum(ResultUpload.restarts))).one()
    assert not restarts
    if kills["after-applied"] >= 3:  # after a chunk was confirmed  # most of the time goes to the large files: some kill landed inside one
        assert resumed, "no upload was resumed although the worker was killed mid-upload"

    print(f"\nresults crash safety: {len(rows)} files, {total_bytes / 1e6:,.1f} MB ({LARGE} of 20+ MB), "
          f"{KILLS} kills {dict(kills)}; {resumed or 0} upload(s) resumed at the portal's offset; {resent_chunks} chunk(s) sent twice after a kill (at most "
          f"{resent_chunks * CHUNK / 1e6:,.1f} MB, {100 * resent_chunks * CHUNK / total_bytes:.2f} % of the bytes), "
          f"chunks sent ≤ {sent / 1e6:,.1f} MB; prepare {prepared - began:.1f} s, push {pushed - prepared:.1f} s, "
          f"check {time.monotonic() - pushed:.1f} s")
