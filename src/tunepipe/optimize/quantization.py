"""INT8 with onnxruntime.quantization: a few named recipes ("choices"), and the rule that picks the one shipped.

Dynamic INT8 (weights int8, activations quantized at run time) suits MatMul/Gemm-heavy transformers; static QDQ
(activation ranges calibrated on validation rows) suits CNNs: on x86 CPUs without VNNI, dynamic INT8 made a CNN
several times slower while static QDQ kept its speed. Which choices a run tries is `export.quantize`; each is
scored on the validation split (the task's first level metric) and the shipped `model.int8.onnx` is picked by
`select_int8` (never on test).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tunepipe.errors import ParamsError


@dataclass(frozen=True)
class Int8Choice:
    """One way to make an INT8 copy of an fp32 ONNX model."""

    name: str
    method: Literal["dynamic", "static"]
    summary: str
    per_channel: bool = False
    #: dynamic: leave the MatMul/Attention nodes with the largest measured output error (`dynamic_node_errors`)
    #: in fp32, as many as the size bound allows (`nodes_left_fp32`).
    sensitive_fp32: bool = False
    #: static: how activation ranges are calibrated on the validation rows.
    calibrator: Literal["minmax", "percentile", "entropy"] = "minmax"

    @property
    def calibrated(self) -> bool:
        """Whether it reads validation rows: static choices calibrate on them, `sensitive_fp32` measures on them."""
        return self.method == "static" or self.sensitive_fp32


CHOICES: dict[str, Int8Choice] = {choice.name: choice for choice in (
    Int8Choice("dynamic", "dynamic", "int8 weights per tensor (MatMul, fused Attention, embedding Gather); activations quantized at run time"),
    Int8Choice("dynamic-per-channel", "dynamic", "as dynamic, with one weight scale per output channel", per_channel=True),
    Int8Choice("dynamic-mixed", "dynamic", "as dynamic-per-channel, with the MatMul/Attention nodes of largest measured output error "
               "left fp32 within the size bound", per_channel=True, sensitive_fp32=True),
    Int8Choice("static", "static", "QDQ, int8 weights per channel (7-bit range), uint8 activations calibrated by MinMax on validation rows"),
    Int8Choice("static-percentile", "static", "as static, activation ranges at the 99.999th percentile of the calibration values",
               calibrator="percentile"),
    Int8Choice("static-entropy", "static", "as static, activation ranges chosen by entropy (KL) calibration", calibrator="entropy"),
)}

#: `export.quantize: auto`, by the kind of INT8 the modality suits (`Modality.default_quantization`). Measured on
#: the default runs' models (README, "INT8 choices"): for MiniLM, static QDQ cannot quantize the fused Attention and
#: misses the size bound (0.34x), and per-tensor `dynamic` ties `dynamic-mixed` on 400 validation rows while losing
#: 1.4 test points to its 0.4; for EfficientNet-Lite0 the percentile calibrator kept validation accuracy where MinMax lost 0.4 points.
AUTO_CHOICES: dict[str, tuple[str, ...]] = {
    "dynamic": ("dynamic-per-channel", "dynamic-mixed"),
    "static": ("static", "static-percentile"),
}

#: Bytes one weight gains when it stays fp32 instead of int8.
_FP32_EXTRA_BYTES = 3


def int8_choices(requested: str | Sequence[str], default: str) -> tuple[Int8Choice, ...]:
    """`export.quantize` resolved: "auto" is the modality's list (`AUTO_CHOICES[default]`), else one name or a list of names."""
    names = AUTO_CHOICES[default] if requested == "auto" else (requested,) if isinstance(requested, str) else tuple(requested)
    unknown = [name for name in names if name not in CHOICES]
    if unknown or not names:
        raise ParamsError(f"export.quantize: unknown INT8 choice {', '.join(map(repr, unknown)) or '(none given)'}; "
                          f"use auto, one of {', '.join(CHOICES)}, or a list of them.")
    return tuple(dict.fromkeys(CHOICES[name] for name in names))


@dataclass(frozen=True)
class Int8Candidate:
    """What the selection rule reads of one INT8 choice tried."""

    name: str
    #: The validation score selected on: the task's first level metric (single_label: accuracy), higher is better.
    val_score: float
    #: The INT8 file's size over the fp32 file it was made from.
    size_ratio: float
    #: ONNX Runtime latency at the largest timed batch (ms).
    latency_ms: float


