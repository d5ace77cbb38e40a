"""Report figures drawn from dataset text: a label is shown as written, never parsed as markup."""

from __future__ import annotations

import re

from tunepipe.report import plots

# `$...$` is matplotlib's mathtext: "$5 off$" would lose its dollar signs, "cost $x^$" is a parse error.
LABELS = ["$5 off$", "cost $x^$", "plain"]


def drawn_glyph(char: str) -> re.Pattern[str]:
    """The id of `char`'s glyph in an SVG whose text is drawn as paths (matplotlib names it font + glyph index)."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    font = FT2Font(findfont(FontProperties(family="DejaVu Sans")))
    return re.compile(rf'id="[^"]*-{re.escape(font.postscript_name)}-{font.get_char_index(ord(char)):x}"')


DOLLAR_GLYPH = drawn_glyph("$")


def test_confusion_matrix_shows_labels_with_dollar_signs_as_written():
    svg = plots.confusion_matrix(LABELS, [[5, 1, 0], [2, 7, 1], [0, 0, 9]])

    assert svg is not None and svg.startswith("<svg")
    assert DOLLAR_GLYPH.search(svg)  # the "$" is drawn, not swallowed as a math delimiter
    assert "Oblique" not in svg  # and no mathtext italics


def test_per_label_curves_show_labels_with_dollar_signs_as_written():
    curves = {
        "roc": [{"class": label, "fpr": x, "tpr": y} for label in LABELS for x, y in ((0, 0), (0.2, 0.7), (1, 1))],
        "pr": [{"class": label, "recall": x, "precision": y} for label in LABELS for x, y in ((0, 1), (0.7, 0.8), (1, 0.4))],
    }

    svg = plots.roc_pr_curves(curves, curves, {"auroc": 0.8})

    assert svg is not None and DOLLAR_GLYPH.search(svg) and "Oblique" not in svg


def test_the_frontier_keeps_only_points_nothing_beats_on_both_latency_and_accuracy():
    points = [(10.0, 0.80), (5.0, 0.79), (6.0, 0.70), (2.0, 0.60), (5.0, 0.75), (12.0, 0.80)]
    assert plots.pareto_frontier(points) == [(2.0, 0.60), (5.0, 0.79), (10.0, 0.80)]


def test_the_variant_frontier_rings_the_deployed_variant():
    variants = [
        {"variant": "dense-fp32", "precision": "fp32", "test_accuracy": 0.78, "latency_ms": {"1": {"onnxruntime": 4.0}}},
        {"variant": "pruned-fp32", "precision": "fp32", "pruning_level": "distilled-0.50", "test_accuracy": 0.77, "latency_ms": {"1": {"onnxruntime": 2.1}}},
        {"variant": "pruned-int8", "precision": "int8", "pruning_level": "distilled-0.50", "test_accuracy": 0.75, "latency_ms": {"1": {"onnxruntime": 1.2}}},
    ]
    svg = plots.variant_frontier(variants, "pruned-fp32")
    assert svg is not None and svg.startswith("<svg") and "#dc2626" in svg  # the red ring (text is drawn as paths)
    assert "#dc2626" not in plots.variant_frontier(variants, "none-of-them")
    assert plots.variant_frontier(variants[:1], "dense-fp32") is None  # one point is no frontier


def test_many_labels_plot_a_bounded_block_and_say_so():
    """632 labels made a 10 GB confusion plot; it shows the 20 with the most rows, the label bars 40, and says so."""
    from tunepipe.report import plots

    n = 300
    labels = [f"L{i}" for i in range(n)]
    matrix = [[(i + 1) * 3 if i == j else (1 if j == (i + 1) % n else 0) for j in range(n)] for i in range(n)]
    svg = plots.confusion_matrix(labels, matrix)
    assert svg is not None and "20 labels with the most test rows (of 300" in svg and len(svg) < 1_000_000
    bars = plots.label_frequency({label: i + 1 for i, label in enumerate(labels)}, 45150)
    assert "the 20 largest and the 20 smallest of 300 labels" in bars
