"""The deployable bundle: one folder holding everything inference needs (results/export/bundle/).

A bundle works alone, copied anywhere: `tunepipe.serving` loads it with ONNX Runtime, numpy and `tokenizers`
(texts) or Pillow (images) only. Layout (every file is listed with its sha256 in `bundle.json`):

    bundle.json          manifest: format version, modality, version, input names, the task (type, decision such as
                         multi_label's thresholds, target_stats such as regression's mean/std), files + sha256
    model.onnx           the deployable fp32 model (a hard link to, or a copy of, results/export/model.onnx)
    model.int8.onnx      the INT8 model
    labels.json          the labels, in the order of the model's logits
    preprocessing.json   what to do to a raw input: tokenizer settings (texts) or image size/layout (images)
    tokenizer.json       texts only: the `tokenizers` library's tokenizer of the fine-tuned model
    model_card.json      the model card
    monitoring.json      the drift reference (the test split's label distribution; multi_label: each label's frequency;
                         regression: a histogram of its targets) and the deployed model's test metrics
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunepipe.io import external_data_name, sha256_file, write_json
from tunepipe.tasks import DEFAULT, get_task

FORMAT_VERSION = 1
MANIFEST = "bundle.json"
MODEL, INT8 = "model.onnx", "model.int8.onnx"
TOKENIZER = "tokenizer.json"


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link when both are on one file system (no second copy of a large model), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def text_spec(tokenizer: Any, max_length: int, out_dir: Path) -> dict[str, Any]:
    """Writes tokenizer.json; the settings `EncodedTexts` + `pad_batch` use: truncate to max_length, pad right to the longest row."""
    tokenizer.backend_tokenizer.save(str(out_dir / TOKENIZER))
    return {
        "tokenizer": TOKENIZER,
        "max_length": int(max_length),
        "truncation": {"strategy": "longest_first", "direction": getattr(tokenizer, "truncation_side", "right")},
        "padding": {"to": "longest", "direction": "right", "pad_id": int(tokenizer.pad_token_id or 0)},
        "add_special_tokens": True,
    }


def image_spec(image_size: int) -> dict[str, Any]:
    """What `data.images.open_image` + `to_array` do (the model scales uint8 pixels to [-1, 1] itself: no mean/std here)."""
    return {"image_size": int(image_size), "mode": "RGB", "channels": 3, "resample": "bilinear", "layout": "CHW", "dtype": "uint8",
            "mean": None, "std": None}


def runtime_spec(modality: str, model_cfg: dict[str, Any], processor: Any, out_dir: Path) -> dict[str, Any]:
    """The modality's part of preprocessing.json (texts also write tokenizer.json into `out_dir`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if modality == "text":
        return text_spec(processor, model_cfg["max_length"], out_dir)
    if modality == "image":
        return image_spec(model_cfg["image_size"])
    raise ValueError(f"no bundle format for modality {modality!r}")


def write_bundle(out_dir: Path, *, onnx: Path, int8: Path, card: dict[str, Any], modality: str, input_names: Sequence[str],
                 runtime_spec: dict[str, Any], test_labels: Sequence[Any], task: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill `out_dir` (created; may already hold tokenizer.json from `text_spec`) and return the manifest it wrote.

    `runtime_spec` is `runtime_spec(...)`'s; `test_labels` are the test split's targets (labels, label sets, numbers);
    `task` is what turns the model's outputs into answers: {"type" (tunepipe.tasks), "decision" (evaluate's
    decision.json), "target_stats"}; None is single_label's.
    """
    task = {"type": DEFAULT, "decision": {}, "target_stats": {}} | dict(task or {})
    kind = get_task(task["type"])
    level = kind.level_metrics[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    link_or_copy(onnx, out_dir / MODEL)
    data = onnx.parent / external_data_name(onnx)
    if data.exists():  # a model over 2 GB: its weights live beside it, under the name model.onnx refers to
        link_or_copy(data, out_dir / external_data_name(out_dir / MODEL))
    link_or_copy(int8, out_dir / INT8)
    names = list(card["labels"])
    write_json(out_dir / "labels.json", names)
    preprocessing = {"modality": modality, "input_names": list(input_names), **runtime_spec, "description": card["preprocessing"]}
    write_json(out_dir / "preprocessing.json", preprocessing)
    write_json(out_dir / "model_card.json", card | {"model": card["model"] | {"file": MODEL, "int8_file": INT8}})
    metrics = card["metrics"]
    write_json(out_dir / "monitoring.json", {
        "split": "test",
        "rows": len(test_labels),
        **kind.drift_reference(list(test_labels), names),
        "metrics": {level: metrics[level], f"int8_{level}": metrics[f"int8_{level}"], "rows": metrics["rows"]},
    })
    files = sorted(path.name for path in out_dir.iterdir() if path.is_file() and path.name != MANIFEST)
    digests = {name: sha256_file(out_dir / name) for name in files}
    manifest = {
        "format_version": FORMAT_VERSION,
        "modality": modality,
        # Content-addressed: the same model files give the same version on any machine.
        "version": digests[MODEL][:12],
        "base_model": card["model"].get("base_model"),
        "pruning_level": card["model"].get("pruning_level"),
        "input_names": list(input_names),
        "output_name": "logits",
        "labels": names,
        "task": task,
        "files": {name: {"sha256": digests[name], "bytes": (out_dir / name).stat().st_size} for name in files},
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest
