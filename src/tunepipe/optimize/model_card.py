"""The model card written beside the deployable ONNX model: what it is, what it takes and returns, how well it does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from tunepipe.tasks import Task


def _input_spec(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    dims = ["batch", "sequence"] if tensor.dim() == 2 else ["batch", *tensor.shape[1:]]
    return {"name": name, "dtype": str(tensor.dtype).removeprefix("torch."), "shape": [d if isinstance(d, str) else int(d) for d in dims]}


def build(
    *,
    model_cfg: dict[str, Any],
    label_names: list[str],
    title: str,
    task: Task,
    preprocessing: dict[str, Any],
    input_limit: str,
    input_names: list[str],
    sample: dict[str, torch.Tensor],
    deployed: dict[str, Any],
    int8: dict[str, Any],
    dense: dict[str, Any],
    export_params: dict[str, Any],
    threads: int,
    files: dict[str, str],
) -> dict[str, Any]:
    """The card of the `deployed` variant. `title` names what the model does ("text multi-label classification");
    `task` gives its output, use and test metric (its level metric: accuracy, f1_micro, r2, under the metric's name
    with `dense_`/`int8_` for those variants); `preprocessing` and `input_limit` are the modality's; `files` names
    the final model files ("onnx", "int8") as a user finds them beside the card."""
    notes, level = task.card_notes(label_names), task.level_metrics[0]
    return {
        "model": {
            "file": files["onnx"],
            "format": f"ONNX opset {export_params['opset']}, fp32",
            "base_model": model_cfg.get("pretrained"),
            "task": title,
            "pruning_level": deployed["pruning_level"],
            "params": deployed["params"],
            "int8_file": files["int8"],
        },
        "labels": list(label_names),
        "inputs": [_input_spec(name, sample[name]) for name in input_names],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", task.output_size(label_names)], "note": notes["output"]}],
        "preprocessing": preprocessing,
        "metrics": {
            "split": "test",
            "rows": deployed["test_rows"],
            level: deployed[f"test_{level}"],
            f"dense_{level}": dense[f"test_{level}"],
            f"int8_{level}": int8[f"test_{level}"],
            "onnx_vs_pytorch_max_abs_logit_diff": deployed["max_abs_logit_diff"],
            "onnx_vs_pytorch_prediction_agreement": deployed["prediction_agreement"],
            "onnx_vs_pytorch_rows": deployed["rows"],
        },
        "size_bytes": {"onnx": deployed["onnx_bytes"], "int8": int8["onnx_bytes"], "dense_onnx": dense["onnx_bytes"]},
        "latency_ms": {"threads": threads, "onnxruntime": {size: t["onnxruntime"] for size, t in deployed["latency_ms"].items()}, "eager": {size: t.get("eager") for size, t in deployed["latency_ms"].items()}},
        "params": {"model": model_cfg, "export": export_params},
        "intended_use": f"{title.capitalize()} {notes['use']}, for inputs like the training data (same language/domain, same preprocessing), with ONNX Runtime on CPU.",
        "limits": [
            "Accuracy is measured on a held-out split of the same dataset; other domains may score lower.",
            notes["limit"],
            input_limit,
            "The INT8 file trades some accuracy for size; check its accuracy above before deploying it.",
            "Latency depends on the CPU and thread count; the figures above are from the machine that ran the pipeline.",
        ],
    }
