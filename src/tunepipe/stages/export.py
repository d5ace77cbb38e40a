"""export: ONNX of the dense and the selected pruned model, parity on the whole test split, INT8, variants, model card."""

from __future__ import annotations

from tunepipe.io import read_jsonl, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from tunepipe import runtime
    from tunepipe.data.datamodule import encode_rows, load_processor
    from tunepipe.data.labels import encode
    from tunepipe.models.classifier import load_checkpoint, load_model
    from tunepipe.optimize import model_card
    from tunepipe.optimize.onnx_export import export_onnx, latency, ort_logits, ort_session, parity, require_parity
    from tunepipe.optimize.pruning import count_params
    from tunepipe.optimize.quantization import quantization_mode, quantize_int8

    runtime.torch_threads(ctx.threads)
    cfg = ctx.params["export"]
    model, payload = load_model(ctx.inputs["model"])
    dense, _ = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality = payload["label_names"], payload["model_cfg"], payload["modality"]
    processor = load_processor(modality, model_cfg)
    rows = read_jsonl(ctx.inputs["test"])
    dataset = encode_rows(modality, rows, None, model_cfg, processor)
    targets = np.asarray(encode(rows, names, str(ctx.inputs["test"])))
    sample = dataset.collate([dataset[i] for i in range(min(2, len(dataset)))])
    input_names = list(model.input_names)
    level = payload.get("pruning_level", "dense" if not payload.get("sparsity") else f"unstructured-{payload['sparsity']:.2f}")

    def accuracy(logits: np.ndarray) -> float:
        return float((logits.argmax(1) == targets).mean()) if len(targets) else float("nan")

    def fp32_variant(name: str, module: torch.nn.Module, path: Path) -> tuple[dict, dict]:
        ctx.log.info("%s: exporting to ONNX (opset %d, %s exporter)", name, cfg["opset"], "dynamo" if cfg["dynamo"] else "TorchScript")
        export_onnx(module, path, sample, cfg["opset"], cfg["dynamo"])
        session = ort_session(path, ctx.threads)
        check = parity(module, session, dataset, batch_size=64, keep_logits=True)
        logits = check.pop("logits")
        ctx.log.info("%s: parity on %d test rows: max |logit diff| %.2e, prediction agreement %.4f", name, check["rows"], check["max_abs_logit_diff"], check["prediction_agreement"])
        require_parity(check, cfg["max_abs_logit_diff"], path)
        timings = latency(module, session, dataset, cfg["latency_batch_sizes"], cfg["latency_runs"])
        row = {"variant": name, "precision": "fp32", "params": count_params(module), "onnx_bytes": path.stat().st_size, "test_accuracy": accuracy(logits), **check, "latency_ms": timings}
        return row, {"logits": logits, "session": session}

    with tempfile.TemporaryDirectory() as tmp:
        dense_row, dense_out = fp32_variant("dense-fp32", dense, Path(tmp) / "dense.onnx")
    dense_row["pruning_level"] = "dense"
    pruned_row, pruned_out = fp32_variant("pruned-fp32", model, ctx.outputs["onnx"])
    pruned_row["pruning_level"] = level

    mode = quantization_mode(cfg["quantize"], modality)
    calibration = []
    if mode == "static":
        val_rows = read_jsonl(ctx.inputs["val"])[: cfg["calibration_rows"]]
        val_set = encode_rows(modality, val_rows, None, model_cfg, processor)
        for start in range(0, len(val_set), 32):
            batch = val_set.collate([val_set[i] for i in range(start, min(start + 32, len(val_set)))])
            calibration.append({name: batch[name].numpy() for name in input_names})
    ctx.log.info("int8: %s quantization%s", mode, f" calibrated on {len(val_rows)} validation rows" if mode == "static" else "")
    quant = quantize_int8(ctx.outputs["onnx"], ctx.outputs["int8"], mode, calibration)
    session = ort_session(ctx.outputs["int8"], ctx.threads)
    int8_logits = ort_logits(session, input_names, dataset, 64)
    fp32_logits = pruned_out["logits"]
    int8_row = {
        "variant": "pruned-int8",
        "precision": "int8",
        "pruning_level": level,
        "params": pruned_row["params"],
        "onnx_bytes": ctx.outputs["int8"].stat().st_size,
        "test_accuracy": accuracy(int8_logits),
        "rows": len(dataset),
        "max_abs_logit_diff_vs_fp32": float(np.abs(int8_logits - fp32_logits).max()) if len(dataset) else 0.0,
        "prediction_agreement_vs_fp32": float((int8_logits.argmax(1) == fp32_logits.argmax(1)).mean()) if len(dataset) else 1.0,
        "quantization": quant | ({"calibration_rows": len(val_rows)} if mode == "static" else {}),
        "latency_ms": latency(None, session, dataset, cfg["latency_batch_sizes"], cfg["latency_runs"], input_names),
    }
    if mode == "static":
        int8_row["quantization"]["calibration_split"] = "val"
    variants = [dense_row, pruned_row, int8_row]
    for row in variants:
        model_card.add_ratios(row, dense_row)
        ctx.log.info(
            "%-12s %9d bytes  test acc %.4f  %s", row["variant"], row["onnx_bytes"], row["test_accuracy"],
            "  ".join(f"b{size}: ORT {t['onnxruntime']:.2f} ms" + (f" eager {t['eager']:.2f} ms" if "eager" in t else "") for size, t in row["latency_ms"].items()),
        )

    write_json(
        ctx.outputs["parity"],
        {
            "opset": cfg["opset"],
            "inputs": input_names,
            "exporter": "dynamo" if cfg["dynamo"] else "torchscript",
            "onnx_bytes": pruned_row["onnx_bytes"],
            "sparsity": payload.get("sparsity", 0.0),
            "pruning_level": level,
            "rows": pruned_row["rows"],
            "max_abs_logit_diff": pruned_row["max_abs_logit_diff"],
            "prediction_agreement": pruned_row["prediction_agreement"],
            "threads": ctx.threads,
            "latency_ms": pruned_row["latency_ms"],
        },
    )
    write_json(ctx.outputs["variants"], {"threads": ctx.threads, "latency_runs": cfg["latency_runs"], "selected": "pruned-fp32", "variants": variants})
    card = model_card.build(
        payload=payload, input_names=input_names, sample=sample, deployed=pruned_row, int8=int8_row, dense=dense_row,
        params=ctx.params, threads=ctx.threads, files={"onnx": ctx.outputs["onnx"].name, "int8": ctx.outputs["int8"].name},
    )
    write_json(ctx.outputs["card"], card)


STAGE = Stage(
    name="export",
    summary="Export the dense and the selected pruned model to ONNX, check both against PyTorch on the whole test split, quantize to INT8, measure every variant.",
    inputs={
        "model": "selected model from prune",
        "best": "Lightning checkpoint from train (the dense baseline variant)",
        "val": "JSONL validation rows (static INT8 calibration)",
        "test": "JSONL test rows (parity, accuracy, latency)",
    },
    outputs={
        "onnx": "the deployable ONNX model (selected pruned model, fp32)",
        "int8": "the INT8 ONNX model (onnxruntime.quantization)",
        "parity": "JSON: parity and latency of the deployable model",
        "variants": "JSON: one row per variant (dense fp32, pruned fp32, pruned int8): size, accuracy, latency, ratios",
        "card": "JSON model card of the deployable model",
    },
    run=run,
    params_help="export.opset, export.dynamo, export.latency_batch_sizes, export.latency_runs, export.max_abs_logit_diff, export.quantize, export.calibration_rows",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
