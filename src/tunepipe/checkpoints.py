"""The model files stages hand each other, each rebuilt through its modality.

- train's Lightning checkpoint (`best.ckpt`): weights under `model.` and, as hyper-parameters, what rebuilds the
  classifier (model_cfg, label_names, modality, task, target_stats); read with `load_checkpoint`.
- prune's portable file (`model.pt`): the state dict, the same facts and the pruning level it was cut to
  (plus its module shapes when pruned structurally); written with `save_model`, read with `load_model`.
  An ensemble of sweep variants (rule `ensemble`) is the same file with each member's model_cfg under `ensemble`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunepipe.errors import TunepipeError
from tunepipe.modalities import get_modality
from tunepipe.models.backbone import ADAPTER_BASE
from tunepipe.tasks import DEFAULT, get_task


def _rebuilt(model_cfg: dict[str, Any], label_names: list[str], modality: str, task: str = DEFAULT, **_: Any) -> nn.Module:
    """The classifier's architecture only: its weights come from the file (its head sized by the task)."""
    return get_modality(modality).build_classifier(model_cfg, get_task(task).output_size(label_names), pretrained_weights=False)


def load_checkpoint(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """The fine-tuned classifier (in eval mode) and meta = {model_cfg, label_names, modality, task, target_stats}.

    An adapter checkpoint (model.adapter) comes back merged into its base: a plain classifier whose meta's model_cfg
    says `adapter: none`, so every later stage (and the files they write) sees a fully fine-tuned model."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    meta = {"model_cfg": hparams["model_cfg"], "label_names": hparams["label_names"], "modality": hparams.get("modality", "text"),
            "task": hparams.get("task", DEFAULT), "target_stats": dict(hparams.get("target_stats") or {})}
    weights = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items() if key.startswith("model.")}
    if ADAPTER_BASE in checkpoint:
        model, meta["model_cfg"] = _merged(meta, weights, checkpoint[ADAPTER_BASE], path)
    else:
        model = _rebuilt(**meta)
        model.load_state_dict(weights)
    model.eval()
    return model, meta


def _merged(meta: dict[str, Any], weights: dict[str, torch.Tensor], base: dict[str, Any], path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """The base's pretrained weights (checked against the recorded sha256, in full precision), the saved adapter and
    head loaded over them, the adapter merged in; and the model_cfg that rebuilds the merged model."""
    from tunepipe.models.backbone import AdapterSettings, add_adapter, check_base, merge_adapter

    check_base(base, str(path))
    plain_cfg = {**meta["model_cfg"], "adapter": {**meta["model_cfg"]["adapter"], "method": "none"}, "quantize_base": "none"}
    model = get_modality(meta["modality"]).build_classifier(plain_cfg, get_task(meta["task"]).output_size(meta["label_names"]))
    add_adapter(model, AdapterSettings.from_params(meta["model_cfg"]["adapter"]))
    missing = set(weights) - set(model.state_dict())
    if missing:
        raise TunepipeError(f"{path}: the adapter checkpoint holds weights this model lacks ({sorted(missing)[:3]}...); it was not made by this version of train.")
    model.load_state_dict(weights, strict=False)
    return merge_adapter(model), plain_cfg


def save_model(path: Path | str, model: nn.Module, *, model_cfg: dict[str, Any], label_names: list[str], modality: str,
               pruning_level: dict[str, Any], structure: dict[str, dict[str, int]] | None = None,
               members: list[dict[str, Any]] | None = None, task: str = DEFAULT, target_stats: dict[str, float] | None = None) -> None:
    """`pruning_level` = {"name", "method" (dense|unstructured|structured|distilled|ensemble), "sparsity"}; `structure` for a
    structurally pruned model; `members` for a `tunepipe.models.ensemble.Ensemble`: each member's model_cfg, in order;
    `task` and `target_stats` as the checkpoint's (tunepipe.tasks)."""
    payload = {"model_cfg": model_cfg, "label_names": label_names, "modality": modality, "task": task, "target_stats": dict(target_stats or {}),
               "pruning_level": pruning_level, "state_dict": model.state_dict()}
    if structure:
        payload["structure"] = structure
    if members:
        payload["ensemble"] = members
    torch.save(payload, path)


def load_model(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """The model `save_model` wrote (in eval mode) and its payload (model_cfg, label_names, modality, pruning_level, ...)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("ensemble"):  # the sweep's top-k variants: one classifier per member, their mean probabilities
        from tunepipe.models.ensemble import Ensemble

        task = payload.get("task", DEFAULT)
        model = Ensemble([_rebuilt(cfg, payload["label_names"], payload["modality"], task) for cfg in payload["ensemble"]], task=task)
    else:
        model = _rebuilt(payload["model_cfg"], payload["label_names"], payload["modality"], payload.get("task", DEFAULT))
    if payload.get("structure"):  # structurally pruned: give the modules their pruned shapes first
        from tunepipe.models.structure import restore_structure

        restore_structure(model, payload["structure"], payload["state_dict"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
