"""Export a TextClassifier to ONNX with dynamic batch and sequence axes, then prove it computes the same thing."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunepipe.data.datamodule import BucketBatchSampler, EncodedTexts, pad_batch
from tunepipe.errors import TunepipeError

INPUT_NAMES = ["input_ids", "attention_mask"]
DYNAMIC_AXES = {
    "input_ids": {0: "batch", 1: "sequence"},
    "attention_mask": {0: "batch", 1: "sequence"},
    "logits": {0: "batch"},
}


def export_onnx(model: torch.nn.Module, path: Path, sample: dict[str, torch.Tensor], opset: int, dynamo: bool) -> None:
    import onnx

    model = model.eval().cpu()
    args = (sample["input_ids"], sample["attention_mask"])
    kwargs: dict[str, Any] = {"input_names": INPUT_NAMES, "output_names": ["logits"], "opset_version": opset, "dynamo": dynamo}
    if dynamo:
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        kwargs["dynamic_shapes"] = ({0: batch, 1: sequence}, {0: batch, 1: sequence})
    else:
        kwargs["dynamic_axes"] = DYNAMIC_AXES
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Tracing notes about Python-level branches in transformers; parity() below checks the graph for real.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        torch.onnx.export(model, args, str(path), **kwargs)
    onnx.checker.check_model(str(path), full_check=True)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feeds(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: batch[name].numpy() for name in INPUT_NAMES}


def parity(model: torch.nn.Module, session, dataset: EncodedTexts, batch_size: int) -> dict[str, Any]:
    """Run every text through both; the largest logit difference and how often the predicted class agrees."""
    max_diff, agree, total = 0.0, 0, 0
    model = model.eval().cpu()
    with torch.inference_mode():
        for indices in BucketBatchSampler(dataset.lengths(), batch_size, seed=0, shuffle=False):
            batch = pad_batch([dataset[i] for i in indices], dataset.pad_id)
            eager = model(batch["input_ids"], batch["attention_mask"]).numpy()
            onnx_out = session.run(["logits"], _feeds(batch))[0]
            max_diff = max(max_diff, float(np.abs(eager - onnx_out).max()))
            agree += int((eager.argmax(1) == onnx_out.argmax(1)).sum())
            total += len(indices)
    return {"rows": total, "max_abs_logit_diff": max_diff, "prediction_agreement": agree / total if total else 1.0}


def median_ms(fn: Callable[[], Any], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency(model: torch.nn.Module, session, dataset: EncodedTexts, batch_sizes: Sequence[int], runs: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per batch, ONNX Runtime vs eager PyTorch, on real texts of the test split."""
    result = {}
    model = model.eval().cpu()
    for size in batch_sizes:
        items = [dataset[i % len(dataset)] for i in range(size)]
        batch = pad_batch(items, dataset.pad_id)
        feeds = _feeds(batch)
        with torch.inference_mode():
            eager_ms = median_ms(lambda: model(batch["input_ids"], batch["attention_mask"]), runs)
        ort_ms = median_ms(lambda: session.run(["logits"], feeds), runs)
        result[str(size)] = {"onnxruntime": round(ort_ms, 3), "eager": round(eager_ms, 3), "ratio": round(ort_ms / eager_ms, 3)}
    return result


def require_parity(report: dict[str, Any], tolerance: float, path: Path) -> None:
    if report["max_abs_logit_diff"] > tolerance:
        raise TunepipeError(
            f"{path}: ONNX Runtime logits differ from PyTorch by {report['max_abs_logit_diff']:.3g} "
            f"(allowed: export.max_abs_logit_diff = {tolerance}). Try another export.opset or export.dynamo."
        )
