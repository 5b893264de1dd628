"""The audit ledger: recording, reading back, and detecting every kind of tampering."""

from __future__ import annotations

import hashlib
import multiprocessing
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from lienthong.hub.audit import AuditRecord, AuditTrail, ChainReport, entry_digest
from lienthong.hub.errors import AuditChainBroken
from lienthong.hub.store import make_engine, upgrade
from lienthong.hub.store.models import GENESIS_HASH, AuditEntry, AuditHead
from sqlalchemy import Engine, delete, insert, select, text, update

LOG = AuditEntry.__table__
HEAD = AuditHead.__table__


def _raw(i: int) -> bytes:
    return (
        f'<edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
        f"<edXML:DocumentId>doc-{i}</edXML:DocumentId><p>Hồ sơ {i}</p></edXML:edXMLEnvelope>"
    ).encode()


def _record(trail: AuditTrail, i: int, **overrides) -> int:
    kwargs = dict(
        direction="out" if i % 2 else "in",
        partner="dvc_portal",
        operation="DongBoHoSoMC",
        raw=_raw(i),
        outcome="sent" if i % 2 else "ok",
        document_id=f"doc-{i}",
        correlation_id=f"corr-{i // 2}",
        from_agency="000.00.00.G10",
        to_agency="000.00.00.G22",
        latency_ms=12.5 + i,
        attempt=1,
    )
    kwargs.update(overrides)
    return trail.record(**kwargs)


@pytest.fixture
def trail(engine: Engine) -> AuditTrail:
    return AuditTrail(engine)


@pytest.fixture
def filled(trail: AuditTrail) -> AuditTrail:
    """A ledger of ten valid entries, seq 1..10 (one batch: the chain is the same as ten appends)."""
    trail.record_many(
        AuditRecord(direction="out" if i % 2 else "in", partner="dvc_portal", operation="DongBoHoSoMC",
                    raw=_raw(i), outcome="sent" if i % 2 else "ok", document_id=f"doc-{i}",
                    correlation_id=f"corr-{i // 2}", from_agency="000.00.00.G10", to_agency="000.00.00.G22",
                    latency_ms=12.5 + i)
        for i in range(1, 11)
    )
    assert trail.verify() == ChainReport(True, 10)
    return trail


def _row(engine: Engine, seq: int) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(LOG).where(LOG.c.seq == seq)).mappings().one())


def _tamper(engine: Engine, *statements) -> None:
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(stmt)


def _move(seq_from: int, seq_to: int):
    return update(LOG).where(LOG.c.seq == seq_from).values(seq=seq_to)


def _forge(prev_hash: str, seq: int, raw: bytes = b"<forged/>") -> dict:
    """A self-consistent entry, as someone who knows the hashing scheme would write it."""
    stored = zlib.compress(raw)
    fields = dict(
        seq=seq,
        recorded_at=datetime.now(UTC),
        direction="out",
        partner="dvc_portal",
        operation="DongBoHoSoMC",
        document_id="forged",
        correlation_id=None,
        from_agency="000.00.00.G10",
        to_agency="000.00.00.G22",
        outcome="ok",
        latency_ms=None,
        attempt=1,
        body_sha256=hashlib.sha256(raw).hexdigest(),
        body_size=len(raw),
        error=None,
    )
    entry_hash = entry_digest(prev_hash, **fields, stored_body_sha256=hashlib.sha256(stored).hexdigest())
    return {**fields, "body": stored, "prev_hash": prev_hash, "entry_hash": entry_hash}


