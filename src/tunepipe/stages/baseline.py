"""baseline: the modality's simple model (TF-IDF or pixels + logistic regression) on the same split, so the
report shows what fine-tuning buys."""

from __future__ import annotations

from tunepipe.data.labels import encode, label_names
from tunepipe.io import read_jsonl, write_csv, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe.evaluation import classification_metrics, prediction_rows

    modality = get_modality(ctx.params["data"]["modality"])
    train_rows, test_rows = read_jsonl(ctx.inputs["train"]), read_jsonl(ctx.inputs["test"])
    names = label_names(ctx.params["data"]["labels"], train_rows, test_rows)
    probs = modality.baseline_probabilities(train_rows, encode(train_rows, names, str(ctx.inputs["train"])), test_rows,
                                            baseline_cfg=ctx.params["baseline"], seed=ctx.params["seed"], num_labels=len(names))
    probs = torch.from_numpy(probs)
    targets = torch.tensor(encode(test_rows, names, str(ctx.inputs["test"])))
    metrics = classification_metrics(probs, targets)
    write_json(ctx.outputs["metrics"], {**metrics, "test_rows": len(test_rows), "train_rows": len(train_rows), "model": modality.baseline_name})
    # evaluate scores these probabilities with the same metrics (and bootstrap intervals) as the fine-tuned model's.
    write_csv(ctx.outputs["predictions"], *prediction_rows(test_rows, names, probs, modality.input_field))
    ctx.log.info("baseline test %s", "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


STAGE = Stage(
    name="baseline",
    summary="Fit the simple baseline (TF-IDF or pixels + logistic regression) on the train split; score it on test.",
    inputs={"train": "JSONL train rows (not augmented)", "test": "JSONL test rows"},
    outputs={
        "metrics": "JSON: accuracy, macro precision/recall/F1, AUROC, and the baseline's name (model)",
        "predictions": "CSV: id, label, predicted, confidence, input, then prob:<label> for every label (test rows, in order)",
    },
    run=run,
    params_help="seed, data.modality, data.labels, baseline.max_features, baseline.ngram_max, baseline.C",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
