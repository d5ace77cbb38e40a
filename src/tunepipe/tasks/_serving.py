"""Numpy-only pieces of the tasks' serving methods: output activations, the drift measure, the target histogram.

The light runtime (tunepipe.serving) calls the tasks' serving methods, so nothing here may import torch (or
anything else heavy): numpy only, imported inside the functions that need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Equal-width bins of regression's drift histogram between the test split's smallest and largest target.
HISTOGRAM_BINS = 10


def softmax(logits: Any) -> Any:
    """Class probabilities of logits (rows x classes), in float64 like the pipeline's parity checks."""
    import numpy as np

    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(logits: Any) -> Any:
    """Per-label probabilities of logits (rows x labels), computed without overflow for large |logit|."""
    import numpy as np

    values = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -values))


def psi(live: Mapping[str, float], reference: Mapping[str, float], floor: float = 1e-4) -> float:
    """Population stability index of the live counts' shares against the reference's (0 = same; > 0.2 is usually read as drift)."""
    total = sum(live.values())
    if total <= 0:
        return 0.0
    value = 0.0
    for key, ref in reference.items():
        p, q = max(live.get(key, 0.0) / total, floor), max(ref, floor)
        value += (p - q) * math.log(p / q)
    return value


def frequency_psi(live: Mapping[str, float], rows: float, reference: Mapping[str, float], floor: float = 1e-4) -> float:
    """Mean over labels of each label's PSI (present vs absent) between the live and the reference frequency."""
    if rows <= 0 or not reference:
        return 0.0
    total = 0.0
    for label, ref in reference.items():
        share = min(live.get(label, 0.0) / rows, 1.0)
        total += psi({"yes": share, "no": 1.0 - share}, {"yes": ref, "no": 1.0 - ref}, floor)
    return total / len(reference)


def histogram(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Fixed bins of `values` (equal width between their min and max; the outer bins open-ended when live values are
    binned) and the share of `values` in each, by bin name."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    low, high = (float(data.min()), float(data.max())) if len(data) else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    edges = [round(float(edge), 9) for edge in np.linspace(low, high, bins + 1)]
    counts = np.bincount(bin_index(data, edges), minlength=bins)
    names = bin_names(edges)
    return {"edges": edges, "shares": {name: float(count) / max(len(data), 1) for name, count in zip(names, counts)}}


def bin_index(values: Any, edges: Sequence[float]) -> Any:
    """Each value's bin (0 .. len(edges) - 2); values below the first edge or above the last go to the outer bins."""
    import numpy as np

    return np.searchsorted(np.asarray(edges[1:-1], dtype=np.float64), np.asarray(values, dtype=np.float64), side="right")


def bin_names(edges: Sequence[float]) -> list[str]:
    """Readable names of the bins: "<3.1", "3.1..4.2", ..., ">=8.9" (the outer bins take what lies beyond)."""
    inner = [f"{low:.4g}..{high:.4g}" for low, high in zip(edges[1:-2], edges[2:-1])]
    return [f"<{edges[1]:.4g}", *inner, f">={edges[-2]:.4g}"]