# --- recording ----------------------------------------------------------------------------------
def test_canonical_encoding_is_pinned() -> None:
    """A known answer: changing the encoding would orphan every ledger already written."""
    at = datetime(2025, 3, 1, 22, 30, 0, 5, tzinfo=timezone(timedelta(hours=7)))
    body_sha = hashlib.sha256(b"<x/>").hexdigest()
    digest = entry_digest(
        GENESIS_HASH, seq=1, recorded_at=at, direction="out", partner="dvc_portal", operation="DongBoHoSoMC",
        document_id="Hồ sơ-1", correlation_id=None, from_agency="000.00.00.G10", to_agency="000.00.00.G22",
        outcome="sent", latency_ms=12.0, attempt=1, body_sha256=body_sha, body_size=4, error=None,
        stored_body_sha256="0" * 64,
    )
    canonical = (
        '[1,1,"2025-03-01T15:30:00.000005+00:00","out","dvc_portal","DongBoHoSoMC","H\\u1ed3 s\\u01a1-1",null,'
        f'"000.00.00.G10","000.00.00.G22","sent",12.0,1,"{body_sha}",4,null,"{"0" * 64}"]'
    )
    assert digest == hashlib.sha256((GENESIS_HASH + canonical).encode("ascii")).hexdigest()
    assert digest == "85febc8815017b5f1aecd6850f71cf6da0b1bcfc91e645d343f7673eb40dc6d4"


def test_empty_ledger_verifies(trail: AuditTrail) -> None:
    assert trail.verify() == ChainReport(True, 0)
    assert trail.head() == (0, GENESIS_HASH)


