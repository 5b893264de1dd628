"""Result files of the synthetic one-stop system: what a dossier's result looks like on disk.

When a dossier's result is signed (local status DA_XU_LY, national 9) the one-stop system keeps
the digitised result (a signed decision, a licence, a scanned certificate) as a file in its result
folder and records it in ``hoso_ket_qua``: the document's name, the procedure's result code
(``MAKETQUA`` of the national catalogue), the file's name, MIME type, path under the folder, size
and SHA-256. The hub reads those rows like steps and uploads the files to the portal.

:func:`attach_results` gives every dossier at status 9 or 10 that has no result yet one (now and
then two) result files, realistic in size: most are PDFs of tens to hundreds of KB, some of a few
MB, and about one in twenty is a large scan of tens of MB. Contents are pseudo-random bytes behind a
PDF header, drawn from ``Random(seed, so_ho_so, n)``: the same seed gives the same files and rows.
It runs after the simulation has moved (the CLI's ``--results``), so a result row is always
written after the hoso row that reached 9/10, as in a real system.

:func:`inject_result` spoils result rows on purpose, each a case the hub must count on its own:

* ``result_missing_file``: the row names a file that is not in the folder;
* ``result_unreadable``: the path is a folder, not a file (root reads any file, so a permission
  bit would not stop it);
* ``result_changed``: the file was rewritten after the row recorded its size and SHA-256;
* ``result_wrong_code``: ``ma_giay_to`` is not a result code of the dossier's procedure.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    column,
    insert,
    select,
    table,
)

from .catalogue import Catalogue, parse_code

#: result documents: appended once a dossier's result is signed (status DA_XU_LY / DA_TRA_KQ), after
#: its hoso row; ``tep`` is the file's path under the system's result folder, ``kich_thuoc`` and
#: ``sha256`` what the system recorded of it (created with the one-stop database's other tables)
results_metadata = MetaData()
hoso_ket_qua = Table(
    "hoso_ket_qua", results_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("so_ho_so", Text, nullable=False),
    Column("ten_giay_to", Text),
    Column("ma_giay_to", Text, nullable=True),
    Column("ma_thanh_phan", Text, nullable=True),
    Column("ten_tep", Text),
    Column("kieu_tep", Text, nullable=True),
    Column("tep", Text),
    Column("kich_thuoc", BigInteger, nullable=True),
    Column("sha256", Text, nullable=True),
    Column("cap_nhat_luc", DateTime(timezone=False), nullable=False),
    Index("ix_hoso_ket_qua_so_ho_so", "so_ho_so", "id"),
    sqlite_autoincrement=True,
)
#: the columns of ``hoso`` (lienthong.sandbox.onestop) this module reads
hoso = table("hoso", column("so_ho_so"), column("ma_thu_tuc"), column("trang_thai"),
             column("cap_nhat_luc", DateTime(timezone=False)))

#: bad result rows :func:`inject_result` can write
RESULT_INJECTION_KINDS = ("result_missing_file", "result_unreadable", "result_changed", "result_wrong_code")
#: national statuses at which a dossier has its result
RESULT_STATUSES = ("DA_XU_LY", "DA_TRA_KQ")
_PDF_HEADER = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
_KB, _MB = 1024, 1024 * 1024


@dataclass
class ResultReport:
    """What one :func:`attach_results` (or :func:`inject_result`) wrote."""

    rows: int = 0
    files: int = 0
    bytes: int = 0
    largest: int = 0
    injected: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "files": self.files, "bytes": self.bytes, "largest": self.largest,
                "injected": dict(self.injected)}


def draw_size(rng: random.Random, *, large_share: float = 0.05, large_mb: tuple[int, int] = (12, 40)) -> int:
    """A result file's size: ~70 % PDFs of 8–400 KB, ~25 % of 0.5–4 MB, ``large_share`` scans."""
    roll = rng.random()
    if roll < large_share:
        return rng.randint(large_mb[0] * _MB, large_mb[1] * _MB)
    if roll < large_share + 0.25:
        return rng.randint(_MB // 2, 4 * _MB)
    return rng.randint(8 * _KB, 400 * _KB)


def write_result_file(path: Path, size: int, rng: random.Random) -> str:
    """Write ``size`` pseudo-random bytes behind a PDF header to ``path``; returns their SHA-256.
    Written in 1 MiB blocks, so a 40 MB scan never sits in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        head = _PDF_HEADER[:size]
        fh.write(head)
        digest.update(head)
        left = size - len(head)
        while left > 0:
            block = rng.randbytes(min(_MB, left))
            fh.write(block)
            digest.update(block)
            left -= len(block)
    tmp.replace(path)
    return digest.hexdigest()


def _result_name(catalogue: Catalogue, code: str | None) -> tuple[str | None, str]:
    record = catalogue.record(code) if code and parse_code(code) is not None else None
    results = (record or {}).get("KETQUATHUCHIEN") or []
    if results:
        return results[0]["MAKETQUA"], results[0]["TENKETQUA"]
    return None, "Kết quả giải quyết thủ tục hành chính"


def _finished_without_result(db: Any, *, limit: int | None = None, newest_first: bool = False) -> list[Any]:
    """(so_ho_so, ma_thu_tuc, cap_nhat_luc) of the dossiers at DA_XU_LY/DA_TRA_KQ with no result yet,
    oldest change first (or newest)."""
    has_result = select(hoso_ket_qua.c.so_ho_so).distinct()
    order = (hoso.c.cap_nhat_luc.desc() if newest_first else hoso.c.cap_nhat_luc, hoso.c.so_ho_so)
    query = (select(hoso.c.so_ho_so, hoso.c.ma_thu_tuc, hoso.c.cap_nhat_luc)
             .where(hoso.c.trang_thai.in_(RESULT_STATUSES), hoso.c.so_ho_so.not_in(has_result)).order_by(*order))
    if limit is not None:
        query = query.limit(limit)
    with db.engine.connect() as conn:
        return conn.execute(query).all()


def _relative(so_ho_so: str, n: int) -> str:
    """Where the system keeps a dossier's n-th result file, under its result folder."""
    return f"{so_ho_so[-12:]}/{so_ho_so}-KQ{n}.pdf"


def attach_results(db: Any, root: Path, *, seed: int = 1, catalogue: Catalogue | None = None,
                   large_share: float = 0.05, large_mb: tuple[int, int] = (12, 40),
                   limit: int | None = None, now: datetime | None = None) -> ResultReport:
    """Give each dossier at DA_XU_LY/DA_TRA_KQ without a result row its result file(s) under ``root``.

    ``limit`` caps how many dossiers get results in this call (oldest change first); ``now`` is the
    rows' ``cap_nhat_luc`` (default: each dossier's own change time, naive UTC)."""
    catalogue = catalogue or Catalogue(300, seed=1)
    root = Path(root)
    report = ResultReport()
    dossiers = _finished_without_result(db, limit=limit)
    rows = []
    for so_ho_so, ma_thu_tuc, changed in dossiers:
        rng = random.Random(f"{seed}|{so_ho_so}")
        code, name = _result_name(catalogue, ma_thu_tuc)
        count = 2 if rng.random() < 0.1 else 1
        for n in range(1, count + 1):
            size = draw_size(rng, large_share=large_share, large_mb=large_mb)
            relative = _relative(so_ho_so, n)
            sha = write_result_file(root / relative, size, random.Random(f"{seed}|{so_ho_so}|{n}"))
            rows.append(_row(so_ho_so, n, code, name, relative, size, sha, now or changed))
            report.files += 1
            report.bytes += size
            report.largest = max(report.largest, size)
    if rows:
        with db.engine.begin() as conn:
            conn.execute(insert(hoso_ket_qua), rows)
    report.rows = len(rows)
    return report


def _row(so_ho_so: str, n: int, code: str | None, name: str, relative: str, size: int, sha: str,
         changed: datetime) -> dict[str, Any]:
    return {"so_ho_so": so_ho_so, "ten_giay_to": name if n == 1 else f"{name} (bản sao {n})",
            "ma_giay_to": code, "ma_thanh_phan": f"TP{n}", "ten_tep": f"{so_ho_so}-KQ{n}.pdf",
            "kieu_tep": "application/pdf", "tep": relative, "kich_thuoc": size, "sha256": sha,
            "cap_nhat_luc": changed}


def inject_result(db: Any, root: Path, kind: str, count: int = 1, *, seed: int = 1,
                  catalogue: Catalogue | None = None, now: datetime | None = None) -> list[str]:
    """Attach a spoiled result (see the module docstring) to ``count`` dossiers at 9/10 that have
    none yet; returns their codes. Raises ``ValueError`` when too few such dossiers exist."""
    if kind not in RESULT_INJECTION_KINDS:
        raise ValueError(f"unknown result injection {kind!r}: one of {', '.join(RESULT_INJECTION_KINDS)}")
    catalogue = catalogue or Catalogue(300, seed=1)
    root = Path(root)
    dossiers = _finished_without_result(db, limit=count, newest_first=True)
    if len(dossiers) < count:
        raise ValueError(f"only {len(dossiers)} dossier(s) at DA_XU_LY/DA_TRA_KQ without a result; "
                         f"{kind} needs {count}")
    rows, codes = [], []
    for i, (so_ho_so, ma_thu_tuc, changed) in enumerate(dossiers):
        rng = random.Random(f"{seed}|{kind}|{so_ho_so}")
        code, name = _result_name(catalogue, ma_thu_tuc)
        size = rng.randint(8 * _KB, 64 * _KB)
        relative = _relative(so_ho_so, 1)
        path = root / relative
        if kind == "result_missing_file":
            sha = hashlib.sha256(b"never written").hexdigest()
        elif kind == "result_unreadable":
            path.mkdir(parents=True, exist_ok=True)
            sha = hashlib.sha256(b"a folder").hexdigest()
        else:
            sha = write_result_file(path, size, rng)
        if kind == "result_changed":
            # rewritten after the row was recorded: same name, other bytes (and size)
            write_result_file(path, size + 1 + i, random.Random(f"{seed}|changed|{so_ho_so}"))
        if kind == "result_wrong_code":
            code = f"KQ-9.{999999 - i:06d}-9"
        rows.append(_row(so_ho_so, 1, code, name, relative, size, sha, now or changed))
        codes.append(so_ho_so)
    with db.engine.begin() as conn:
        conn.execute(insert(hoso_ket_qua), rows)
    return codes


def result_rows(db: Any, so_ho_so: str | None = None, *, after_id: int = 0) -> list[dict[str, Any]]:
    """The ``hoso_ket_qua`` rows (of one dossier) after ``after_id``, in id order."""
    query = select(hoso_ket_qua).where(hoso_ket_qua.c.id > after_id).order_by(hoso_ket_qua.c.id)
    if so_ho_so is not None:
        query = query.where(hoso_ket_qua.c.so_ho_so == so_ho_so)
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]

