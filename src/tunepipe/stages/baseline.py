"""baseline: TF-IDF + logistic regression on the same split, so the report shows what fine-tuning buys."""

from __future__ import annotations

from tunepipe.data.labels import encode, label_names
from tunepipe.io import read_jsonl, write_csv, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe.evaluation import classification_metrics, prediction_rows
    from tunepipe.models import baseline

    cfg = ctx.params["baseline"]
    train_rows, test_rows = read_jsonl(ctx.inputs["train"]), read_jsonl(ctx.inputs["test"])
    names = label_names(ctx.params["data"]["labels"], train_rows, test_rows)
    train_labels = encode(train_rows, names, str(ctx.inputs["train"]))
    if ctx.params["data"]["modality"] == "image":
        model = baseline.fit_pixels_logreg(baseline.pixel_features([r["path"] for r in train_rows]), train_labels, C=cfg["C"], seed=ctx.params["seed"])
        probs = baseline.predict_proba(model, baseline.pixel_features([r["path"] for r in test_rows]), len(names))
        kind = "pixels + logistic regression"
    else:
        model = baseline.fit_tfidf_logreg(
            [row["text"] for row in train_rows], train_labels,
            max_features=cfg["max_features"], ngram_max=cfg["ngram_max"], C=cfg["C"], seed=ctx.params["seed"],
        )
        probs = baseline.predict_proba(model, [row["text"] for row in test_rows], len(names))
        kind = "TF-IDF + logistic regression"
    probs = torch.from_numpy(probs)
    targets = torch.tensor(encode(test_rows, names, str(ctx.inputs["test"])))
    metrics = classification_metrics(probs, targets)
    write_json(ctx.outputs["metrics"], {**metrics, "test_rows": len(test_rows), "train_rows": len(train_rows), "model": kind})
    # evaluate scores these probabilities with the same metrics (and bootstrap intervals) as the fine-tuned model's.
    write_csv(ctx.outputs["predictions"], *prediction_rows(test_rows, names, probs))
    ctx.log.info("baseline test %s", "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


STAGE = Stage(
    name="baseline",
    summary="Fit the simple baseline (TF-IDF or pixels + logistic regression) on the train split; score it on test.",
    inputs={"train": "JSONL train rows (not augmented)", "test": "JSONL test rows"},
    outputs={
        "metrics": "JSON: accuracy, macro precision/recall/F1, AUROC",
        "predictions": "CSV: id, label, predicted, confidence, input, then prob:<label> for every label (test rows, in order)",
    },
    run=run,
    params_help="seed, data.labels, baseline.max_features, baseline.ngram_max, baseline.C",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
