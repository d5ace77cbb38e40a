"""Report figures as inline SVG strings.

Figures are built with `matplotlib.figure.Figure` (no pyplot, so no GUI backend and no global figure
registry); rasterising goes through Agg and vector output through the SVG backend. Text is drawn as paths
(no font needed by the reader) and never parsed as mathtext, the SVG id hash salt is fixed so the same data give the same bytes, and
every id is prefixed per figure so several figures can live in one HTML page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tunepipe.report.format import number as _number

_BLUE = "#2563eb"
_ORANGE = "#ea580c"
_GREEN = "#16a34a"
_GREY = "#6b7280"

_RC = {
    # Labels and variant names are dataset text: draw "$5 off$" as written, never as mathtext.
    "text.parse_math": False,
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


#: The validation metrics drawn when the caller names none (the single-label task's).
_VAL_METRICS = (("val_accuracy", "val accuracy"), ("val_f1_macro", "val macro F1"))
_METRIC_COLOURS = (_GREEN, "#7c3aed", "#0891b2", "#ca8a04")


def training_curves(history: Sequence[Mapping[str, Any]], best_epoch: Any = None, monitor: str | None = None,
                    val_metrics: Sequence[tuple[str, str]] = _VAL_METRICS) -> str | None:
    """Loss (train/val) and validation metrics (history.csv column, legend label) per epoch, side by side. None when
    nothing can be drawn.

    Every series is drawn with markers, so a single epoch shows as points rather than an empty line.
    """
    import matplotlib

    losses = [("train_loss", "train loss", _BLUE), ("val_loss", "val loss", _ORANGE)]
    metrics = [(key, label, _METRIC_COLOURS[i % len(_METRIC_COLOURS)]) for i, (key, label) in enumerate(val_metrics)]
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


_MAX_STEP_POINTS = 1500


def step_curves(steps: Sequence[Mapping[str, Any]], epoch_ends: Sequence[float] = ()) -> str | None:
    """Every optimizer step's training loss and learning rates (results/train/steps.csv), side by side; thin dotted
    lines mark the epochs' ends. None when there is no step with a loss."""
    import matplotlib

    def series(key: str) -> tuple[list[float], list[float]]:
        pairs = [(_number(row.get("step")), _number(row.get(key))) for row in steps]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        return [x for x, _ in pairs], [y for _, y in pairs]

    xs, losses = series("loss")
    if not xs:
        return None
    with matplotlib.rc_context(_rc("steps")):
        fig = _new_figure(7.6, 2.6)
        try:
            loss_ax, lr_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
            marker = "o" if len(xs) < 30 else None
            every = max(1, len(xs) // _MAX_STEP_POINTS)  # a long run is thinned for drawing (the SVG stays small)
            loss_ax.plot(xs[::every], losses[::every], color=_BLUE, linewidth=0.9, marker=marker, markersize=2.5,
                         label="train loss (per step)" if every == 1 else f"train loss (every {every}th step)")
            if len(xs) >= 10:  # a running mean over about a tenth of the steps: the trend through the batches' noise
                window = max(2, len(xs) // 10)
                sums = [0.0]
                for value in losses:
                    sums.append(sums[-1] + value)
                smooth = [(sums[i + 1] - sums[max(0, i + 1 - window)]) / min(window, i + 1) for i in range(len(losses))]
                loss_ax.plot(xs[::every], smooth[::every], color=_ORANGE, linewidth=1.6, label=f"running mean ({window} steps)")
            drawn_lr = False
            for key, label, colour in (("lr_encoder", "encoder", _GREEN), ("lr_head", "head", "#7c3aed")):
                lx, ly = series(key)
                if lx:
                    lr_ax.plot(lx[::every], ly[::every], color=colour, linewidth=1.4, marker=marker, markersize=2.5, label=label)
                    drawn_lr = True
            for ax in (loss_ax, lr_ax):
                for end in epoch_ends[:-1]:
                    ax.axvline(end, color=_GREY, linestyle=":", linewidth=0.8)
                ax.set_xlabel("optimizer step")
            loss_ax.set_title("Training loss per step")
            loss_ax.legend(loc="best")
            lr_ax.set_title("Learning rate per step")
            if drawn_lr:
                lr_ax.set_yscale("log")
                lr_ax.legend(loc="best")
            else:
                lr_ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=lr_ax.transAxes, color=_GREY)
            return figure_to_svg(fig, "fig-steps", "Training loss and learning rates per optimizer step")
        finally:
            _close(fig)


#: The most labels a confusion plot shows (those with the most test rows), and the most that get a number in each cell.
CONFUSION_LABELS = 20
CELL_TEXT_LABELS = 12


def confusion_matrix(labels: Sequence[Any], matrix: Sequence[Sequence[Any]]) -> str | None:
    """Two heatmaps side by side: counts, and each row divided by its total (rows = true label, columns = predicted).

    The row-normalised panel is coloured by share, so a small class's errors are as visible as a large one's.
    """
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
    values = [[float(v) for v in row] for row in counts]
    shares = [[v / total if (total := sum(row)) else 0.0 for v in row] for row in values]
    caption = "Confusion matrix on the test split: counts and row shares"
    if n > CONFUSION_LABELS:  # 632 labels made 800,000 cell texts and 10 GB: the largest labels' block, said in the caption
        keep = sorted(sorted(range(n), key=lambda i: -sum(values[i]))[:CONFUSION_LABELS])
        caption += f" of the {CONFUSION_LABELS} labels with the most test rows (of {n}; every label's numbers are in the tables)"
        names = [names[i] for i in keep]
        values, shares = ([[grid[i][j] for j in keep] for i in keep] for grid in (values, shares))
        n = len(keep)
    size = min(5.0, 1.8 + 0.45 * n)
    fontsize = 9 if n <= 6 else 6
    with matplotlib.rc_context(_rc("confusion") | {"axes.grid": False}):
        fig = _new_figure(2 * size + 1.2, size)
        try:
            panels = (
                (fig.add_subplot(1, 2, 1), values, "Counts", lambda v: f"{v:,.0f}", None),
                (fig.add_subplot(1, 2, 2), shares, "Share of the true label", lambda v: f"{v:.0%}", 1.0),
            )
            for ax, grid, title, fmt, vmax in panels:
                image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=vmax)
                fig.colorbar(image, ax=ax, shrink=0.8)
                top = vmax or (max(max(row) for row in grid) or 1.0)
                for i, row in enumerate(grid if n <= CELL_TEXT_LABELS else []):
                    for j, value in enumerate(row):
                        colour = "white" if value > 0.55 * top else "#111827"
                        ax.text(j, i, fmt(value), ha="center", va="center", color=colour, fontsize=fontsize)
                ax.set_xticks(range(n), names, rotation=30 if n > 3 else 0, ha="right" if n > 3 else "center")
                ax.set_yticks(range(n), names)
                ax.set_xlabel("predicted label")
                ax.set_ylabel("true label")
                ax.set_title(title)
                ax.spines[:].set_visible(False)
            return figure_to_svg(fig, "fig-confusion", caption)
        finally:
            _close(fig)


