"""train: fine-tune the pretrained encoder with Lightning; keep the best checkpoint on a validation metric.

With a sweep or cross-validation (results/select/selection.json as input) the final model uses the
winning variant's overrides: trained on the whole training split after cross-validation, or, without
folds, the winner's own run (results/sweep/<winner>/), which already was exactly that training, is reused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tunepipe.io import read_json, read_rows, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe.errors import DataError
    from tunepipe.tasks import task_of
    from tunepipe.sweep import apply_overrides
    from tunepipe.training import train_model, write_config

    params, extra = ctx.params, None
    if "selection" in ctx.inputs:
        selection = read_json(ctx.inputs["selection"])
        params = apply_overrides(params, selection["overrides"], source="selected variant")
        extra = {"variant": selection["winner"], "overrides": selection["overrides"], "selection_metric": selection["metric"],
                 "selection_mean": selection["mean"], "selection_std": selection["std"]}
        if not selection.get("folds"):
            run_dir = next((Path(path).parent for path in ctx.many.get("trials", []) if Path(path).parent.name == selection["winner"]), None)
            if run_dir is None:
                raise DataError(f"selection winner {selection['winner']!r} has no run among the --in trials files; rerun select.")
            ctx.log.info("reusing the selected variant's run %s (same data, params and seed)", run_dir)
            summary = {**read_json(run_dir / "summary.json"), **extra}
            shutil.copyfile(run_dir / "best.ckpt", ctx.outputs["best"])
            shutil.copyfile(run_dir / "history.csv", ctx.outputs["history"])
            _reuse_steps(run_dir / "steps.csv", ctx, params)
            train_rows = read_rows(ctx.inputs["train"])
            names = task_of(params).names(params["data"]["labels"], params["data"], train_rows, read_rows(ctx.inputs["val"]))
            write_config(ctx.outputs["config"], params, names, summary)
            write_json(ctx.outputs["summary"], summary)
            return
        ctx.log.info("training the selected variant %s on the whole training split", selection["winner"])
    work_dir = Path(ctx.outputs["best"]).resolve().parent / "checkpoints"
    # The loggers write where a TensorBoard or `dvc plots` can watch them during the run (results/train/tensorboard, /dvclive).
    # The rows stay in their files (memory-mapped, parsed when read): a million rows are not a million dicts.
    train_model(params, read_rows(ctx.inputs["train"]), read_rows(ctx.inputs["val"]), ctx.outputs, work_dir, ctx.log, ctx.threads, extra,
                loggers_dir=work_dir.parent)


def _reuse_steps(steps: Path, ctx: StageContext, params: dict) -> None:
    """The reused sweep run's per-step rows, and the loggers' files rebuilt from them (trials write no loggers)."""
    from tunepipe.models.loggers import write_curves
    from tunepipe.report.load import read_rows

    shutil.copyfile(steps, ctx.outputs["steps"])
    write_curves(params["train"]["loggers"], Path(ctx.outputs["best"]).resolve().parent, read_rows(steps), read_rows(ctx.outputs["history"]))


STAGE = Stage(
    name="train",
    summary="Fine-tune the pretrained encoder (Lightning, GPU when present); best checkpoint on a validation metric.",
    inputs={
        "train": "JSONL training rows (augmented)",
        "val": "JSONL validation rows",
        "selection": "optional: results/select/selection.json; the final model uses the winning variant's overrides",
        "trials": "optional, repeatable: results/sweep/<variant>/best.ckpt of each variant (sweep without folds: the winner's run is reused)",
    },
    outputs={
        "best": "Lightning checkpoint (weights) of the best epoch",
        "history": "CSV of per-epoch losses and validation metrics",
        "steps": "CSV of every optimizer step: step, epoch, loss, lr_encoder, lr_head (TensorBoard and DVCLive files beside it, per train.loggers)",
        "config": "YAML of the resolved training config, saved beside the checkpoint",
        "summary": "JSON: best epoch and score, device, precision, wall time, throughput",
    },
    run=run,
    params_help="seed, task.type, data.labels, data.modality, model.*, train.*  (a killed run resumes from results/train/checkpoints/last.ckpt)",
    optional=frozenset({"selection", "trials"}),
    repeatable=frozenset({"trials"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
