"""The ledger's append path: pre-compiled statements that store exactly what Core would, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy.exc
from lienthong.hub.audit import AuditRecord, AuditTrail, ChainReport
from lienthong.hub.store.models import AuditEntry
from sqlalchemy import Engine, insert, select

LOG = AuditEntry.__table__


def _entry(i: int, **overrides) -> AuditRecord:
    fields = dict(direction="out", partner="csdl_tthc", operation="LayThuTuc", raw=f"<m i='{i}'/>".encode(),
                  outcome="sent", document_id=f"doc-{i}", correlation_id=f"doc-{i}",
                  from_agency="000.00.00.G10", to_agency="000.00.00.G22")
    fields.update(overrides)
    return AuditRecord(**fields)


def test_stored_values_read_back_like_core_inserts(engine: Engine) -> None:
    trail = AuditTrail(engine)
    at = datetime(2026, 1, 2, 8, 30, 15, 1234, tzinfo=timezone(timedelta(hours=7)))
    seq = trail.record_many([_entry(1, recorded_at=at, latency_ms=7, attempt=2, error="lỗi")])[0]
    with engine.connect() as conn:
        row = conn.execute(select(LOG).where(LOG.c.seq == seq)).mappings().one()
    assert row["recorded_at"] == at and row["recorded_at"].utcoffset() == timedelta(0)
    assert row["latency_ms"] == 7.0 and isinstance(row["latency_ms"], float)
    assert row["attempt"] == 2 and row["error"] == "lỗi" and row["document_id"] == "doc-1"
    assert trail.verify() == ChainReport(True, 1)


def test_sqlite_time_is_stored_in_the_form_core_writes(engine: Engine) -> None:
    """The verifier hashes the stored text; it must be the form SQLAlchemy's own insert produces."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite stores timestamps as text")
    trail = AuditTrail(engine)
    at = datetime(2026, 1, 2, 1, 30, 15, 0, tzinfo=UTC)
    trail.record_many([_entry(1, recorded_at=at)])
    core_row = {c.name: None for c in LOG.c} | {
        "seq": 99, "recorded_at": at, "direction": "out", "partner": "p", "operation": "o", "outcome": "ok",
        "attempt": 1, "body_sha256": "0" * 64, "body_size": 0, "body": b"", "prev_hash": "0" * 64,
        "entry_hash": "0" * 64}
    with engine.begin() as conn:
        conn.execute(insert(LOG), core_row)
        texts = conn.exec_driver_sql("SELECT recorded_at FROM audit_log ORDER BY seq").scalars().all()
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 99")
    assert texts == ["2026-01-02 01:30:15.000000", "2026-01-02 01:30:15.000000"]


def test_record_many_in_several_chunks_keeps_one_chain(engine: Engine) -> None:
    trail = AuditTrail(engine)
    trail.record_many([_entry(0)])
    seqs = trail.record_many([_entry(i, direction="in" if i % 2 else "out") for i in range(1, 8)], chunk_size=3)
    assert seqs == list(range(2, 9))
    assert trail.head()[0] == 8
    assert trail.verify() == ChainReport(True, 8)
    assert [trail.body(s) for s in seqs] == [f"<m i='{i}'/>".encode() for i in range(1, 8)]


def test_a_database_error_is_raised_as_sqlalchemy_error_and_leaves_the_ledger_unchanged(engine: Engine) -> None:
    trail = AuditTrail(engine)
    trail.record_many([_entry(1)])
    head = trail.head()
    with engine.begin() as conn:  # a row squatting on the next seq, written behind the ledger's back
        conn.execute(insert(LOG), {c.name: None for c in LOG.c} | {
            "seq": 2, "recorded_at": datetime.now(UTC), "direction": "out", "partner": "p", "operation": "o",
            "outcome": "ok", "attempt": 1, "body_sha256": "0" * 64, "body_size": 0, "body": b"",
            "prev_hash": "0" * 64, "entry_hash": "0" * 64})
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        trail.record_many([_entry(2), _entry(3)])
    assert trail.head() == head  # the head did not move: nothing of the batch was kept
    with engine.connect() as conn:
        assert conn.execute(select(LOG.c.seq).order_by(LOG.c.seq)).scalars().all() == [1, 2]


def test_one_trail_compiles_its_statements_once(engine: Engine) -> None:
    trail = AuditTrail(engine)
    trail.record_many([_entry(1)])
    compiled = trail._statements
    trail.record_many([_entry(2)])
    assert compiled is not None and trail._statements is compiled