def test_record_returns_consecutive_seqs_and_keeps_exact_bytes(trail: AuditTrail, engine: Engine) -> None:
    seqs = [_record(trail, i) for i in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5]
    for i in seqs:
        assert trail.body(i) == _raw(i)
    row = _row(engine, 3)
    assert row["direction"] == "out" and row["outcome"] == "sent"
    assert row["partner"] == "dvc_portal" and row["operation"] == "DongBoHoSoMC"
    assert row["document_id"] == "doc-3" and row["correlation_id"] == "corr-1"
    assert row["from_agency"] == "000.00.00.G10" and row["to_agency"] == "000.00.00.G22"
    assert row["latency_ms"] == 15.5 and row["attempt"] == 1 and row["error"] is None
    assert row["body_size"] == len(_raw(3)) and zlib.decompress(row["body"]) == _raw(3)
    assert row["recorded_at"].tzinfo is not None and row["recorded_at"].utcoffset() == timedelta(0)
    assert abs(row["recorded_at"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert row["prev_hash"] == _row(engine, 2)["entry_hash"]
    assert _row(engine, 1)["prev_hash"] == GENESIS_HASH
    assert trail.head() == (5, _row(engine, 5)["entry_hash"])
    assert trail.verify() == ChainReport(True, 5)


def test_record_optional_fields_and_explicit_time(trail: AuditTrail, engine: Engine) -> None:
    at = datetime(2025, 3, 1, 15, 30, 0, 123456, tzinfo=timezone(timedelta(hours=7)))
    seq = trail.record(
        direction="in", partner="csdl_tthc", operation="LayThuTuc", raw=b"", outcome="error",
        attempt=3, error="Lỗi kết nối: connection reset", recorded_at=at,
    )
    row = _row(engine, seq)
    assert row["recorded_at"] == at and row["recorded_at"].utcoffset() == timedelta(0)
    assert row["document_id"] is None and row["latency_ms"] is None and row["body_size"] == 0
    assert row["error"] == "Lỗi kết nối: connection reset" and row["attempt"] == 3
    assert trail.body(seq) == b""
    assert trail.verify().ok


@pytest.mark.parametrize(
    ("override", "error", "needle"),
    [
        ({"direction": "sideways"}, ValueError, "direction"),
        ({"outcome": "Not OK"}, ValueError, "outcome"),
        ({"outcome": ""}, ValueError, "outcome"),
        ({"raw": "<text/>"}, TypeError, "bytes"),
        ({"partner": ""}, ValueError, "partner must not be empty"),
        ({"partner": "p" * 65}, ValueError, "partner is 65 characters"),
        ({"operation": "Lay\nThuTuc"}, ValueError, "control characters"),
        ({"operation": None}, TypeError, "operation must be a str"),
        ({"document_id": 42}, TypeError, "document_id must be a str or None"),
        ({"latency_ms": float("nan")}, ValueError, "latency_ms"),
        ({"latency_ms": -1}, ValueError, "latency_ms"),
        ({"latency_ms": "12"}, TypeError, "latency_ms"),
        ({"attempt": 0}, ValueError, "attempt"),
        ({"recorded_at": datetime(2025, 1, 1)}, ValueError, "timezone-aware"),
    ],
)
def test_invalid_records_are_refused_before_writing(trail: AuditTrail, override, error, needle) -> None:
    _record(trail, 1)
    with pytest.raises(error, match=needle):
        _record(trail, 2, **override)
    assert trail.head()[0] == 1
    assert trail.verify() == ChainReport(True, 1)


def test_partner_supplied_values_are_made_storable_not_refused(trail: AuditTrail, engine: Engine) -> None:
    """A hostile reply must still be recorded: its identifiers are cleaned, its bytes kept exact."""
    raw = b"<reply>\x00 weird</reply>"
    seq = _record(trail, 1, direction="in", raw=raw, document_id="D" * 500, correlation_id="c\x00id",
                  from_agency="\udc80agency", error="fault text with \x00 NUL")
    row = _row(engine, seq)
    assert row["document_id"] == "D" * 127 + "…"
    assert row["correlation_id"] == "c\ufffdid"
    assert row["from_agency"] == "\ufffdagency"
    assert row["error"] == "fault text with \ufffd NUL"
    assert trail.body(seq) == raw
    assert trail.verify() == ChainReport(True, 1)


def test_record_many_chains_in_order_in_one_transaction(trail: AuditTrail, engine: Engine) -> None:
    _record(trail, 1)
    seqs = trail.record_many(
        [
            AuditRecord(direction="out", partner="baocao", operation="GuiBaoCao", raw=_raw(2), outcome="sent"),
            {"direction": "in", "partner": "baocao", "operation": "GuiBaoCao", "raw": _raw(3), "outcome": "ok",
             "correlation_id": "doc-2"},
        ]
    )
    assert seqs == [2, 3]
    assert _row(engine, 3)["prev_hash"] == _row(engine, 2)["entry_hash"]
    assert trail.body(3) == _raw(3)
    assert trail.record_many([]) == []
    assert trail.verify() == ChainReport(True, 3)


def test_record_many_is_all_or_nothing(trail: AuditTrail) -> None:
    good = AuditRecord(direction="out", partner="baocao", operation="GuiBaoCao", raw=b"<a/>", outcome="sent")
    with pytest.raises(ValueError, match="direction"):
        trail.record_many([good, AuditRecord(direction="up", partner="b", operation="o", raw=b"", outcome="ok")])
    with pytest.raises(TypeError, match="unknown audit field"):
        trail.record_many([{"direction": "out", "partner": "b", "operation": "o", "raw": b"", "outcome": "ok",
                            "colour": "red"}])
    assert trail.head() == (0, GENESIS_HASH)


def test_body_of_unknown_and_removed_entries(filled: AuditTrail, engine: Engine) -> None:
    with pytest.raises(LookupError, match="no audit entry 11"):
        filled.body(11)
    _tamper(engine, delete(LOG).where(LOG.c.seq == 4))
    with pytest.raises(AuditChainBroken, match="entry 4 is missing"):
        filled.body(4)


def test_body_refuses_altered_bytes(filled: AuditTrail, engine: Engine) -> None:
    forged = _raw(99)[: len(_raw(5))].ljust(len(_raw(5)), b" ")
    _tamper(engine, update(LOG).where(LOG.c.seq == 5).values(body=zlib.compress(forged)))
    with pytest.raises(AuditChainBroken, match="entry 5 body does not match") as info:
        filled.body(5)
    assert info.value.code == "AUDIT_CHAIN_BROKEN"


def test_body_refuses_a_decompression_bomb(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, update(LOG).where(LOG.c.seq == 2).values(body=zlib.compress(b"\0" * 5_000_000)))
    with pytest.raises(AuditChainBroken, match="more than"):
        filled.body(2)


# --- tamper detection ---------------------------------------------------------------------------
def _assert_broken(trail: AuditTrail, first_bad: int | None, *needles: str) -> ChainReport:
    report = trail.verify()
    assert not report.ok, report
    assert report.first_bad_seq == first_bad, report
    for needle in needles:
        assert needle in report.reason, report
    with pytest.raises(AuditChainBroken, match="audit chain broken"):
        report.raise_if_broken()
    return report


def test_edited_metadata_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, update(LOG).where(LOG.c.seq == 4).values(outcome="fault"))
    report = _assert_broken(filled, 4, "entry 4 edited", "metadata")
    assert report.checked == 3


def test_edited_timestamp_is_detected(filled: AuditTrail, engine: Engine) -> None:
    earlier = _row(engine, 6)["recorded_at"] - timedelta(seconds=1)
    _tamper(engine, update(LOG).where(LOG.c.seq == 6).values(recorded_at=earlier))
    _assert_broken(filled, 6, "entry 6 edited", "metadata")


def test_edited_body_is_detected(filled: AuditTrail, engine: Engine) -> None:
    original = _raw(7)
    forged = original.replace(b"doc-7", b"doc-X")
    assert len(forged) == len(original)
    _tamper(engine, update(LOG).where(LOG.c.seq == 7).values(body=zlib.compress(forged)))
    _assert_broken(filled, 7, "entry 7 body edited", "do not match body_sha256")


def test_body_replaced_together_with_its_digest_is_detected(filled: AuditTrail, engine: Engine) -> None:
    forged = b"<forged/>"
    _tamper(
        engine,
        update(LOG).where(LOG.c.seq == 3).values(
            body=zlib.compress(forged), body_sha256=hashlib.sha256(forged).hexdigest(), body_size=len(forged)
        ),
    )
    _assert_broken(filled, 3, "entry 3 edited")


def test_edited_body_digest_is_told_apart_from_an_edited_body(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, update(LOG).where(LOG.c.seq == 2).values(body_sha256="f" * 64))
    _assert_broken(filled, 2, "entry 2 edited", "body_sha256", "body itself is intact")


def test_garbage_body_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, update(LOG).where(LOG.c.seq == 9).values(body=b"not zlib at all"))
    _assert_broken(filled, 9, "entry 9 body edited", "not valid compressed data")


