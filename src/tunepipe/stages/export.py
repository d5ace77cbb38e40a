"""export: ONNX (dynamic batch and sequence axes), onnx.checker, ONNX Runtime parity on the test set, latency."""

from __future__ import annotations

from tunepipe.io import read_jsonl, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe import runtime
    from tunepipe.data.datamodule import encode_rows, load_processor
    from tunepipe.models.classifier import load_model
    from tunepipe.optimize.onnx_export import export_onnx, latency, ort_session, parity, require_parity

    runtime.torch_threads(ctx.threads)
    cfg = ctx.params["export"]
    model, payload = load_model(ctx.inputs["model"])
    model_cfg, modality = payload["model_cfg"], payload["modality"]
    rows = read_jsonl(ctx.inputs["test"])
    dataset = encode_rows(modality, rows, None, model_cfg, load_processor(modality, model_cfg))
    sample = dataset.collate([dataset[i] for i in range(min(2, len(dataset)))])
    path = ctx.outputs["onnx"]
    ctx.log.info("exporting to ONNX (opset %d, %s exporter)", cfg["opset"], "dynamo" if cfg["dynamo"] else "TorchScript")
    export_onnx(model, path, sample, cfg["opset"], cfg["dynamo"])
    session = ort_session(path, ctx.threads)
    check = parity(model, session, dataset, batch_size=64)
    ctx.log.info("parity on %d test rows: max |logit diff| %.2e, prediction agreement %.4f", check["rows"], check["max_abs_logit_diff"], check["prediction_agreement"])
    require_parity(check, cfg["max_abs_logit_diff"], path)
    timings = latency(model, session, dataset, cfg["latency_batch_sizes"], cfg["latency_runs"])
    for size, row in timings.items():
        ctx.log.info("batch %s: ONNX Runtime %.2f ms, eager %.2f ms (ratio %.2f)", size, row["onnxruntime"], row["eager"], row["ratio"])
    write_json(
        ctx.outputs["parity"],
        {
            "opset": cfg["opset"],
            "inputs": list(model.input_names),
            "exporter": "dynamo" if cfg["dynamo"] else "torchscript",
            "onnx_bytes": path.stat().st_size,
            "sparsity": payload.get("sparsity", 0.0),
            **check,
            "threads": ctx.threads,
            "latency_ms": timings,
        },
    )


STAGE = Stage(
    name="export",
    summary="Export the selected model to ONNX and check it against PyTorch on the whole test split.",
    inputs={"model": "selected model from prune", "test": "JSONL test rows"},
    outputs={"onnx": "the ONNX model (inputs input_ids, attention_mask; output logits)", "parity": "JSON: size, parity, latency"},
    run=run,
    params_help="export.opset, export.dynamo, export.latency_batch_sizes, export.latency_runs, export.max_abs_logit_diff",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
