"""Export the dense and the selected pruned model to ONNX, prove each matches PyTorch, quantize the selected one
to INT8 by every choice asked for, pick the shipped INT8 on the validation split, and measure them all: what the
export stage computes, without its files."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tunepipe.errors import TunepipeError
from tunepipe.optimize.pruning import DENSE, PruningLevel
from tunepipe.optimize.quantization import Int8Choice
from tunepipe.tasks import DEFAULT, Task, get_task

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
    quantize: str | tuple[str, ...]  # "auto", one INT8 choice, or several (tunepipe.optimize.quantization.CHOICES)
    calibration_rows: int
    fuse: bool
    int8_max_size_ratio: float
    #: Test rows the parity check runs through both PyTorch and ONNX Runtime (the first ones); None: every test row.
    parity_rows: int | None

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> ExportSettings:
        return cls(
            opset=section["opset"],
            dynamo=section["dynamo"],
            latency_batch_sizes=tuple(section["latency_batch_sizes"]),
            latency_runs=section["latency_runs"],
            max_abs_logit_diff=section["max_abs_logit_diff"],
            quantize=section["quantize"] if isinstance(section["quantize"], str) else tuple(section["quantize"]),
            calibration_rows=section["calibration_rows"],
            fuse=section["fuse"],
            int8_max_size_ratio=section["int8_max_size_ratio"],
            parity_rows=section["parity_rows"],
        )

    @property
    def exporter(self) -> str:
        return "dynamo" if self.dynamo else "torchscript"


@dataclass(frozen=True)
class Variants:
    """The measured variants (variants.json's rows: dense fp32, pruned fp32, one per INT8 choice tried) and what the
    model card needs of the exported graph."""

    dense: dict[str, Any]
    pruned: dict[str, Any]
    int8_rows: list[dict[str, Any]]
    #: The INT8 variant shipped as model.int8.onnx (`select_int8`).
    int8_selected: str
    input_names: list[str]
    #: The batch the graph was traced with (the card's input dtypes and shapes).
    sample: dict[str, torch.Tensor]
    #: INT8 choices onnxruntime could not quantize, with the error.
    int8_failed: dict[str, str] = field(default_factory=dict)
    #: What `test_<metric>`/`val_<metric>` hold: the task's first level metric (single_label: accuracy).
    metric: str = "accuracy"

    @property
    def int8(self) -> dict[str, Any]:
        return next(row for row in self.int8_rows if row["variant"] == self.int8_selected)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [self.dense, self.pruned, *self.int8_rows]


def add_ratios(row: dict[str, Any], dense: dict[str, Any], metric: str = "accuracy") -> None:
    """In place: size and ONNX Runtime latency of `row` over the dense fp32 variant's (1.0 for dense itself), and its
    test `metric` minus dense's (`<metric>_delta`)."""
    row["size_ratio"] = round(row["onnx_bytes"] / dense["onnx_bytes"], 4)
    row["latency_ratio"] = {
        size: round(t["onnxruntime"] / dense["latency_ms"][size]["onnxruntime"], 3)
        for size, t in row["latency_ms"].items()
        if dense["latency_ms"].get(size, {}).get("onnxruntime")
    }
    row[f"{metric}_delta"] = round(row[f"test_{metric}"] - dense[f"test_{metric}"], 6)


@dataclass(frozen=True)
class VariantScoring:
    """How an exported variant's raw logits are scored and compared, by the task: its first level metric
    (`Task.variant_score`) and the share of rows answered alike (`Task.prediction_agreement`)."""

    task: Task
    names: list[str]
    stats: Mapping[str, float] = field(default_factory=dict)
    decision: Mapping[str, Any] | None = None

    @property
    def metric(self) -> str:
        return self.task.level_metrics[0]

    def score(self, logits: np.ndarray, targets: np.ndarray) -> float:
        return self.task.variant_score(logits, targets, self.names, dict(self.stats), dict(self.decision or {}))

    def agreement(self, reference: np.ndarray, logits: np.ndarray) -> float:
        return self.task.prediction_agreement(reference, logits, self.names, dict(self.stats), dict(self.decision or {}))


class FirstRows(Dataset):
    """The first `count` rows of a model-input dataset (its `collate` and `lengths` too): what the parity check runs."""

    def __init__(self, dataset: Dataset, count: int) -> None:
        self.dataset, self.count = dataset, min(count, len(dataset))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if not 0 <= index < self.count:
            raise IndexError(f"row {index} of {self.count}")
        return self.dataset[index]

    def lengths(self):
        return self.dataset.lengths()[: self.count]

    def collate(self, items):
        return self.dataset.collate(items)


def parity_rows(test: Dataset, cap: int | None) -> Dataset:
    """The test rows the parity check compares: all of them, or the first `cap` (export.parity_rows)."""
    return test if cap is None or len(test) <= cap else FirstRows(test, cap)


def calibration_feeds(dataset: Dataset, input_names: list[str], batch_size: int = CALIBRATION_BATCH_SIZE, rows: int | None = None) -> list[dict[str, np.ndarray]]:
    """INT8 calibration batches of the first `rows` rows (all by default), in row order, all of one shape (texts
    padded to the longest of them): the histogram calibrators (percentile, entropy) stack every batch."""
    end = len(dataset) if rows is None else min(rows, len(dataset))
    if not end:
        return []
    batch = dataset.collate([dataset[i] for i in range(end)])
    return [{name: batch[name][start : start + batch_size].numpy() for name in input_names} for start in range(0, end, batch_size)]


def export_variants(dense: nn.Module, pruned: nn.Module, level: PruningLevel, test: Dataset, targets: np.ndarray, *,
                    onnx_path: Path, int8_path: Path, settings: ExportSettings, int8_choices: Sequence[Int8Choice],
                    val: Dataset, val_targets: np.ndarray, threads: int = 1, log: logging.Logger = _log, task: Task | None = None,
                    names: Sequence[str] | None = None, decision: Mapping[str, Any] | None = None,
                    target_stats: Mapping[str, float] | None = None) -> Variants:
    """Dense fp32 (a temporary file), pruned fp32 (`onnx_path`) and one pruned INT8 per choice in `int8_choices`,
    each scored on every `val` and `test` row; the INT8 choice `select_int8` picks on `val` is written to
    `int8_path`. Raises TunepipeError when either fp32 graph's logits differ from PyTorch's by more than
    `settings.max_abs_logit_diff` on the test rows the parity check compares (the first `settings.parity_rows`, or
    all; the fp32 scores are ONNX Runtime's on every test row either way). Static choices and `dynamic-mixed` calibrate on the first
    `settings.calibration_rows` validation rows.

    The scores and agreements follow the task (all four default to today's one-label-per-row behaviour):
    `task` (tunepipe.tasks; default single_label) and its `targets`/`val_targets` as `task.encode` gives them;
    `names` the model's output names (label_names; default one per output); `decision` evaluate's decision.json
    (multi_label's thresholds; default 0.5); `target_stats` the checkpoint's (regression's mean and std). Each row
    then holds `test_<m>`/`val_<m>` for m = `task.level_metrics[0]` (single_label: `test_accuracy`, `val_accuracy`),
    `<m>_delta` against dense fp32, and the INT8 rows `prediction_agreement_vs_fp32` by `task.prediction_agreement`."""
    from tunepipe.optimize.graph_fusion import exportable_for_fusion, fuse, fusion_target
    from tunepipe.optimize.onnx_export import export_onnx, latency, ort_logits, ort_session, parity, require_parity
    from tunepipe.optimize.pruning import count_params

    sample = test.collate([test[i] for i in range(min(2, len(test)))])
    input_names = list(pruned.input_names)
    names = list(names) if names is not None else [str(i) for i in range(pruned.head.out_features)]
    scoring = VariantScoring(task or get_task(DEFAULT), names, target_stats or {}, decision)
    metric = scoring.metric
    compared = parity_rows(test, settings.parity_rows)

    def fp32_variant(name: str, module: nn.Module, path: Path) -> tuple[dict[str, Any], np.ndarray]:
        spec = fusion_target(module) if settings.fuse else None
        log.info("%s: exporting to ONNX (opset %d, %s exporter)", name, settings.opset, "dynamo" if settings.dynamo else "TorchScript")
        export_onnx(exportable_for_fusion(module) if spec else module, path, sample, settings.opset, settings.dynamo)
        fusion, session, check = None, None, None
        if spec is not None:
            fused_path = path.with_name(f"{path.name}.fused")
            operators = fuse(path, fused_path, spec)
            session = ort_session(fused_path, threads)
            check = parity(module, session, compared, batch_size=PARITY_BATCH_SIZE, keep_logits=True, agreement=scoring.agreement)
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
            check = parity(module, session, compared, batch_size=PARITY_BATCH_SIZE, keep_logits=True, agreement=scoring.agreement)
        logits = check.pop("logits")
        log.info("%s: parity on %d of %d test rows: max |logit diff| %.2e, prediction agreement %.4f", name, check["rows"], len(test),
                 check["max_abs_logit_diff"], check["prediction_agreement"])
        require_parity(check, settings.max_abs_logit_diff, path)
        if compared is not test:  # the check compared the first rows only; the variant is scored on every test row
            logits = ort_logits(session, list(module.input_names), test, PARITY_BATCH_SIZE)
        timings = latency(module, session, test, settings.latency_batch_sizes, settings.latency_runs)
        row = {"variant": name, "precision": "fp32", "params": count_params(module), "onnx_bytes": path.stat().st_size, f"test_{metric}": scoring.score(logits, targets), **check,
               "test_rows": len(test), "graph_fusion": fusion, "latency_ms": timings}
        return row, logits

    with tempfile.TemporaryDirectory() as tmp:
        dense_row, _ = fp32_variant("dense-fp32", dense, Path(tmp) / "dense.onnx")
    dense_row["pruning_level"] = DENSE.name
    pruned_row, fp32_logits = fp32_variant("pruned-fp32", pruned, onnx_path)
    pruned_row["pruning_level"] = level.name
    pruned_row[f"val_{metric}"] = scoring.score(ort_logits(ort_session(onnx_path, threads), input_names, val, PARITY_BATCH_SIZE), val_targets)
    pruned_row["val_rows"] = len(val)

    int8_rows, failed = int8_variants(onnx_path, int8_path, pruned_row, fp32_logits, test, targets, val, val_targets, input_names,
                                      settings=settings, choices=int8_choices, threads=threads, log=log, scoring=scoring)
    variants = Variants(dense=dense_row, pruned=pruned_row, int8_rows=int8_rows, int8_selected=next(r["variant"] for r in int8_rows if r["selected"]),
                        input_names=input_names, sample=sample, int8_failed=failed, metric=metric)
    label = metric.replace("accuracy", "acc")
    for row in variants.rows:
        add_ratios(row, dense_row, metric)
        log.info(
            "%-26s %9d bytes  %s test %s %.4f  %s", row["variant"], row["onnx_bytes"], f"val {label} {row[f'val_{metric}']:.4f} " if f"val_{metric}" in row else "",
            label, row[f"test_{metric}"],
            "  ".join(f"b{size}: ORT {t['onnxruntime']:.2f} ms" + (f" eager {t['eager']:.2f} ms" if "eager" in t else "") for size, t in row["latency_ms"].items()),
        )
    return variants


def int8_variants(fp32_path: Path, int8_path: Path, fp32: dict[str, Any], fp32_logits: np.ndarray, test: Dataset, targets: np.ndarray,
                  val: Dataset, val_targets: np.ndarray, input_names: list[str], *, settings: ExportSettings, choices: Sequence[Int8Choice],
                  threads: int, log: logging.Logger = _log, scoring: VariantScoring | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One row per INT8 choice of the fp32 model at `fp32_path` (its row `fp32`), scored on val and test by `scoring`
    (default: one label per row, accuracy) and timed; the one `select_int8` picks on val is copied to `int8_path` and
    flagged `selected`. A choice onnxruntime cannot quantize is skipped (logged, and returned with its error);
    TunepipeError when none can."""
    from tunepipe.optimize.onnx_export import latency, ort_logits, ort_session
    from tunepipe.optimize.quantization import Int8Candidate, prepare, quantize_int8, select_int8, vs_fp32

    if not choices:
        raise ValueError("no INT8 choice to try")
    scoring = scoring or VariantScoring(get_task(DEFAULT), [str(i) for i in range(fp32_logits.shape[1])])
    metric = scoring.metric
    calibrated = any(choice.calibrated for choice in choices)
    feeds = calibration_feeds(val, input_names, rows=settings.calibration_rows) if calibrated else []
    if calibrated and not feeds:
        raise ValueError("these INT8 choices need validation rows to calibrate on, and the validation split is empty")
    calibration = {"calibration_rows": min(settings.calibration_rows, len(val)), "calibration_split": "val"}
    largest = str(max(settings.latency_batch_sizes))
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        prepared = prepare(fp32_path, Path(tmp) / "prepared.onnx")
        prepare_seconds = time.perf_counter() - started
        for choice in choices:
            path = Path(tmp) / f"{choice.name}.onnx"
            started = time.perf_counter()
            try:
                quant = quantize_int8(fp32_path, path, choice, feeds, prepared=prepared, max_size_ratio=settings.int8_max_size_ratio)
            except Exception as exc:  # noqa: BLE001 - onnxruntime.quantization raises anything; one recipe failing must not stop the rest
                failed[choice.name] = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("int8 %s: quantization failed (%s); this choice is skipped", choice.name, failed[choice.name])
                continue
            quantized = time.perf_counter()
            session = ort_session(path, threads)
            val_score = scoring.score(ort_logits(session, input_names, val, PARITY_BATCH_SIZE), val_targets)
            scored = time.perf_counter()
            logits = ort_logits(session, input_names, test, PARITY_BATCH_SIZE)
            row = {
                "variant": f"pruned-int8-{choice.name}",
                "precision": "int8",
                "pruning_level": fp32["pruning_level"],
                "params": fp32["params"],
                "onnx_bytes": path.stat().st_size,
                f"val_{metric}": val_score,
                "val_rows": len(val),
                f"test_{metric}": scoring.score(logits, targets),
                "rows": len(test),
                "max_abs_logit_diff_vs_fp32": float(np.abs(logits - fp32_logits).max()) if len(test) else 0.0,
                "prediction_agreement_vs_fp32": scoring.agreement(fp32_logits, logits) if len(test) else 1.0,
                "quantization": quant | (calibration if choice.calibrated else {}),
                "latency_ms": latency(None, session, test, settings.latency_batch_sizes, settings.latency_runs, input_names),
            }
            row["vs_fp32"] = vs_fp32(row, fp32, metric)
            # what choosing needs (quantize, score val) apart from what reporting adds (test scoring, timing)
            row["seconds"] = {"quantize": round(quantized - started, 2), "val_scoring": round(scored - quantized, 2),
                              "total": round(time.perf_counter() - started, 2), "shared_preparation": round(prepare_seconds, 2)}
            log.info("int8 %s: %.2fx the fp32 size, val %s %+.2f points, test %+.2f points vs fp32, %.1f s (%s)", choice.name,
                     row["vs_fp32"]["size_ratio"], metric.replace("accuracy", "acc"), 100 * row["vs_fp32"][f"val_{metric}_delta"],
                     100 * row["vs_fp32"][f"test_{metric}_delta"],
                     row["seconds"]["total"], choice.summary)
            rows.append(row)
        if not rows:
            raise TunepipeError(f"export.quantize: every INT8 choice failed ({'; '.join(f'{k}: {v}' for k, v in failed.items())}); "
                                "try another choice, e.g. dynamic")
        candidates = [Int8Candidate(row["variant"], row[f"val_{metric}"], row["vs_fp32"]["size_ratio"], row["latency_ms"][largest]["onnxruntime"]) for row in rows]
        chosen = select_int8(candidates, settings.int8_max_size_ratio)
        for row in rows:
            row["selected"] = row["variant"] == chosen
            if row["selected"]:
                shutil.copyfile(Path(tmp) / f"{row['quantization']['choice']}.onnx", int8_path)
    log.info("int8: shipping %s (best val %s within %.2fx the fp32 size, of %d choice(s))", chosen, metric, settings.int8_max_size_ratio, len(rows))
    return rows, failed


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
        "test_rows": pruned["test_rows"],
        "parity_rows": settings.parity_rows,
        "max_abs_logit_diff": pruned["max_abs_logit_diff"],
        "prediction_agreement": pruned["prediction_agreement"],
        "tolerance": settings.max_abs_logit_diff,
        "passed": True,
        "graph_fusion": pruned["graph_fusion"],
        "threads": threads,
        "latency_ms": pruned["latency_ms"],
    }


def variants_record(variants: Variants, settings: ExportSettings, threads: int) -> dict[str, Any]:
    """results/export/variants.json: one row per variant; the pruned fp32 model is the deployable one (`selected`),
    `int8_selected` the INT8 choice shipped as model.int8.onnx, and `int8_rule` how it was picked."""
    return {"threads": threads, "latency_runs": settings.latency_runs, "selected": "pruned-fp32", "int8_selected": variants.int8_selected,
            "int8_rule": f"best validation {variants.metric} among the INT8 choices at most {settings.int8_max_size_ratio}x the fp32 file; "
                         f"ties: the faster at batch {max(settings.latency_batch_sizes)}; none that small: the smallest",
            "int8_max_size_ratio": settings.int8_max_size_ratio, "int8_failed": variants.int8_failed, "variants": variants.rows}