def test_deleted_middle_entry_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, delete(LOG).where(LOG.c.seq == 5))
    report = _assert_broken(filled, 5, "entry 5 removed", "jumps from 4 to 6")
    assert report.checked == 4


def test_deleted_first_entries_are_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, delete(LOG).where(LOG.c.seq <= 2))
    _assert_broken(filled, 1, "entries 1..2 removed", "starts at 3")


def test_deleted_middle_entry_with_renumbering_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, delete(LOG).where(LOG.c.seq == 5), *[_move(s, s - 1) for s in range(6, 11)],
            update(HEAD).values(last_seq=9))
    _assert_broken(filled, 5, "entry 5 does not link to entry 4", "removed")


def test_deleted_last_entry_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, delete(LOG).where(LOG.c.seq == 10))
    report = _assert_broken(filled, 10, "entry 10 removed from the end", "head records 10", "ends at 9")
    assert report.checked == 9


def test_deleted_last_entries_are_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, delete(LOG).where(LOG.c.seq >= 8))
    _assert_broken(filled, 8, "entries 8..10 removed from the end")


def test_everything_deleted_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, delete(LOG))
    _assert_broken(filled, 1, "entries 1..10 removed from the end")


def test_forged_entry_inserted_in_the_middle_is_detected(filled: AuditTrail, engine: Engine) -> None:
    """The forger shifts entries 4..10 up, writes a self-consistent entry 4 and moves the head."""
    hash3 = _row(engine, 3)["entry_hash"]
    last_hash = _row(engine, 10)["entry_hash"]
    _tamper(
        engine,
        *[_move(s, s + 1) for s in range(10, 3, -1)],
        insert(LOG).values(**_forge(hash3, 4)),
        update(HEAD).values(last_seq=11, last_hash=last_hash),
    )
    report = _assert_broken(filled, 4, "entry 4 was inserted", "entries 4 and 5 both link to entry 3")
    assert report.checked == 3


