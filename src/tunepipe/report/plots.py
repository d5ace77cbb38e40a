"""Report figures as inline SVG strings.

Figures are built with `matplotlib.figure.Figure` (no pyplot, so no GUI backend and no global figure
registry); rasterising goes through Agg and vector output through the SVG backend. Text is drawn as paths
(no font needed by the reader), the SVG id hash salt is fixed so the same data give the same bytes, and
every id is prefixed per figure so several figures can live in one HTML page.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BLUE = "#2563eb"
_ORANGE = "#ea580c"
_GREEN = "#16a34a"
_GREY = "#6b7280"

_RC = {
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
}

_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_COMMENT = re.compile(r"<!--.*?-->\s*", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'(xlink:href|href)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rc(salt: str) -> dict[str, Any]:
    return {**_RC, "svg.hashsalt": f"tunepipe-{salt}"}


def figure_to_svg(fig: Any, prefix: str, label: str = "figure") -> str:
    """Serialise a matplotlib figure to an `<svg>` element suitable for inlining in HTML.

    Drops the XML prolog/doctype, the RDF metadata (creator URL, date) and comments, and prefixes every id
    (and the references to it) with `prefix` so figures in one page never share ids.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buf.getvalue()
    svg = _PROLOG.sub("", svg, count=1)
    svg = _METADATA.sub("", svg)
    svg = _COMMENT.sub("", svg)
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = _HREF.sub(lambda m: f'{m.group(1)}="#{prefix}-{m.group(2)}"', svg)
    svg = _URL.sub(lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)
    return svg.strip()


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # Agg for layout/text metrics; savefig(format="svg") switches to the SVG canvas
    return fig


def _close(fig: Any) -> None:
    fig.clear()


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for index, row in enumerate(history):
        y = _number(row.get(key))
        if y is None:
            continue
        x = _number(row.get("epoch"))
        xs.append(float(index) if x is None else x)
        ys.append(y)
    return xs, ys


def training_curves(history: Sequence[Mapping[str, Any]], best_epoch: Any = None, monitor: str | None = None) -> str | None:
    """Loss (train/val) and validation metrics per epoch, side by side. None when nothing can be drawn.

    Every series is drawn with markers, so a single epoch shows as points rather than an empty line.
    """
    import matplotlib

    losses = [("train_loss", "train loss", _BLUE), ("val_loss", "val loss", _ORANGE)]
    metrics = [("val_accuracy", "val accuracy", _GREEN), ("val_f1_macro", "val macro F1", "#7c3aed")]
    if not any(_series(history, key)[0] for key, _, _ in losses + metrics):
        return None
    best = _number(best_epoch)
    with matplotlib.rc_context(_rc("training")):
        fig = _new_figure(7.6, 2.9)
        try:
            for ax, group, title in (
                (fig.add_subplot(1, 2, 1), losses, "Loss"),
                (fig.add_subplot(1, 2, 2), metrics, "Validation metrics"),
            ):
                drawn = False
                epochs: set[float] = set()
                for key, label, colour in group:
                    xs, ys = _series(history, key)
                    if not xs:
                        continue
                    drawn = True
                    epochs.update(xs)
                    style = "-" if len(xs) > 1 else "none"
                    lw = 2.2 if key == monitor else 1.5
                    ax.plot(xs, ys, linestyle=style, marker="o", markersize=4.5, color=colour, linewidth=lw, label=label)
                if best is not None and best in epochs and len(epochs) > 1:
                    ax.axvline(best, color=_GREY, linestyle="--", linewidth=0.9, label="best epoch")
                ax.set_title(title)
                ax.set_xlabel("epoch")
                if epochs:
                    ticks = sorted(epochs)
                    if len(ticks) <= 12 and all(float(t).is_integer() for t in ticks):
                        ax.set_xticks(ticks)
                    if len(ticks) == 1:
                        ax.set_xlim(ticks[0] - 1, ticks[0] + 1)
                if drawn:
                    ax.legend(loc="best")
                else:
                    ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes, color=_GREY)
            return figure_to_svg(fig, "fig-training", "Training curves: loss and validation metrics per epoch")
        finally:
            _close(fig)


