"""Load a bundle and predict: ONNX Runtime + numpy + `tokenizers` (texts) or Pillow (images), nothing heavier.

The bundle's task (bundle.json "task") turns logits into answers with the task's numpy-only serving methods
(tunepipe.tasks): class probabilities, per-label probabilities at the bundle's thresholds, or values.

The encoders reproduce what the pipeline fed the exported model (export's parity and accuracy runs):
texts as `data.datamodule.EncodedTexts` + `pad_batch` (the tokenizer with truncation to max_length, special
tokens, padded right to the longest row with the pad id, attention mask 1 on real tokens, int64); images as
`data.images.open_image` + `to_array` (RGB, bilinear resize to a square, uint8 CHW).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunepipe.errors import ParamsError, TunepipeError
from tunepipe.tasks import DEFAULT, Task, get_task
from tunepipe.tasks._serving import softmax  # noqa: F401 (the runtime's softmax, as before tasks)

MANIFEST = "bundle.json"
SUPPORTED_FORMAT = 1


class BundleError(TunepipeError):
    """The bundle folder is missing, incomplete or from a newer tunepipe."""


class InputError(TunepipeError):
    """One of the inputs cannot be scored (an empty text, an undecodable image); `index` says which."""

    def __init__(self, reason: str, index: int) -> None:
        super().__init__(f"inputs[{index}] {reason}")
        self.reason = reason
        self.index = index


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    labels: list[str]
    preprocessing: dict[str, Any]
    monitoring: dict[str, Any]
    card: dict[str, Any] = field(repr=False)

    @property
    def modality(self) -> str:
        return self.manifest["modality"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def model_file(self, int8: bool = False) -> Path:
        return self.path / ("model.int8.onnx" if int8 else "model.onnx")

    @property
    def task_spec(self) -> dict[str, Any]:
        """{"type", "decision", "target_stats"}: what turns logits into answers (a bundle from before tasks is single_label)."""
        return {"type": DEFAULT, "decision": {}, "target_stats": {}} | dict(self.manifest.get("task") or {})

    @property
    def task(self) -> Task:
        try:
            return get_task(self.task_spec["type"])
        except ParamsError:
            raise BundleError(f"{self.path}: task {self.task_spec['type']!r} in bundle.json is not one this tunepipe serves; upgrade tunepipe.") from None


def _read(path: Path, name: str) -> Any:
    try:
        return json.loads((path / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: no {name}; this is not a complete bundle. Point at results/export/bundle (made by the export rule).") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / name}: not valid JSON ({exc}); copy the bundle again.") from None


def load_bundle(path: str | Path, verify: bool = False) -> Bundle:
    """The bundle in folder `path`; `verify` also checks every file's sha256 against bundle.json."""
    path = Path(path)
    if not path.is_dir():
        hint = " (give the folder, not a file in it)" if path.is_file() else ""
        raise BundleError(f"{path}: not a folder{hint}. A bundle is the folder results/export/bundle that `snakemake ... results/report.html` writes.")
    manifest = _read(path, MANIFEST)
    if manifest.get("format_version", 0) > SUPPORTED_FORMAT:
        raise BundleError(f"{path}: bundle format {manifest.get('format_version')} is newer than this tunepipe reads ({SUPPORTED_FORMAT}); upgrade tunepipe.")
    missing = [name for name in manifest.get("files", {}) if not (path / name).is_file()]
    if missing:
        raise BundleError(f"{path}: missing {', '.join(missing)}; copy the whole bundle folder.")
    if verify:
        from tunepipe.io import sha256_file  # the digest bundle.json was written with (streamed, not read whole)

        for name, info in manifest["files"].items():
            if sha256_file(path / name) != info["sha256"]:
                raise BundleError(f"{path / name}: sha256 differs from bundle.json (a damaged or edited copy); copy the bundle again.")
    bundle = Bundle(path=path, manifest=manifest, labels=_read(path, "labels.json"), preprocessing=_read(path, "preprocessing.json"),
                    monitoring=_read(path, "monitoring.json"), card=_read(path, "model_card.json"))
    bundle.task  # a task this tunepipe does not know fails here, naming the bundle
    return bundle


