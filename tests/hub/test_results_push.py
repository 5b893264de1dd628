"""Digitised results from the one-stop system to the portal, end to end (issue 14).

A one-stop database whose dossiers live ordinary lives gets result files for those that reached
status 9/10 (``sandbox.onestop_results``); the hub takes them in with the dossiers, the results
worker uploads each file (chunked, resumable, SHA-256) and the status worker sends the snapshot
that lists it. The portal (the sandbox) is the judge: every file is there once with the announced
hash, and the dossier's last accepted snapshot lists exactly its files' GiayToId and links, which
the portal refuses for a file it does not hold. SQLite and, with ``LIENTHONG_TEST_PG_URL``,
PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lienthong.hub.delivery import outbox
from lienthong.hub.delivery.engine import RESULT_KINDS, STATUS_KINDS, deliver_once
from lienthong.hub.flows.results_push import backlog
from lienthong.hub.store.models import DeadLetter, OutboxEvent, ResultUpload
from lienthong.sandbox.onestop_results import attach_results, inject_result, result_rows
from results_helpers import (
    CATALOGUE_SIZE,
    Clock,
    accepted_snapshots,
    mapping,
    onestop,
    portal,
    push_all,
    states,
    sync,
    take_in,
    uploader,
)
from sqlalchemy import func, select


@pytest.fixture
def national(make_sandbox):
    return make_sandbox(procedures=CATALOGUE_SIZE)


@pytest.fixture
def results_dir(tmp_path) -> Path:
    return tmp_path / "ket-qua"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_each_result_listed_once(sim, national, results_dir) -> int:
    rows = result_rows(sim.db)
    by_dossier: dict[str, list[dict]] = {}
    for row in rows:
        by_dossier.setdefault(row["so_ho_so"], []).append(row)
    for ma, own in by_dossier.items():
        done = [u for u in national.store.uploads_for(ma) if u["status"] == "done"]
        assert sorted(u["sha256"] for u in done) == sorted(r["sha256"] for r in own), ma
        for upload in done:  # the portal holds exactly the bytes of the one-stop system's file
            stored = national.store.result_path(upload["giay_to_id"])
            assert file_sha(stored) == upload["sha256"]
        last = accepted_snapshots(national, ma)[-1]
        listed = last.get("DanhSachGiayToKetQua") or []
        assert sorted(e["GiayToId"] for e in listed) == sorted(u["giay_to_id"] for u in done), ma
        names = {r["ten_giay_to"] for r in own}
        assert {e["TenGiayTo"] for e in listed} == names
        assert all(e["DuongDanTepTinKetQua"].endswith("/ket-qua/" + e["GiayToId"]) for e in listed)
    return len(rows)


def test_results_reach_the_portal_before_the_snapshot_that_lists_them(engine, national, conn_home, tmp_path,
                                                                      results_dir):
    sim = onestop(tmp_path / "onestop.db")
    report = attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
    assert report.files >= 5
    sync(engine, conn_home, national)
    summary = take_in(engine, sim.db.url)
    assert summary.outcomes["mapped"] == summary.read
    client = portal(engine, conn_home, national)
    clock = Clock()
    push_all(engine, client, uploader(engine, client, results_dir, tmp_path / "spool", chunk_size=64 * 1024), clock)
    assert states(engine) == {"delivered": sum(states(engine).values())}
    assert assert_each_result_listed_once(sim, national, results_dir) == report.files
    figures = backlog(engine)
    assert (figures.pending, figures.in_flight, figures.dead, figures.bytes_waiting) == (0, 0, 0, 0)
    assert figures.uploaded == report.files and figures.uploaded_bytes == report.bytes

    # each dossier's order on the portal: the upload finished before the snapshot listing it arrived
    for ma in {r["so_ho_so"] for r in result_rows(sim.db)}:
        finished = {u["giay_to_id"]: _aware(u["finished_at"]) for u in national.store.uploads_for(ma)}
        for event in national.store.dossier_history(ma):
            for entry in (event.data.get("DanhSachGiayToKetQua") or []) if event.kind == "HoSo" else []:
                assert finished[entry["GiayToId"]] <= event.received_at

    # more life, more results: only the new ones move; the same file twice is the same GiayToId
    sim.advance(200)
    more = attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
    take_in(engine, sim.db.url)
    push_all(engine, client, uploader(engine, client, results_dir, tmp_path / "spool"), clock)
    assert assert_each_result_listed_once(sim, national, results_dir) == report.files + more.files


def test_the_same_file_sent_twice_is_one_copy_with_one_giay_to_id(engine, national, conn_home, tmp_path,
                                                                 results_dir):
    sim = onestop(tmp_path / "onestop.db")
    attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0, limit=1)
    take_in(engine, sim.db.url)
    client = portal(engine, conn_home, national)
    up = uploader(engine, client, results_dir, tmp_path / "spool")
    push_all(engine, client, up, Clock())
    with engine.connect() as conn:
        event = conn.execute(select(OutboxEvent.id, OutboxEvent.partition_key, OutboxEvent.payload)
                             .where(OutboxEvent.kind == "result")).first()
        first = conn.execute(select(ResultUpload.giay_to_id).where(ResultUpload.event_id == event.id)).scalar_one()
    # a second announcement of the same dossier's same file (a re-export, a replay)
    again = up.portal.upload_result(event.partition_key, results_dir / json.loads(event.payload)["TepKetQua"],
                                    file_name="again.pdf", mime_type="application/pdf")
    assert again.giay_to_id == first and again.sent == 0
    assert len([u for u in national.store.uploads_for(event.partition_key) if u["status"] == "done"]) == 1


# ------------------------------------------------------------------------------------------------
# bad result files: each a specific, counted outcome; nothing reported to the portal as uploaded
# ------------------------------------------------------------------------------------------------
INJECTED = {"result_missing_file": 1, "result_unreadable": 2, "result_changed": 3, "result_wrong_code": 4}
OUTCOME = {"result_missing_file": "RESULT_FILE_MISSING", "result_unreadable": "RESULT_FILE_UNREADABLE",
           "result_changed": "RESULT_FILE_CHANGED", "result_wrong_code": "RESULT_CODE_UNKNOWN"}


def test_each_bad_result_is_a_specific_counted_dead_letter_and_holds_up_only_its_dossier(
        engine, national, conn_home, tmp_path, results_dir):
    sim = onestop(tmp_path / "onestop.db", dossiers=60, changes=900)
    injected = {kind: inject_result(sim.db, results_dir, kind, n, seed=3, catalogue=sim.catalogue)
                for kind, n in INJECTED.items()}
    good = attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
    sync(engine, conn_home, national)
    summary = take_in(engine, sim.db.url)
    # the wrong code is refused at intake (the catalogue says which results a procedure has)
    assert summary.outcomes["RESULT_CODE_UNKNOWN"] == INJECTED["result_wrong_code"]
    client = portal(engine, conn_home, national)
    push_all(engine, client, uploader(engine, client, results_dir, tmp_path / "spool"), Clock())
    with engine.connect() as conn:
        letters = conn.execute(select(DeadLetter.reason_code, DeadLetter.reason, OutboxEvent.partition_key)
                               .join(OutboxEvent, OutboxEvent.id == DeadLetter.event_id)).all()
    by_code: dict[str, set[str]] = {}
    for code, reason, partition in letters:
        by_code.setdefault(code, set()).add(partition)
        assert partition in reason  # the reason names the dossier
    assert by_code == {OUTCOME[kind]: set(codes) for kind, codes in injected.items()}
    for kind, codes in injected.items():
        for ma in codes:
            # nothing of a bad file was reported to the portal as uploaded
            assert not [u for u in national.store.uploads_for(ma) if u["status"] == "done"], (kind, ma)
            assert all(not s.get("DanhSachGiayToKetQua") for s in accepted_snapshots(national, ma))
    # every good result went through, whatever the bad ones did
    good_dossiers = {r["so_ho_so"] for r in result_rows(sim.db)} - {m for c in injected.values() for m in c}
    assert sum(len(result_rows(sim.db, ma)) for ma in good_dossiers) == good.files
    for ma in good_dossiers:
        assert accepted_snapshots(national, ma)[-1].get("DanhSachGiayToKetQua")
    assert backlog(engine).dead == sum(INJECTED.values())


def test_a_file_put_right_and_replayed_is_uploaded_and_listed(engine, national, conn_home, tmp_path, results_dir):
    sim = onestop(tmp_path / "onestop.db")
    [ma] = inject_result(sim.db, results_dir, "result_missing_file", 1, seed=3, catalogue=sim.catalogue)
    take_in(engine, sim.db.url)
    client = portal(engine, conn_home, national)
    up = uploader(engine, client, results_dir, tmp_path / "spool")
    clock = Clock()
    push_all(engine, client, up, clock)
    [letter] = outbox.dead_letters(engine, partition_key=ma)
    assert letter.reason_code == "RESULT_FILE_MISSING" and letter.kind == "result"
    # the operator fetches the file back from the one-stop system's archive, with the bytes it announced
    row = result_rows(sim.db, ma)[0]
    path = results_dir / row["tep"]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"%PDF-1.7\n" + b"x" * 5000
    path.write_bytes(data)
    with sim.db.engine.begin() as conn:  # the archive's copy is what the system now announces
        from lienthong.sandbox.onestop_results import hoso_ket_qua
        conn.execute(hoso_ket_qua.update().where(hoso_ket_qua.c.id == row["id"]).values(
            sha256=hashlib.sha256(data).hexdigest(), kich_thuoc=len(data)))
    payload = {**json.loads(_payload(engine, letter.event_id)), "SHA256": hashlib.sha256(data).hexdigest(),
               "KichThuoc": len(data)}
    outbox.replay(engine, [letter.id], payloads={letter.id: payload})
    push_all(engine, client, up, clock)
    [done] = [u for u in national.store.uploads_for(ma) if u["status"] == "done"]
    assert done["sha256"] == hashlib.sha256(data).hexdigest()
    assert [e["GiayToId"] for e in accepted_snapshots(national, ma)[-1]["DanhSachGiayToKetQua"]] == [done["giay_to_id"]]


def _payload(engine, event_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(select(OutboxEvent.payload).where(OutboxEvent.id == event_id)).scalar_one()


def test_the_status_push_leaves_result_events_to_the_results_push(engine, national, conn_home, tmp_path,
                                                                  results_dir):
    sim = onestop(tmp_path / "onestop.db")
    attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
    take_in(engine, sim.db.url)
    client = portal(engine, conn_home, national)
    clock = Clock()
    for _ in range(10):
        deliver_once(engine, client, worker_id="status", clock=clock, kinds=STATUS_KINDS)
    assert states(engine, "result") == {"pending": len(result_rows(sim.db))}
    # the dossiers with results wait behind them; the others are all through
    blocked = {r["so_ho_so"] for r in result_rows(sim.db)}
    with engine.connect() as conn:
        waiting = set(conn.execute(select(OutboxEvent.partition_key).where(OutboxEvent.state == "pending")).scalars())
    assert waiting == blocked
    with pytest.raises(Exception, match="uploader"):
        deliver_once(engine, client, worker_id="results", kinds=RESULT_KINDS)


# ------------------------------------------------------------------------------------------------
# faults: the portal unavailable, replies lost (timeouts), replies broken off (truncated)
# ------------------------------------------------------------------------------------------------
def _truncating(sandbox, rate: float, seed: int = 5):
    """Break off a share of the portal's upload replies half-way (after it processed the request)."""
    import random

    from lienthong.sandbox.response import Response

    rng = random.Random(seed)
    handle = sandbox.handle_soap
    broken = []

    def watched(spec, soap_action, data, **kw):
        response = handle(spec, soap_action, data, **kw)
        if response.status == 200 and "TaiTepKetQua" in (soap_action or "") and rng.random() < rate:
            broken.append(soap_action)
            return Response(response.status, response.body, response.content_type,
                            truncate_at=len(response.body) // 2)
        return response

    sandbox.handle_soap = watched
    return broken


def test_under_injected_faults_every_file_ends_on_the_portal_once_and_listed(engine, make_sandbox, conn_home,
                                                                            tmp_path, results_dir):
    national = make_sandbox(procedures=CATALOGUE_SIZE, fail_rate=0.15, timeout_rate=0.08, timeout_seconds=0.5,
                            fault_seed=11)
    broken = _truncating(national, 0.08)
    sim = onestop(tmp_path / "onestop.db")
    report = attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
    take_in(engine, sim.db.url)
    client = portal(engine, conn_home, national, operation_timeout=0.3)
    from lienthong.hub.delivery.retry import RetryPolicy

    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=8.0, jitter=0.0, max_attempts=40)
    summaries = push_all(engine, client, uploader(engine, client, results_dir, tmp_path / "spool"), Clock(),
                         passes=400, policy=policy)
    assert sum(s.retried for s in summaries) > 0 and broken  # the faults did happen
    assert states(engine) == {"delivered": sum(states(engine).values())}
    assert assert_each_result_listed_once(sim, national, results_dir) == report.files
    with engine.connect() as conn:
        resumed, restarts = conn.execute(select(func.sum(ResultUpload.resumed), func.sum(ResultUpload.restarts))).one()
    assert resumed > 0 and not restarts  # interrupted uploads went on where the portal stood


