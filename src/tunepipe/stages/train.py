"""train: fine-tune the pretrained encoder with Lightning; keep the best checkpoint on a validation metric.

With a sweep or cross-validation (results/select/selection.json as input) the final model uses the
winning variant's overrides: trained on the whole training split after cross-validation, or, without
folds, the winner's own run (results/sweep/<winner>/), which already was exactly that training, is reused.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from tunepipe.data.labels import encode, label_names
from tunepipe.io import read_json, read_jsonl, write_csv, write_json
from tunepipe.stages.harness import Stage, StageContext, main

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "val_f1_macro", "seconds"]


def train_model(params: dict[str, Any], train_rows: list[dict], val_rows: list[dict], outputs: dict[str, Path], work_dir: Path,
                log: logging.Logger, threads: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit on the given rows; write `history`, `summary` and (when asked) `best` and `config`; return the summary."""
    from tunepipe import runtime
    from tunepipe.training import fit

    runtime.torch_threads(threads)
    names = label_names(params["data"]["labels"], train_rows, val_rows)
    result = fit(
        train_rows=train_rows,
        train_labels=encode(train_rows, names, "training rows"),
        val_rows=val_rows,
        val_labels=encode(val_rows, names, "validation rows"),
        modality=params["data"]["modality"],
        label_names=names,
        model_cfg=params["model"],
        train_cfg=params["train"],
        seed=params["seed"],
        work_dir=work_dir,
        probe_rows=[i for i, row in enumerate(train_rows) if not row.get("augmented")],
    )
    best_row = next((row for row in result.history if row["epoch"] == result.summary["best_epoch"]), {})
    metrics = {key: best_row[key] for key in ("val_f1_macro", "val_accuracy", "val_loss") if key in best_row}
    summary = {**result.summary, "metrics_at_best_epoch": metrics, **(extra or {})}
    if "best" in outputs:
        shutil.copyfile(result.best_checkpoint, outputs["best"])
    write_csv(outputs["history"], result.history, HISTORY_COLUMNS)
    if "config" in outputs:
        write_config(outputs["config"], params, names, summary)
    write_json(outputs["summary"], summary)
    log.info("best %s %.4f at epoch %s", summary["monitor"], summary["best_score"], summary["best_epoch"])
    return summary


def write_config(path: Path, params: dict[str, Any], names: list[str], summary: dict[str, Any]) -> None:
    resolved = {"seed": params["seed"], "modality": params["data"]["modality"], "label_names": names, "model": params["model"], "train": params["train"],
                "resolved": {k: summary[k] for k in ("accelerator", "precision", "device", "threads")}}
    if "variant" in summary:
        resolved["variant"] = {"name": summary["variant"], "overrides": summary["overrides"]}
    path.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")


def run(ctx: StageContext) -> None:
    from tunepipe.errors import DataError
    from tunepipe.sweep import apply_overrides

    params, extra = ctx.params, None
    if "selection" in ctx.inputs:
        selection = read_json(ctx.inputs["selection"])
        params = apply_overrides(params, selection["overrides"], source="selected variant")
        extra = {"variant": selection["winner"], "overrides": selection["overrides"], "selection_metric": selection["metric"],
                 "selection_mean": selection["mean"], "selection_std": selection["std"]}
        if not selection.get("folds"):
            run_dir = next((Path(path).parent for path in ctx.many.get("trial", []) if Path(path).parent.name == selection["winner"]), None)
            if run_dir is None:
                raise DataError(f"selection winner {selection['winner']!r} has no run among the --in trial files; rerun select.")
            ctx.log.info("reusing the selected variant's run %s (same data, params and seed)", run_dir)
            summary = {**read_json(run_dir / "summary.json"), **extra}
            shutil.copyfile(run_dir / "best.ckpt", ctx.outputs["best"])
            shutil.copyfile(run_dir / "history.csv", ctx.outputs["history"])
            train_rows = read_jsonl(ctx.inputs["train"])
            write_config(ctx.outputs["config"], params, label_names(params["data"]["labels"], train_rows, read_jsonl(ctx.inputs["val"])), summary)
            write_json(ctx.outputs["summary"], summary)
            return
        ctx.log.info("training the selected variant %s on the whole training split", selection["winner"])
    work_dir = Path(ctx.outputs["best"]).resolve().parent / "checkpoints"
    train_model(params, read_jsonl(ctx.inputs["train"]), read_jsonl(ctx.inputs["val"]), ctx.outputs, work_dir, ctx.log, ctx.threads, extra)


STAGE = Stage(
    name="train",
    summary="Fine-tune the pretrained encoder (Lightning, GPU when present); best checkpoint on a validation metric.",
    inputs={
        "train": "JSONL training rows (augmented)",
        "val": "JSONL validation rows",
        "selection": "optional: results/select/selection.json; the final model uses the winning variant's overrides",
        "trial": "optional, repeatable: results/sweep/<variant>/best.ckpt of each variant (sweep without folds: the winner's run is reused)",
    },
    outputs={
        "best": "Lightning checkpoint (weights) of the best epoch",
        "history": "CSV of per-epoch losses and validation metrics",
        "config": "YAML of the resolved training config, saved beside the checkpoint",
        "summary": "JSON: best epoch and score, device, precision, wall time, throughput",
    },
    run=run,
    params_help="seed, data.labels, model.*, train.*  (a killed run resumes from results/train/checkpoints/last.ckpt)",
    optional=frozenset({"selection", "trial"}),
    repeatable=frozenset({"trial"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
