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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunepipe.errors import ParamsError, TunepipeError
from tunepipe.tasks import DEFAULT, Task, get_task
from tunepipe.tasks._serving import softmax  # noqa: F401 (the runtime's softmax, as before tasks)

MANIFEST = "bundle.json"
SUPPORTED_FORMAT = 1
#: The files the runtime reads besides the manifest; a verified bundle must list each with its sha256.
READ_FILES = ("labels.json", "preprocessing.json", "monitoring.json", "model_card.json", "model.onnx", "model.int8.onnx")
#: The image formats decoded (Pillow would otherwise try every decoder it has, DDS and SPIDER included, on untrusted bytes).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: Default per-image budget: (IMAGE_SIDE_FACTOR x the model's image size) squared pixels, at least IMAGE_PIXELS_FLOOR;
#: a request may decode REQUEST_IMAGES_FACTOR such images in all.
IMAGE_SIDE_FACTOR, IMAGE_PIXELS_FLOOR, REQUEST_IMAGES_FACTOR = 16, 2048 * 2048, 4
#: Default text bound: this many characters per token of max_length (ordinary text has 4-6; the cut never reaches the kept tokens).
CHARS_PER_TOKEN = 64


class BundleError(TunepipeError):
    """The bundle folder is missing, incomplete or from a newer tunepipe."""


class InputError(TunepipeError):
    """One of the inputs cannot be scored (an empty text, an undecodable image); `index` says which."""

    def __init__(self, reason: str, index: int, *, too_large: bool = False) -> None:
        super().__init__(f"inputs[{index}] {reason}")
        self.reason = reason
        self.index = index
        #: Over a size limit (HTTP 413) rather than malformed (422).
        self.too_large = too_large


@dataclass(frozen=True)
class InputLimits:
    """What one input and one request may cost to decode: the bounds on a request's memory and time.

    None means the default derived from the bundle (`resolved`): images by the model's input size, texts by max_length."""

    #: Pixels of one image, read from its header before decoding (a larger JPEG is decoded at a reduced scale when that fits).
    image_pixels: int | None = None
    #: Pixels of every image of one request together.
    request_pixels: int | None = None
    #: Characters of one text; a longer one is cut (on the side truncation drops) before tokenising, or refused.
    text_chars: int | None = None
    refuse_long_texts: bool = False

    def resolved(self, preprocessing: dict[str, Any]) -> InputLimits:
        image_pixels, text_chars = self.image_pixels, self.text_chars
        if "image_size" in preprocessing and image_pixels is None:
            image_pixels = max(IMAGE_PIXELS_FLOOR, (IMAGE_SIDE_FACTOR * int(preprocessing["image_size"])) ** 2)
        if "max_length" in preprocessing and text_chars is None:
            text_chars = CHARS_PER_TOKEN * int(preprocessing["max_length"])
        request_pixels = self.request_pixels
        if request_pixels is None and image_pixels is not None:
            request_pixels = REQUEST_IMAGES_FACTOR * image_pixels
        return InputLimits(image_pixels, request_pixels, text_chars, self.refuse_long_texts)


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    labels: list[str]
    preprocessing: dict[str, Any]
    monitoring: dict[str, Any]
    card: dict[str, Any] = field(repr=False)
    #: Whether every file listed in bundle.json was checked against its sha256 when loaded.
    verified: bool = False

    @property
    def modality(self) -> str:
        return self.manifest["modality"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def model_file(self, int8: bool = False) -> Path:
        return self.path / ("model.int8.onnx" if int8 else "model.onnx")

    def file(self, name: str) -> Path:
        """A file the runtime reads (named in preprocessing.json), which a verified bundle must have verified."""
        if self.verified and name not in self.manifest["files"]:
            raise BundleError(f"{self.path / MANIFEST}: lists no sha256 for {name}, so the bundle cannot be verified; copy the bundle again.")
        return self.path / name

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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path / name}: not valid JSON ({exc}); copy the bundle again.") from None


