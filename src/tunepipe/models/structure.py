"""The shapes of a structurally pruned model, saved beside its state dict and restored before loading it.

A model with heads, neurons or channels removed no longer fits its class's default shapes: `structure()`
records the shape attributes of every module and `restore_structure()` gives a freshly built model those
shapes (plain ints and tensors, so files still load with `weights_only=True`).
"""

from __future__ import annotations

import torch
from torch import nn

# Integer attributes that define a module's shapes (torch and transformers' BERT attention).
SHAPE_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "groups", "num_features", "num_attention_heads", "all_head_size")


def structure(model: nn.Module) -> dict[str, dict[str, int]]:
    """The shape attributes of every module (saved with a pruned model's state dict), and the length of every
    module list (a distilled student keeps fewer transformer layers)."""
    result = {}
    for name, module in model.named_modules():
        attrs = {a: getattr(module, a) for a in SHAPE_ATTRS if isinstance(getattr(module, a, None), int)}
        if isinstance(module, nn.ModuleList):
            attrs["length"] = len(module)
        if attrs:
            result[name] = attrs
    return result


def restore_structure(model: nn.Module, shapes: dict[str, dict[str, int]], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Give a freshly built dense model the shapes of a pruned one, so that `load_state_dict(state_dict)` fits."""
    modules = dict(model.named_modules())
    for name, attrs in sorted(shapes.items()):  # lists first shortened (parents sort before their children)
        if isinstance(modules.get(name), nn.ModuleList) and "length" in attrs:
            del modules[name][attrs["length"]:]
            modules = dict(model.named_modules())
    for name, attrs in shapes.items():
        if name in modules:
            for attr, value in attrs.items():
                if attr != "length":
                    setattr(modules[name], attr, value)
    for key, tensor in state_dict.items():
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        if module is None:
            continue
        if leaf in module._parameters and module._parameters[leaf] is not None and module._parameters[leaf].shape != tensor.shape:
            module._parameters[leaf] = nn.Parameter(torch.empty_like(tensor))
        elif leaf in module._buffers and module._buffers[leaf] is not None and module._buffers[leaf].shape != tensor.shape:
            module._buffers[leaf] = torch.empty_like(tensor)
    return model