def select_int8(candidates: Sequence[Int8Candidate], max_size_ratio: float) -> str:
    """The shipped INT8 choice: the best validation score among those at most `max_size_ratio` of the fp32 file,
    ties going to the faster at the largest timed batch. When none is small enough, the smallest (ties: the more
    accurate). Test scores are never read: they are reported, not selected on."""
    if not candidates:
        raise ValueError("no INT8 choice to select from")
    def score(c: Int8Candidate) -> float:  # an empty validation split scores nan: it then ranks last
        return c.val_score if c.val_score == c.val_score else -math.inf

    small = [c for c in candidates if c.size_ratio <= max_size_ratio]
    if small:
        return min(small, key=lambda c: (-score(c), c.latency_ms)).name
    return min(candidates, key=lambda c: (c.size_ratio, -score(c), c.latency_ms)).name


class BatchReader:
    """onnxruntime's CalibrationDataReader protocol over a list of feed dicts."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._all = list(feeds)
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(self._all)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:
        self._feeds = iter(self._all)


def prepare(source: Path, target: Path) -> Path:
    """ONNX shape inference + graph cleanup, as onnxruntime recommends before quantizing; done once per source
    and shared by every choice (node names in `dynamic_node_errors` are the prepared graph's)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # onnxruntime's symbolic pass cannot follow the clamped position-id arithmetic of BERT exports; the plain one suffices.
    with _quiet():
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    return target


@dataclass(frozen=True)
class NodeError:
    """How far one quantizable node's output moves under dynamic INT8, measured on real inputs."""

    node: str
    op_type: str
    weight_elements: int
    #: ||X W - deq(q(X)) deq(q(W))|| / ||X W|| over every row fed (Frobenius norms, all batches together).
    relative_error: float


def _weighted_nodes(model) -> list[tuple[object, np.ndarray]]:
    """MatMul nodes with a constant 2-D weight and fused Attention nodes (input 1 is the QKV weight)."""
    from onnx import numpy_helper

    weights = {init.name: init for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Attention") and len(node.input) > 1 and node.input[1] in weights:
            array = numpy_helper.to_array(weights[node.input[1]])
            if array.ndim == 2 and array.dtype == np.float32:
                found.append((node, array))
    return found


def _fake_quant_activation(x: np.ndarray) -> np.ndarray:
    """DynamicQuantizeLinear and back: uint8, one asymmetric range over the whole tensor, always holding 0."""
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero = float(np.clip(np.rint(-low / scale), 0, 255))
    return ((np.clip(np.rint(x / scale) + zero, 0, 255) - zero) * scale).astype(np.float32)


def _fake_quant_weight(w: np.ndarray, per_channel: bool) -> np.ndarray:
    """Symmetric int8 ([-127, 127], zero point 0) and back, per tensor or per output column."""
    absmax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    scale = np.where(absmax > 0, absmax / 127.0, 1.0)
    return (np.clip(np.rint(w / scale), -127, 127) * scale).astype(np.float32)


def dynamic_node_errors(prepared: Path, feeds: Sequence[dict[str, np.ndarray]], per_channel: bool = False) -> list[NodeError]:
    """Each MatMul/Attention node's output error under dynamic INT8, measured one node at a time on `feeds`
    (validation rows): the fp32 graph is run once with every such node's input exposed, and each node's
    X W is compared with its INT8 emulation (activations as DynamicQuantizeLinear does per batch, weights as
    `quantize_dynamic` stores them). Largest error first."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(prepared))
    nodes = _weighted_nodes(model)
    outputs = {out.name for out in model.graph.output}
    inputs = sorted({node.input[0] for node, _ in nodes} - outputs)
    for name in inputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every exposed tensor as is
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    quantized = {node.name: _fake_quant_weight(w, per_channel) for node, w in nodes}
    diff = dict.fromkeys(quantized, 0.0)
    ref = dict.fromkeys(quantized, 0.0)
    for feed in feeds:
        values = dict(zip(inputs, session.run(inputs, feed)))
        for node, w in nodes:
            x = values[node.input[0]]
            x2 = x.reshape(-1, x.shape[-1])
            exact = x2 @ w
            approx = _fake_quant_activation(x2) @ quantized[node.name]
            diff[node.name] += float(np.square(exact - approx).sum())
            ref[node.name] += float(np.square(exact).sum())
    errors = [NodeError(node.name, node.op_type, int(w.size), float(np.sqrt(diff[node.name] / ref[node.name])) if ref[node.name] else 0.0)
              for node, w in nodes]
    return sorted(errors, key=lambda e: -e.relative_error)


def quantizable_weight_elements(prepared: Path) -> int:
    """Weights dynamic INT8 stores as int8: MatMul/Attention weights and Gather tables (embeddings)."""
    import onnx

    model = onnx.load(str(prepared))
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    total = sum(sizes.get(node.input[1], 0) for node in model.graph.node if node.op_type in ("MatMul", "Attention") and len(node.input) > 1)
    return total + sum(sizes.get(node.input[0], 0) for node in model.graph.node if node.op_type == "Gather")


def nodes_left_fp32(errors: Sequence[NodeError], budget_bytes: float, max_nodes: int) -> list[str]:
    """The nodes to keep fp32: largest error first, each if its fp32 weight still fits in `budget_bytes`
    (the bytes the file may grow by), at most `max_nodes`, and only nodes above the median error."""
    if not errors:
        return []
    median = float(np.median([e.relative_error for e in errors]))
    kept: list[str] = []
    for error in sorted(errors, key=lambda e: -e.relative_error):
        extra = _FP32_EXTRA_BYTES * error.weight_elements
        if len(kept) >= max_nodes or error.relative_error <= median:
            break
        if extra <= budget_bytes:
            kept.append(error.node)
            budget_bytes -= extra
    return kept


class _quiet:
    """onnxruntime.quantization logs every skipped tensor at INFO on the root logger."""

    def __enter__(self) -> None:
        self._level = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().setLevel(self._level)


#: At most this share of the MatMul/Attention nodes stays fp32 in `dynamic-mixed` (the rest must stay fast).
MAX_FP32_SHARE = 0.25


def quantize_int8(source: Path, target: Path, choice: Int8Choice | str, calibration: Sequence[dict[str, np.ndarray]] = (), *,
                  prepared: Path | None = None, max_size_ratio: float = 0.3) -> dict[str, object]:
    """Write an INT8 copy of `source` by `choice`; returns how it was made (for the variants table and model card).
    `calibration` (feed dicts of validation rows) is needed by static choices and by `sensitive_fp32`; `prepared`
    is `prepare(source, ...)` when the caller shares it between choices; `max_size_ratio` bounds what
    `sensitive_fp32` may leave in fp32."""
    import onnx

    choice = CHOICES[choice] if isinstance(choice, str) else choice
    if choice.calibrated and not calibration:
        raise ValueError(f"INT8 choice {choice.name} needs calibration batches (validation rows)")
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        if prepared is None:
            prepared = prepare(source, Path(tmp) / "prepared.onnx")
        info: dict[str, object] = {"choice": choice.name, "mode": choice.method, "recipe": choice.summary}
        if choice.method == "dynamic":
            info |= _dynamic(prepared, target, choice, calibration, source.stat().st_size, max_size_ratio)
        else:
            info |= _static(prepared, target, choice, calibration)
    onnx.checker.check_model(str(target))
    return info


def _dynamic(prepared: Path, target: Path, choice: Int8Choice, calibration: Sequence[dict[str, np.ndarray]], fp32_bytes: int,
             max_size_ratio: float) -> dict[str, object]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    info: dict[str, object] = {"weights": f"int8 {'per channel' if choice.per_channel else 'per tensor'} (MatMul, fused Attention, embedding Gather)",
                               "activations": "quantized at run time"}
    exclude: list[str] = []
    if choice.sensitive_fp32:
        errors = dynamic_node_errors(prepared, calibration, choice.per_channel)
        estimate = fp32_bytes - _FP32_EXTRA_BYTES * quantizable_weight_elements(prepared)
        budget = 0.98 * max_size_ratio * fp32_bytes - estimate  # 2% margin for scales and graph overhead
        exclude = nodes_left_fp32(errors, budget, max(1, int(MAX_FP32_SHARE * len(errors))))
        by_name = {e.node: e for e in errors}
        info |= {"fp32_nodes": [{"node": name, "op_type": by_name[name].op_type, "relative_error": round(by_name[name].relative_error, 5)} for name in exclude],
                 "sensitivity": f"per-node output error against fp32 on {sum(len(next(iter(f.values()))) for f in calibration)} validation rows",
                 "median_relative_error": round(float(np.median([e.relative_error for e in errors])), 5) if errors else None}
    # A fused transformer graph (tunepipe.optimize.graph_fusion) has ORT's Attention operator, which quantizes to
    # QAttention; shape inference cannot type the outputs of such com.microsoft operators, so untyped tensors are
    # declared float (what they are).
    quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=choice.per_channel,
                     op_types_to_quantize=["MatMul", "Gemm", "Gather", "Attention"], nodes_to_exclude=exclude,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return info


#: onnxruntime method name and options. (Not CalibMaxIntermediateOutputs: in onnxruntime 1.31 MinMax discards each
#: chunk of batches instead of merging it, and fails when the batches are a multiple of the chunk.)
_CALIBRATORS = {"minmax": ("MinMax", {}), "percentile": ("Percentile", {"CalibPercentile": 99.999}), "entropy": ("Entropy", {})}


def _static(prepared: Path, target: Path, choice: Int8Choice, calibration: Sequence[dict[str, np.ndarray]]) -> dict[str, object]:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    method, extra = _CALIBRATORS[choice.calibrator]
    prepared = _fully_typed(prepared)
    # An unfused BERT export masks attention scores with -inf: no int8 range holds it (MinMax gets an infinite scale,
    # the histogram calibrators fail on it), so the operator types that make or take such values are neither
    # calibrated nor quantized (onnxruntime calibrates every tensor of every operator type it quantizes).
    infinite = non_finite_nodes(prepared, calibration[0])
    skipped = sorted({op for _, op in infinite})
    op_types = sorted((set(QLinearOpsRegistry) | set(QDQRegistry)) - set(skipped)) if skipped else None
    quantize_static(
        str(prepared),
        str(target),
        BatchReader(calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,  # 7-bit weights: no int16 saturation on CPUs without VNNI
        calibrate_method=getattr(CalibrationMethod, method),
        op_types_to_quantize=op_types,
        extra_options=extra | {"DefaultTensorType": onnx.TensorProto.FLOAT},  # as in _dynamic: outputs of fused com.microsoft operators
    )
    info: dict[str, object] = {"format": "QDQ", "weights": "int8 per channel (7-bit range)", "activations": f"uint8, {method} calibrated"}
    return info | ({"fp32_op_types_non_finite": skipped} if skipped else {})


def _fully_typed(prepared: Path) -> Path:
    """`prepared`, or beside it a copy whose every tensor has a type: static calibration only ranges typed tensors,
    and ONNX shape inference cannot type the outputs of a fused graph's com.microsoft operators (ORT's symbolic
    pass can, with `auto_merge` for BERT's clamped position ids)."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(prepared))
    typed = {v.name for v in (*model.graph.value_info, *model.graph.output)}
    if all(out in typed for node in model.graph.node for out in node.output if out):
        return prepared
    try:
        with contextlib.chdir(prepared.parent):  # on failure onnxruntime saves sym_shape_infer_temp.onnx in the working directory
            model = SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises bare Exceptions; calibration then skips the untyped tensors
        logging.getLogger(__name__).warning("symbolic shape inference failed (%s); untyped tensors are left fp32", exc)
        return prepared
    target = prepared.with_name(f"{prepared.stem}.typed.onnx")
    onnx.save(model, str(target))
    return target


def non_finite_nodes(prepared: Path, feed: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """(name, op type) of the nodes whose float output, or an input, is not finite somewhere on `feed` (e.g. an
    attention mask of -inf)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(prepared))
    floats = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    outputs = {o.name for o in model.graph.output}
    names = [out for node in model.graph.node for out in node.output if out in floats and out not in outputs]
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    bad = {name for name, value in zip(names, session.run(names, feed)) if not np.isfinite(value).all()}
    return [(node.name, node.op_type) for node in model.graph.node if bad & (set(node.output) | set(node.input))]


def vs_fp32(row: Mapping[str, Any], fp32: Mapping[str, Any], metric: str = "accuracy") -> dict[str, Any]:
    """An INT8 row against the fp32 model it was made from: size and ORT latency ratios, `metric` deltas on val and
    test (`val_<metric>_delta`, `test_<metric>_delta`; fractions, not points)."""
    return {
        "size_ratio": round(row["onnx_bytes"] / fp32["onnx_bytes"], 4),
        "latency_ratio": {b: round(t["onnxruntime"] / fp32["latency_ms"][b]["onnxruntime"], 3) for b, t in row["latency_ms"].items() if b in fp32["latency_ms"]},
        f"val_{metric}_delta": round(row[f"val_{metric}"] - fp32[f"val_{metric}"], 6),
        f"test_{metric}_delta": round(row[f"test_{metric}"] - fp32[f"test_{metric}"], 6),
    }