#: sha256 of files already verified in this process, by (path, size, mtime): a server's workers and A/B load a bundle more than once.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(file: Path) -> str:
    """The file's sha256, streamed; cached while its size and modification time stay the same."""
    from tunepipe.io import sha256_file  # the digest bundle.json was written with

    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(file)
    return _DIGESTS[key]


def _check_manifest(path: Path, manifest: Any) -> dict[str, Any]:
    """The manifest's shape: an object of a known format, a modality, and files with their digests."""
    where = path / MANIFEST
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: a JSON {type(manifest).__name__}, not the manifest object export writes; copy the bundle again.")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BundleError(f"{where}: format_version {version!r} is not a bundle format this tunepipe knows (0 to {SUPPORTED_FORMAT}); copy the bundle again.")
    if version > SUPPORTED_FORMAT:
        raise BundleError(f"{path}: bundle format {version} is newer than this tunepipe reads ({SUPPORTED_FORMAT}); upgrade tunepipe.")
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(info, dict) and isinstance(info.get("sha256"), str) for info in files.values()):
        raise BundleError(f"{where}: \"files\" must map each file to its sha256 and bytes; copy the bundle again.")
    for key in ("modality", "version"):
        if not isinstance(manifest.get(key), str):
            raise BundleError(f"{where}: no {key} (a string); copy the bundle again.")
    task = manifest.get("task") or {}
    if not isinstance(task, dict) or not isinstance(task.get("type", DEFAULT), str) or \
            not all(isinstance(task.get(key, {}), dict) for key in ("decision", "target_stats")):
        raise BundleError(f"{where}: \"task\" must be an object with a type, a decision and target_stats; copy the bundle again.")
    return manifest


def verify_bundle(path: Path, manifest: dict[str, Any], labels: Any) -> None:
    """Every file the runtime reads is listed in the manifest with its size and sha256, and has them; the labels agree."""
    files = manifest["files"]
    unlisted = [name for name in READ_FILES if name not in files]
    if unlisted:
        raise BundleError(f"{path / MANIFEST}: lists no sha256 for {', '.join(unlisted)}, so the bundle cannot be verified; copy the bundle again "
                          "(or serve it with --no-verify, at your own risk).")
    for name, info in files.items():
        file = path / name
        size = file.stat().st_size
        if isinstance(info.get("bytes"), int) and size != info["bytes"]:
            raise BundleError(f"{file}: {size} bytes, bundle.json says {info['bytes']} (a truncated or replaced copy); copy the bundle again.")
        if file_sha256(file) != info["sha256"]:
            raise BundleError(f"{file}: sha256 differs from bundle.json (a damaged or edited copy); copy the bundle again.")
    if "labels" in manifest and manifest["labels"] != labels:
        raise BundleError(f"{path / 'labels.json'}: labels {labels} differ from bundle.json's {manifest['labels']}; copy the bundle again.")


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """The bundle in folder `path`; `verify` (the default) checks every file's size and sha256 against bundle.json first."""
    path = Path(path)
    if not path.is_dir():
        hint = " (give the folder, not a file in it)" if path.is_file() else ""
        raise BundleError(f"{path}: not a folder{hint}. A bundle is the folder results/export/bundle that `snakemake ... results/report.html` writes.")
    manifest = _check_manifest(path, _read(path, MANIFEST))
    missing = [name for name in manifest.get("files", {}) if not (path / name).is_file()]
    if missing:
        raise BundleError(f"{path}: missing {', '.join(missing)}; copy the whole bundle folder.")
    labels = _read(path, "labels.json")
    if verify:
        verify_bundle(path, manifest, labels)
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise BundleError(f"{path / 'labels.json'}: not a list of label names; copy the bundle again.")
    parts = {name: _read(path, f"{name}.json") for name in ("preprocessing", "monitoring", "model_card")}
    for name, value in parts.items():
        if not isinstance(value, dict):
            raise BundleError(f"{path / name}.json: a JSON {type(value).__name__}, not an object; copy the bundle again.")
    bundle = Bundle(path=path, manifest=manifest, labels=labels, preprocessing=parts["preprocessing"], monitoring=parts["monitoring"],
                    card=parts["model_card"], verified=verify)
    bundle.task  # a task this tunepipe does not know fails here, naming the bundle
    return bundle


