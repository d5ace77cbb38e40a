"""Pruning the fine-tuned classifier: unstructured (zeroed weights) and structured (removed weights).

Unstructured global magnitude pruning (torch.nn.utils.prune) shrinks a compressed model but gives no
speed-up in dense runtimes. Structured pruning removes whole units, so the model really gets smaller and
faster: attention heads and FFN neurons of a BERT-style encoder (L1-ranked), or channels of a CNN
(torch-pruning, which follows residual links and depthwise convolutions).

A level is one `PruningLevel` record (name, method, sparsity), decided by prune and read as-is by export
and the report. A structurally pruned model is saved with its shapes (`tunepipe.models.structure`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from tunepipe.errors import ParamsError
from tunepipe.models.structure import structure
from tunepipe.tasks import Task

Finetune = Callable[[nn.Module], None]

#: `distilled`: a student with fewer layers made and trained by the distill stage (tunepipe.optimize.distillation);
#: its sparsity is the fraction of the teacher's layers it dropped. `ensemble`: the sweep's top-k variants averaged
#: (rule ensemble, tunepipe.models.ensemble), uncompressed like dense (sparsity 0, named `ensemble-<k>`).
METHODS = ("dense", "unstructured", "structured", "distilled", "ensemble")
#: The candidates that are not compressed: the best validation score among them is what the others are held to.
UNCOMPRESSED = ("dense", "ensemble")


@dataclass(frozen=True)
class PruningLevel:
    """One pruning level: written by prune (levels.json, the model file), read by export and the report as it is."""

    name: str
    method: str
    sparsity: float

    @classmethod
    def at(cls, method: str, sparsity: float) -> PruningLevel:
        """The level of `method` at `sparsity` (the fraction of weights zeroed, or of units removed)."""
        if method not in METHODS:
            raise ValueError(f"unknown pruning method {method!r}; one of: {', '.join(METHODS)}")
        return cls("dense" if method == "dense" else f"{method}-{sparsity:.2f}", method, sparsity)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "sparsity": self.sparsity}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PruningLevel:
        return cls(name=record["name"], method=record["method"], sparsity=record["sparsity"])


DENSE = PruningLevel.at("dense", 0.0)


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every Linear and Conv2d weight of the encoder; the small task head is left dense."""
    encoder = getattr(model, "encoder", model)
    return [(module, "weight") for module in encoder.modules() if isinstance(module, (nn.Linear, nn.Conv2d))]


