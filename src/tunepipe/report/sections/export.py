"""Section 7: the ONNX export: parity as export judged it (results/export/parity.json), latency, the
dense/pruned variants and every INT8 choice tried, the shipped one marked (results/export/variants.json), and the
commands that deploy the bundle."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list
from tunepipe.report.sections.pruning import level_metrics
from tunepipe.tasks._report import ReportView, Shown


def _verdict(parity: dict[str, Any]) -> tuple[str | None, bool | None]:
    """parity.json's own verdict (`passed`, `tolerance`) in words; the report never re-judges it."""
    diff, tolerance, passed = number(parity.get("max_abs_logit_diff")), number(parity.get("tolerance")), parity.get("passed")
    if diff is None:
        return None, None
    if not isinstance(passed, bool):
        return f"max |Δ logit| {diff:.2e} (no verdict recorded)", None
    if tolerance is None:
        return f"max |Δ logit| {diff:.2e}", passed
    return f"max |Δ logit| {diff:.2e} {'≤' if passed else '>'} {tolerance:.0e}", passed


def _compared(parity: dict[str, Any]) -> dict[str, Any]:
    """The test rows there were and the cap (export.parity_rows), when the parity check compared fewer rows than that;
    both None when it compared every row (or parity.json predates the cap)."""
    rows, test_rows = number(parity.get("rows")), number(parity.get("test_rows"))
    capped = rows is not None and test_rows is not None and rows < test_rows
    return {"test_rows": test_rows if capped else None, "capped_at": parity.get("parity_rows") if capped else None}


def _latency(parity: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for batch, timings in as_dict(parity.get("latency_ms")).items():
        timings = as_dict(timings)
        ort, eager = number(timings.get("onnxruntime")), number(timings.get("eager"))
        try:
            batch_size: float = float(batch)
        except (TypeError, ValueError):
            batch_size = math.inf
        rows.append({
            "batch": str(batch),
            "order": batch_size,
            "onnxruntime": ort,
            "eager": eager,
            "speedup": eager / ort if ort and eager is not None else None,
            "ort_per_row": ort / batch_size if ort is not None and math.isfinite(batch_size) and batch_size > 0 else None,
        })
    rows.sort(key=lambda row: (row["order"], row["batch"]))
    return rows


def _int8(rows: list[dict[str, Any]], selected: Any, key: str) -> list[dict[str, Any]]:
    """Every INT8 choice tried, against the fp32 model it was made from (variants.json's `vs_fp32`), the shipped one marked;
    `key`: the metric they are held to (`val_<key>`, `val_<key>_delta`, `test_<key>_delta`)."""
    out = []
    for row in rows:
        if row.get("precision") != "int8":
            continue
        quant, ratios, seconds = as_dict(row.get("quantization")), as_dict(row.get("vs_fp32")), as_dict(row.get("seconds"))
        out.append({
            "variant": row.get("variant"),
            "choice": quant.get("choice") or quant.get("mode"),
            "recipe": quant.get("recipe"),
            "fp32_nodes": len(as_list(quant.get("fp32_nodes"))),
            "val_score": number(row.get(f"val_{key}")),
            "val_delta": number(ratios.get(f"val_{key}_delta")),
            "test_delta": number(ratios.get(f"test_{key}_delta")),
            "size_ratio": number(ratios.get("size_ratio")),
            "latency_ratio": as_dict(ratios.get("latency_ratio")),
            "seconds": number(seconds.get("total")),
            "shipped": row.get("variant") == selected if selected is not None else True,
        })
    return out


def _variants(record: dict[str, Any], metric: Shown) -> dict[str, Any]:
    """Dense fp32, pruned fp32 and every INT8 choice, one row each, with every batch size any of them was timed at; their
    test score in `metric` (`test_<key>`, and `<key>_delta` against dense)."""
    rows = []
    batches: list[str] = []
    for row in as_list(record.get("variants")):
        if not isinstance(row, dict):
            continue
        latency = as_dict(row.get("latency_ms"))
        batches += [batch for batch in latency if batch not in batches]
        rows.append({**row, "latency": latency, "latency_ratio": as_dict(row.get("latency_ratio")),
                     "test_score": row.get(f"test_{metric.key}"), "score_delta": row.get(f"{metric.key}_delta")})
    batches.sort(key=lambda b: float(b) if b.isdigit() else math.inf)
    from tunepipe.report import plots

    int8_selected = record.get("int8_selected")
    return {"rows": rows, "batches": batches, "selected": record.get("selected"), "threads": record.get("threads"),
            "int8_selected": int8_selected, "int8_rule": record.get("int8_rule"), "int8": _int8(rows, int8_selected, metric.key),
            "frontier": plots.variant_frontier(rows, record.get("selected"), batches[0] if batches else "1", int8_selected,
                                               f"test_{metric.key}", f"test {metric.short}")}


#: Where the export rule writes the bundle, relative to the project (the report is built in the same project).
BUNDLE = "results/export/bundle"


def deploy_commands(bundle: str = BUNDLE) -> list[str]:
    """The commands that score a file with, and serve, the bundle this section describes (README, "Deploy")."""
    return [
        f"tunepipe predict {bundle} INPUT.csv -o scored.csv          # or .jsonl/.parquet; --int8 for the INT8 model",
        f"tunepipe serve {bundle} --port 8000",
        """curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"inputs": ["..."]}'""",
    ]


def export(inputs: Mapping[str, Any], view: ReportView, metrics: tuple[str, str]) -> dict[str, Any]:
    """`metrics`: the task's `level_metrics`; variants.json's own `metrics` when it names them."""
    parity = as_dict(inputs.get("parity"))
    record = as_dict(inputs.get("variants"))
    metric, _ = level_metrics(record, view, metrics)
    verdict, ok = _verdict(parity)
    return {
        "opset": parity.get("opset"),
        "onnx_bytes": parity.get("onnx_bytes"),
        "rows": parity.get("rows"),
        **_compared(parity),
        "max_abs_logit_diff": parity.get("max_abs_logit_diff"),
        "tolerance": number(parity.get("tolerance")),
        "prediction_agreement": number(parity.get("prediction_agreement")),
        "threads": parity.get("threads"),
        "verdict": verdict,
        "ok": ok,
        "latency": _latency(parity),
        "pruning_level": parity.get("pruning_level"),
        "metric": {"short": metric.short, "abbr": metric.abbr or metric.short, "kind": metric.kind},
        "variants": _variants(record, metric),
        "bundle": BUNDLE,
        "commands": deploy_commands(),
    }