class TextEncoder:
    """Texts -> input_ids, attention_mask exactly as the pipeline built them."""

    kind = "text"

    def __init__(self, bundle: Bundle, limits: InputLimits | None = None) -> None:
        from tokenizers import Tokenizer

        spec = bundle.preprocessing
        self.tokenizer = Tokenizer.from_file(str(bundle.file(spec["tokenizer"])))
        self.tokenizer.no_padding()
        self.direction = spec["truncation"]["direction"]
        self.tokenizer.enable_truncation(spec["max_length"], strategy=spec["truncation"]["strategy"], direction=self.direction)
        self.pad_id = spec["padding"]["pad_id"]
        self.add_special_tokens = spec.get("add_special_tokens", True)
        self.input_names = spec["input_names"]
        self.limits = (limits or InputLimits()).resolved(spec)

    def check(self, value: Any, index: int) -> str:
        if not isinstance(value, str):
            raise InputError(f"is {_kind(value)}; each input must be a string (a text to classify)", index)
        bound = self.limits.text_chars
        if bound is not None and len(value) > bound:
            if self.limits.refuse_long_texts:
                raise InputError(f"is {len(value)} characters, more than the {bound} allowed (--max-text-chars); send a shorter text", index, too_large=True)
            # The model sees max_length tokens only: cut on the side truncation drops, before the tokenizer reads it all.
            value = value[:bound] if self.direction == "right" else value[-bound:]
        if not value.strip():
            raise InputError("is an empty text; send at least one non-space character", index)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): the tokenizer cannot take it
            raise InputError("is not valid Unicode (it holds a lone surrogate); send UTF-8 text", index) from None
        return value

    def check_all(self, values: list) -> list:
        return [self.check(value, index) for index, value in enumerate(values)]

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
    """Images (a path, raw bytes or a decoded PIL image) -> uint8 pixels (batch, 3, size, size).

    `check` decodes only the formats of IMAGE_FORMATS, refuses an image over the pixel budget from its header (before
    decoding), and keeps the model-sized image only, so what waits for a batch is small whatever was sent."""

    kind = "image"

    def __init__(self, bundle: Bundle, limits: InputLimits | None = None) -> None:
        spec = bundle.preprocessing
        self.size = int(spec["image_size"])
        self.mode = spec.get("mode", "RGB")
        self.input_names = spec["input_names"]
        self.limits = (limits or InputLimits()).resolved(spec)

    def _sized(self, image):
        from PIL import Image

        return image.convert(self.mode).resize((self.size, self.size), Image.BILINEAR)

    def check(self, value: Any, index: int, spent: int = 0):
        """The model-sized image; `spent` is the pixels this request decoded before it (the request's budget)."""
        return self._decode(value, index, spent)[0]

    def check_all(self, values: list) -> list:
        checked, spent = [], 0
        for index, value in enumerate(values):
            image, pixels = self._decode(value, index, spent)
            checked.append(image)
            spent += pixels
        return checked

    def _decode(self, value: Any, index: int, spent: int):
        from PIL import Image

        if isinstance(value, Image.Image):
            return self._sized(value), 0
        source = io.BytesIO(value) if isinstance(value, bytes | bytearray) else value
        where = f" ({value})" if isinstance(value, str | Path) else ""
        try:
            with Image.open(source, formats=IMAGE_FORMATS) as image:
                pixels = self._fit(image, index)
                if self.limits.request_pixels is not None and spent + pixels > self.limits.request_pixels:
                    raise InputError(f"would bring this request's images to {spent + pixels} pixels, more than the {self.limits.request_pixels} "
                                     "one request may decode (--max-request-pixels); send fewer or smaller images per request", index, too_large=True)
                image.load()
                return self._sized(image), pixels
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - untrusted bytes: whatever a decoder raises means "not an image we can read"
            if isinstance(exc, OSError) and isinstance(value, str | Path) and not Path(value).is_file():
                raise InputError(f"is not a readable file{where}: {exc}", index) from None
            kinds = "/".join(IMAGE_FORMATS)
            raise InputError(f"is not a decodable image{where} ({kinds}): {type(exc).__name__}: {str(exc)[:200]}", index) from None

    def _fit(self, image, index: int) -> int:
        """The pixels `image` will decode to: its header's, or a JPEG's at the least reduced scale (`draft`: 1/2, 1/4, 1/8)
        that fits the budget when the full size does not."""
        budget = self.limits.image_pixels
        if budget is None or image.width * image.height <= budget:
            return image.width * image.height
        if image.format == "JPEG":
            fits = [(math.ceil(image.width / k), math.ceil(image.height / k)) for k in (2, 4, 8)]
            fits = [size for size in fits if size[0] * size[1] <= budget]
            if fits:
                image.draft(image.mode, fits[0])
        if image.width * image.height > budget:
            raise InputError(f"is {image.width}x{image.height} pixels, more than the {budget} one image may decode (--max-image-pixels); "
                             "send a smaller image", index, too_large=True)
        return image.width * image.height

    def feeds(self, images: list) -> dict[str, np.ndarray]:
        arrays = [np.asarray(self._sized(image), dtype=np.uint8).transpose(2, 0, 1) for image in images]
        return {self.input_names[0]: np.stack(arrays)}


