"""evaluate: test-split metrics of the fine-tuned model with torchmetrics, beside the baseline's.

Both models are scored by the same code (the task's `evaluate`, tunepipe.tasks) from their outputs (class
probabilities, per-label probabilities, values): the fine-tuned model's are computed here, the baseline's read
from its predictions file. What turns outputs into answers (multi-label: each label's threshold) is decided on the
validation split (the task's `decide`) and written to `decision` for export, the bundle and serving.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tunepipe.errors import DataError
from tunepipe.io import read_csv_rows, read_json, read_rows, write_csv, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import NAMES, get_task

#: The outputs every task writes; the task's own files (`Task.evaluate_files`) come beside them.
COMMON_OUTPUTS = {
    "metrics": "flat JSON (DVC can diff it): the task's scalar metrics, *_ci_low/*_ci_high, test_rows, baseline_* of each, worst_slice_*, "
               "vs_baseline_* (the paired test against the baseline, with intervals)",
    "predictions": "CSV: id, label, predicted, input and the outputs (prob:<label> per label, or the error), baseline_* beside them",
    "decision": "JSON: how outputs become answers, decided on validation (multi_label: each label's threshold); used by export and serving",
    "slices": "JSON: metrics per slice (group, evaluate.slice_columns, the modality's automatic quartiles) with bootstrap intervals; the worst slice",
    "slices_table": "CSV: one row per slice (slice, kind, column, value, rows, its metrics with intervals, the gap, ranked)",
    "comparison": "JSON: fine_tuned_vs_baseline (paired test, paired bootstrap intervals of the differences, verdict, sentence); "
                  "diagnosis (null when the fine-tuned model is better; else headline and causes: cause, evidence, advice)",
}
#: Every task's own files (single_label: confusion, per_class, roc, pr, calibration, worst_errors, details; ...).
TASK_OUTPUTS = {key: f"(task {name}) results/evaluate/{file}" for name in NAMES for key, file in get_task(name).evaluate_files.items()}


def read_outputs(path: Path, columns: list[str], ids: list[str]):
    """The output columns of a predictions CSV (`prob:<label>` columns, or `predicted`), in the order of `ids`."""
    import numpy as np
    import torch

    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: no column(s) {', '.join(missing)}; it was written for other labels or another task. Rerun the baseline rule.")
        # one float64 array per row (not a list of Python floats: 632 labels x 20,000 rows took 400 MB that way)
        by_id = {row["id"]: np.array([float(row[c]) for c in columns], dtype=np.float64) for row in reader}
    ids = [str(i) for i in ids]  # CSV cells are text
    absent = [i for i in ids if i not in by_id]
    if absent or len(by_id) != len(ids):
        raise DataError(f"{path}: its rows are not the test split's ({len(by_id)} rows, {len(absent)} test ids missing). Rerun the baseline rule.")
    table = torch.from_numpy(np.stack([by_id[i] for i in ids]) if ids else np.zeros((0, len(columns))))
    return table if len(columns) > 1 else table[:, 0]


def _outputs(model, meta, task, modality, rows, cfg):
    from tunepipe.models.inference import pick_device, predict_logits

    dataset = modality.encode(rows, None, meta["model_cfg"], modality.load_processor(meta["model_cfg"]))
    logits = predict_logits(model, dataset, cfg["batch_size"], pick_device(), precision=cfg["precision"])
    return task.outputs(logits, meta["target_stats"]).cpu()


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint
    from tunepipe.trust.assess import assess
    from tunepipe.trust.slices import csv_fields, flat_rows

    cfg, seed = ctx.params["evaluate"], ctx.params["seed"]
    runtime.torch_threads(ctx.threads)
    model, meta = load_checkpoint(ctx.inputs["best"])
    names, modality, task = meta["label_names"], get_modality(meta["modality"]), get_task(meta["task"])
    rows = read_rows(ctx.inputs["test"])
    targets = torch.tensor(task.encode(rows, names, str(ctx.inputs["test"])))
    outputs = _outputs(model, meta, task, modality, rows, cfg)
    decision: dict[str, Any] = {}
    if "val" in ctx.inputs:
        val_rows = read_rows(ctx.inputs["val"])
        decision = task.decide(_outputs(model, meta, task, modality, val_rows, cfg),
                               torch.tensor(task.encode(val_rows, names, str(ctx.inputs["val"]))), names, cfg)
    baseline_outputs = read_outputs(ctx.inputs["baseline_predictions"], task.output_columns(names), [row["id"] for row in rows])

    bootstrap = {"resamples": cfg["bootstrap_resamples"], "seed": seed}
    model_eval = task.evaluate(outputs, targets, names, **bootstrap, decision=decision)
    # the baseline has no validation predictions: it is scored as it is (multi_label: at 0.5)
    base_eval = task.evaluate(baseline_outputs, targets, names, **bootstrap)

    flat = {**model_eval["metrics"], "test_rows": len(rows)}
    flat |= {f"baseline_{k}": v for k, v in base_eval["metrics"].items()}
    slices, comparison, trust = assess(task, rows=rows, modality=modality, names=names, outputs=outputs, baseline_outputs=baseline_outputs,
                                       targets=targets, decision=decision, evaluate_cfg=cfg, seed=seed,
                                       train_summary=read_json(ctx.inputs["train_summary"]), train_history=read_csv_rows(ctx.inputs["train_history"]),
                                       source=str(ctx.inputs["test"]))
    flat |= trust
    write_json(ctx.outputs["metrics"], flat)
    write_json(ctx.outputs["slices"], slices)
    write_csv(ctx.outputs["slices_table"], flat_rows(slices), csv_fields(slices))
    write_json(ctx.outputs["comparison"], comparison)
    if "decision" in ctx.outputs:
        write_json(ctx.outputs["decision"], {"task": task.name, "labels": names, **decision})
    write_csv(ctx.outputs["predictions"], *task.prediction_table(rows, names, outputs, modality.input_field, baseline_outputs, decision))
    files = task.evaluation_files(rows, names, model_eval, base_eval, outputs, targets, input_field=modality.input_field,
                                  worst=cfg["worst_examples"], bootstrap=bootstrap)
    for key, content in files.items():
        if key not in ctx.outputs:
            raise DataError(f"evaluate: the rule gives no output {key!r} for task.type {task.name}; its outputs come from the task's evaluate_files.")
        if isinstance(content, tuple):
            write_csv(ctx.outputs[key], *content)
        else:
            write_json(ctx.outputs[key], content)
    versus = comparison["fine_tuned_vs_baseline"]
    ctx.log.info("%s", versus["sentence"])
    if comparison["diagnosis"]:
        ctx.log.warning("%s", comparison["diagnosis"]["headline"])
        for cause in comparison["diagnosis"]["causes"]:
            ctx.log.warning("  %s: %s. Advice: %s.", cause["cause"], cause["evidence"], cause["advice"])
    if slices.get("worst"):
        worst = slices["worst"]
        ctx.log.info("worst slice: %s=%s (%d rows): %s", worst["column"], worst["value"], worst["rows"],
                     {k: v for k, v in worst.items() if k not in ("column", "value", "rows", "ranked")})
    for label, result in (("fine-tuned", model_eval), ("baseline  ", base_eval)):
        shown = {k: v for k, v in result["metrics"].items() if "_ci_" not in k and v is not None}
        ctx.log.info("%s: %s", label, "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))


STAGE = Stage(
    name="evaluate",
    summary="Score the best checkpoint and the baseline on the test split (torchmetrics, the task's metrics), with bootstrap intervals.",
    inputs={
        "best": "Lightning checkpoint from train",
        "test": "JSONL test rows",
        "val": "optional: JSONL validation rows, where the task decides something on them (multi_label: each label's threshold)",
        "baseline_predictions": "CSV of the baseline's test outputs (prob:<label> columns, or predicted)",
        "train_summary": "results/train/summary.json (what training did: the data-aware facts, epochs; read to explain a loss to the baseline)",
        "train_history": "results/train/history.csv (per-epoch losses, to see overfitting or a training stopped while improving)",
    },
    outputs={**COMMON_OUTPUTS, **TASK_OUTPUTS},
    run=run,
    params_help="seed, evaluate.batch_size, evaluate.bootstrap_resamples, evaluate.thresholds, evaluate.worst_examples, evaluate.slice_columns, "
    "evaluate.slice_min_rows, evaluate.alpha",
    optional=frozenset({"val", "decision", *TASK_OUTPUTS}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
