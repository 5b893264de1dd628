"""Statistics of the audit ledger: what was exchanged with whom, how fast, how often it failed.

``lienthong audit stats`` and the daily DAG ``lienthong_audit_stats`` read the same figures from
:func:`compute_stats`. Everything is computed in the database (``GROUP BY``), so a year of ledger
costs a few index scans and never leaves the database row by row. Latency percentiles use the
nearest-rank method with window functions (``ROW_NUMBER``/``COUNT`` over a partition), which SQLite
(3.25+) and PostgreSQL both run: p-th percentile = the value at rank ⌈p·n/100⌉ in ascending order.

Definitions:

* a **message** is one ledger entry: a request the hub sent (``out``) or the reply it received (``in``);
* **latency** is ``latency_ms`` of the replies (the time from sending the request to having the
  reply, recorded by the connector on the ``in`` entry);
* **bytes out / in** are the exact wire sizes (``body_size``) by direction;
* a **failure** is an entry whose outcome is neither ``ok`` nor ``sent`` (``fault``, ``timeout``,
  ``unavailable``, ``rejected``, ``error``, …).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, case, func, select

from ..files import write_atomic
from ..store.models import AuditEntry

__all__ = ["AuditStats", "OperationStats", "PartnerStats", "compute_stats", "previous_day", "write_daily_report",
           "PERCENTILES"]

_LOG = AuditEntry.__table__
SUCCESS_OUTCOMES = ("ok", "sent")
PERCENTILES = (50, 95)


@dataclass
class OperationStats:
    partner: str
    operation: str
    messages: int = 0
    requests: int = 0
    replies: int = 0
    failures: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"partner": self.partner, "operation": self.operation, "messages": self.messages,
                "requests": self.requests, "replies": self.replies, "failures": self.failures,
                "bytes_out": self.bytes_out, "bytes_in": self.bytes_in,
                "latency_p50_ms": _round(self.latency_p50_ms), "latency_p95_ms": _round(self.latency_p95_ms),
                "outcomes": dict(sorted(self.outcomes.items()))}


@dataclass
class PartnerStats:
    partner: str
    messages: int = 0
    failures: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"partner": self.partner, "messages": self.messages, "failures": self.failures,
                "bytes_out": self.bytes_out, "bytes_in": self.bytes_in,
                "latency_p50_ms": _round(self.latency_p50_ms), "latency_p95_ms": _round(self.latency_p95_ms)}


@dataclass
class AuditStats:
    """Figures over ``[since, until)`` (either open-ended when ``None``)."""

    since: datetime | None
    until: datetime | None
    operations: list[OperationStats]
    partners: list[PartnerStats]

    @property
    def messages(self) -> int:
        return sum(p.messages for p in self.partners)

    @property
    def failures(self) -> int:
        return sum(p.failures for p in self.partners)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "totals": {"messages": self.messages, "failures": self.failures,
                       "bytes_out": sum(p.bytes_out for p in self.partners),
                       "bytes_in": sum(p.bytes_in for p in self.partners)},
            "partners": [p.as_dict() for p in self.partners],
            "operations": [o.as_dict() for o in self.operations],
        }

    def to_csv(self) -> str:
        """One row per partner and operation; one ``outcome_<name>`` column per outcome seen."""
        outcomes = sorted({name for o in self.operations for name in o.outcomes})
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["since", "until", "partner", "operation", "messages", "requests", "replies", "failures",
                         "bytes_out", "bytes_in", "latency_p50_ms", "latency_p95_ms",
                         *(f"outcome_{name}" for name in outcomes)])
        for o in self.operations:
            row = o.as_dict()
            writer.writerow([self.since.isoformat() if self.since else "", self.until.isoformat() if self.until else "",
                             o.partner, o.operation, o.messages, o.requests, o.replies, o.failures, o.bytes_out,
                             o.bytes_in, "" if row["latency_p50_ms"] is None else row["latency_p50_ms"],
                             "" if row["latency_p95_ms"] is None else row["latency_p95_ms"],
                             *(o.outcomes.get(name, 0) for name in outcomes)])
        return out.getvalue()


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _window(since: datetime | None, until: datetime | None) -> list[Any]:
    conditions = []
    if since is not None:
        conditions.append(_LOG.c.recorded_at >= since)
    if until is not None:
        conditions.append(_LOG.c.recorded_at < until)
    return conditions


def _percentiles(conn, conditions: list[Any], *group: Any) -> dict[tuple, tuple[float | None, ...]]:
    """Nearest-rank latency percentiles of replies, per ``group`` columns, in one query."""
    ranked = (
        select(*group, _LOG.c.latency_ms.label("latency"),
               func.row_number().over(partition_by=list(group), order_by=_LOG.c.latency_ms).label("rn"),
               func.count().over(partition_by=list(group)).label("n"))
        .where(*conditions, _LOG.c.direction == "in", _LOG.c.latency_ms.is_not(None))
        .subquery()
    )
    keys = [ranked.c[col.name] for col in group]
    picks = [func.max(case((ranked.c.rn == (ranked.c.n * p + 99) // 100, ranked.c.latency))) for p in PERCENTILES]
    rows = conn.execute(select(*keys, *picks).group_by(*keys)).all()
    return {tuple(row[: len(keys)]): tuple(row[len(keys):]) for row in rows}


def compute_stats(engine: Engine, *, since: datetime | None = None, until: datetime | None = None) -> AuditStats:
    """Counts by partner, operation and outcome; bytes; failures; reply latency p50/p95."""
    conditions = _window(since, until)
    counts = (
        select(_LOG.c.partner, _LOG.c.operation, _LOG.c.direction, _LOG.c.outcome, func.count(),
               func.coalesce(func.sum(_LOG.c.body_size), 0))
        .where(*conditions)
        .group_by(_LOG.c.partner, _LOG.c.operation, _LOG.c.direction, _LOG.c.outcome)
    )
    operations: dict[tuple[str, str], OperationStats] = {}
    partners: dict[str, PartnerStats] = {}
    with engine.connect() as conn:
        for partner, operation, direction, outcome, count, size in conn.execute(counts):
            count, size = int(count), int(size)
            op = operations.setdefault((partner, operation), OperationStats(partner, operation))
            pa = partners.setdefault(partner, PartnerStats(partner))
            op.messages += count
            pa.messages += count
            op.outcomes[outcome] = op.outcomes.get(outcome, 0) + count
            if direction == "out":
                op.requests += count
                op.bytes_out += size
                pa.bytes_out += size
            else:
                op.replies += count
                op.bytes_in += size
                pa.bytes_in += size
            if outcome not in SUCCESS_OUTCOMES:
                op.failures += count
                pa.failures += count
        by_operation = _percentiles(conn, conditions, _LOG.c.partner, _LOG.c.operation)
        by_partner = _percentiles(conn, conditions, _LOG.c.partner)
    for key, (p50, p95) in by_operation.items():
        if key in operations:
            operations[key].latency_p50_ms, operations[key].latency_p95_ms = p50, p95
    for (partner,), (p50, p95) in by_partner.items():
        if partner in partners:
            partners[partner].latency_p50_ms, partners[partner].latency_p95_ms = p50, p95
    return AuditStats(since, until, [operations[k] for k in sorted(operations)],
                      [partners[k] for k in sorted(partners)])


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[00:00, 24:00)`` UTC of ``day``: the ledger records UTC, and so do the daily reports."""
    start = datetime.combine(day, time(0, 0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _atomic_write(path: Path, data: str) -> None:
    """A reader (or a crash) never sees half a report (see :func:`lienthong.hub.files.write_atomic`)."""
    write_atomic(path, data.encode("utf-8"), mode=0o600)


def write_daily_report(engine: Engine, reports_dir: Path, day: date) -> tuple[Path, Path, AuditStats]:
    """``audit-stats-YYYY-MM-DD.json`` and ``.csv`` for one UTC day, written atomically.

    Re-running for the same day rewrites both files with the figures as they are now (the same,
    unless entries of that day were pruned since).
    """
    since, until = day_bounds(day)
    stats = compute_stats(engine, since=since, until=until)
    stem = reports_dir / f"audit-stats-{day.isoformat()}"
    json_path, csv_path = stem.with_suffix(".json"), stem.with_suffix(".csv")
    document = {"day": day.isoformat(), "generated_at": datetime.now(UTC).isoformat(), **stats.as_dict()}
    _atomic_write(json_path, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    _atomic_write(csv_path, stats.to_csv())
    return json_path, csv_path, stats


def previous_day(moment: datetime | None = None) -> date:
    """The UTC day before ``moment`` (default now): what a daily run reports on.

    A scheduled ``@daily`` run starts at 00:00 UTC at the end of its interval, so the day before
    its ``data_interval_end`` is exactly the interval it covers; a run triggered by hand during
    the day reports on the last complete day.
    """
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date() - timedelta(days=1)
