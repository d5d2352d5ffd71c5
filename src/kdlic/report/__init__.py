"""Reports from result JSONs: the paper's tables, RD and resource plots, crops, one HTML page.

See :func:`kdlic.report.build.build_report` and ``kdlic report --help``.
"""

from kdlic.report.build import PLOTS, TABLES, build_report

__all__ = ["PLOTS", "TABLES", "build_report"]
