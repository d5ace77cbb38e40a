"""train: fine-tune the pretrained encoder with Lightning; keep the best checkpoint on a validation metric."""

from __future__ import annotations

from pathlib import Path

import yaml

from tunepipe.data.labels import encode, label_names
from tunepipe.io import read_jsonl, write_csv, write_json
from tunepipe.stages.harness import Stage, StageContext, main

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "val_f1_macro", "seconds"]


def run(ctx: StageContext) -> None:
    from tunepipe import runtime
    import shutil

    from tunepipe.training import fit

    runtime.torch_threads(ctx.threads)
    train_rows, val_rows = read_jsonl(ctx.inputs["train"]), read_jsonl(ctx.inputs["val"])
    names = label_names(ctx.params["data"]["labels"], train_rows, val_rows)
    work_dir = Path(ctx.outputs["best"]).resolve().parent / "checkpoints"
    result = fit(
        train_rows=train_rows,
        train_labels=encode(train_rows, names, str(ctx.inputs["train"])),
        val_rows=val_rows,
        val_labels=encode(val_rows, names, str(ctx.inputs["val"])),
        modality=ctx.params["data"]["modality"],
        label_names=names,
        model_cfg=ctx.params["model"],
        train_cfg=ctx.params["train"],
        seed=ctx.params["seed"],
        work_dir=work_dir,
        probe_rows=[i for i, row in enumerate(train_rows) if not row.get("augmented")],
    )
    shutil.copyfile(result.best_checkpoint, ctx.outputs["best"])
    write_csv(ctx.outputs["history"], result.history, HISTORY_COLUMNS)
    resolved = {"seed": ctx.params["seed"], "modality": ctx.params["data"]["modality"], "label_names": names, "model": ctx.params["model"], "train": ctx.params["train"],
                "resolved": {k: result.summary[k] for k in ("accelerator", "precision", "device", "threads")}}
    ctx.outputs["config"].write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    write_json(ctx.outputs["summary"], result.summary)
    ctx.log.info("best %s %.4f at epoch %s", result.summary["monitor"], result.summary["best_score"], result.summary["best_epoch"])


STAGE = Stage(
    name="train",
    summary="Fine-tune the pretrained encoder (Lightning, GPU when present); best checkpoint on a validation metric.",
    inputs={"train": "JSONL training rows (augmented)", "val": "JSONL validation rows"},
    outputs={
        "best": "Lightning checkpoint (weights) of the best epoch",
        "history": "CSV of per-epoch losses and validation metrics",
        "config": "YAML of the resolved training config, saved beside the checkpoint",
        "summary": "JSON: best epoch and score, device, precision, wall time, throughput",
    },
    run=run,
    params_help="seed, data.labels, model.*, train.*  (a killed run resumes from results/train/checkpoints/last.ckpt)",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