def confusion_matrix(labels: Sequence[Any], matrix: Sequence[Sequence[Any]]) -> str | None:
    """Heatmap of counts (rows = true label, columns = predicted) with each cell's count and row share."""
    import matplotlib

    try:
        counts = [[_number(v) for v in row] for row in matrix]
    except TypeError:
        return None
    n = len(counts)
    if n == 0 or any(len(row) != n for row in counts) or any(v is None for row in counts for v in row):
        return None
    names = [str(label) for label in labels] if len(labels) == n else [str(i) for i in range(n)]
    names = [name if len(name) <= 18 else name[:17] + "…" for name in names]
    size = min(6.5, 2.2 + 0.55 * n)
    with matplotlib.rc_context(_rc("confusion") | {"axes.grid": False}):
        fig = _new_figure(size + 0.9, size)
        try:
            ax = fig.add_subplot()
            values = [[float(v) for v in row] for row in counts]
            image = ax.imshow(values, cmap="Blues", vmin=0)
            fig.colorbar(image, ax=ax, shrink=0.8)
            top = max(max(row) for row in values) or 1.0
            fontsize = 9 if n <= 6 else 7
            for i, row in enumerate(values):
                total = sum(row)
                for j, value in enumerate(row):
                    share = f"\n{value / total:.0%}" if total and n <= 8 else ""
                    colour = "white" if value > 0.55 * top else "#111827"
                    ax.text(j, i, f"{value:,.0f}{share}", ha="center", va="center", color=colour, fontsize=fontsize)
            ax.set_xticks(range(n), names, rotation=30 if n > 3 else 0, ha="right" if n > 3 else "center")
            ax.set_yticks(range(n), names)
            ax.set_xlabel("predicted label")
            ax.set_ylabel("true label")
            ax.spines[:].set_visible(False)
            return figure_to_svg(fig, "fig-confusion", "Confusion matrix on the test split")
        finally:
            _close(fig)


def _method(row: Mapping[str, Any]) -> str:
    method = row.get("method")
    if isinstance(method, str):
        return method
    return "dense" if _number(row.get("sparsity")) == 0.0 else "unstructured"


_METHOD_STYLE = {"unstructured": ("o", "-"), "structured": ("s", "--")}


