"""trial: one sweep/cross-validation job: train one variant, on one fold or on the whole training split.

With a fold, the variant trains on the other folds (and their augmented copies) and is validated on the
fold's original rows; only its history and summary are kept. Without one (a sweep without CV), it trains
on the training split and validates on the validation split, exactly like `train`, and keeps its
checkpoint so that `train` can reuse the winner's.

A `sweep.method: tpe` trial of round k > 0 gets the earlier rounds' histories (`--in earlier=...`) and, with
`sweep.pruning: median`, stops at the first epoch after the warm-up where it is worse than their median there;
its summary says where (`pruned_at_epoch`, with `max_epochs`: what a full run would have trained).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tunepipe.io import read_csv_rows, read_json, read_rows, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe.data.splitting import cv_partition
    from tunepipe.sweep import apply_overrides
    from tunepipe.training import train_model

    spec = ctx.params["variant"]
    base = {key: value for key, value in ctx.params.items() if key != "variant"}
    params = apply_overrides(base, spec["overrides"], source=f"sweep variant {spec['name']}")
    rows = read_rows(ctx.inputs["train"])
    fold = spec.get("fold")
    if fold is None:
        train_rows, val_rows = rows, read_rows(ctx.inputs["val"])
    else:
        train_rows, val_rows = cv_partition(rows, fold)
    ctx.log.info("variant %s %s: %d training rows, %d validation rows", spec["name"], f"fold {fold}" if fold is not None else "(no CV)",
                 len(train_rows), len(val_rows))
    work_dir = Path(ctx.outputs["summary"]).resolve().parent / "checkpoints"
    extra = {"variant": spec["name"], "overrides": spec["overrides"], "fold": fold, **({"round": spec["round"]} if "round" in spec else {})}
    pruning = _pruning(spec.get("pruning"), ctx)
    summary = train_model(params, train_rows, val_rows, ctx.outputs, work_dir, ctx.log, ctx.threads, extra, callbacks=(pruning,) if pruning else ())
    if "round" in spec:  # a tpe trial: where it stopped, for `select`, the next rounds and the report
        max_epochs = summary.get("data_aware", {}).get("train.max_epochs", {}).get("value", params["train"]["max_epochs"])
        write_json(ctx.outputs["summary"], {**read_json(ctx.outputs["summary"]), "pruned_at_epoch": pruning.pruned_at if pruning else None,
                                            "max_epochs": max_epochs})
    shutil.rmtree(work_dir, ignore_errors=True)  # only for resuming a killed trial; the kept weights are in `best`


def _pruning(cfg: dict | None, ctx: StageContext):
    """The median-rule callback over the earlier rounds' histories, or None (no pruning, or nothing earlier to compare with)."""
    histories = ctx.many.get("earlier", [])
    if not cfg or not histories:
        return None
    from tunepipe.models.trial_pruning import MedianPruning
    from tunepipe.search import median_by_epoch, metric_by_epoch

    medians = median_by_epoch([metric_by_epoch(read_csv_rows(path), cfg["metric"]) for path in histories])
    ctx.log.info("median pruning after epoch %d on %s against %d earlier trial(s): %s", cfg["warmup_epochs"], cfg["metric"], len(histories),
                 ", ".join(f"epoch {epoch} {value:.4f}" for epoch, value in medians.items()))
    return MedianPruning(medians, cfg["metric"], cfg["mode"], cfg["warmup_epochs"])


STAGE = Stage(
    name="trial",
    summary="Train one sweep variant, on one cross-validation fold or on the whole training split.",
    inputs={
        "train": "JSONL training rows (augmented, with fold numbers when split.folds >= 2)",
        "val": "JSONL validation rows (used without CV)",
        "asked": "optional (tpe): results/sweep/round<k>/asked.json, the round that asked this trial (its overrides come in params)",
        "earlier": "optional, repeatable (tpe): history.csv of every earlier round's trial (the median pruning rule)",
    },
    outputs={
        "best": "optional (no CV): Lightning checkpoint of the best epoch",
        "history": "CSV of per-epoch losses and validation metrics",
        "steps": "optional (no CV): CSV of every optimizer step (train reuses the winner's)",
        "summary": "JSON: train's summary (with metrics_at_best_epoch) + variant, overrides, fold",
    },
    run=run,
    params_help="seed, data.*, model.*, train.* and variant: {name, overrides: {dotted.key: value}, fold: int or null; tpe: round, "
                "pruning: {metric, mode, warmup_epochs} or null}",
    optional=frozenset({"best", "steps", "asked", "earlier"}),
    repeatable=frozenset({"earlier"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
