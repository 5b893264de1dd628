"""``lienthong report build``: the 06 report's figures for a period, from the hub's record of dossiers."""

from __future__ import annotations

import argparse
import csv
import io
import json

from rich.markup import escape

from .console import EXIT_USAGE, console, err_console, load_settings

#: the columns' headers in the table (the full names are the report's: --json, --csv)
SHORT = {"TiepNhanKyTruoc": "KT", "TiepNhanTrucTuyen": "TT", "TiepNhanTrucTiep": "TTi", "TiepNhanBuuChinh": "BC",
         "GiaiQuyetTruocHan": "GQ<", "GiaiQuyetDungHan": "GQ=", "GiaiQuyetQuaHan": "GQ>", "DangXuLyTrongHan": "XL",
         "DangXuLyQuaHan": "XL>", "YeuCauBoSung": "BS", "RutHoSo": "Rút", "DungXuLy": "Dừng"}


def cmd_report_build(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..reporting import COLUMNS, Period, report_rows
    from ..store import open_store

    try:
        period = Period.parse(args.period)
    except ValueError as exc:
        err_console.print(f"[red]error[/]: {escape(str(exc))}")
        return EXIT_USAGE
    settings = load_settings()
    store = open_store(settings)
    rows = report_rows(store.engine, period, agency=args.agency, default_agency=settings.agency_code,
                       due_date_moved=args.due_date_moved)
    if args.json:
        console.print_json(json.dumps({
            "period": str(period), "kind": period.kind, "year": period.year, "number": period.number,
            "start": period.start.isoformat(), "end": period.end.isoformat(),
            "rows": [row.as_chi_tieu() | {"without_due_date": row.without_due_date} for row in rows]}, ensure_ascii=False))
        return 0
    if args.csv:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(("MaCoQuan", "MaTTHC", "MaLinhVuc", *COLUMNS))
        for row in rows:
            writer.writerow((row.agency, row.ma_tthc or "", row.ma_linh_vuc or "", *(row.counts[c] for c in COLUMNS)))
        print(out.getvalue(), end="")
        return 0
    table = Table(title=f"Báo cáo 06 — kỳ {period} (giờ Việt Nam, {len(rows)} dòng)",
                  caption=" · ".join(f"{short} = {name}" for name, short in SHORT.items()))
    table.add_column("cơ quan / TTHC / lĩnh vực")
    for name in COLUMNS:
        table.add_column(SHORT[name], justify="right")
    totals = dict.fromkeys(COLUMNS, 0)
    for row in rows:
        table.add_row(f"{row.agency} / {row.ma_tthc or '-'} / {row.ma_linh_vuc or '-'}",
                      *(f"{row.counts[c]:,}" for c in COLUMNS))
        for c in COLUMNS:
            totals[c] += row.counts[c]
    table.add_row("[b]Tổng[/]", *(f"[b]{totals[c]:,}[/]" for c in COLUMNS))
    console.print(table)
    missing = [code for row in rows for code in row.without_due_date]
    if missing:
        console.print(f"{len(missing)} dossier(s) with no due date (no NgayHenTra, no processing time in the "
                      f"catalogue), counted as on due: {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")
    return 0


def register(sub) -> None:
    report = sub.add_parser("report", help="national reports computed from the hub's record of dossiers")
    report_sub = report.add_subparsers(dest="report_command", metavar="WHAT")
    report_sub.required = True
    build = report_sub.add_parser("build", help="the 06 report's figures for a period (nothing is sent)")
    build.add_argument("--period", required=True, help="2026-11 (month), 2026-Q4, 2026-H2 or 2026, in Vietnam time")
    build.add_argument("--agency", help="one agency's rows (default: every agency)")
    build.add_argument("--due-date-moved", action="store_true",
                       help="the one-stop system already pushes NgayHenTra back by the supplement time "
                            "(do not take that time off again)")
    shown = build.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true")
    shown.add_argument("--csv", action="store_true")
    build.set_defaults(func=cmd_report_build)
