"""The run report: one self-contained HTML file (inline CSS and SVG figures, no network)."""

from tunepipe.report.build import build_report, load_inputs

__all__ = ["build_report", "load_inputs"]
