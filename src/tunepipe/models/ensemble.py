"""An ensemble of fine-tuned models that take one input: their outputs combined by the task (tunepipe.tasks).

The sweep's top-k variants (their results/sweep/<variant>/best.ckpt, rule `ensemble`) averaged. The forward
returns logits whose task `outputs` are the members' mean prediction (`Task.combine_members`: one label, the log of
the mean class probabilities; a label set, the logit of each label's mean probability; a number, the mean output),
so everything downstream that reads logits (the task's outputs and scores, prune's scoring, ONNX parity) reads the
ensemble as it reads one model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tunepipe.tasks import DEFAULT, get_task


class Ensemble(nn.Module):
    """The members' combined outputs, as logits (members in rank order, the winner first); `task` is the task's name."""

    def __init__(self, members: Sequence[nn.Module], task: str = DEFAULT) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        names = {tuple(member.input_names) for member in members}
        classes = {member.head.out_features for member in members}
        if len(names) != 1 or len(classes) != 1:
            raise ValueError(f"ensemble members must take the same inputs and predict the same classes, not {sorted(names)} / {sorted(classes)}")
        self.members = nn.ModuleList(members)
        self.input_names = tuple(members[0].input_names)
        self.task = get_task(task)

    @property
    def head(self) -> nn.Linear:
        """The winner's head: where callers read the number of outputs (`head.out_features`)."""
        return self.members[0].head

    def forward(self, *inputs: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        return self.task.combine_members(torch.stack([member(*inputs, **named) for member in self.members]))


def input_mismatch(winner: Mapping[str, Any], member: Mapping[str, Any], preprocessing: Any) -> str | None:
    """Why a member cannot share the winner's input (None when it can), from each checkpoint's meta
    (model_cfg, label_names, modality) and `preprocessing(model_cfg)`, the modality's account of what the
    model's input is (texts: tokenizer and max_length; images: image size)."""
    if member.get("task", DEFAULT) != winner.get("task", DEFAULT):
        return f"it is a {member.get('task', DEFAULT)} model and the winner a {winner.get('task', DEFAULT)} one"
    if member["modality"] != winner["modality"]:
        return f"it is a {member['modality']} model and the winner a {winner['modality']} one"
    if list(member["label_names"]) != list(winner["label_names"]):
        return f"its labels {member['label_names']} are not the winner's {winner['label_names']}"
    ours, theirs = preprocessing(winner["model_cfg"]), preprocessing(member["model_cfg"])
    differ = [key for key in sorted(set(ours) | set(theirs)) if key != "steps" and ours.get(key) != theirs.get(key)]
    if not differ and ours != theirs:
        differ = ["steps"]
    if differ:
        return "its input differs from the winner's (" + ", ".join(f"{key} {theirs.get(key)!r} vs {ours.get(key)!r}" for key in differ) + ")"
    return None


def verdict(members: int, ensemble_val: float, winner_val: float, metric: str = "accuracy") -> str:
    """One line comparing the ensemble's validation `metric` (the task's first level metric) with the single winner's
    (prune decides what is exported)."""
    gain = ensemble_val - winner_val
    if members < 2:
        return "no ensemble: fewer than two variants share the winner's input; prune scores the winner alone"
    side = "above" if gain > 0 else ("level with" if gain == 0 else "below")
    label = metric.replace("accuracy", "acc").replace("_", " ")
    return (f"ensemble of {members}: val {label} {ensemble_val:.4f} vs the winner's {winner_val:.4f} ({gain:+.4f}, {side}); "
            "prune exports it only if that is more than prune.max_accuracy_drop above every smaller candidate")
