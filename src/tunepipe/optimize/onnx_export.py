"""Export a classifier to ONNX with dynamic batch (and sequence) axes, then prove it computes the same thing."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch.utils.data import Dataset

from tunepipe.data.datamodule import BucketBatchSampler
from tunepipe.errors import TunepipeError
from tunepipe.io import external_data_name
from tunepipe.models.inference import model_inputs


def dynamic_axes(sample: dict[str, torch.Tensor], input_names: Sequence[str]) -> dict[str, dict[int, str]]:
    """Batch is dynamic for every input; token inputs (2-D) also get a dynamic sequence axis."""
    axes = {name: ({0: "batch", 1: "sequence"} if sample[name].dim() == 2 else {0: "batch"}) for name in input_names}
    axes["logits"] = {0: "batch"}
    return axes


#: Above this many bytes of weights a model is exported with its tensors in one external data file: a protobuf (one
#: .onnx file) cannot exceed 2 GB.
EXTERNAL_DATA_ABOVE = 2 * 1024**3 - 64 * 1024**2


def export_onnx(model: torch.nn.Module, path: Path, sample: dict[str, torch.Tensor], opset: int, dynamo: bool,
                external_data_above: int = EXTERNAL_DATA_ABOVE) -> None:
    """`model` as ONNX at `path`; a model whose weights exceed `external_data_above` bytes keeps them in
    `external_data_name(path)` beside it (ONNX Runtime finds it there; bundles copy it)."""
    import tempfile

    import onnx

    model = model.eval().cpu()
    weight_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    if weight_bytes > external_data_above:
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:  # the exporter's own layout: a file per tensor
            export_onnx(model, Path(scratch) / "model.onnx", sample, opset, dynamo, external_data_above=2**62)
            proto = onnx.load(str(Path(scratch) / "model.onnx"), load_external_data=True)
        (path.parent / external_data_name(path)).unlink(missing_ok=True)
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=external_data_name(path),
                        size_threshold=1024)
        onnx.checker.check_model(str(path), full_check=True)
        return
    names = list(model.input_names)
    args = tuple(sample[name] for name in names)
    axes = dynamic_axes(sample, names)
    kwargs: dict[str, Any] = {"input_names": names, "output_names": ["logits"], "opset_version": opset, "dynamo": dynamo}
    if dynamo:
        dims = {"batch": torch.export.Dim("batch"), "sequence": torch.export.Dim("sequence")}
        kwargs["dynamic_shapes"] = tuple({axis: dims[label] for axis, label in axes[name].items()} for name in names)
    else:
        kwargs["dynamic_axes"] = axes
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Tracing notes about Python-level branches in transformers; parity() below checks the graph for real.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        warnings.filterwarnings("ignore", message=".*Constant folding.*")  # Slice with steps != 1 (EfficientNet padding)
        torch.onnx.export(model, args, str(path), **kwargs)
    onnx.checker.check_model(str(path), full_check=True)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Its pool's threads sleep while they wait, as torch's do (tunepipe.runtime.passive_thread_pools): spinning
    # threads stall every run on a machine where another process holds a core.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feeds(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: tensor.numpy() for name, tensor in model_inputs(model, batch).items()}


def ort_logits(session, input_names: Sequence[str], dataset: Dataset, batch_size: int) -> np.ndarray:
    """ONNX Runtime logits for every row, in row order."""
    out = None
    for indices in BucketBatchSampler(dataset.lengths(), batch_size, seed=0, shuffle=False):
        batch = dataset.collate([dataset[i] for i in indices])
        logits = session.run(["logits"], {name: batch[name].numpy() for name in input_names})[0]
        out = np.empty((len(dataset), logits.shape[1]), dtype=np.float32) if out is None else out
        out[indices] = logits
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def argmax_agreement(reference: np.ndarray, logits: np.ndarray) -> float:
    """The share of rows whose largest logit is in the same column (1.0 for no rows): one label per row's agreement."""
    return float((reference.argmax(1) == logits.argmax(1)).mean()) if len(reference) else 1.0


def parity(model: torch.nn.Module, session, dataset: Dataset, batch_size: int, keep_logits: bool = False,
           agreement: Callable[[np.ndarray, np.ndarray], float] = argmax_agreement) -> dict[str, Any]:
    """Run every row through both; the largest logit difference and how often they give the same answer
    (`agreement(eager, onnx)` on all rows' logits: the task's `prediction_agreement`; by default the same argmax).

    With `keep_logits`, ONNX Runtime's logits (row order) come back under "logits" (not JSON: pop it).
    """
    max_diff = 0.0
    model = model.eval().cpu()
    eager_all, onnx_all = None, None
    with torch.inference_mode():
        for indices in BucketBatchSampler(dataset.lengths(), batch_size, seed=0, shuffle=False):
            batch = dataset.collate([dataset[i] for i in indices])
            eager = model(**model_inputs(model, batch)).numpy()
            onnx_out = session.run(["logits"], _feeds(model, batch))[0]
            max_diff = max(max_diff, float(np.abs(eager - onnx_out).max()))
            if eager_all is None:
                eager_all = np.empty((len(dataset), eager.shape[1]), dtype=np.float32)
                onnx_all = np.empty((len(dataset), onnx_out.shape[1]), dtype=np.float32)
            eager_all[indices], onnx_all[indices] = eager, onnx_out
    total = len(dataset) if eager_all is not None else 0
    report: dict[str, Any] = {"rows": total, "max_abs_logit_diff": max_diff,
                              "prediction_agreement": agreement(eager_all, onnx_all) if total else 1.0}
    if keep_logits:
        report["logits"] = onnx_all
    return report


def median_ms(fn: Callable[[], Any], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency(model: torch.nn.Module | None, session, dataset: Dataset, batch_sizes: Sequence[int], runs: int, input_names: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Median milliseconds per batch, ONNX Runtime vs eager PyTorch (`model` None: ONNX Runtime only), on real test rows."""
    result = {}
    names = list(input_names or model.input_names)
    if model is not None:
        model = model.eval().cpu()
    for size in batch_sizes:
        batch = dataset.collate([dataset[i % len(dataset)] for i in range(size)])
        feeds = {name: batch[name].numpy() for name in names}
        row: dict[str, float] = {"onnxruntime": round(median_ms(lambda: session.run(["logits"], feeds), runs), 3)}
        if model is not None:
            inputs = {name: batch[name] for name in names}
            with torch.inference_mode():
                row["eager"] = round(median_ms(lambda: model(**inputs), runs), 3)
            row["ratio"] = round(row["onnxruntime"] / row["eager"], 3)
        result[str(size)] = row
    return result


def require_parity(report: dict[str, Any], tolerance: float, path: Path) -> None:
    if report["max_abs_logit_diff"] > tolerance:
        raise TunepipeError(
            f"{path}: ONNX Runtime logits differ from PyTorch by {report['max_abs_logit_diff']:.3g} "
            f"(allowed: export.max_abs_logit_diff = {tolerance}). Try another export.opset or export.dynamo."
        )
