"""evaluate: test-split metrics of the fine-tuned model with torchmetrics, beside the baseline's.

Both models are scored by the same code (`tunepipe.evaluation.evaluate_predictions`) from their class
probabilities: the fine-tuned model's are computed here, the baseline's read from its predictions file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tunepipe.data.labels import encode
from tunepipe.errors import DataError
from tunepipe.io import read_csv_rows, read_json, read_jsonl, write_csv, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main


def read_probabilities(path: Path, names: list[str], ids: list[str]):
    """The probabilities of a predictions CSV (`prob:<label>` columns), in the order of `ids`."""
    import torch

    from tunepipe.evaluation import PROB_PREFIX

    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [f"{PROB_PREFIX}{name}" for name in names]
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: no column(s) {', '.join(missing)}; it was written for other labels. Rerun the baseline rule.")
        by_id = {row["id"]: [float(row[c]) for c in columns] for row in reader}
    ids = [str(i) for i in ids]  # CSV cells are text
    absent = [i for i in ids if i not in by_id]
    if absent or len(by_id) != len(ids):
        raise DataError(f"{path}: its rows are not the test split's ({len(by_id)} rows, {len(absent)} test ids missing). Rerun the baseline rule.")
    return torch.tensor([by_id[i] for i in ids], dtype=torch.float64)


def _worst(rows: list[dict[str, Any]], names: list[str], probs, targets, count: int, input_field: str) -> list[dict[str, Any]]:
    from tunepipe.evaluation import worst_errors

    picked = []
    for rank, i in enumerate(worst_errors(probs, targets, count), start=1):
        row, p = rows[i], probs[i]
        best = int(p.argmax())
        picked.append({
            "rank": rank,
            "id": row["id"],
            "label": row["label"],
            "predicted": names[best],
            "confidence": round(float(p[best]), 6),
            "label_probability": round(float(p[int(targets[i])]), 6),
            "input": row[input_field],
        })
    return picked


def _trust(ctx: StageContext, rows, modality, names, probs, baseline_probs, targets) -> dict[str, Any]:
    """Slices and the paired comparison with the baseline (tunepipe.trust): writes their files, returns their headline numbers."""
    from tunepipe.trust.diagnosis import diagnose
    from tunepipe.trust.significance import compare_paired, sentence
    from tunepipe.trust.slices import CSV_FIELDS, flat_rows, slice_columns_of, slice_table

    cfg, seed = ctx.params["evaluate"], ctx.params["seed"]
    predicted, base_predicted = probs.argmax(dim=1).numpy(), baseline_probs.argmax(dim=1).numpy()
    columns = slice_columns_of(rows, modality, cfg["slice_columns"], str(ctx.inputs["test"]))
    slices = slice_table(targets.numpy(), predicted, len(names), columns, resamples=cfg["bootstrap_resamples"], seed=seed, min_rows=cfg["slice_min_rows"])
    write_json(ctx.outputs["slices"], slices)
    write_csv(ctx.outputs["slices_table"], flat_rows(slices), CSV_FIELDS)
    versus = compare_paired(targets.numpy(), predicted, base_predicted, len(names), resamples=cfg["bootstrap_resamples"], seed=seed, alpha=cfg["alpha"])
    versus["sentence"] = sentence(versus, "the fine-tuned model", "the baseline")
    # Not better than the baseline: say so, with the causes training's own records show (tunepipe.trust.diagnosis).
    diagnosis = diagnose(versus, summary=read_json(ctx.inputs["train_summary"]), history=read_csv_rows(ctx.inputs["train_history"]),
                         test_labels=[str(row["label"]) for row in rows], baseline_name=modality.baseline_name)
    write_json(ctx.outputs["comparison"], {"fine_tuned_vs_baseline": versus, "diagnosis": diagnosis})
    ctx.log.info("%s", versus["sentence"])
    if diagnosis:
        ctx.log.warning("%s", diagnosis["headline"])
        for cause in diagnosis["causes"]:
            ctx.log.warning("  %s: %s. Advice: %s.", cause["cause"], cause["evidence"], cause["advice"])
    flat: dict[str, Any] = {}
    worst = slices["worst"]
    if worst is not None:
        flat["worst_slice_accuracy"], flat["worst_slice_gap"] = worst["accuracy"], worst["accuracy_gap"]
        ctx.log.info("worst slice: %s=%s, accuracy %.4f (%d rows), %.4f below the whole", worst["column"], worst["value"], worst["accuracy"],
                     worst["rows"], worst["accuracy_gap"])
    boot = versus["bootstrap"]
    flat["vs_baseline_p_value"] = round(versus["mcnemar"]["p_value"], 6)
    for key in ("accuracy_diff", "f1_macro_diff"):
        flat[f"vs_baseline_{key}"] = boot[key]
        flat[f"vs_baseline_{key}_ci_low"], flat[f"vs_baseline_{key}_ci_high"] = boot[f"{key}_ci"]
    return flat


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint
    from tunepipe.evaluation import CI_NAMES, DETAILED_NAMES, curve_classes, evaluate_predictions, prediction_rows
    from tunepipe.models.inference import pick_device, predict_logits

    cfg = ctx.params["evaluate"]
    runtime.torch_threads(ctx.threads)
    model, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality = meta["label_names"], meta["model_cfg"], get_modality(meta["modality"])
    rows = read_jsonl(ctx.inputs["test"])
    targets = torch.tensor(encode(rows, names, str(ctx.inputs["test"])))
    dataset = modality.encode(rows, None, model_cfg, modality.load_processor(model_cfg))
    probs = predict_logits(model, dataset, cfg["batch_size"], pick_device()).softmax(dim=-1).cpu()
    baseline_probs = read_probabilities(ctx.inputs["baseline_predictions"], names, [row["id"] for row in rows])

    bootstrap = {"resamples": cfg["bootstrap_resamples"], "seed": ctx.params["seed"]}
    model_eval = evaluate_predictions(probs, targets, names, **bootstrap)
    base_eval = evaluate_predictions(baseline_probs, targets, names, **bootstrap)

    keys = list(DETAILED_NAMES) + [f"{name}_ci_{end}" for name in CI_NAMES for end in ("low", "high")]
    flat = {**{k: model_eval["metrics"][k] for k in keys}, "test_rows": len(rows)}
    flat |= {f"baseline_{k}": base_eval["metrics"][k] for k in keys}
    flat |= _trust(ctx, rows, modality, names, probs, baseline_probs, targets)
    write_json(ctx.outputs["metrics"], flat)
    write_json(ctx.outputs["confusion"], {"labels": names, "matrix": model_eval["confusion"], "normalized": model_eval["confusion_normalized"]})
    write_csv(ctx.outputs["predictions"], *prediction_rows(rows, names, probs, modality.input_field, baseline_probs))
    write_csv(ctx.outputs["per_class"], model_eval["per_class"], ["label", "precision", "recall", "f1", "auroc", "average_precision", "support"])
    write_csv(ctx.outputs["roc"], model_eval["roc"], ["class", "fpr", "tpr"])
    write_csv(ctx.outputs["pr"], model_eval["pr"], ["class", "recall", "precision"])
    write_csv(ctx.outputs["calibration"], model_eval["calibration"], ["bin", "lower", "upper", "confidence", "accuracy", "count"])
    write_json(ctx.outputs["worst_errors"], {"labels": names, "rows": _worst(rows, names, probs, targets, cfg["worst_examples"], modality.input_field)})
    write_json(ctx.outputs["details"], {
        "labels": names,
        "curve_labels": [names[c] for c in curve_classes(len(names))],
        "bootstrap": {**bootstrap, "level": 0.95, "method": "percentile, resampled within each true class"},
        "models": {
            name: {key: result[key] for key in ("per_class", "confusion", "confusion_normalized", "roc", "pr", "calibration")}
            for name, result in (("fine_tuned", model_eval), ("baseline", base_eval))
        },
    })
    for label, result in (("fine-tuned", model_eval), ("baseline  ", base_eval)):
        m = result["metrics"]
        ctx.log.info(
            "%s: %s  (95%% CI accuracy %.4f-%.4f)", label, "  ".join(f"{k} {m[k]:.4f}" for k in DETAILED_NAMES),
            m["accuracy_ci_low"], m["accuracy_ci_high"],
        )


STAGE = Stage(
    name="evaluate",
    summary="Score the best checkpoint and the baseline on the test split (torchmetrics), with bootstrap intervals, curves and calibration.",
    inputs={
        "best": "Lightning checkpoint from train",
        "test": "JSONL test rows",
        "baseline_predictions": "CSV of the baseline's test probabilities (prob:<label> columns)",
        "train_summary": "results/train/summary.json (what training did: the data-aware facts, epochs; read to explain a loss to the baseline)",
        "train_history": "results/train/history.csv (per-epoch losses, to see overfitting or a training stopped while improving)",
    },
    outputs={
        "metrics": "flat JSON (DVC can diff it): scalar metrics, *_ci_low/*_ci_high, test_rows, baseline_* of each, worst_slice_accuracy, "
                   "worst_slice_gap (overall minus worst slice accuracy), vs_baseline_* (McNemar p-value, paired differences with intervals)",
        "confusion": "JSON: labels, matrix (counts; rows true, columns predicted), normalized (each row / its total)",
        "predictions": "CSV: id, label, predicted, confidence, input, prob:<label> for every label, baseline_predicted, baseline_prob:<label>",
        "per_class": "CSV: label, precision, recall, f1, auroc, average_precision, support",
        "roc": "CSV: class, fpr, tpr (positive class for two labels, else one-vs-rest per class)",
        "pr": "CSV: class, recall, precision (same classes as roc)",
        "calibration": "CSV: bin, lower, upper, confidence, accuracy, count (non-empty bins of the reliability diagram)",
        "worst_errors": "JSON: labels, rows (the most confident wrong predictions: rank, id, label, predicted, confidence, label_probability, input)",
        "details": "JSON: per-class scores, confusion, curves and calibration of both models (what the report draws)",
        "slices": "JSON: metrics per slice (group, evaluate.slice_columns, the modality's automatic quartiles) with bootstrap intervals; the worst slice",
        "slices_table": "CSV: one row per slice (slice, kind, column, value, rows, accuracy and macro F1 with intervals, accuracy_gap, ranked)",
        "comparison": "JSON: fine_tuned_vs_baseline (paired: McNemar's test, paired bootstrap intervals of the differences, verdict, sentence); "
                      "diagnosis (null when the fine-tuned model is better; else headline and causes: cause, evidence, advice)",
    },
    run=run,
    params_help="seed, evaluate.batch_size, evaluate.bootstrap_resamples, evaluate.worst_examples, evaluate.slice_columns, "
    "evaluate.slice_min_rows, evaluate.alpha",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