def magnitude_prune(model: nn.Module, sparsity: float, finetune: Finetune | None = None) -> nn.Module:
    """Return a copy with the `sparsity` fraction of smallest-magnitude encoder weights set to zero.

    `finetune` runs while the masks are attached, so zeroed weights stay zero.
    """
    pruned = copy.deepcopy(model)
    targets = prunable_weights(pruned)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    if finetune is not None:
        finetune(pruned)
    for module, name in targets:
        prune.remove(module, name)
    return pruned


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sparsity_report(model: nn.Module, dense_params: int | None = None) -> dict[str, Any]:
    """Zeroed fraction of the prunable weights, and the parameter counts; `removed_fraction` against `dense_params`."""
    weights = [getattr(module, name) for module, name in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    all_params = count_params(model)
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    report = {
        "actual_sparsity": round(zeros / total, 6) if total else 0.0,
        "nonzero_params": int(all_params - all_zeros),
        "total_params": int(all_params),
        "size_bytes": int(sum(p.numel() * p.element_size() for p in model.parameters()) + buffers),
    }
    if dense_params:
        report["removed_fraction"] = round(1 - all_params / dense_params, 6)
    return report


# ---------------------------------------------------------------- structured: transformer heads and FFN neurons


def _bert_layers(model: nn.Module) -> list[nn.Module]:
    encoder = getattr(model, "encoder", model)
    layers = [m for m in encoder.modules() if all(hasattr(m, a) for a in ("attention", "intermediate", "output"))]
    return [m for m in layers if hasattr(m.attention, "self") and hasattr(m.attention.self, "query")]


def _keep_linear(layer: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear holding only the rows (dim 0) or input columns (dim 1) in `keep`."""
    weight = layer.weight.detach().index_select(dim, keep).clone()
    bias = None if layer.bias is None else (layer.bias.detach()[keep] if dim == 0 else layer.bias.detach()).clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _n_removed(total: int, ratio: float) -> int:
    """How many of `total` units to remove at `ratio`, always keeping at least one."""
    return min(total - 1, int(round(total * ratio)))


def prune_transformer(model: nn.Module, ratio: float) -> None:
    """In place: remove the `ratio` fraction of attention heads and FFN neurons in every layer, smallest L1 first."""
    layers = _bert_layers(model)
    if not layers:
        raise ParamsError("prune.method structured needs a BERT-style encoder (layers with attention.self.query, intermediate, output).")
    for layer in layers:
        attn, out = layer.attention.self, layer.attention.output.dense
        heads, size = attn.num_attention_heads, attn.attention_head_size
        drop = _n_removed(heads, ratio)
        if drop:
            per_head = sum(getattr(attn, n).weight.detach().abs().view(heads, size, -1).sum(dim=(1, 2)) for n in ("query", "key", "value"))
            per_head = per_head + out.weight.detach().abs().view(out.out_features, heads, size).sum(dim=(0, 2))
            kept_heads = per_head.argsort(descending=True)[: heads - drop].sort().values
            keep = (kept_heads[:, None] * size + torch.arange(size)).flatten()
            for name in ("query", "key", "value"):
                setattr(attn, name, _keep_linear(getattr(attn, name), keep, 0))
            layer.attention.output.dense = _keep_linear(out, keep, 1)
            attn.num_attention_heads = heads - drop
            attn.all_head_size = attn.num_attention_heads * size
        inner, outer = layer.intermediate.dense, layer.output.dense
        drop = _n_removed(inner.out_features, ratio)
        if drop:
            score = inner.weight.detach().abs().sum(dim=1) + outer.weight.detach().abs().sum(dim=0)
            keep = score.argsort(descending=True)[: inner.out_features - drop].sort().values
            layer.intermediate.dense = _keep_linear(inner, keep, 0)
            layer.output.dense = _keep_linear(outer, keep, 1)


# ---------------------------------------------------------------- structured: CNN channels


def prune_channels(model: nn.Module, ratio: float, example: dict[str, torch.Tensor]) -> None:
    """In place: remove the `ratio` fraction of the encoder's conv channels (L1 magnitude, torch-pruning), head's outputs kept."""
    import torch_pruning as tp

    inputs = tuple(example[name] for name in model.input_names)
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=inputs,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[model.head],
        round_to=8,  # SIMD-friendly widths
    )
    pruner.step()


def structured_unsupported(model: nn.Module) -> str | None:
    """Why structured pruning cannot cut `model` (None when it can): it removes heads and FFN neurons of BERT-style
    encoder layers, or channels of convolutional encoders, and nothing else."""
    if _bert_layers(model) or any(isinstance(m, nn.Conv2d) for m in model.encoder.modules()):
        return None
    return (f"structured pruning removes attention heads and FFN neurons of BERT-style encoders and channels of CNNs; "
            f"{type(model.encoder).__name__} is neither, so its structured levels are left out")


def structured_prune(model: nn.Module, ratio: float, example: dict[str, torch.Tensor], finetune: Finetune | None = None) -> nn.Module:
    """A copy with whole units removed: heads + FFN neurons (transformer) or channels (CNN), then an optional fine-tune."""
    pruned = copy.deepcopy(model).eval()
    if _bert_layers(pruned):
        prune_transformer(pruned, ratio)
    elif any(isinstance(m, nn.Conv2d) for m in pruned.encoder.modules()):
        prune_channels(pruned, ratio, example)
    else:
        raise ParamsError("prune.method structured supports BERT-style encoders and convolutional encoders only.")
    if finetune is not None:
        finetune(pruned)
    return pruned.eval()


def prune_at(dense: nn.Module, level: PruningLevel, example: dict[str, torch.Tensor], finetune: Finetune | None = None) -> nn.Module:
    """The model at `level`: `dense` itself, or a pruned (and optionally fine-tuned) copy."""
    if level.method == "dense":
        return dense
    if level.method == "unstructured":
        return magnitude_prune(dense, level.sparsity, finetune)
    return structured_prune(dense, level.sparsity, example, finetune)


def saved_structure(model: nn.Module, level: PruningLevel) -> dict[str, dict[str, int]] | None:
    """The shapes to save with a model at `level`: only structured pruning and distillation change them."""
    return structure(model) if level.method in ("structured", "distilled") else None


# ---------------------------------------------------------------- fine-tune, selection


def finetune_steps(model: nn.Module, dataset, steps: int, lr: float, batch_size: int, seed: int,
                   teacher: nn.Module | None = None, temperature: float = 2.0, alpha: float = 0.5, task: Task | None = None,
                   stats: Mapping[str, float] | None = None) -> None:
    """A short recovery fine-tune (AdamW) on training rows after pruning; `steps` optimizer steps. With a `teacher`
    (the dense model) the loss is the `task`'s distillation loss (tunepipe.optimize.distillation), else its true-target term."""
    from tunepipe.optimize.distillation import train_steps

    train_steps(model, dataset, steps=steps, lr=lr, batch_size=batch_size, seed=seed, teacher=teacher, temperature=temperature, alpha=alpha,
                task=task, stats=stats)


#: What levels are selected on when no task says otherwise (single_label's `val_<level_metrics[0]>`).
SELECTION_METRIC = "val_accuracy"


def reference_level(levels: Sequence[dict[str, Any]], metric: str = SELECTION_METRIC) -> dict[str, Any]:
    """The uncompressed candidate (dense, or the ensemble) with the best validation `metric`; a tie goes to dense (listed first)."""
    return max((level for level in levels if level["method"] in UNCOMPRESSED), key=lambda level: level[metric])


def qualifying(levels: Sequence[dict[str, Any]], max_accuracy_drop: float, metric: str = SELECTION_METRIC) -> list[dict[str, Any]]:
    """The levels whose validation `metric` is within `max_accuracy_drop` of the reference's (`reference_level`)."""
    reference = reference_level(levels, metric)
    return [level for level in levels if level[metric] >= reference[metric] - max_accuracy_drop - 1e-12]


@dataclass(frozen=True)
class Selection:
    """What prune keeps (a row of `levels`), what it was held to, and why, in words (levels.json's `selected_reason`)."""

    level: dict[str, Any]
    reference: dict[str, Any]
    reason: str


def select_candidate(levels: Sequence[dict[str, Any]], max_accuracy_drop: float, select: str = "smallest",
                     metric: str = SELECTION_METRIC) -> Selection:
    """Among the candidates whose validation `metric` (higher is better: the task's `val_<level_metrics[0]>`) is within
    `max_accuracy_drop` of the best uncompressed one's (dense, or the sweep's ensemble), the smallest (fewest non-zero
    parameters) or the fastest (lowest eager batch-1 latency); ties go to the higher `metric`, then to the one listed
    first. Without an ensemble the reference is dense; with one, the ensemble (the largest and slowest) is kept only
    when it is more than the allowed drop above every smaller or faster candidate."""
    reference = reference_level(levels, metric)
    ok = qualifying(levels, max_accuracy_drop, metric)
    if select == "fastest":
        key = lambda level: (level["latency_ms"], -level[metric])  # noqa: E731
    else:
        key = lambda level: (level["nonzero_params"], -level[metric])  # noqa: E731
    kept = min(ok, key=key)
    return Selection(kept, reference, _reason(kept, reference, levels, max_accuracy_drop, select, metric))


def metric_label(metric: str) -> str:
    """How logs and reasons name a metric: `val_accuracy` -> `val acc`, `val_f1_micro` -> `val f1 micro`."""
    return metric.replace("accuracy", "acc").replace("_", " ")


def _reason(kept: dict[str, Any], reference: dict[str, Any], levels: Sequence[dict[str, Any]], drop: float, select: str, metric: str) -> str:
    allowed = f"prune.max_accuracy_drop ({drop:g})"
    label = metric_label(metric)
    others = [level for level in levels if level is not kept]
    if kept["method"] == "ensemble":
        dense = next(level for level in levels if level["method"] == "dense")
        return (f"{kept['name']}: {label} {kept[metric]:.4f} vs dense {dense[metric]:.4f}, more than {allowed} "
                f"above every {'smaller' if select == 'smallest' else 'faster'} candidate")
    held_to = f"the best uncompressed candidate ({reference['name']}, {label} {reference[metric]:.4f})"
    if kept is reference:
        rest = "no smaller candidate" if select == "smallest" else "no faster candidate"
        return f"{kept['name']}: {held_to}; {rest} is within {allowed} of it" if others else f"{kept['name']}: the only candidate"
    return f"{kept['name']}: {label} {kept[metric]:.4f}, within {allowed} of {held_to}; the {select} such candidate"


def select_level(levels: Sequence[dict[str, Any]], max_accuracy_drop: float, select: str = "smallest",
                 metric: str = SELECTION_METRIC) -> dict[str, Any]:
    """The row `select_candidate` keeps."""
    return select_candidate(levels, max_accuracy_drop, select, metric).level
