"""Turn the pipeline's summary files into one self-contained HTML report.

`load_inputs` reads the files; `build_report` is a pure function of the loaded data, the params and the
provenance record (collected when not given), so the same inputs give the same HTML apart from the one
"generated at" line. Any missing key shows as "not available" instead of failing the report.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup

from tunepipe.errors import DataError

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
NOT_AVAILABLE = "not available"
DEFAULT_TITLE = "tunepipe report"
DEFAULT_EXAMPLES = 5
MAX_EXAMPLE_CHARS = 400

#: Input keys the report reads; `history` is CSV, every other one JSON.
#: Headline metrics compared with earlier commits in the history section.
HISTORY_METRICS = ("accuracy", "f1_macro", "baseline_accuracy", "baseline_f1_macro")
INPUT_KEYS = ("prepare", "clean", "split", "augment", "history", "train", "metrics", "confusion", "details", "worst_errors", "prune", "export", "variants", "selection")
#: Evaluation table rows: metrics.json key, name, format, whether lower is better. `*_ci_low/high` keys give intervals.
METRICS = (
    ("accuracy", "Accuracy", "pct", False),
    ("precision_macro", "Precision (macro)", "pct", False),
    ("recall_macro", "Recall (macro)", "pct", False),
    ("f1_macro", "F1 (macro)", "pct", False),
    ("precision_weighted", "Precision (weighted)", "pct", False),
    ("recall_weighted", "Recall (weighted)", "pct", False),
    ("f1_weighted", "F1 (weighted)", "pct", False),
    ("auroc", "AUROC", "num", False),
    ("average_precision", "Average precision", "num", False),
    ("ece", "Calibration error (ECE)", "num", True),
)


# ----------------------------------------------------------------------------------------------- loading


def _read_history(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key is None:
                    continue
                text = (value or "").strip()
                try:
                    number = float(text)
                except ValueError:
                    row[key] = text or None
                    continue
                row[key] = int(number) if key == "epoch" and number.is_integer() else number
            rows.append(row)
    return rows


def read_timings(paths: list[Path]) -> list[dict[str, Any]]:
    """Snakemake `benchmark:` files (TSV: s, h:m:s, max_rss, ...) as {rule, seconds, max_rss_mb}, one per file."""
    rows = []
    for path in paths:
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                records = list(csv.DictReader(handle, delimiter="\t"))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"report input 'timings': {path} cannot be read: {exc}") from exc
        if not records:
            raise DataError(f"report input 'timings': {path} has no measurement; re-run its rule")
        record = records[-1]

        def number(key: str) -> float | None:
            try:
                return float(record.get(key) or "")
            except ValueError:
                return None  # Snakemake writes NA where it could not measure

        # results/benchmarks/train.tsv -> "train"; results/benchmarks/trial/<variant>.tsv -> "trial/<variant>"
        parts = path.with_suffix("").parts
        label = "/".join(parts[parts.index("benchmarks") + 1:]) if "benchmarks" in parts[:-1] else path.stem
        rows.append({"rule": label, "seconds": number("s"), "max_rss_mb": number("max_rss")})
    return rows


def load_inputs(paths: Mapping[str, Any]) -> dict[str, Any]:
    """Read each input: `history` as a list of row dicts (numbers parsed), `timings` (a list of benchmark
    files) with `read_timings`, everything else as JSON."""
    loaded: dict[str, Any] = {}
    for key, path in paths.items():
        if key == "timings":
            loaded[key] = read_timings(list(path))
            continue
        path = Path(path)
        if not path.is_file():
            raise DataError(f"report input {key!r}: {path} does not exist; run the stage that writes it first")
        try:
            loaded[key] = _read_history(path) if key == "history" else json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"report input {key!r}: {path} cannot be read: {exc}") from exc
    return loaded


# ------------------------------------------------------------------------------------------- formatting


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _na() -> Markup:
    return Markup('<span class="na">not available</span>')


def fmt_pct(value: Any, digits: int = 1) -> str | Markup:
    number = _num(value)
    return _na() if number is None else f"{number * 100:.{digits}f}%"


def fmt_num(value: Any, digits: int = 3) -> str | Markup:
    number = _num(value)
    return _na() if number is None else f"{number:.{digits}f}"


def fmt_int(value: Any) -> str | Markup:
    number = _num(value)
    return _na() if number is None else f"{round(number):,}"


def fmt_sci(value: Any) -> str | Markup:
    number = _num(value)
    return _na() if number is None else f"{number:.2e}"


def fmt_points(value: Any) -> str | Markup:
    """A difference of two fractions, in percentage points with its sign."""
    number = _num(value)
    return _na() if number is None else f"{number * 100:+.1f} pts"


def fmt_abs_points(value: Any) -> str | Markup:
    """A fraction shown as an amount of percentage points (no sign)."""
    number = _num(value)
    return _na() if number is None else f"{number * 100:.1f} pts"


def fmt_delta(value: Any, digits: int = 3) -> str | Markup:
    number = _num(value)
    return _na() if number is None else f"{number:+.{digits}f}"


def fmt_bytes(value: Any) -> str | Markup:
    number = _num(value)
    if number is None:
        return _na()
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(number) >= scale:
            return f"{number / scale:.1f} {unit}"
    return f"{number:.0f} B"


def fmt_ms(value: Any) -> str | Markup:
    number = _num(value)
    return _na() if number is None else f"{number:.2f} ms"


def fmt_seconds(value: Any) -> str | Markup:
    number = _num(value)
    if number is None:
        return _na()
    if number >= 120:
        minutes, seconds = divmod(number, 60)
        return f"{number:.0f} s ({int(minutes)} min {seconds:.0f} s)"
    return f"{number:.1f} s"


def fmt_ratio(value: Any) -> str | Markup:
    number = _num(value)
    return _na() if number is None else f"{number:.2f}×"


def fmt_text(value: Any) -> str | Markup:
    """Any scalar as text (escaped by the template); None/missing as "not available"."""
    if value is None or value == "":
        return _na()
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


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
}


# ------------------------------------------------------------------------------------------- view model


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _example_text(item: Any) -> str:
    if isinstance(item, str):
        text = item
    elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
        text = item["text"]
    else:
        text = json.dumps(item, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[: MAX_EXAMPLE_CHARS - 1] + "…"


def _label_order(params: Mapping[str, Any], *count_maps: Any) -> list[str]:
    order: list[str] = [str(x) for x in _list(_dict(params.get("data")).get("labels"))]
    for counts in count_maps:
        for label in _dict(counts):
            if str(label) not in order:
                order.append(str(label))
    return order


def _difference(a: Any, b: Any) -> float | None:
    x, y = _num(a), _num(b)
    return None if x is None or y is None else x - y


def _summary(params: dict[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    metrics = _dict(inputs.get("metrics"))
    train = _dict(inputs.get("train"))
    image = _dict(params.get("data")).get("modality") == "image"
    return {
        "baseline_name": "pixels + logistic-regression" if image else "TF-IDF + logistic-regression",
        "accuracy": metrics.get("accuracy"),
        "baseline_accuracy": metrics.get("baseline_accuracy"),
        "accuracy_diff": _difference(metrics.get("accuracy"), metrics.get("baseline_accuracy")),
        "f1": metrics.get("f1_macro"),
        "baseline_f1": metrics.get("baseline_f1_macro"),
        "f1_diff": _difference(metrics.get("f1_macro"), metrics.get("baseline_f1_macro")),
        "accuracy_ci": (metrics.get("accuracy_ci_low"), metrics.get("accuracy_ci_high")),
        "f1_ci": (metrics.get("f1_macro_ci_low"), metrics.get("f1_macro_ci_high")),
        "variant": train.get("variant"),
        "test_rows": metrics.get("test_rows"),
        "device": train.get("device"),
        "accelerator": train.get("accelerator"),
        "precision": train.get("precision"),
    }


def _data(params: dict[str, Any], inputs: Mapping[str, Any], examples: int) -> dict[str, Any]:
    prepare = _dict(inputs.get("prepare"))
    clean = _dict(inputs.get("clean"))
    split = _dict(inputs.get("split"))
    removed = _dict(clean.get("removed"))
    examples_by_reason = _dict(clean.get("examples"))
    input_rows = _num(clean.get("input_rows"))
    reasons = []
    for reason in list(removed) + [r for r in examples_by_reason if r not in removed]:
        count = removed.get(reason)
        share = _num(count) / input_rows if _num(count) is not None and input_rows else None
        reasons.append({
            "reason": str(reason).replace("_", " "),
            "count": count,
            "share": share,
            "examples": [_example_text(x) for x in _list(examples_by_reason.get(reason))[:examples]],
        })
    total_removed = sum(_num(r["count"]) or 0 for r in reasons) if any(_num(r["count"]) is not None for r in reasons) else None

    def label_rows(counts: Any) -> list[dict[str, Any]]:
        counts = _dict(counts)
        total = sum(_num(v) or 0 for v in counts.values())
        return [
            {"label": str(label), "count": value, "share": (_num(value) / total if _num(value) is not None and total else None)}
            for label, value in counts.items()
        ]

    splits = _dict(split.get("splits"))
    split_labels = _label_order(params, *(_dict(s).get("labels") for s in splits.values()))
    split_rows = []
    for name, info in splits.items():
        info = _dict(info)
        per_label = _dict(info.get("labels"))
        split_rows.append({"name": str(name), "rows": info.get("rows"), "labels": [per_label.get(label) for label in split_labels]})
    if split_rows:
        total_rows = [_num(r["rows"]) for r in split_rows]
        per_label_totals = []
        for i in range(len(split_labels)):
            column = [_num(r["labels"][i]) for r in split_rows]
            per_label_totals.append(None if any(v is None for v in column) else sum(column))
        split_total = {"name": "total", "rows": None if any(v is None for v in total_rows) else sum(total_rows), "labels": per_label_totals}
    else:
        split_total = None
    return {
        "source": prepare.get("source"),
        "path": prepare.get("path"),
        "sha256": prepare.get("sha256"),
        "rows": prepare.get("rows"),
        "source_labels": label_rows(prepare.get("labels")),
        "input_rows": clean.get("input_rows"),
        "kept_rows": clean.get("kept_rows"),
        "removals": reasons,
        "total_removed": total_removed,
        "clean_labels": label_rows(clean.get("labels")),
        "imbalance_ratio": clean.get("imbalance_ratio"),
        "seed": split.get("seed"),
        "sampled_from": split.get("sampled_from"),
        "split_labels": split_labels,
        "splits": split_rows,
        "split_total": split_total,
    }


def _augment(inputs: Mapping[str, Any], examples: int) -> dict[str, Any]:
    augment = _dict(inputs.get("augment"))
    pairs = []
    for item in _list(augment.get("examples"))[:examples]:
        item = _dict(item)
        pairs.append({"original": _example_text(item.get("original", "")), "augmented": _example_text(item.get("augmented", ""))})
    return {
        "original_rows": augment.get("original_rows"),
        "augmented_rows": augment.get("augmented_rows"),
        "total_rows": (_num(augment.get("original_rows")) or 0) + (_num(augment.get("augmented_rows")) or 0)
        if _num(augment.get("original_rows")) is not None and _num(augment.get("augmented_rows")) is not None
        else None,
        "multiplier": augment.get("multiplier"),
        "examples": pairs,
    }


def _training(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from tunepipe.report import plots

    train = _dict(inputs.get("train"))
    history = [row for row in _list(inputs.get("history")) if isinstance(row, dict)]
    columns = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_f1_macro")
    return {
        "figure": plots.training_curves(history, train.get("best_epoch"), train.get("monitor")) if history else None,
        "history": [{key: row.get(key) for key in columns} for row in history],
        "best_epoch": train.get("best_epoch"),
        "monitor": train.get("monitor"),
        "best_score": train.get("best_score"),
        "epochs_run": train.get("epochs_run"),
        "device": train.get("device"),
        "accelerator": train.get("accelerator"),
        "precision": train.get("precision"),
        "wall_seconds": train.get("wall_seconds"),
        "train_rows": train.get("train_rows"),
        "samples_per_second": train.get("samples_per_second"),
        "pretrained": train.get("pretrained"),
        "parameters": train.get("parameters"),
    }


def _sweep(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep/CV table and plot from results/select/selection.json; `ran` is False when there was none."""
    from tunepipe.report import plots

    selection = _dict(inputs.get("selection"))
    variants = [v for v in _list(selection.get("variants")) if isinstance(v, dict)]
    keys: list[str] = []
    for variant in variants:
        keys += [key for key in _dict(variant.get("overrides")) if key not in keys]
    rows = [{
        "name": v.get("name"),
        "rank": v.get("rank"),
        "winner": v.get("name") == selection.get("winner"),
        "values": [json.dumps(_dict(v.get("overrides"))[key]) if key in _dict(v.get("overrides")) else "" for key in keys],
        "mean": v.get("mean"),
        "std": v.get("std"),
        "runs": len(_list(v.get("scores"))),
    } for v in variants]
    return {
        "ran": bool(variants),
        "method": selection.get("method"),
        "folds": selection.get("folds"),
        "metric": selection.get("metric"),
        "mode": selection.get("mode"),
        "winner": selection.get("winner"),
        "keys": keys,
        "rows": rows,
        "figure": plots.sweep_scores(variants, selection.get("metric"), selection.get("winner")) if variants else None,
    }


