"""prune: global magnitude pruning at each sparsity in params; every level evaluated; one selected for export."""

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
    from tunepipe.models.inference import pick_device, predict_logits
    from tunepipe.optimize.pruning import magnitude_prune, select_level, sparsity_report

    runtime.torch_threads(ctx.threads)
    cfg = ctx.params["prune"]
    dense, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality = meta["label_names"], meta["model_cfg"], meta["modality"]
    processor = load_processor(modality, model_cfg)
    device = pick_device()
    splits = {name: read_jsonl(ctx.inputs[name]) for name in ("val", "test")}
    targets = {name: torch.tensor(encode(rows, names, str(ctx.inputs[name]))) for name, rows in splits.items()}
    datasets = {name: encode_rows(modality, rows, None, model_cfg, processor) for name, rows in splits.items()}

    def score(model) -> dict[str, float]:
        result = {}
        for name in splits:
            logits = predict_logits(model, datasets[name], ctx.params["evaluate"]["batch_size"], device)
            metrics = classification_metrics(logits.softmax(dim=-1), targets[name])
            result[f"{name}_accuracy"], result[f"{name}_f1_macro"] = metrics["accuracy"], metrics["f1_macro"]
        return result

    levels, models = [], {}
    for sparsity in [0.0, *sorted(cfg["sparsities"])]:
        model = dense if sparsity == 0.0 else magnitude_prune(dense, sparsity)
        level = {"sparsity": sparsity, **sparsity_report(model), **score(model)}
        levels.append(level)
        models[sparsity] = model
        ctx.log.info("sparsity %.2f: val accuracy %.4f  test accuracy %.4f  non-zero params %d", sparsity, level["val_accuracy"], level["test_accuracy"], level["nonzero_params"])
    selected = select_level(levels, cfg["max_accuracy_drop"])
    save_model(ctx.outputs["model"], models[selected].cpu(), model_cfg, names, modality=modality, sparsity=selected)
    write_json(ctx.outputs["levels"], {"max_accuracy_drop": cfg["max_accuracy_drop"], "selected_sparsity": selected, "selection_split": "val", "levels": levels})
    ctx.log.info("selected sparsity %.2f (validation accuracy within %.3f of dense)", selected, cfg["max_accuracy_drop"])


STAGE = Stage(
    name="prune",
    summary="Prune the fine-tuned model at each sparsity, evaluate every level, keep the sparsest within the allowed accuracy drop.",
    inputs={"best": "Lightning checkpoint from train", "val": "JSONL validation rows (selection)", "test": "JSONL test rows (reported)"},
    outputs={"model": "the selected model (state dict + config) for export", "levels": "JSON: every level's sparsity, params and accuracy"},
    run=run,
    params_help="prune.sparsities, prune.max_accuracy_drop, evaluate.batch_size",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
