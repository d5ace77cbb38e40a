"""The run report: one self-contained HTML file (inline CSS and SVG figures, no network).

load.py reads the input files, sections/ turns them into one view model per section, render.py prints
them through templates/ with the filters of format.py; plots.py draws the figures.
"""

from tunepipe.report.load import load_inputs
from tunepipe.report.render import build_report

__all__ = ["build_report", "load_inputs"]