def _evaluation(inputs: Mapping[str, Any], examples: int) -> dict[str, Any]:
    """The evaluation section: metrics with bootstrap intervals beside the baseline's, confusion, curves,
    calibration, per-class scores and the most confident errors (results/evaluate/*)."""
    from tunepipe.report import plots

    metrics = _dict(inputs.get("metrics"))
    confusion = _dict(inputs.get("confusion"))
    details = _dict(inputs.get("details"))
    models = _dict(details.get("models"))
    model, baseline = _dict(models.get("fine_tuned")), _dict(models.get("baseline"))

    def interval(prefix: str, key: str) -> tuple[Any, Any] | None:
        low, high = metrics.get(f"{prefix}{key}_ci_low"), metrics.get(f"{prefix}{key}_ci_high")
        return (low, high) if _num(low) is not None and _num(high) is not None else None

    rows = []
    for key, label, kind, lower_better in METRICS:
        value, base = metrics.get(key), metrics.get(f"baseline_{key}")
        diff = _difference(value, base)
        rows.append({
            "name": label, "kind": kind, "model": value, "baseline": base, "diff": diff,
            # the sign that colours the difference: positive when the fine-tuned model is better
            "better": -diff if lower_better and diff is not None else diff,
            "model_ci": interval("", key), "baseline_ci": interval("baseline_", key),
        })

    base_rows = {str(_dict(r).get("label")): _dict(r) for r in _list(baseline.get("per_class"))}
    per_class = []
    for row in _list(model.get("per_class")):
        row = _dict(row)
        label = str(row.get("label"))
        per_class.append({**{k: row.get(k) for k in ("precision", "recall", "f1", "auroc", "average_precision", "support")},
                          "label": label, "baseline_f1": base_rows.get(label, {}).get("f1"),
                          "f1_diff": _difference(row.get("f1"), base_rows.get(label, {}).get("f1"))})

    worst = []
    for row in _list(_dict(inputs.get("worst_errors")).get("rows"))[:examples]:
        row = _dict(row)
        text = row.get("input")
        worst.append({**{k: row.get(k) for k in ("rank", "id", "label", "predicted", "confidence", "label_probability")},
                      "input": _example_text(text) if text is not None else None})

    labels = _list(confusion.get("labels"))
    matrix = _list(confusion.get("matrix"))
    bootstrap = _dict(details.get("bootstrap"))
    return {
        "rows": rows,
        "test_rows": metrics.get("test_rows"),
        "bootstrap_resamples": bootstrap.get("resamples"),
        "has_ci": any(r["model_ci"] for r in rows),
        "curve_labels": [str(x) for x in _list(details.get("curve_labels"))],
        "confusion_figure": plots.confusion_matrix(labels, matrix) if matrix else None,
        "curves_figure": plots.roc_pr_curves(model, baseline, metrics) if model else None,
        "calibration_figure": plots.reliability_diagram(_list(model.get("calibration")), _list(baseline.get("calibration")),
                                                        metrics.get("ece"), metrics.get("baseline_ece")) if model else None,
        "per_class": per_class,
        "worst": worst,
        "worst_available": isinstance(inputs.get("worst_errors"), dict) and "rows" in inputs["worst_errors"],
    }