def test_forged_first_entry_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(
        engine,
        *[_move(s, s + 1) for s in range(10, 0, -1)],
        insert(LOG).values(**_forge(GENESIS_HASH, 1)),
        update(HEAD).values(last_seq=11),
    )
    report = _assert_broken(filled, 1, "entry 1 was inserted", "link to the start of the ledger")
    assert report.checked == 0

def test_forged_entry_with_a_bad_link_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(
        engine,
        *[_move(s, s + 1) for s in range(10, 3, -1)],
        insert(LOG).values(**_forge("e" * 64, 4)),
        update(HEAD).values(last_seq=11),
    )
    _assert_broken(filled, 4, "entry 4 was inserted", "entry 5 links to entry 3")


def test_entry_appended_behind_the_heads_back_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, insert(LOG).values(**_forge(_row(engine, 10)["entry_hash"], 11)))
    _assert_broken(filled, 11, "entry 11 was appended outside the ledger", "head ends at 10")


def test_reordered_entries_are_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, _move(6, 1000), _move(7, 6), _move(1000, 7))
    report = _assert_broken(filled, 6, "entries 6 and 7 were reordered")
    assert report.checked == 5


def test_entry_replaced_with_a_recomputed_hash_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(
        engine,
        delete(LOG).where(LOG.c.seq == 5),
        insert(LOG).values(**_forge(_row(engine, 4)["entry_hash"], 5)),
    )
    report = _assert_broken(filled, 5, "entry 5 was replaced", "entry 6 links to a different entry 5")
    assert report.checked == 4


def test_last_entry_replaced_with_a_recomputed_hash_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(
        engine,
        delete(LOG).where(LOG.c.seq == 10),
        insert(LOG).values(**_forge(_row(engine, 9)["entry_hash"], 10)),
    )
    _assert_broken(filled, 10, "entry 10 was replaced", "head records a different hash")


def test_edited_link_is_detected(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, update(LOG).where(LOG.c.seq == 3).values(prev_hash="a" * 64))
    _assert_broken(filled, 3, "entry 3 does not link to entry 2")


def test_out_of_range_value_is_reported_as_an_edit(filled: AuditTrail, engine: Engine) -> None:
    """PostgreSQL stores a NaN latency (SQLite turns it into NULL): either way, an edit of entry 3."""
    _tamper(engine, text("UPDATE audit_log SET latency_ms = 'NaN' WHERE seq = 3"))
    _assert_broken(filled, 3, "entry 3 edited")


@pytest.fixture
def sqlite_filled(tmp_path) -> Iterator[AuditTrail]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    trail = AuditTrail(engine)
    for i in range(1, 6):
        _record(trail, i)
    yield trail
    engine.dispose()


@pytest.mark.parametrize(
    ("sql", "first_bad", "needle"),
    [
        ("UPDATE audit_log SET recorded_at = 'last Tuesday' WHERE seq = 2", 2, "a column holds a value the hub never"),
        ("UPDATE audit_log SET body = 'now text' WHERE seq = 3", 3, "a column holds a value the hub never writes"),
        ("UPDATE audit_log SET attempt = 'twice' WHERE seq = 4", 4, "entry 4 edited"),
        ("UPDATE audit_log SET partner = CAST(x'ff00fe' AS TEXT) WHERE seq = 4", 4, "its row cannot be read back"),
        ("UPDATE audit_head SET last_seq = 'many'", None, "the audit_head row was edited"),
    ],
)
def test_sqlite_values_of_the_wrong_type_are_reported_not_raised(sqlite_filled: AuditTrail, sql, first_bad, needle):
    """SQLite lets any column hold anything; the verifier must report such rows, not crash on them."""
    _tamper(sqlite_filled.engine, text(sql))
    report = sqlite_filled.verify()
    assert (report.ok, report.first_bad_seq) == (False, first_bad), report
    assert needle in report.reason


