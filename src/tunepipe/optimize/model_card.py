"""The model card written beside the deployable ONNX model, and the ratios of each variant to the dense fp32 one."""

from __future__ import annotations

from typing import Any

import torch


def add_ratios(row: dict[str, Any], dense: dict[str, Any]) -> None:
    """In place: size and ONNX Runtime latency of `row` over the dense fp32 variant's (1.0 for dense itself)."""
    row["size_ratio"] = round(row["onnx_bytes"] / dense["onnx_bytes"], 4)
    row["latency_ratio"] = {
        size: round(t["onnxruntime"] / dense["latency_ms"][size]["onnxruntime"], 3)
        for size, t in row["latency_ms"].items()
        if dense["latency_ms"].get(size, {}).get("onnxruntime")
    }
    row["accuracy_delta"] = round(row["test_accuracy"] - dense["test_accuracy"], 6)


def _input_spec(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    dims = ["batch", "sequence"] if tensor.dim() == 2 else ["batch", *tensor.shape[1:]]
    return {"name": name, "dtype": str(tensor.dtype).removeprefix("torch."), "shape": [d if isinstance(d, str) else int(d) for d in dims]}


def preprocessing(modality: str, model_cfg: dict[str, Any]) -> dict[str, Any]:
    if modality == "image":
        size = model_cfg.get("image_size")
        return {
            "modality": "image",
            "steps": [f"decode, convert to RGB, resize to {size}x{size}", "uint8 array in CHW order (the model scales pixels to [-1, 1] itself)"],
            "image_size": size,
        }
    return {
        "modality": "text",
        "steps": ["tokenize with the model's tokenizer (WordPiece)", f"truncate to {model_cfg.get('max_length')} tokens", "pad to the longest row; attention_mask marks real tokens"],
        "tokenizer": model_cfg.get("pretrained"),
        "max_length": model_cfg.get("max_length"),
    }


def build(
    payload: dict[str, Any],
    input_names: list[str],
    sample: dict[str, torch.Tensor],
    deployed: dict[str, Any],
    int8: dict[str, Any],
    dense: dict[str, Any],
    params: dict[str, Any],
    threads: int,
    files: dict[str, str],
) -> dict[str, Any]:
    modality, model_cfg = payload["modality"], payload["model_cfg"]
    task = "image classification" if modality == "image" else "text classification"
    return {
        "model": {
            "file": files["onnx"],
            "format": f"ONNX opset {params['export']['opset']}, fp32",
            "base_model": model_cfg.get("pretrained"),
            "task": task,
            "pruning_level": deployed["pruning_level"],
            "params": deployed["params"],
            "int8_file": files["int8"],
        },
        "labels": list(payload["label_names"]),
        "inputs": [_input_spec(name, sample[name]) for name in input_names],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", len(payload["label_names"])], "note": "softmax for probabilities; argmax indexes `labels`"}],
        "preprocessing": preprocessing(modality, model_cfg),
        "metrics": {
            "split": "test",
            "rows": deployed["rows"],
            "accuracy": deployed["test_accuracy"],
            "dense_accuracy": dense["test_accuracy"],
            "int8_accuracy": int8["test_accuracy"],
            "onnx_vs_pytorch_max_abs_logit_diff": deployed["max_abs_logit_diff"],
            "onnx_vs_pytorch_prediction_agreement": deployed["prediction_agreement"],
        },
        "size_bytes": {"onnx": deployed["onnx_bytes"], "int8": int8["onnx_bytes"], "dense_onnx": dense["onnx_bytes"]},
        "latency_ms": {"threads": threads, "onnxruntime": {size: t["onnxruntime"] for size, t in deployed["latency_ms"].items()}, "eager": {size: t.get("eager") for size, t in deployed["latency_ms"].items()}},
        "params": {"model": model_cfg, "export": params["export"]},
        "intended_use": f"{task.capitalize()} into the labels above, for inputs like the training data (same language/domain, same preprocessing), with ONNX Runtime on CPU.",
        "limits": [
            "Accuracy is measured on a held-out split of the same dataset; other domains may score lower.",
            "Labels outside the list above cannot be predicted; the model always returns one of them.",
            "Text longer than max_length tokens is truncated." if modality == "text" else "Images are resized to a small square; fine detail is lost.",
            "The INT8 file trades some accuracy for size; check its accuracy above before deploying it.",
            "Latency depends on the CPU and thread count; the figures above are from the machine that ran the pipeline.",
        ],
    }
