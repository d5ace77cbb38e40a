"""The template's filters: every number the report prints goes through one of these.

A value that is missing, not a number or not finite prints as "not available", so a partial input never
breaks the page.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup


def number(value: Any) -> float | None:
    """`value` as a finite float, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def not_available() -> Markup:
    return Markup('<span class="na">not available</span>')


def fmt_pct(value: Any, digits: int = 1) -> str | Markup:
    x = number(value)
    return not_available() if x is None else f"{x * 100:.{digits}f}%"


def fmt_num(value: Any, digits: int = 3) -> str | Markup:
    x = number(value)
    return not_available() if x is None else f"{x:.{digits}f}"


def fmt_int(value: Any) -> str | Markup:
    x = number(value)
    return not_available() if x is None else f"{round(x):,}"


def fmt_sci(value: Any) -> str | Markup:
    x = number(value)
    return not_available() if x is None else f"{x:.2e}"


def fmt_points(value: Any) -> str | Markup:
    """A difference of two fractions, in percentage points with its sign."""
    x = number(value)
    return not_available() if x is None else f"{x * 100:+.1f} pts"


def fmt_abs_points(value: Any) -> str | Markup:
    """A fraction shown as an amount of percentage points (no sign)."""
    x = number(value)
    return not_available() if x is None else f"{x * 100:.1f} pts"


def fmt_delta(value: Any, digits: int = 3) -> str | Markup:
    x = number(value)
    return not_available() if x is None else f"{x:+.{digits}f}"


def fmt_bytes(value: Any) -> str | Markup:
    x = number(value)
    if x is None:
        return not_available()
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f} B"


def fmt_ms(value: Any) -> str | Markup:
    x = number(value)
    return not_available() if x is None else f"{x:.2f} ms"


def fmt_seconds(value: Any) -> str | Markup:
    x = number(value)
    if x is None:
        return not_available()
    if x >= 120:
        minutes, seconds = divmod(x, 60)
        return f"{x:.0f} s ({int(minutes)} min {seconds:.0f} s)"
    return f"{x:.1f} s"


def fmt_ratio(value: Any) -> str | Markup:
    x = number(value)
    return not_available() if x is None else f"{x:.2f}×"


def fmt_text(value: Any) -> str | Markup:
    """Any scalar as text (escaped by the template); None/missing as "not available"."""
    if value is None or value == "":
        return not_available()
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def fmt_metric(value: Any, kind: str = "pct") -> str | Markup:
    """A metric by its kind (tunepipe.tasks._report.Shown): a fraction as a percentage, anything else as a number."""
    return fmt_pct(value) if kind == "pct" else fmt_num(value)


def fmt_change(value: Any, kind: str = "pct") -> str | Markup:
    """A difference of two metrics of that kind, with its sign: points for fractions."""
    return fmt_points(value) if kind == "pct" else fmt_delta(value)


def fmt_amount(value: Any, kind: str = "pct") -> str | Markup:
    """A difference of two metrics of that kind as an amount (no sign): a gap, an allowed drop."""
    x = number(value)
    return fmt_abs_points(value) if kind == "pct" else (not_available() if x is None else f"{abs(x):.3f}")


def fmt_svg(svg: str | None) -> Markup:
    """A figure from `tunepipe.report.plots` (our own SVG, already safe), inlined."""
    return Markup(svg) if svg else not_available()


FILTERS = {
    "pct": fmt_pct,
    "num": fmt_num,
    "int": fmt_int,
    "sci": fmt_sci,
    "points": fmt_points,
    "abs_points": fmt_abs_points,
    "delta": fmt_delta,
    "bytes": fmt_bytes,
    "ms": fmt_ms,
    "seconds": fmt_seconds,
    "ratio": fmt_ratio,
    "text": fmt_text,
    "svg": fmt_svg,
    "metric": fmt_metric,
    "change": fmt_change,
    "amount": fmt_amount,
}
