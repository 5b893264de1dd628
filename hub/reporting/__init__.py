"""National reporting computed from the hub's own record of dossiers (:mod:`lienthong.hub.dossiers`).

:mod:`.figures` turns the record into the "06" report's figures (Thông tư 01/2020/TT-VPCP) for a
period, per agency × procedure × field, never asking the one-stop system at report time.
"""

from .figures import COLUMNS, Period, ReportRow, report_rows

__all__ = ["COLUMNS", "Period", "ReportRow", "report_rows"]