def _kind(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return names.get(type(value), f"a {type(value).__name__}")


ENCODERS = {"text": TextEncoder, "image": ImageEncoder}


class Predictor:
    """One bundle's model in an ONNX Runtime session: raw inputs in, the task's outputs out (thread-safe).

    The bundle is verified (every file's sha256) unless `verify` is False or a loaded Bundle is given."""

    def __init__(self, bundle: Bundle | str | Path, *, int8: bool = False, threads: int = 1, version: str | None = None,
                 limits: InputLimits | None = None, verify: bool = True) -> None:
        import onnxruntime as ort

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=verify)
        if self.bundle.modality not in ENCODERS:
            raise BundleError(f"{self.bundle.path}: modality {self.bundle.modality!r} is not one this runtime serves ({', '.join(ENCODERS)}).")
        try:
            self.limits = (limits or InputLimits()).resolved(self.bundle.preprocessing)
            self.encoder = ENCODERS[self.bundle.modality](self.bundle, self.limits)
        except BundleError:
            raise
        except KeyError as exc:
            raise BundleError(f"{self.bundle.path / 'preprocessing.json'}: no {exc}; copy the bundle again.") from None
        except Exception as exc:  # noqa: BLE001 - the tokenizer's own errors: a damaged tokenizer file
            raise BundleError(f"{self.bundle.path}: cannot read its preprocessing ({type(exc).__name__}: {str(exc)[:200]}); copy the bundle again.") from None
        self.labels = self.bundle.labels
        self.task = self.bundle.task
        self.decision, self.stats = self.bundle.task_spec["decision"], self.bundle.task_spec["target_stats"]
        self.int8 = int8
        self.version = version or self.bundle.version + ("-int8" if int8 else "")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        model = self.bundle.file(self.bundle.model_file(int8).name)
        try:
            self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - InvalidProtobuf, Fail, InvalidGraph: ONNX Runtime's own classes
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{model}: ONNX Runtime cannot load it ({first}); copy the bundle again.") from None

    def check(self, values: list) -> list:
        """Each input validated and decoded within the limits (raises InputError naming the first bad one)."""
        return self.encoder.check_all(values)

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
