"""An ensemble of fine-tuned classifiers that take one input: the mean of their class probabilities.

The sweep's top-k variants (their results/sweep/<variant>/best.ckpt, rule `ensemble`) averaged. The forward
returns the log of the mean probabilities, so everything downstream that reads logits (argmax, softmax,
evaluation, prune's scoring, ONNX parity) reads the ensemble as it reads one classifier: softmax of the output
is exactly the mean of the members' softmax.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


class Ensemble(nn.Module):
    """The members' mean class probabilities, as log-probabilities (members in rank order, the winner first)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        names = {tuple(member.input_names) for member in members}
        classes = {member.head.out_features for member in members}
        if len(names) != 1 or len(classes) != 1:
            raise ValueError(f"ensemble members must take the same inputs and predict the same classes, not {sorted(names)} / {sorted(classes)}")
        self.members = nn.ModuleList(members)
        self.input_names = tuple(members[0].input_names)

    @property
    def head(self) -> nn.Linear:
        """The winner's head: where callers read the number of classes (`head.out_features`)."""
        return self.members[0].head

    def forward(self, *inputs: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([member(*inputs, **named).float().log_softmax(dim=-1) for member in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def mean_probabilities(member_probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ensemble's class probabilities from its members' (each rows x classes): what softmax(Ensemble(x)) is."""
    return torch.stack(list(member_probs)).mean(dim=0)


def input_mismatch(winner: Mapping[str, Any], member: Mapping[str, Any], preprocessing: Any) -> str | None:
    """Why a member cannot share the winner's input (None when it can), from each checkpoint's meta
    (model_cfg, label_names, modality) and `preprocessing(model_cfg)`, the modality's account of what the
    model's input is (texts: tokenizer and max_length; images: image size)."""
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


def verdict(members: int, ensemble_val: float, winner_val: float) -> str:
    """One line comparing the ensemble's validation accuracy with the single winner's (prune decides what is exported)."""
    gain = ensemble_val - winner_val
    if members < 2:
        return "no ensemble: fewer than two variants share the winner's input; prune scores the winner alone"
    side = "above" if gain > 0 else ("level with" if gain == 0 else "below")
    return (f"ensemble of {members}: val acc {ensemble_val:.4f} vs the winner's {winner_val:.4f} ({gain:+.4f}, {side}); "
            "prune exports it only if that is more than prune.max_accuracy_drop above every smaller candidate")
