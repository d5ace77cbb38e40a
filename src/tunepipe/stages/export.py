"""export: ONNX of the dense and the selected pruned model, parity on the test split (its first export.parity_rows rows),
INT8 choices (one shipped, picked on val), variants, model card, deployable bundle."""

from __future__ import annotations

from tunepipe.io import read_json, read_rows, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import DEFAULT, get_task


def run(ctx: StageContext) -> None:
    import numpy as np

    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint, load_model
    from tunepipe.optimize import bundle, model_card
    from tunepipe.optimize.pruning import PruningLevel
    from tunepipe.optimize.quantization import int8_choices
    from tunepipe.optimize.variants import ExportSettings, export_variants, parity_record, variants_record

    runtime.torch_threads(ctx.threads)
    settings = ExportSettings.from_params(ctx.params["export"])
    model, payload = load_model(ctx.inputs["model"])
    dense, _ = load_checkpoint(ctx.inputs["best"])
    names, model_cfg = payload["label_names"], payload["model_cfg"]
    modality, task = get_modality(payload["modality"]), get_task(payload.get("task", DEFAULT))
    decision = read_json(ctx.inputs["decision"]) if "decision" in ctx.inputs else {}
    # how outputs become answers (multi_label's thresholds): decision.json less its echo of the task and the labels
    decision = {key: value for key, value in decision.items() if key not in ("task", "labels")}
    stats = payload.get("target_stats", {})
    level = PruningLevel.from_dict(payload["pruning_level"])
    processor = modality.load_processor(model_cfg)
    rows = read_rows(ctx.inputs["test"])
    test = modality.encode(rows, None, model_cfg, processor)
    targets = np.asarray(task.encode(rows, names, str(ctx.inputs["test"])))
    choices = int8_choices(settings.quantize, modality.default_quantization)
    val_rows = read_rows(ctx.inputs["val"])
    val = modality.encode(val_rows, None, model_cfg, processor)
    val_targets = np.asarray(task.encode(val_rows, names, str(ctx.inputs["val"])))

    variants = export_variants(dense, model, level, test, targets, onnx_path=ctx.outputs["onnx"], int8_path=ctx.outputs["int8"],
                               settings=settings, int8_choices=choices, val=val, val_targets=val_targets, threads=ctx.threads, log=ctx.log,
                               task=task, names=names, decision=decision, target_stats=stats)
    write_json(ctx.outputs["parity"], parity_record(variants, level, settings, ctx.threads))
    write_json(ctx.outputs["variants"], variants_record(variants, settings, ctx.threads))
    card = model_card.build(
        model_cfg=model_cfg, label_names=names, title=f"{modality.name} {task.title}", task=task, preprocessing=modality.preprocessing(model_cfg), input_limit=modality.input_limit(model_cfg),
        input_names=variants.input_names, sample=variants.sample, deployed=variants.pruned, int8=variants.int8, dense=variants.dense,
        export_params=ctx.params["export"], threads=ctx.threads, files={"onnx": ctx.final["onnx"].name, "int8": ctx.final["int8"].name},
    )
    write_json(ctx.outputs["card"], card)
    spec = bundle.runtime_spec(modality.name, model_cfg, processor, ctx.outputs["bundle"])
    manifest = bundle.write_bundle(ctx.outputs["bundle"], onnx=ctx.outputs["onnx"], int8=ctx.outputs["int8"], card=card, modality=modality.name,
                                   input_names=variants.input_names, runtime_spec=spec, test_labels=[row["label"] for row in rows],
                                   task={"type": task.name, "decision": decision, "target_stats": stats})
    ctx.log.info("bundle %s (version %s): %s", ctx.final["bundle"], manifest["version"], ", ".join(manifest["files"]))


STAGE = Stage(
    name="export",
    summary="Export the dense and the selected pruned model to ONNX, check both against PyTorch on the test split (up to export.parity_rows rows), quantize to INT8 by each choice and ship the best on val, measure every variant.",
    inputs={
        "model": "selected model from prune",
        "best": "Lightning checkpoint from train (the dense baseline variant)",
        "val": "JSONL validation rows (INT8 calibration, and the choice of the shipped INT8 model)",
        "test": "JSONL test rows (parity, accuracy, latency)",
        "decision": "optional: results/evaluate/decision.json (how outputs become answers: multi_label's thresholds), copied into the bundle",
    },
    optional=frozenset({"decision"}),
    outputs={
        "onnx": "the deployable ONNX model (selected pruned model, fp32)",
        "int8": "the INT8 ONNX model (onnxruntime.quantization): the INT8 choice with the best validation accuracy within the size bound",
        "parity": "JSON: parity and latency of the deployable model",
        "variants": "JSON: one row per variant (dense fp32, pruned fp32, one per INT8 choice tried): size, accuracy, latency, ratios, the INT8 selected",
        "card": "JSON model card of the deployable model",
        "bundle": "folder: everything inference needs (models, tokenizer or image spec, labels, card, monitoring data, bundle.json)",
    },
    run=run,
    params_help="export.opset, export.dynamo, export.latency_batch_sizes, export.latency_runs, export.max_abs_logit_diff, export.parity_rows, export.quantize, "
    "export.calibration_rows, export.int8_max_size_ratio",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
