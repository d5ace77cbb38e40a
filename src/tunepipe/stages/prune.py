"""prune: unstructured and/or structured pruning at each level in params; every level evaluated and timed; one selected."""

from __future__ import annotations

from tunepipe.data.labels import encode
from tunepipe.io import read_jsonl, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe import runtime
    from tunepipe.data.datamodule import encode_rows, load_processor
    from tunepipe.evaluation import classification_metrics
    from tunepipe.models.classifier import load_checkpoint, save_model
    from tunepipe.models.inference import model_inputs, pick_device, predict_logits
    from tunepipe.optimize.onnx_export import median_ms
    from tunepipe.optimize import pruning

    runtime.torch_threads(ctx.threads)
    cfg = ctx.params["prune"]
    dense, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality = meta["label_names"], meta["model_cfg"], meta["modality"]
    processor = load_processor(modality, model_cfg)
    device = pick_device()
    splits = {name: read_jsonl(ctx.inputs[name]) for name in ("val", "test")}
    targets = {name: torch.tensor(encode(rows, names, str(ctx.inputs[name]))) for name, rows in splits.items()}
    datasets = {name: encode_rows(modality, rows, None, model_cfg, processor) for name, rows in splits.items()}
    test = datasets["test"]
    one_row = test.collate([test[0]])
    example = test.collate([test[i] for i in range(min(2, len(test)))])

    finetune = None
    if cfg["finetune_steps"] > 0:
        train_rows = read_jsonl(ctx.inputs["train"])
        train_set = encode_rows(modality, train_rows, encode(train_rows, names, str(ctx.inputs["train"])), model_cfg, processor)

        def finetune(model) -> None:
            pruning.finetune_steps(model, train_set, cfg["finetune_steps"], cfg["finetune_lr"], cfg["finetune_batch_size"], ctx.params["seed"])

    def score(model) -> dict[str, float]:
        result = {}
        for name in splits:
            logits = predict_logits(model, datasets[name], ctx.params["evaluate"]["batch_size"], device)
            metrics = classification_metrics(logits.softmax(dim=-1), targets[name])
            result[f"{name}_accuracy"], result[f"{name}_f1_macro"] = metrics["accuracy"], metrics["f1_macro"]
        model.cpu().eval()
        with torch.inference_mode():
            inputs = model_inputs(model, one_row)
            result["latency_ms"] = round(median_ms(lambda: model(**inputs), cfg["latency_runs"]), 3)
        return result

    methods = ["unstructured", "structured"] if cfg["method"] == "both" else [cfg["method"]]
    plan = [("dense", 0.0)] + [(method, ratio) for method in methods for ratio in sorted(cfg["sparsities"])]
    dense_params = pruning.count_params(dense)
    levels, models = [], {}
    for method, ratio in plan:
        if method == "dense":
            model = dense
        elif method == "unstructured":
            model = pruning.magnitude_prune(dense, ratio, finetune)
        else:
            model = pruning.structured_prune(dense, ratio, example, finetune)
        name = pruning.level_name(method, ratio)
        level = {"name": name, "method": method, "sparsity": ratio, **pruning.sparsity_report(model, dense_params), **score(model)}
        level["finetune_steps"] = 0 if method == "dense" else cfg["finetune_steps"]
        levels.append(level)
        models[name] = model
        ctx.log.info(
            "%-18s val acc %.4f  test acc %.4f  params %d (non-zero %d)  eager batch-1 %.2f ms",
            name, level["val_accuracy"], level["test_accuracy"], level["total_params"], level["nonzero_params"], level["latency_ms"],
        )
    selected = pruning.select_level(levels, cfg["max_accuracy_drop"], cfg["select"])
    model = models[selected["name"]].cpu().eval()
    extra = {"structure": pruning.structure(model)} if selected["method"] == "structured" else {}
    save_model(ctx.outputs["model"], model, model_cfg, names, modality=modality, sparsity=selected["sparsity"], pruning_level=selected["name"], **extra)
    write_json(
        ctx.outputs["levels"],
        {
            "method": cfg["method"],
            "select": cfg["select"],
            "max_accuracy_drop": cfg["max_accuracy_drop"],
            "selected": selected["name"],
            "selected_sparsity": selected["sparsity"],
            "selected_method": selected["method"],
            "selection_split": "val",
            "latency_batch_size": 1,
            "threads": ctx.threads,
            "levels": levels,
        },
    )
    ctx.log.info("selected %s (%s within %.3f validation accuracy of dense)", selected["name"], cfg["select"], cfg["max_accuracy_drop"])


STAGE = Stage(
    name="prune",
    summary="Prune the fine-tuned model at each level (unstructured and/or structured), evaluate and time every level, keep the smallest or fastest within the allowed accuracy drop.",
    inputs={
        "best": "Lightning checkpoint from train",
        "train": "JSONL training rows (only read for the recovery fine-tune)",
        "val": "JSONL validation rows (selection)",
        "test": "JSONL test rows (reported)",
    },
    outputs={"model": "the selected model (state dict + shapes + config) for export", "levels": "JSON: every level's params, size, accuracy, latency"},
    run=run,
    params_help="prune.method, prune.sparsities, prune.max_accuracy_drop, prune.select, prune.finetune_*, prune.latency_runs, evaluate.batch_size, seed",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
