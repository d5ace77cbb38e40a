"""trial: one sweep/cross-validation job: train one variant, on one fold or on the whole training split.

With a fold, the variant trains on the other folds (and their augmented copies) and is validated on the
fold's original rows; only its history and summary are kept. Without one (a sweep without CV), it trains
on the training split and validates on the validation split, exactly like `train`, and keeps its
checkpoint so that `train` can reuse the winner's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tunepipe.io import read_jsonl
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe.data.splitting import cv_partition
    from tunepipe.sweep import apply_overrides
    from tunepipe.training import train_model

    spec = ctx.params["variant"]
    base = {key: value for key, value in ctx.params.items() if key != "variant"}
    params = apply_overrides(base, spec["overrides"], source=f"sweep variant {spec['name']}")
    rows = read_jsonl(ctx.inputs["train"])
    fold = spec.get("fold")
    if fold is None:
        train_rows, val_rows = rows, read_jsonl(ctx.inputs["val"])
    else:
        train_rows, val_rows = cv_partition(rows, fold)
    ctx.log.info("variant %s %s: %d training rows, %d validation rows", spec["name"], f"fold {fold}" if fold is not None else "(no CV)",
                 len(train_rows), len(val_rows))
    work_dir = Path(ctx.outputs["summary"]).resolve().parent / "checkpoints"
    extra = {"variant": spec["name"], "overrides": spec["overrides"], "fold": fold}
    train_model(params, train_rows, val_rows, ctx.outputs, work_dir, ctx.log, ctx.threads, extra)
    shutil.rmtree(work_dir, ignore_errors=True)  # only for resuming a killed trial; the kept weights are in `best`


STAGE = Stage(
    name="trial",
    summary="Train one sweep variant, on one cross-validation fold or on the whole training split.",
    inputs={"train": "JSONL training rows (augmented, with fold numbers when split.folds >= 2)", "val": "JSONL validation rows (used without CV)"},
    outputs={
        "best": "optional (no CV): Lightning checkpoint of the best epoch",
        "history": "CSV of per-epoch losses and validation metrics",
        "summary": "JSON: train's summary (with metrics_at_best_epoch) + variant, overrides, fold",
    },
    run=run,
    params_help="seed, data.*, model.*, train.* and variant: {name, overrides: {dotted.key: value}, fold: int or null}",
    optional=frozenset({"best"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