class TextEncoder:
    """Texts -> input_ids, attention_mask exactly as the pipeline built them."""

    kind = "text"

    def __init__(self, bundle: Bundle) -> None:
        from tokenizers import Tokenizer

        spec = bundle.preprocessing
        self.tokenizer = Tokenizer.from_file(str(bundle.path / spec["tokenizer"]))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(spec["max_length"], strategy=spec["truncation"]["strategy"], direction=spec["truncation"]["direction"])
        self.pad_id = spec["padding"]["pad_id"]
        self.add_special_tokens = spec.get("add_special_tokens", True)
        self.input_names = spec["input_names"]

    def check(self, value: Any, index: int) -> str:
        if not isinstance(value, str):
            raise InputError(f"is {_kind(value)}; each input must be a string (a text to classify)", index)
        if not value.strip():
            raise InputError("is an empty text; send at least one non-space character", index)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): the tokenizer cannot take it
            raise InputError("is not valid Unicode (it holds a lone surrogate); send UTF-8 text", index) from None
        return value

    def ids(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=self.add_special_tokens)]

    def feeds(self, texts: list[str]) -> dict[str, np.ndarray]:
        rows = self.ids(texts)
        width = max(len(ids) for ids in rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        arrays = {"input_ids": input_ids, "attention_mask": attention_mask}
        return {name: arrays[name] for name in self.input_names}


class ImageEncoder:
    """Images (a path, raw bytes or a decoded PIL image) -> uint8 pixels (batch, 3, size, size)."""

    kind = "image"

    def __init__(self, bundle: Bundle) -> None:
        spec = bundle.preprocessing
        self.size = spec["image_size"]
        self.mode = spec.get("mode", "RGB")
        self.input_names = spec["input_names"]

    def check(self, value: Any, index: int):
        from PIL import Image, UnidentifiedImageError

        if isinstance(value, Image.Image):
            return value
        source = io.BytesIO(value) if isinstance(value, bytes | bytearray) else value
        try:
            with Image.open(source) as image:
                limit = Image.MAX_IMAGE_PIXELS
                if limit is not None and image.width * image.height > limit:
                    raise InputError(f"has {image.width}x{image.height} pixels, more than the {limit} decoded safely; send a smaller image", index)
                image.load()
                return image.copy()
        except InputError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            where = f" ({value})" if isinstance(value, str | Path) else ""
            raise InputError(f"is not a decodable image{where}: {exc}", index) from None

    def feeds(self, images: list) -> dict[str, np.ndarray]:
        from PIL import Image

        arrays = [np.asarray(image.convert(self.mode).resize((self.size, self.size), Image.BILINEAR), dtype=np.uint8).transpose(2, 0, 1)
                  for image in images]
        return {self.input_names[0]: np.stack(arrays)}


def _kind(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return names.get(type(value), f"a {type(value).__name__}")


ENCODERS = {"text": TextEncoder, "image": ImageEncoder}


class Predictor:
    """One bundle's model in an ONNX Runtime session: raw inputs in, the task's outputs out (thread-safe)."""

    def __init__(self, bundle: Bundle | str | Path, *, int8: bool = False, threads: int = 1, version: str | None = None) -> None:
        import onnxruntime as ort

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if self.bundle.modality not in ENCODERS:
            raise BundleError(f"{self.bundle.path}: modality {self.bundle.modality!r} is not one this runtime serves ({', '.join(ENCODERS)}).")
        self.encoder = ENCODERS[self.bundle.modality](self.bundle)
        self.labels = self.bundle.labels
        self.task = self.bundle.task
        self.decision, self.stats = self.bundle.task_spec["decision"], self.bundle.task_spec["target_stats"]
        self.int8 = int8
        self.version = version or self.bundle.version + ("-int8" if int8 else "")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.bundle.model_file(int8)), options, providers=["CPUExecutionProvider"])

    def check(self, values: list) -> list:
        """Each input validated and decoded (raises InputError naming the first bad one)."""
        return [self.encoder.check(value, index) for index, value in enumerate(values)]

    def logits(self, checked: list) -> np.ndarray:
        if not checked:
            return np.empty((0, self.task.output_size(self.labels)), dtype=np.float32)
        return self.session.run(["logits"], self.encoder.feeds(checked))[0]

    def outputs(self, checked: list) -> np.ndarray:
        """The task's outputs of checked inputs: probabilities (rows x labels; per label for multi_label) or values (rows)."""
        return self.task.served_outputs(self.logits(checked), self.stats)

    def predict(self, values: list) -> np.ndarray:
        """`outputs` of raw inputs: texts, or image paths/bytes."""
        return self.outputs(self.check(values))

    def answers(self, outputs: np.ndarray) -> dict[str, list]:
        """/v1/predict's answer fields of `outputs` (labels and probabilities, label sets, or values)."""
        return self.task.answers(outputs, self.labels, self.decision)