def test_missing_head_is_detected_and_blocks_appends(filled: AuditTrail, engine: Engine) -> None:
    _tamper(engine, delete(HEAD))
    _assert_broken(filled, None, "audit_head row is missing")
    with pytest.raises(AuditChainBroken, match="audit_head row is missing"):
        _record(filled, 11)


def test_verify_from_a_later_start(filled: AuditTrail, engine: Engine) -> None:
    assert filled.verify(start=6) == ChainReport(True, 5)
    assert filled.verify(start=11) == ChainReport(True, 0)
    _tamper(engine, update(LOG).where(LOG.c.seq == 8).values(partner="csdl_tthc"))
    assert filled.verify(start=6).first_bad_seq == 8
    assert filled.verify(start=9).ok  # the anchor (entry 8) is trusted, not verified
    _tamper(engine, delete(LOG).where(LOG.c.seq == 5))
    report = filled.verify(start=6)
    assert (report.ok, report.first_bad_seq) == (False, 5) and "entry 5 removed" in report.reason
    with pytest.raises(ValueError, match="beyond the end"):
        filled.verify(start=12)
    with pytest.raises(ValueError, match="positive"):
        filled.verify(start=0)


def test_deep_verify_inflates_every_body(filled: AuditTrail) -> None:
    assert filled.verify(deep=True) == ChainReport(True, 10)


def test_verify_streams_in_small_batches(filled: AuditTrail) -> None:
    assert filled.verify(batch_size=3) == ChainReport(True, 10)


# --- concurrency --------------------------------------------------------------------------------
def _append_in_child(url: str, worker: int, count: int, barrier, results) -> None:
    try:
        engine = make_engine(url)
        trail = AuditTrail(engine)
        barrier.wait(timeout=30)
        seqs = [
            trail.record(direction="out", partner="dvc_portal", operation="DongBoHoSoMC",
                         raw=f"<m w='{worker}' i='{i}'/>".encode(), outcome="sent",
                         document_id=f"w{worker}-{i}")
            for i in range(count)
        ]
        engine.dispose()
        results.put((worker, seqs))
    except BaseException as exc:  # report, do not hang the parent
        results.put((worker, repr(exc)))


def test_concurrent_appends_from_several_processes_keep_one_chain(engine: Engine, engine_url: str) -> None:
    workers, per_worker = 4, 50
    engine.dispose()  # nothing pooled crosses the fork
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_append_in_child, args=(engine_url, w, per_worker, barrier, results))
             for w in range(workers)]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    all_seqs: list[int] = []
    for worker, seqs in outcomes.items():
        assert isinstance(seqs, list), f"worker {worker} failed: {seqs}"
        assert seqs == sorted(seqs)
        all_seqs += seqs
    assert sorted(all_seqs) == list(range(1, workers * per_worker + 1))

    trail = AuditTrail(engine)
    assert trail.verify() == ChainReport(True, workers * per_worker)
    assert trail.head()[0] == workers * per_worker
    with engine.connect() as conn:
        docs = conn.execute(select(LOG.c.seq, LOG.c.document_id)).all()
        times = conn.execute(select(LOG.c.recorded_at).order_by(LOG.c.seq)).scalars().all()
    assert {doc for _, doc in docs} == {f"w{w}-{i}" for w in range(workers) for i in range(per_worker)}
    assert times == sorted(times)  # time is taken under the ledger lock, so it follows seq
    for seq, doc in docs:
        worker, i = doc[1:].split("-")
        assert trail.body(seq) == f"<m w='{worker}' i='{i}'/>".encode()
