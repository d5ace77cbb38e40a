"""INT8 with onnxruntime.quantization: dynamic for linear-heavy transformers, static QDQ (calibrated) for CNNs.

On x86 CPUs without VNNI, dynamic INT8 made a CNN several times slower while static QDQ kept its speed;
dynamic quantization suits MatMul/Gemm-heavy transformers (see docs/notes on the stack).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def quantization_mode(requested: str, default: str) -> str:
    """`export.quantize` as asked, or for "auto" the modality's `default_quantization`."""
    return default if requested == "auto" else requested


class BatchReader:
    """onnxruntime's CalibrationDataReader protocol over a list of feed dicts."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # not needed for MinMax calibration; kept for the protocol
        pass


def quantize_int8(source: Path, target: Path, mode: str, calibration: Sequence[dict[str, np.ndarray]] = ()) -> dict[str, object]:
    """Write an INT8 copy of `source`; returns how it was made (for the variants table and model card)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # onnxruntime.quantization logs every skipped tensor at INFO on the root logger
    try:
        return _quantize(source, target, mode, calibration)
    finally:
        root.setLevel(level)


def _quantize(source: Path, target: Path, mode: str, calibration: Sequence[dict[str, np.ndarray]]) -> dict[str, object]:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX shape inference + graph cleanup first, as onnxruntime recommends (its symbolic pass cannot
        # follow the clamped position-id arithmetic of BERT exports, and the plain one suffices here).
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        if mode == "dynamic":
            # A fused transformer graph (tunepipe.optimize.graph_fusion) has ORT's Attention operator, which
            # quantizes to QAttention; shape inference cannot type the outputs of such com.microsoft operators,
            # so untyped tensors are declared float (what they are).
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm", "Gather", "Attention"],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            info = {"mode": "dynamic", "weights": "int8 (MatMul, Gemm, fused Attention, embedding Gather)", "activations": "quantized at run time"}
        else:
            if not calibration:
                raise ValueError("static quantization needs calibration batches")
            quantize_static(
                str(prepared),
                str(target),
                BatchReader(calibration),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,  # 7-bit weights: no int16 saturation on CPUs without VNNI
            )
            info = {"mode": "static", "format": "QDQ", "weights": "int8 per channel (7-bit range)", "activations": "uint8, MinMax calibrated"}
    onnx.checker.check_model(str(target))
    return info
