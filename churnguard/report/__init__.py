"""The self-contained HTML retention report (plots drawn in :mod:`churnguard.report.figures`)."""

from churnguard.report.html import REQUIRED_COLUMNS, build_report, report_from_list

__all__ = ["REQUIRED_COLUMNS", "build_report", "report_from_list"]