def test_concurrent_results_and_status_workers_upload_each_file_once(engine, national, conn_home, tmp_path,
                                                                    results_dir):
    """Two results workers and two status workers in threads, on one store (SQLite and PostgreSQL):
    whole dossiers are claimed, so no file is uploaded twice and every snapshot still follows its files."""
    import threading

    sim = onestop(tmp_path / "onestop.db")
    report = attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
    take_in(engine, sim.db.url)
    client = portal(engine, conn_home, national)
    clock = Clock()
    errors: list[BaseException] = []

    def work(name: str, kinds, up) -> None:
        import time

        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                summary = deliver_once(engine, client, worker_id=name, clock=clock, kinds=kinds, uploader=up,
                                       per_partition=1 if up else 20)
                if summary.claimed == 0:
                    if not _undelivered(engine):
                        return
                    time.sleep(0.01)  # the other kind of worker has the dossiers' next events
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    ups = [uploader(engine, client, results_dir, tmp_path / f"spool-{i}") for i in range(2)]
    threads = [threading.Thread(target=work, args=(f"results-{i}", RESULT_KINDS, ups[i])) for i in range(2)]
    threads += [threading.Thread(target=work, args=(f"status-{i}", STATUS_KINDS, None)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert states(engine) == {"delivered": sum(states(engine).values())}
    assert assert_each_result_listed_once(sim, national, results_dir) == report.files
    done = [u for r in result_rows(sim.db) for u in national.store.uploads_for(r["so_ho_so"])]
    assert len({u["ma_phien_tai"] for u in done}) == len({(u["ma_ho_so"], u["sha256"]) for u in done})


def _undelivered(engine) -> int:
    return sum(n for state, n in states(engine).items() if state in ("pending", "claimed"))


@pytest.mark.parametrize("fmt", ["json", "csv", "xml"])
def test_results_in_export_files_reach_the_portal_the_same_way(engine, national, conn_home, tmp_path, results_dir,
                                                               fmt):
    """The file drop: the sandbox exports hoso, steps and result documents; the inbox source reads
    them, results after their dossiers, and they are uploaded and listed as from SQL."""
    from lienthong.connectors.sources.filedrop import FileDropSource
    from lienthong.hub.flows.intake import intake_once

    sim = onestop(tmp_path / "onestop.db")
    report = attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
    inbox = tmp_path / "inbox"
    written = sim.export_files(inbox, format=fmt)
    assert any("ket_qua" in path.read_text(encoding="utf-8") or path.name.startswith("ket_qua-") for path in written)
    summary = intake_once(engine, FileDropSource(inbox, mapping(engine)))
    assert summary.outcomes["mapped"] == summary.read and not summary.quarantined
    client = portal(engine, conn_home, national)
    push_all(engine, client, uploader(engine, client, results_dir, tmp_path / "spool"), Clock())
    assert assert_each_result_listed_once(sim, national, results_dir) == report.files
    # a later export with only new results has a name of its own and carries just them
    sim.advance(200)
    cursor = sim.db.high_water()
    more = attach_results(sim.db, results_dir, seed=3, catalogue=sim.catalogue, large_share=0.0)
    again = sim.export_files(inbox, format=fmt, since_cursor=cursor)
    assert bool(again) == bool(more.files)
