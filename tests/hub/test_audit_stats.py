"""Audit statistics: counts, bytes, failures and nearest-rank latency percentiles, in the database."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

from audit_ledger_data import fill_ledger
from lienthong.hub.audit import AuditTrail
from lienthong.hub.audit.stats import compute_stats, previous_day, write_daily_report
from lienthong.hub.store.models import AuditEntry
from sqlalchemy import func, select

DAY = date(2026, 11, 22)
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def record_exchanges(engine, latencies, *, operation="TraCuuHoSo", outcome="ok", at=NOON, partner="dvc_portal"):
    entries = []
    for i, latency in enumerate(latencies):
        entries.append({"direction": "out", "partner": partner, "operation": operation, "outcome": "sent",
                        "raw": b"<r/>" * 10, "recorded_at": at + timedelta(seconds=i)})
        entries.append({"direction": "in", "partner": partner, "operation": operation, "outcome": outcome,
                        "raw": b"<answer/>" * 5, "latency_ms": latency, "recorded_at": at + timedelta(seconds=i)})
    AuditTrail(engine).record_many(entries)


def test_percentiles_are_nearest_rank_over_replies(engine):
    record_exchanges(engine, [float(n) for n in range(100, 0, -1)])  # 100 replies, 1..100 ms, shuffled order
    record_exchanges(engine, [7.0], operation="DongBoHoSoMC")
    stats = compute_stats(engine)
    ops = {o.operation: o for o in stats.operations}
    assert (ops["TraCuuHoSo"].latency_p50_ms, ops["TraCuuHoSo"].latency_p95_ms) == (50.0, 95.0)
    assert (ops["DongBoHoSoMC"].latency_p50_ms, ops["DongBoHoSoMC"].latency_p95_ms) == (7.0, 7.0)
    # per partner: 101 values, rank ceil(0.5*101)=51 -> 50 (the 7 ms sits below), rank ceil(0.95*101)=96 -> 95
    (portal,) = stats.partners
    assert (portal.latency_p50_ms, portal.latency_p95_ms) == (50.0, 95.0)


def test_counts_bytes_and_failures_by_partner_operation_and_outcome(engine):
    record_exchanges(engine, [10.0, 20.0])
    record_exchanges(engine, [30.0], outcome="timeout")
    record_exchanges(engine, [5.0, 6.0, 7.0], operation="LayThuTuc", partner="csdl_tthc", outcome="fault")
    stats = compute_stats(engine)
    portal, = (p for p in stats.partners if p.partner == "dvc_portal")
    assert (portal.messages, portal.failures, portal.bytes_out, portal.bytes_in) == (6, 1, 3 * 40, 3 * 45)
    (lookup,) = (o for o in stats.operations if o.operation == "TraCuuHoSo")
    assert lookup.outcomes == {"sent": 3, "ok": 2, "timeout": 1}
    assert (lookup.requests, lookup.replies, lookup.failures) == (3, 3, 1)
    assert stats.failures == 4 and stats.messages == 12
    totals = stats.as_dict()["totals"]
    with engine.connect() as conn:
        assert totals["bytes_out"] + totals["bytes_in"] == conn.execute(select(func.sum(AuditEntry.body_size))).scalar()


def test_time_window_is_half_open(engine):
    record_exchanges(engine, [1.0], at=NOON)
    record_exchanges(engine, [2.0], at=NOON + timedelta(days=1))
    assert compute_stats(engine, since=NOON, until=NOON + timedelta(days=1)).messages == 2
    assert compute_stats(engine, since=NOON + timedelta(seconds=1)).messages == 2
    assert compute_stats(engine, until=NOON).messages == 0
    empty = compute_stats(engine, since=NOON + timedelta(days=5))
    assert empty.as_dict()["totals"] == {"messages": 0, "failures": 0, "bytes_out": 0, "bytes_in": 0}


def test_stats_of_real_exchanges(engine, conn_home, sandbox):
    fill_ledger(engine, conn_home, sandbox)
    stats = compute_stats(engine)
    assert {p.partner for p in stats.partners} == {"dvc_portal", "csdl_tthc"}
    assert stats.failures == 0 and stats.messages == 12
    assert all(o.latency_p50_ms is not None and o.latency_p50_ms <= o.latency_p95_ms for o in stats.operations)


def test_daily_report_files_are_written_atomically_for_one_utc_day(engine, tmp_path):
    record_exchanges(engine, [10.0, 20.0], at=datetime(2026, 11, 22, 0, 0, tzinfo=UTC))
    record_exchanges(engine, [99.0], at=datetime(2026, 11, 23, 0, 0, tzinfo=UTC))  # the next day: not counted
    reports = tmp_path / "reports"
    json_path, csv_path, stats = write_daily_report(engine, reports, DAY)
    assert json_path.name == "audit-stats-2026-11-22.json" and csv_path.name == "audit-stats-2026-11-22.csv"
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["day"] == "2026-11-22" and document["totals"]["messages"] == 4
    assert document["since"] == "2026-11-22T00:00:00+00:00" and document["until"] == "2026-11-23T00:00:00+00:00"
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert rows == [{"since": "2026-11-22T00:00:00+00:00", "until": "2026-11-23T00:00:00+00:00",
                     "partner": "dvc_portal", "operation": "TraCuuHoSo", "messages": "4", "requests": "2",
                     "replies": "2", "failures": "0", "bytes_out": "80", "bytes_in": "90", "latency_p50_ms": "10.0",
                     "latency_p95_ms": "20.0", "outcome_ok": "2", "outcome_sent": "2"}]
    # a re-run replaces both files and leaves no temporary file behind
    record_exchanges(engine, [30.0], at=datetime(2026, 11, 22, 23, 0, tzinfo=UTC))
    write_daily_report(engine, reports, DAY)
    assert json.loads(json_path.read_text(encoding="utf-8"))["totals"]["messages"] == 6
    assert sorted(p.name for p in reports.iterdir()) == ["audit-stats-2026-11-22.csv", "audit-stats-2026-11-22.json"]


def test_previous_day_is_the_utc_day_before_the_run():
    assert previous_day(datetime(2026, 11, 23, 0, 0, tzinfo=UTC)) == DAY
    # 06:30 in Hà Nội on the 23rd is still the 22nd in UTC
    assert previous_day(datetime.fromisoformat("2026-11-23T06:30:00+07:00")) == date(2026, 11, 21)
