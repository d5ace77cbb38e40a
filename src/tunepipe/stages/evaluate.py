"""evaluate: test-split metrics of the fine-tuned model with torchmetrics, beside the baseline's."""

from __future__ import annotations

from tunepipe.data.labels import encode
from tunepipe.io import read_json, read_jsonl, write_csv, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe import runtime
    from tunepipe.data.datamodule import encode_rows, load_processor
    from tunepipe.evaluation import classification_metrics, confusion_matrix
    from tunepipe.models.classifier import load_checkpoint
    from tunepipe.models.inference import pick_device, predict_logits

    runtime.torch_threads(ctx.threads)
    model, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality = meta["label_names"], meta["model_cfg"], meta["modality"]
    rows = read_jsonl(ctx.inputs["test"])
    targets = encode(rows, names, str(ctx.inputs["test"]))
    dataset = encode_rows(modality, rows, None, model_cfg, load_processor(modality, model_cfg))
    logits = predict_logits(model, dataset, ctx.params["evaluate"]["batch_size"], pick_device())
    probs = logits.softmax(dim=-1)
    import torch

    target_tensor = torch.tensor(targets)
    metrics = classification_metrics(probs, target_tensor)
    baseline = read_json(ctx.inputs["baseline"])
    flat = {**metrics, "test_rows": len(rows)} | {f"baseline_{name}": baseline[name] for name in metrics}
    write_json(ctx.outputs["metrics"], flat)
    preds = probs.argmax(dim=-1)
    write_json(ctx.outputs["confusion"], {"labels": names, "matrix": confusion_matrix(preds, target_tensor, len(names))})
    write_csv(
        ctx.outputs["predictions"],
        [
            {"id": row["id"], "label": row["label"], "predicted": names[int(p)], "confidence": round(float(probs[i, p]), 6), "input": row.get("text", row.get("path"))}
            for i, (row, p) in enumerate(zip(rows, preds))
        ],
        ["id", "label", "predicted", "confidence", "input"],
    )
    ctx.log.info("fine-tuned: %s", "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    ctx.log.info("baseline:   %s", "  ".join(f"{k} {baseline[k]:.4f}" for k in metrics))


STAGE = Stage(
    name="evaluate",
    summary="Score the best checkpoint on the test split (torchmetrics) and put the baseline beside it.",
    inputs={"best": "Lightning checkpoint from train", "test": "JSONL test rows", "baseline": "JSON metrics of the baseline"},
    outputs={
        "metrics": "flat JSON (DVC can diff it): accuracy, macro precision/recall/F1, AUROC, and baseline_*",
        "confusion": "JSON: label names and the confusion matrix (rows true, columns predicted)",
        "predictions": "CSV: every test text with its label, prediction and confidence",
    },
    run=run,
    params_help="evaluate.batch_size",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
