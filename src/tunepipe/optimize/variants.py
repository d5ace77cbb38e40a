"""Export the dense and the selected pruned model to ONNX, prove each matches PyTorch, quantize the selected one
to INT8 and measure all three: what the export stage computes, without its files."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tunepipe.optimize.pruning import DENSE, PruningLevel

_log = logging.getLogger(__name__)

#: Rows per batch for parity and INT8 logits, and per static-INT8 calibration batch.
PARITY_BATCH_SIZE = 64
CALIBRATION_BATCH_SIZE = 32


@dataclass(frozen=True)
class ExportSettings:
    """The `export` params section."""

    opset: int
    dynamo: bool
    latency_batch_sizes: tuple[int, ...]
    latency_runs: int
    max_abs_logit_diff: float
    quantize: str  # "auto", "dynamic" or "static"
    calibration_rows: int
    fuse: bool

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> ExportSettings:
        return cls(
            opset=section["opset"],
            dynamo=section["dynamo"],
            latency_batch_sizes=tuple(section["latency_batch_sizes"]),
            latency_runs=section["latency_runs"],
            max_abs_logit_diff=section["max_abs_logit_diff"],
            quantize=section["quantize"],
            calibration_rows=section["calibration_rows"],
            fuse=section["fuse"],
        )

    @property
    def exporter(self) -> str:
        return "dynamo" if self.dynamo else "torchscript"


@dataclass(frozen=True)
class Variants:
    """The three measured variants (variants.json's rows) and what the model card needs of the exported graph."""

    dense: dict[str, Any]
    pruned: dict[str, Any]
    int8: dict[str, Any]
    input_names: list[str]
    #: The batch the graph was traced with (the card's input dtypes and shapes).
    sample: dict[str, torch.Tensor]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [self.dense, self.pruned, self.int8]


def add_ratios(row: dict[str, Any], dense: dict[str, Any]) -> None:
    """In place: size and ONNX Runtime latency of `row` over the dense fp32 variant's (1.0 for dense itself)."""
    row["size_ratio"] = round(row["onnx_bytes"] / dense["onnx_bytes"], 4)
    row["latency_ratio"] = {
        size: round(t["onnxruntime"] / dense["latency_ms"][size]["onnxruntime"], 3)
        for size, t in row["latency_ms"].items()
        if dense["latency_ms"].get(size, {}).get("onnxruntime")
    }
    row["accuracy_delta"] = round(row["test_accuracy"] - dense["test_accuracy"], 6)


def calibration_feeds(dataset: Dataset, input_names: list[str], batch_size: int = CALIBRATION_BATCH_SIZE) -> list[dict[str, np.ndarray]]:
    """Static INT8 calibration batches, in row order."""
    feeds = []
    for start in range(0, len(dataset), batch_size):
        batch = dataset.collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        feeds.append({name: batch[name].numpy() for name in input_names})
    return feeds


def export_variants(dense: nn.Module, pruned: nn.Module, level: PruningLevel, test: Dataset, targets: np.ndarray, *,
                    onnx_path: Path, int8_path: Path, settings: ExportSettings, int8_mode: str, calibration: Dataset | None = None,
                    threads: int = 1, log: logging.Logger = _log) -> Variants:
    """Dense fp32 (a temporary file), pruned fp32 (`onnx_path`) and pruned INT8 (`int8_path`), each scored on every
    `test` row. Raises TunepipeError when either fp32 graph's logits differ from PyTorch's by more than
    `settings.max_abs_logit_diff`. `int8_mode` "static" needs `calibration` (validation rows)."""
    from tunepipe.optimize.graph_fusion import exportable_for_fusion, fuse, fusion_target
    from tunepipe.optimize.onnx_export import export_onnx, latency, ort_logits, ort_session, parity, require_parity
    from tunepipe.optimize.pruning import count_params
    from tunepipe.optimize.quantization import quantize_int8

    sample = test.collate([test[i] for i in range(min(2, len(test)))])
    input_names = list(pruned.input_names)

    def accuracy(logits: np.ndarray) -> float:
        return float((logits.argmax(1) == targets).mean()) if len(targets) else float("nan")

    def fp32_variant(name: str, module: nn.Module, path: Path) -> tuple[dict[str, Any], np.ndarray]:
        spec = fusion_target(module) if settings.fuse else None
        log.info("%s: exporting to ONNX (opset %d, %s exporter)", name, settings.opset, "dynamo" if settings.dynamo else "TorchScript")
        export_onnx(exportable_for_fusion(module) if spec else module, path, sample, settings.opset, settings.dynamo)
        fusion, session, check = None, None, None
        if spec is not None:
            fused_path = path.with_name(f"{path.name}.fused")
            operators = fuse(path, fused_path, spec)
            session = ort_session(fused_path, threads)
            check = parity(module, session, test, batch_size=PARITY_BATCH_SIZE, keep_logits=True)
            if check["max_abs_logit_diff"] <= settings.max_abs_logit_diff:
                os.replace(fused_path, path)
                session = ort_session(path, threads)
                fusion = {"applied": True, "operators": operators}
                log.info("%s: fused %s", name, ", ".join(f"{kind} x{n}" for kind, n in operators.items()) or "nothing")
            else:
                fused_path.unlink()
                reason = f"the fused graph's logits differ from PyTorch's by {check['max_abs_logit_diff']:.2e} (over {settings.max_abs_logit_diff})"
                fusion = {"applied": False, "operators": operators, "reason": f"{reason}: exported unfused"}
                log.warning("%s: %s; exporting the unfused graph", name, reason)
                session, check = None, None
        if check is None:
            session = ort_session(path, threads)
            check = parity(module, session, test, batch_size=PARITY_BATCH_SIZE, keep_logits=True)
        logits = check.pop("logits")
        log.info("%s: parity on %d test rows: max |logit diff| %.2e, prediction agreement %.4f", name, check["rows"], check["max_abs_logit_diff"], check["prediction_agreement"])
        require_parity(check, settings.max_abs_logit_diff, path)
        timings = latency(module, session, test, settings.latency_batch_sizes, settings.latency_runs)
        row = {"variant": name, "precision": "fp32", "params": count_params(module), "onnx_bytes": path.stat().st_size, "test_accuracy": accuracy(logits), **check,
               "graph_fusion": fusion, "latency_ms": timings}
        return row, logits

    with tempfile.TemporaryDirectory() as tmp:
        dense_row, _ = fp32_variant("dense-fp32", dense, Path(tmp) / "dense.onnx")
    dense_row["pruning_level"] = DENSE.name
    pruned_row, fp32_logits = fp32_variant("pruned-fp32", pruned, onnx_path)
    pruned_row["pruning_level"] = level.name

    static = int8_mode == "static"
    if static and calibration is None:
        raise ValueError("static INT8 quantization needs calibration rows")
    feeds = calibration_feeds(calibration, input_names) if static else []
    log.info("int8: %s quantization%s", int8_mode, f" calibrated on {len(calibration)} validation rows" if static else "")
    quant = quantize_int8(onnx_path, int8_path, int8_mode, feeds)
    session = ort_session(int8_path, threads)
    int8_logits = ort_logits(session, input_names, test, PARITY_BATCH_SIZE)
    int8_row = {
        "variant": "pruned-int8",
        "precision": "int8",
        "pruning_level": level.name,
        "params": pruned_row["params"],
        "onnx_bytes": int8_path.stat().st_size,
        "test_accuracy": accuracy(int8_logits),
        "rows": len(test),
        "max_abs_logit_diff_vs_fp32": float(np.abs(int8_logits - fp32_logits).max()) if len(test) else 0.0,
        "prediction_agreement_vs_fp32": float((int8_logits.argmax(1) == fp32_logits.argmax(1)).mean()) if len(test) else 1.0,
        "quantization": quant | ({"calibration_rows": len(calibration), "calibration_split": "val"} if static else {}),
        "latency_ms": latency(None, session, test, settings.latency_batch_sizes, settings.latency_runs, input_names),
    }
    variants = Variants(dense=dense_row, pruned=pruned_row, int8=int8_row, input_names=input_names, sample=sample)
    for row in variants.rows:
        add_ratios(row, dense_row)
        log.info(
            "%-12s %9d bytes  test acc %.4f  %s", row["variant"], row["onnx_bytes"], row["test_accuracy"],
            "  ".join(f"b{size}: ORT {t['onnxruntime']:.2f} ms" + (f" eager {t['eager']:.2f} ms" if "eager" in t else "") for size, t in row["latency_ms"].items()),
        )
    return variants


def parity_record(variants: Variants, level: PruningLevel, settings: ExportSettings, threads: int) -> dict[str, Any]:
    """results/export/parity.json, with its verdict: `export_variants` raised unless parity held, so it always passed."""
    pruned = variants.pruned
    return {
        "opset": settings.opset,
        "inputs": variants.input_names,
        "exporter": settings.exporter,
        "onnx_bytes": pruned["onnx_bytes"],
        "sparsity": level.sparsity,
        "pruning_level": level.name,
        "rows": pruned["rows"],
        "max_abs_logit_diff": pruned["max_abs_logit_diff"],
        "prediction_agreement": pruned["prediction_agreement"],
        "tolerance": settings.max_abs_logit_diff,
        "passed": True,
        "graph_fusion": pruned["graph_fusion"],
        "threads": threads,
        "latency_ms": pruned["latency_ms"],
    }


def variants_record(variants: Variants, settings: ExportSettings, threads: int) -> dict[str, Any]:
    """results/export/variants.json: one row per variant; the pruned fp32 model is the deployable one."""
    return {"threads": threads, "latency_runs": settings.latency_runs, "selected": "pruned-fp32", "variants": variants.rows}