_CLASS_COLOURS = ("#2563eb", "#ea580c", "#16a34a", "#7c3aed", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d")


def _curves(points: Sequence[Mapping[str, Any]], x: str, y: str) -> dict[str, tuple[list[float], list[float]]]:
    """Rows of one curve file (class, x, y) grouped by class, in file order."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for row in points:
        if not isinstance(row, Mapping):
            continue
        xv, yv = _number(row.get(x)), _number(row.get(y))
        if xv is None or yv is None:
            continue
        xs, ys = curves.setdefault(str(row.get("class")), ([], []))
        xs.append(xv)
        ys.append(yv)
    return curves


def roc_pr_curves(
    model: Mapping[str, Any], baseline: Mapping[str, Any] | None = None, scores: Mapping[str, Any] | None = None
) -> str | None:
    """ROC and precision-recall curves of the fine-tuned model (solid, one colour per class) and the baseline (dashed).

    `model`/`baseline` hold `roc` (class, fpr, tpr) and `pr` (class, recall, precision) rows; `scores` may give
    the AUROC and average precision to print in the titles.
    """
    import matplotlib

    baseline = baseline or {}
    panels = [("roc", "fpr", "tpr", "ROC", "false positive rate", "true positive rate", "auroc", "AUROC"),
              ("pr", "recall", "precision", "Precision-recall", "recall", "precision", "average_precision", "AP")]
    drawn = {key: (_curves(model.get(key) or [], x, y), _curves(baseline.get(key) or [], x, y)) for key, x, y, *_ in panels}
    if not any(m for m, _ in drawn.values()):
        return None
    scores = scores or {}
    with matplotlib.rc_context(_rc("curves")):
        fig = _new_figure(7.6, 3.3)
        try:
            for index, (key, _, _, title, xlabel, ylabel, score_key, score_name) in enumerate(panels, start=1):
                ax = fig.add_subplot(1, 2, index)
                model_curves, baseline_curves = drawn[key]
                classes = list(model_curves) + [c for c in baseline_curves if c not in model_curves]
                for i, name in enumerate(classes):
                    colour = _CLASS_COLOURS[i % len(_CLASS_COLOURS)]
                    label = name if len(name) <= 18 else name[:17] + "…"
                    if name in model_curves:
                        ax.plot(*model_curves[name], color=colour, linewidth=1.5, label=label if len(classes) > 1 else "fine-tuned")
                    if name in baseline_curves:
                        ax.plot(*baseline_curves[name], color=colour if len(classes) > 1 else _GREY, linewidth=1.0, linestyle="--",
                                label="baseline (dashed)" if i == 0 else None)
                if key == "roc":
                    ax.plot([0, 1], [0, 1], color="#d1d5db", linewidth=0.8, linestyle=":")
                model_score, baseline_score = _number(scores.get(score_key)), _number(scores.get(f"baseline_{score_key}"))
                if model_score is not None:
                    title += f" — {score_name} {model_score:.3f}"
                    if baseline_score is not None:
                        title += f" (baseline {baseline_score:.3f})"
                ax.set_title(title)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                ax.set_xlim(-0.02, 1.02)
                ax.set_ylim(-0.02, 1.02)
                if len(classes) > 4:  # many labels: one legend, beside the second panel, clear of the curves
                    if index == 2:
                        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)
                elif classes:
                    ax.legend(loc="lower right" if key == "roc" else "lower left")
            return figure_to_svg(fig, "fig-curves", "ROC and precision-recall curves on the test split")
        finally:
            _close(fig)


def reliability_diagram(
    model_bins: Sequence[Mapping[str, Any]],
    baseline_bins: Sequence[Mapping[str, Any]] | None = None,
    ece: Any = None,
    baseline_ece: Any = None,
) -> str | None:
    """Accuracy against mean confidence per confidence bin (bars: fine-tuned; line: baseline), with the diagonal
    of perfect calibration and each bin's count of test rows below."""
    import matplotlib

    def points(bins: Sequence[Mapping[str, Any]] | None) -> list[tuple[float, float, float, float, float]]:
        out = []
        for row in bins or []:
            if not isinstance(row, Mapping):
                continue
            values = [_number(row.get(k)) for k in ("lower", "upper", "confidence", "accuracy", "count")]
            if all(v is not None for v in values):
                out.append(tuple(values))
        return out

    model, baseline = points(model_bins), points(baseline_bins)
    if not model:
        return None
    with matplotlib.rc_context(_rc("calibration")):
        fig = _new_figure(4.6, 4.2)
        try:
            top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
            top.bar([(lo + hi) / 2 for lo, hi, *_ in model], [acc for *_, acc, _ in model],
                    width=[hi - lo for lo, hi, *_ in model], color=_BLUE, alpha=0.75, edgecolor="white", label="fine-tuned: accuracy per bin")
            top.plot([c for _, _, c, _, _ in model], [a for _, _, _, a, _ in model], "o", color="#1e3a8a", markersize=3.5,
                     label="fine-tuned: (mean confidence, accuracy)")
            if baseline:
                top.plot([c for _, _, c, _, _ in baseline], [a for _, _, _, a, _ in baseline], "s--", color=_ORANGE,
                         markersize=3.5, linewidth=1.0, label="baseline")
            top.plot([0, 1], [0, 1], color=_GREY, linestyle=":", linewidth=0.9, label="perfect calibration")
            title = "Reliability diagram"
            if _number(ece) is not None:
                title += f" — ECE {_number(ece):.3f}"
                if _number(baseline_ece) is not None:
                    title += f" (baseline {_number(baseline_ece):.3f})"
            top.set_title(title)
            top.set_ylabel("accuracy")
            top.set_ylim(0, 1.02)
            top.legend(loc="upper left", fontsize=7)
            bottom.bar([(lo + hi) / 2 for lo, hi, *_ in model], [n for *_, n in model], width=[hi - lo for lo, hi, *_ in model],
                       color=_GREY, alpha=0.6)
            bottom.set_ylabel("rows")
            bottom.set_xlabel("confidence (probability of the predicted label)")
            bottom.set_xlim(0, 1)
            return figure_to_svg(fig, "fig-calibration", "Reliability diagram: accuracy against confidence")
        finally:
            _close(fig)


_METHOD_STYLE = {"unstructured": ("o", "-"), "structured": ("s", "--"), "distilled": ("^", ":")}


#: The levels' (val, test, second test) metric keys and names when the caller names none (the single-label task's).
_LEVEL_KEYS = ("val_accuracy", "test_accuracy", "test_f1_macro")
_LEVEL_NAMES = ("val accuracy", "test accuracy", "test macro F1")


def _reference(rows: Sequence[Mapping[str, Any]], key: str = "val_accuracy") -> Mapping[str, Any] | None:
    """The uncompressed row (dense, or the sweep's ensemble) with the best validation score `key`: what the allowed drop
    is from (tunepipe.optimize.pruning.reference_level; a tie goes to dense)."""
    uncompressed = [r for r in rows if r.get("method") in ("dense", "ensemble") and _number(r.get(key)) is not None]
    uncompressed.sort(key=lambda r: r.get("method") != "dense")
    return max(uncompressed, key=lambda r: _number(r[key]), default=None)


def pruning_curve(levels: Sequence[Mapping[str, Any]], max_accuracy_drop: Any = None, keys: Sequence[str] = _LEVEL_KEYS,
                  names: Sequence[str] = _LEVEL_NAMES, title: str = "Accuracy") -> str | None:
    """Validation/test score (`keys`: val, test, a second test metric; `names` in the legend) against sparsity, one line
    per pruning method (each starts at the dense model), with the selected level (the row whose `selected` flag is set)
    ringed and the allowed-drop floor marked.

    The floor is drawn at the dense model's validation score minus `max_accuracy_drop`.
    """
    import matplotlib

    rows = [row for row in levels if isinstance(row, Mapping) and _number(row.get("sparsity")) is not None]
    rows.sort(key=lambda row: _number(row.get("sparsity")))
    if not rows:
        return None
    val_key, _, second_key = keys
    series = list(zip(keys, names, (_ORANGE, _BLUE, _GREEN)))
    if not any(_number(row.get(key)) is not None for row in rows for key, _, _ in series):
        return None
    dense = [r for r in rows if r.get("method") == "dense"]
    methods = [m for m in _METHOD_STYLE if any(r.get("method") == m for r in rows)]
    several = len(methods) > 1
    with matplotlib.rc_context(_rc("pruning")):
        fig = _new_figure(6.0, 3.2)
        try:
            ax = fig.add_subplot()
            for method in methods:
                marker, style = _METHOD_STYLE[method]
                line = dense + [r for r in rows if r.get("method") == method]
                for key, label, colour in series:
                    if several and key == second_key:
                        continue  # keep the chart readable: the held-to metric only when methods are compared
                    points = [(_number(r.get("sparsity")), _number(r.get(key))) for r in line]
                    points = [(x * 100, y) for x, y in points if y is not None]
                    if points:
                        ax.plot(
                            [p[0] for p in points], [p[1] for p in points],
                            linestyle=style if len(points) > 1 else "none", marker=marker, markersize=4.5,
                            color=colour, linewidth=1.5, label=f"{label} ({method})" if several else label,
                        )
            drop = _number(max_accuracy_drop)
            reference = _reference(rows, val_key)  # dense, or the sweep's ensemble when the validation split prefers it
            dense_val = _number(reference.get(val_key)) if reference else None
            if drop is not None and dense_val is not None:
                ax.axhline(dense_val - drop, color=_GREY, linestyle=":", linewidth=1.0, label=f"{reference.get('method')} val − max drop")
            picked = [r for r in rows if r.get("selected") is True]
            if picked and _number(picked[0].get(val_key)) is not None:
                ax.plot([_number(picked[0]["sparsity"]) * 100], [_number(picked[0][val_key])], marker="o", markersize=11,
                        markerfacecolor="none", markeredgecolor="#dc2626", linestyle="none", label="selected")
            ax.set_xlabel("target sparsity / pruning ratio (%)")
            ax.set_ylabel("score")
            ax.set_xticks(sorted({_number(r.get("sparsity")) * 100 for r in rows}))
            ax.legend(loc="best")
            return figure_to_svg(fig, "fig-pruning", f"{title} against sparsity")
        finally:
            _close(fig)


def sweep_scores(variants: Sequence[Mapping[str, Any]], metric: str | None = None, winner: str | None = None) -> str | None:
    """One row per sweep variant: its score per fold (small dots), the mean (large dot) and ± std; winner in green."""
    import matplotlib

    rows = [v for v in variants if isinstance(v, Mapping) and _number(v.get("mean")) is not None]
    if not rows:
        return None
    with matplotlib.rc_context(_rc("sweep")):
        fig = _new_figure(6.4, 0.9 + 0.32 * len(rows))
        try:
            ax = fig.add_subplot()
            for y, row in enumerate(reversed(rows)):
                colour = _GREEN if row.get("name") == winner else _BLUE
                scores = [s for s in (_number(x) for x in row.get("scores") or []) if s is not None]
                ax.plot(scores, [y] * len(scores), linestyle="none", marker="o", markersize=3, color=_GREY, alpha=0.7)
                std = _number(row.get("std")) or 0.0
                ax.errorbar([_number(row["mean"])], [y], xerr=[std], fmt="o", markersize=6, color=colour, capsize=3, linewidth=1.2)
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels([str(row.get("name")) for row in reversed(rows)])
            ax.set_xlabel(f"{metric or 'score'} (mean ± std; grey: per fold)")
            ax.grid(axis="y", visible=False)
            return figure_to_svg(fig, "fig-sweep", "Sweep: validation score per variant")
        finally:
            _close(fig)


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, accuracy) points no other point beats on both (faster and at least as accurate), fastest first."""
    frontier: list[tuple[float, float]] = []
    for latency, accuracy in sorted(points, key=lambda point: (point[0], -point[1])):
        if not frontier or accuracy > frontier[-1][1]:
            frontier.append((latency, accuracy))
    return frontier


def variant_frontier(variants: Sequence[Mapping[str, Any]], exported: Any = None, batch: str = "1", int8_shipped: Any = None,
                     key: str = "test_accuracy", name: str = "test accuracy") -> str | None:
    """Test accuracy against ONNX Runtime latency of export's variants (dense, pruned or distilled, every INT8 choice),
    the frontier drawn, the `exported` variant (variants.json's `selected`) ringed and the `int8_shipped` one
    (`int8_selected`) boxed: the accuracy each millisecond costs."""
    import matplotlib

    rows = []
    for r in variants:
        if not isinstance(r, Mapping):
            continue
        timings = r.get("latency_ms") if isinstance(r.get("latency_ms"), Mapping) else {}
        at_batch = timings.get(batch) if isinstance(timings.get(batch), Mapping) else {}
        latency = _number(at_batch.get("onnxruntime"))
        accuracy = _number(r.get(key))
        if latency is not None and accuracy is not None:
            rows.append((r, latency, accuracy))
    if len(rows) < 2:
        return None
    with matplotlib.rc_context(_rc("variant-frontier")):
        fig = _new_figure(6.0, 3.2)
        try:
            ax = fig.add_subplot()
            frontier = pareto_frontier([(latency, accuracy) for _, latency, accuracy in rows])
            ax.step(*zip(*frontier), where="post", color=_GREY, linewidth=0.8, alpha=0.7, label="frontier")
            for r, latency, accuracy in rows:
                int8 = "int8" in str(r.get("precision", "")) or str(r.get("variant", "")).endswith("int8")
                ax.plot([latency], [accuracy], linestyle="none", marker="s" if int8 else "o", markersize=6, color=_ORANGE if int8 else _BLUE)
                label = str(r.get("variant"))
                choice = r.get("quantization", {}).get("choice") if isinstance(r.get("quantization"), Mapping) else None
                if int8 and choice:  # the INT8 points share the pruning level of the fp32 one: name the choice only
                    label = f"int8 {choice}"
                elif r.get("pruning_level") and not str(r.get("variant", "")).startswith("dense"):
                    label += f" ({r['pruning_level']})"
                ax.annotate(label, (latency, accuracy), textcoords="offset points", xytext=(5, 3), fontsize=7)
                if r.get("variant") == exported:
                    ax.plot([latency], [accuracy], marker="o", markersize=12, markerfacecolor="none", markeredgecolor="#dc2626",
                            linestyle="none", label="exported (model.onnx)")
                if int8_shipped is not None and r.get("variant") == int8_shipped:
                    ax.plot([latency], [accuracy], marker="s", markersize=12, markerfacecolor="none", markeredgecolor="#0891b2",
                            linestyle="none", label="shipped INT8 (model.int8.onnx)")
            ax.set_xlabel(f"ONNX Runtime latency, batch {batch} (ms)")
            ax.set_ylabel(name)
            ax.legend(loc="best")
            return figure_to_svg(fig, "fig-variant-frontier", f"{name[:1].upper()}{name[1:]} against ONNX Runtime latency per exported variant")
        finally:
            _close(fig)


def pruning_latency(levels: Sequence[Mapping[str, Any]], max_accuracy_drop: Any = None, key: str = "val_accuracy",
                    name: str = "val accuracy") -> str | None:
    """Validation score `key` against eager batch-1 latency, one marker style per method; the selected level ringed."""
    import matplotlib

    rows = [r for r in levels if isinstance(r, Mapping) and _number(r.get("latency_ms")) is not None and _number(r.get(key)) is not None]
    if not rows:
        return None
    colours = {"dense": _GREY, "unstructured": _BLUE, "structured": _ORANGE, "distilled": _GREEN, "ensemble": "#7c3aed"}
    with matplotlib.rc_context(_rc("pruning-latency")):
        fig = _new_figure(6.0, 3.2)
        try:
            ax = fig.add_subplot()
            for method in colours:
                points = [r for r in rows if r.get("method") == method]
                if points:
                    ax.plot([_number(r["latency_ms"]) for r in points], [_number(r[key]) for r in points],
                            linestyle="none", marker=_METHOD_STYLE.get(method, ("D", ""))[0], markersize=6,
                            color=colours[method], label=method)
                    for r in points:
                        if method != "dense" and _number(r.get("sparsity")) is not None:
                            ax.annotate(f"{_number(r['sparsity']) * 100:.0f}%", (_number(r["latency_ms"]), _number(r[key])),
                                        textcoords="offset points", xytext=(4, 3), fontsize=7, color=colours[method])
            frontier = pareto_frontier([(_number(r["latency_ms"]), _number(r[key])) for r in rows])
            if len(frontier) > 1:
                ax.step(*zip(*frontier), where="post", color=_GREY, linewidth=0.8, alpha=0.7, label="frontier")
            dense = _reference(rows, key)
            drop = _number(max_accuracy_drop)
            if dense is not None and drop is not None:
                ax.axhline(_number(dense[key]) - drop, color=_GREY, linestyle=":", linewidth=1.0, label=f"{dense.get('method')} val − max drop")
            picked = [r for r in rows if r.get("selected") is True]
            if picked:
                ax.plot([_number(picked[0]["latency_ms"])], [_number(picked[0][key])], marker="o", markersize=12,
                        markerfacecolor="none", markeredgecolor="#dc2626", linestyle="none", label="selected")
            ax.set_xlabel("eager latency, batch 1 (ms)")
            ax.set_ylabel(name)
            ax.legend(loc="best")
            return figure_to_svg(fig, "fig-pruning-latency", f"Validation {name.removeprefix('val ')} against latency")
        finally:
            _close(fig)


def _short_name(name: Any) -> str:
    text = str(name)
    return text if len(text) <= 24 else text[:23] + "…"


def per_label_scores(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Each label's test F1, fine-tuned beside baseline (horizontal bars, the label's support in its name): which labels
    the model learned and which it did not."""
    import matplotlib

    labels = [r for r in rows if isinstance(r, Mapping) and _number(as_mapping(r.get("model")).get("f1")) is not None]
    if not labels:
        return None
    with matplotlib.rc_context(_rc("per-label")):
        fig = _new_figure(6.4, 1.0 + 0.34 * len(labels))
        try:
            ax = fig.add_subplot()
            ys = list(range(len(labels)))[::-1]
            model = [_number(as_mapping(r.get("model")).get("f1")) or 0.0 for r in labels]
            base = [_number(as_mapping(r.get("baseline")).get("f1")) for r in labels]
            ax.barh([y + 0.2 for y in ys], model, height=0.38, color=_BLUE, label="fine-tuned")
            if any(b is not None for b in base):
                ax.barh([y - 0.2 for y in ys], [b or 0.0 for b in base], height=0.38, color=_ORANGE, alpha=0.8, label="baseline")
            ax.set_yticks(ys, [f"{_short_name(r.get('label'))} ({int(_number(r.get('support')) or 0)})" for r in labels])
            ax.set_xlim(0, 1)
            ax.set_xlabel("test F1 at the label's threshold (support in brackets)")
            ax.grid(axis="y", visible=False)
            ax.legend(loc="lower right")
            return figure_to_svg(fig, "fig-per-label", "Test F1 per label, fine-tuned and baseline")
        finally:
            _close(fig)


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _pairs(points: Sequence[Any]) -> tuple[list[float], list[float]]:
    """(true, predicted) of details.json's points, the unreadable ones left out."""
    pairs = [(_number(as_mapping(p).get("true")), _number(as_mapping(p).get("predicted"))) for p in points]
    pairs = [(t, v) for t, v in pairs if t is not None and v is not None]
    return [t for t, _ in pairs], [v for _, v in pairs]


def predicted_vs_true(model_points: Sequence[Any], baseline_points: Sequence[Any] = (), target: Any = None) -> str | None:
    """Predicted against true values of the test rows, fine-tuned (blue) and baseline (orange), with the diagonal a
    perfect model would follow."""
    import matplotlib

    truth, predicted = _pairs(model_points)
    if not truth:
        return None
    base_truth, base_predicted = _pairs(baseline_points)
    name = str(target) if target else "target"
    with matplotlib.rc_context(_rc("scatter")):
        fig = _new_figure(4.6, 4.2)
        try:
            ax = fig.add_subplot()
            if base_truth:
                ax.scatter(base_truth, base_predicted, s=9, color=_ORANGE, alpha=0.45, linewidths=0, label="baseline")
            ax.scatter(truth, predicted, s=9, color=_BLUE, alpha=0.6, linewidths=0, label="fine-tuned")
            values = truth + predicted + base_truth + base_predicted
            low, high = min(values), max(values)
            ax.plot([low, high], [low, high], color=_GREY, linestyle=":", linewidth=1.0, label="predicted = true")
            ax.set_xlabel(f"true {_short_name(name)}")
            ax.set_ylabel(f"predicted {_short_name(name)}")
            ax.set_title("Predicted against true")
            ax.legend(loc="upper left")
            return figure_to_svg(fig, "fig-scatter", "Predicted against true values on the test split")
        finally:
            _close(fig)


def residuals(model_points: Sequence[Any], baseline_points: Sequence[Any] = (), target: Any = None) -> str | None:
    """Each test row's error (predicted − true) against its true value, for both models: a slope shows a model pulled
    towards the mean, an offset a bias."""
    import matplotlib

    truth, predicted = _pairs(model_points)
    if not truth:
        return None
    base_truth, base_predicted = _pairs(baseline_points)
    name = str(target) if target else "target"
    with matplotlib.rc_context(_rc("residuals")):
        fig = _new_figure(4.6, 4.2)
        try:
            ax = fig.add_subplot()
            if base_truth:
                ax.scatter(base_truth, [v - t for t, v in zip(base_truth, base_predicted)], s=9, color=_ORANGE, alpha=0.45, linewidths=0, label="baseline")
            ax.scatter(truth, [v - t for t, v in zip(truth, predicted)], s=9, color=_BLUE, alpha=0.6, linewidths=0, label="fine-tuned")
            ax.axhline(0.0, color=_GREY, linestyle=":", linewidth=1.0)
            ax.set_xlabel(f"true {_short_name(name)}")
            ax.set_ylabel("error (predicted − true)")
            ax.set_title("Residuals")
            ax.legend(loc="upper right")
            return figure_to_svg(fig, "fig-residuals", "Errors against true values on the test split")
        finally:
            _close(fig)


#: The most labels a bar chart of label counts draws (the largest and the smallest halves).
LABEL_BARS = 40


def label_frequency(counts: Mapping[str, Any], rows: Any = None) -> str | None:
    """Rows carrying each label after cleaning (horizontal bars, most frequent on top), with its share of the kept rows."""
    import matplotlib

    items = [(str(label), _number(count)) for label, count in counts.items()]
    items = sorted(((label, count) for label, count in items if count is not None), key=lambda item: -item[1])
    if not items:
        return None
    caption = "Rows per label after cleaning"
    if len(items) > LABEL_BARS:  # the most and the fewest rows
        caption += f": the {LABEL_BARS // 2} largest and the {LABEL_BARS // 2} smallest of {len(items)} labels"
        items = items[: LABEL_BARS // 2] + items[-(LABEL_BARS // 2) :]
    total = _number(rows)
    with matplotlib.rc_context(_rc("label-frequency")):
        fig = _new_figure(6.4, 0.9 + 0.3 * len(items))
        try:
            ax = fig.add_subplot()
            ys = list(range(len(items)))[::-1]
            ax.barh(ys, [count for _, count in items], height=0.65, color=_BLUE)
            for y, (_, count) in zip(ys, items):
                text = f"{count:,.0f}" + (f" ({count / total:.0%})" if total else "")
                ax.annotate(text, (count, y), textcoords="offset points", xytext=(3, -3), fontsize=7)
            ax.set_yticks(ys, [_short_name(label) for label, _ in items])
            ax.set_xlabel("rows with the label" + (" (share of kept rows)" if total else ""))
            ax.set_xlim(0, max(count for _, count in items) * 1.2)
            ax.grid(axis="y", visible=False)
            return figure_to_svg(fig, "fig-label-frequency", caption)
        finally:
            _close(fig)


def target_distribution(values: Sequence[Any], facts: Mapping[str, Any] | None = None, target: Any = None) -> str | None:
    """A histogram of the target's values, with the median and quartiles of all cleaned rows (`facts`, clean's
    report) marked. None without values."""
    import matplotlib

    numbers = [x for x in (_number(v) for v in values) if x is not None]
    if len(numbers) < 2:
        return None
    facts = facts or {}
    with matplotlib.rc_context(_rc("target")):
        fig = _new_figure(6.0, 2.8)
        try:
            ax = fig.add_subplot()
            ax.hist(numbers, bins=min(30, max(5, len(numbers) // 10)), color=_BLUE, alpha=0.8, edgecolor="white")
            for key, label, style in (("q25", "quartiles (all cleaned rows)", "--"), ("median", "median", "-"), ("q75", None, "--")):
                value = _number(facts.get(key))
                if value is not None:
                    ax.axvline(value, color=_ORANGE, linestyle=style, linewidth=1.2, label=label)
            ax.set_xlabel(_short_name(target) if target else "target")
            ax.set_ylabel("rows")
            if any(_number(facts.get(k)) is not None for k in ("q25", "median", "q75")):
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
            return figure_to_svg(fig, "fig-target", "Distribution of the target")
        finally:
            _close(fig)
