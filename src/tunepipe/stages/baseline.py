"""baseline: the modality's features (TF-IDF or pixels) with the task's linear model (logistic regression, one per label,
or ridge) on the same split, so the report shows what fine-tuning buys."""

from __future__ import annotations

from tunepipe.io import read_rows, write_csv, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import task_of


def run(ctx: StageContext) -> None:
    import numpy as np
    import torch

    from tunepipe.models.baseline import describe

    modality, task, data = get_modality(ctx.params["data"]["modality"]), task_of(ctx.params), ctx.params["data"]
    train_rows, test_rows = read_rows(ctx.inputs["train"]), read_rows(ctx.inputs["test"])
    names = task.names(data["labels"], data, train_rows, test_rows)
    outputs = modality.baseline_outputs(train_rows, task.encode(train_rows, names, str(ctx.inputs["train"])), test_rows,
                                        baseline_cfg=ctx.params["baseline"], seed=ctx.params["seed"], task=task, names=names)
    outputs = torch.from_numpy(np.asarray(outputs, dtype=np.float64))
    targets = torch.tensor(task.encode(test_rows, names, str(ctx.inputs["test"])))
    metrics = task.scores(outputs, targets, names)
    write_json(ctx.outputs["metrics"], {**metrics, "test_rows": len(test_rows), "train_rows": len(train_rows), "model": describe(modality.baseline_features, task.baseline_model)})
    # evaluate scores these outputs with the same metrics (and bootstrap intervals) as the fine-tuned model's.
    write_csv(ctx.outputs["predictions"], *task.prediction_table(test_rows, names, outputs, modality.input_field))
    ctx.log.info("baseline test %s", "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


STAGE = Stage(
    name="baseline",
    summary="Fit the simple baseline (TF-IDF or pixels + logistic regression, one per label, or ridge) on the train split; score it on test.",
    inputs={"train": "JSONL train rows (not augmented)", "test": "JSONL test rows"},
    outputs={
        "metrics": "JSON: the task's headline scores (accuracy, macro F1, AUROC; F1 micro/macro/samples; MAE, RMSE, R2) and the baseline's name (model)",
        "predictions": "CSV: id, label, predicted, confidence, input, then prob:<label> for every label, or the value (test rows, in order)",
    },
    run=run,
    params_help="seed, task.type, data.modality, data.labels, baseline.max_features, baseline.ngram_max, baseline.C",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