def pruning_curve(
    levels: Sequence[Mapping[str, Any]],
    selected_sparsity: Any = None,
    max_accuracy_drop: Any = None,
) -> str | None:
    """Validation/test accuracy against sparsity, one line per pruning method (each starts at the dense model),
    with the selected level and the allowed-drop floor marked.

    The floor is drawn at the dense model's validation accuracy minus `max_accuracy_drop`. Rows carrying a
    `selected` flag mark that point; otherwise a vertical line marks `selected_sparsity`.
    """
    import matplotlib

    rows = [row for row in levels if isinstance(row, Mapping) and _number(row.get("sparsity")) is not None]
    rows.sort(key=lambda row: _number(row.get("sparsity")))
    if not rows:
        return None
    series = [("val_accuracy", "val accuracy", _ORANGE), ("test_accuracy", "test accuracy", _BLUE), ("test_f1_macro", "test macro F1", _GREEN)]
    if not any(_number(row.get(key)) is not None for row in rows for key, _, _ in series):
        return None
    dense = [r for r in rows if _method(r) == "dense"]
    methods = [m for m in _METHOD_STYLE if any(_method(r) == m for r in rows)]
    several = len(methods) > 1
    with matplotlib.rc_context(_rc("pruning")):
        fig = _new_figure(6.0, 3.2)
        try:
            ax = fig.add_subplot()
            for method in methods:
                marker, style = _METHOD_STYLE[method]
                line = dense + [r for r in rows if _method(r) == method]
                for key, label, colour in series:
                    if several and key == "test_f1_macro":
                        continue  # keep the chart readable: accuracy only when methods are compared
                    points = [(_number(r.get("sparsity")), _number(r.get(key))) for r in line]
                    points = [(x * 100, y) for x, y in points if y is not None]
                    if points:
                        ax.plot(
                            [p[0] for p in points], [p[1] for p in points],
                            linestyle=style if len(points) > 1 else "none", marker=marker, markersize=4.5,
                            color=colour, linewidth=1.5, label=f"{label} ({method})" if several else label,
                        )
            drop = _number(max_accuracy_drop)
            dense_val = _number(dense[0].get("val_accuracy")) if dense else None
            if drop is not None and dense_val is not None:
                ax.axhline(dense_val - drop, color=_GREY, linestyle=":", linewidth=1.0, label="dense val − max drop")
            picked = [r for r in rows if r.get("selected") is True]
            if picked and _number(picked[0].get("val_accuracy")) is not None:
                ax.plot([_number(picked[0]["sparsity"]) * 100], [_number(picked[0]["val_accuracy"])], marker="o", markersize=11,
                        markerfacecolor="none", markeredgecolor="#dc2626", linestyle="none", label="selected")
            elif _number(selected_sparsity) is not None:
                ax.axvline(_number(selected_sparsity) * 100, color="#dc2626", linestyle="--", linewidth=1.0, label="selected")
            ax.set_xlabel("target sparsity / pruning ratio (%)")
            ax.set_ylabel("score")
            ax.set_xticks(sorted({_number(r.get("sparsity")) * 100 for r in rows}))
            ax.legend(loc="best")
            return figure_to_svg(fig, "fig-pruning", "Accuracy against sparsity")
        finally:
            _close(fig)


def pruning_latency(levels: Sequence[Mapping[str, Any]], max_accuracy_drop: Any = None) -> str | None:
    """Validation accuracy against eager batch-1 latency, one marker style per method; the selected level ringed."""
    import matplotlib

    rows = [r for r in levels if isinstance(r, Mapping) and _number(r.get("latency_ms")) is not None and _number(r.get("val_accuracy")) is not None]
    if not rows:
        return None
    colours = {"dense": _GREY, "unstructured": _BLUE, "structured": _ORANGE}
    with matplotlib.rc_context(_rc("pruning-latency")):
        fig = _new_figure(6.0, 3.2)
        try:
            ax = fig.add_subplot()
            for method in ("dense", "unstructured", "structured"):
                points = [r for r in rows if _method(r) == method]
                if points:
                    ax.plot([_number(r["latency_ms"]) for r in points], [_number(r["val_accuracy"]) for r in points],
                            linestyle="none", marker=_METHOD_STYLE.get(method, ("D", ""))[0], markersize=6,
                            color=colours[method], label=method)
                    for r in points:
                        if method != "dense" and _number(r.get("sparsity")) is not None:
                            ax.annotate(f"{_number(r['sparsity']) * 100:.0f}%", (_number(r["latency_ms"]), _number(r["val_accuracy"])),
                                        textcoords="offset points", xytext=(4, 3), fontsize=7, color=colours[method])
            dense = next((r for r in rows if _method(r) == "dense"), None)
            drop = _number(max_accuracy_drop)
            if dense is not None and drop is not None:
                ax.axhline(_number(dense["val_accuracy"]) - drop, color=_GREY, linestyle=":", linewidth=1.0, label="dense val − max drop")
            picked = [r for r in rows if r.get("selected") is True]
            if picked:
                ax.plot([_number(picked[0]["latency_ms"])], [_number(picked[0]["val_accuracy"])], marker="o", markersize=12,
                        markerfacecolor="none", markeredgecolor="#dc2626", linestyle="none", label="selected")
            ax.set_xlabel("eager latency, batch 1 (ms)")
            ax.set_ylabel("val accuracy")
            ax.legend(loc="best")
            return figure_to_svg(fig, "fig-pruning-latency", "Validation accuracy against latency")
        finally:
            _close(fig)