def _is_selected(sparsity: Any, selected: Any) -> bool:
    a, b = _num(sparsity), _num(selected)
    return a is not None and b is not None and math.isclose(a, b, abs_tol=1e-9)


_METHOD_ORDER = {"dense": 0, "unstructured": 1, "structured": 2}


def _level_method(level: dict[str, Any]) -> str:
    """levels.json from before structured pruning had no `method`: sparsity 0 was dense, the rest unstructured."""
    method = level.get("method")
    if isinstance(method, str):
        return method
    return "dense" if _num(level.get("sparsity")) == 0.0 else "unstructured"


def _pruning(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from tunepipe.report import plots

    prune = _dict(inputs.get("prune"))
    selected = prune.get("selected_sparsity")
    selected_name = prune.get("selected")
    levels = [{**level, "method": _level_method(level)} for level in _list(prune.get("levels")) if isinstance(level, dict)]
    levels.sort(key=lambda level: (_METHOD_ORDER.get(level["method"], 9), _num(level.get("sparsity")) if _num(level.get("sparsity")) is not None else math.inf))
    dense = next((level for level in levels if level["method"] == "dense"), None)
    dense_latency = _num(dense.get("latency_ms")) if dense else None
    rows = []
    for level in levels:
        chosen = level.get("name") == selected_name if isinstance(selected_name, str) else _is_selected(level.get("sparsity"), selected)
        latency = _num(level.get("latency_ms"))
        rows.append({**level, "selected": chosen, "latency_ratio": latency / dense_latency if latency is not None and dense_latency else None})
    selected_row = next((row for row in rows if row["selected"]), None)
    return {
        "has_selected": "selected_sparsity" in prune or "selected" in prune,
        "selected_sparsity": selected,
        "selected_name": selected_name if isinstance(selected_name, str) else None,
        "selected": selected_row,
        "select": prune.get("select"),
        "threads": prune.get("threads"),
        "max_accuracy_drop": prune.get("max_accuracy_drop"),
        "levels": rows,
        "has_latency": any(row.get("latency_ms") is not None for row in rows),
        "has_params": any(row.get("total_params") is not None for row in rows),
        "figure": plots.pruning_curve(rows, selected, prune.get("max_accuracy_drop")) if rows else None,
        "latency_figure": plots.pruning_latency(rows, prune.get("max_accuracy_drop")) if rows else None,
    }


def _variants(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """results/export/variants.json: dense fp32, pruned fp32 and INT8, one row each."""
    data = _dict(inputs.get("variants"))
    rows = []
    batches: list[str] = []
    for row in _list(data.get("variants")):
        if not isinstance(row, dict):
            continue
        latency = _dict(row.get("latency_ms"))
        for batch in latency:
            if batch not in batches:
                batches.append(batch)
        rows.append({**row, "latency": latency, "latency_ratio": _dict(row.get("latency_ratio"))})
    batches.sort(key=lambda b: _num(float(b)) if b.isdigit() else math.inf)
    return {"rows": rows, "batches": batches, "selected": data.get("selected"), "threads": data.get("threads")}


def _export(params: dict[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    export = _dict(inputs.get("export"))
    tolerance = _num(_dict(params.get("export")).get("max_abs_logit_diff"))
    diff = _num(export.get("max_abs_logit_diff"))
    agreement = _num(export.get("prediction_agreement"))
    if diff is None:
        verdict, ok = None, None
    elif tolerance is None:
        verdict, ok = f"max |Δ logit| {diff:.2e} (no tolerance set)", None
    elif diff <= tolerance:
        verdict, ok = f"max |Δ logit| {diff:.2e} ≤ {tolerance:.0e}", True
    else:
        verdict, ok = f"max |Δ logit| {diff:.2e} > {tolerance:.0e}", False
    latency = []
    for batch, timings in _dict(export.get("latency_ms")).items():
        timings = _dict(timings)
        ort, eager = _num(timings.get("onnxruntime")), _num(timings.get("eager"))
        try:
            batch_size: float = float(batch)
        except (TypeError, ValueError):
            batch_size = math.inf
        latency.append({
            "batch": str(batch),
            "order": batch_size,
            "onnxruntime": ort,
            "eager": eager,
            "speedup": eager / ort if ort and eager is not None else None,
            "ort_per_row": ort / batch_size if ort is not None and math.isfinite(batch_size) and batch_size > 0 else None,
        })
    latency.sort(key=lambda row: (row["order"], row["batch"]))
    return {
        "opset": export.get("opset"),
        "onnx_bytes": export.get("onnx_bytes"),
        "rows": export.get("rows"),
        "max_abs_logit_diff": export.get("max_abs_logit_diff"),
        "tolerance": tolerance,
        "prediction_agreement": agreement,
        "threads": export.get("threads"),
        "verdict": verdict,
        "ok": ok,
        "latency": latency,
        "pruning_level": export.get("pruning_level"),
        "variants": _variants(inputs),
    }


def _history(history: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """This run's headline metrics beside earlier commits' (`tunepipe.report.history.collect`)."""
    history = _dict(history)
    metrics = _dict(inputs.get("metrics"))
    current = {key: metrics.get(key) for key in HISTORY_METRICS}
    rows = []
    for entry in _list(history.get("entries")):
        entry = _dict(entry)
        values = _dict(entry.get("metrics")) if entry.get("metrics") is not None else None
        rows.append({
            "commit": entry.get("commit"),
            "short": entry.get("short") or str(entry.get("commit") or "")[:7],
            "date": entry.get("date"),
            "subject": entry.get("subject"),
            "metrics": values,
            "accuracy_diff": _difference(values.get("accuracy"), current["accuracy"]) if values else None,
            "status": entry.get("status"),
            "same": bool(entry.get("same_as_current")),
            "changes": [str(change) for change in _list(entry.get("changes"))],
        })
    return {
        "collected": bool(history),
        "available": bool(history.get("available")),
        "reason": history.get("reason"),
        "current": current,
        "rows": rows,
    }


def _since_last(history: Any, inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """What changed since the newest earlier recorded run: its commit, the params that differ, the accuracy change."""
    history = _dict(history)
    rows = _list(history.get("entries"))
    if not history.get("available") or not rows:
        return None
    last = _dict(rows[0])
    metrics = _dict(inputs.get("metrics"))
    earlier = _dict(last.get("metrics"))
    changes = history.get("since_last")
    return {
        "short": last.get("short") or str(last.get("commit") or "")[:7],
        "subject": last.get("subject"),
        "changes": [str(change) for change in _list(changes)] if changes is not None else None,
        "accuracy_diff": _difference(metrics.get("accuracy"), earlier.get("accuracy")) if earlier else None,
    }


def _timings(inputs: Mapping[str, Any]) -> dict[str, Any]:
    rows = [row for row in _list(inputs.get("timings")) if isinstance(row, dict)]
    seconds = [_num(row.get("seconds")) for row in rows]
    measured = [value for value in seconds if value is not None]
    slowest = max(measured, default=None)
    return {
        "rows": [dict(row, share=value / slowest if value is not None and slowest else None) for row, value in zip(rows, seconds)],
        "total": sum(measured) if rows else None,
    }


def _data_provenance(inputs: Mapping[str, Any]) -> dict[str, Any]:
    prepare = _dict(inputs.get("prepare"))
    return {"source": prepare.get("source"), "path": prepare.get("path"), "sha256": prepare.get("sha256"), "rows": prepare.get("rows")}


def _hardware(inputs: Mapping[str, Any]) -> dict[str, Any]:
    train = _dict(inputs.get("train"))
    return {key: train.get(key) for key in ("device", "accelerator", "precision", "threads")}


def _params_yaml(params: Mapping[str, Any]) -> str:
    import yaml

    try:
        return yaml.safe_dump(dict(params), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100).rstrip()
    except yaml.YAMLError:
        return json.dumps(params, indent=2, ensure_ascii=False, default=str)


def build_report(
    params: dict[str, Any],
    inputs: dict[str, Any],
    *,
    provenance: dict[str, Any] | None = None,
    history: dict[str, Any] | None = None,
) -> str:
    """Render the report. `inputs` maps the input keys (see INPUT_KEYS) to loaded data (`load_inputs`).

    `provenance` is `tunepipe.report.provenance.collect()`'s record; it is collected when not given.
    `history` is `tunepipe.report.history.collect()`'s record of earlier runs; the section says when it
    was not collected.
    """
    import jinja2

    if provenance is None:
        from tunepipe.report.provenance import collect

        provenance = collect()
    params = params if isinstance(params, dict) else {}
    report_params = _dict(params.get("report"))
    title = report_params.get("title") or DEFAULT_TITLE
    examples = report_params.get("examples", DEFAULT_EXAMPLES)
    examples = max(0, int(examples)) if _num(examples) is not None else DEFAULT_EXAMPLES

    pruning = _pruning(inputs)
    export = _export(params, inputs)
    context = {
        "title": str(title),
        "summary": _summary(params, inputs),
        "data": _data(params, inputs, examples),
        "augment": _augment(inputs, examples),
        "training": _training(inputs),
        "sweep": _sweep(inputs),
        "evaluation": _evaluation(inputs, examples),
        "pruning": pruning,
        "export": export,
        "history": _history(history, inputs),
        "since_last": _since_last(history, inputs),
        "provenance": {
            "timings": _timings(inputs),
            "data": _data_provenance(inputs),
            "hardware": _hardware(inputs),
            "git": _dict(provenance.get("git")),
            "packages": _dict(provenance.get("packages")),
            "python": provenance.get("python"),
            "python_implementation": provenance.get("python_implementation"),
            "platform": provenance.get("platform"),
            "machine": provenance.get("machine"),
            "cpu_count": provenance.get("cpu_count"),
            "generated_at": provenance.get("generated_at"),
            "params_yaml": _params_yaml(params),
        },
        "examples_limit": examples,
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.filters["svg"] = lambda svg: Markup(svg) if svg else _na()
    modality = _dict(params.get("data")).get("modality", "text")
    env.filters["example"] = lambda value: image_example(value) if modality == "image" else value
    return env.get_template(TEMPLATE_NAME).render(**context)


def image_example(path: Any, size: int = 96) -> Markup:
    """An image example shown as an inline PNG thumbnail (the report stays one self-contained file)."""
    import base64
    import io as _io

    from markupsafe import escape

    text = str(path)
    try:
        from PIL import Image

        with Image.open(text) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            scale = max(1, size // max(image.size))
            if scale > 1:  # small images (28 px) are enlarged without blurring
                image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
            buffer = _io.BytesIO()
            image.save(buffer, format="PNG")
    except Exception:  # an unreadable image is an example of exactly that: show its path
        return Markup(f'<code>{escape(text)}</code> <span class="muted">(not readable)</span>')
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    name = escape(text.rsplit("/", 1)[-1])
    return Markup(f'<img class="thumb" src="data:image/png;base64,{data}" alt="{escape(text)}" title="{escape(text)}"><br><code>{name}</code>')


__all__ = ["INPUT_KEYS", "build_report", "image_example", "load_inputs"]
