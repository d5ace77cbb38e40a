"""The sweep/cross-validation part of the training section (results/select/selection.json, when a sweep ran; with
results/ensemble/summary.json, the top-k variants' ensemble against the winner)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tunepipe.report.sections import as_dict, as_list


def sweep(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """One row per variant with its overrides and score; `ran` is False when there was no sweep.

    tpe: also each trial's round and where it stopped (pruned at epoch e of max_epochs, or the epochs it ran), and the
    compute pruning saved: epochs not trained / epochs a sweep without pruning would have trained."""
    from tunepipe.report import plots

    selection = as_dict(inputs.get("selection"))
    variants = [v for v in as_list(selection.get("variants")) if isinstance(v, dict)]
    keys: list[str] = []
    for variant in variants:
        keys += [key for key in as_dict(variant.get("overrides")) if key not in keys]
    rows = []
    for v in variants:
        overrides = as_dict(v.get("overrides"))
        rows.append({
            "name": v.get("name"),
            "rank": v.get("rank"),
            "winner": v.get("name") == selection.get("winner"),
            "values": [json.dumps(overrides[key]) if key in overrides else "" for key in keys],
            "mean": v.get("mean"),
            "std": v.get("std"),
            "runs": len(as_list(v.get("scores"))),
            "round": v.get("round"),
            "epochs_run": v.get("epochs_run"),
            "max_epochs": v.get("max_epochs"),
            "pruned_at_epoch": v.get("pruned_at_epoch"),
        })
    return {
        "ran": bool(variants),
        "method": selection.get("method"),
        "folds": selection.get("folds"),
        "metric": selection.get("metric"),
        "mode": selection.get("mode"),
        "winner": selection.get("winner"),
        "keys": keys,
        "rows": rows,
        "tpe": selection.get("method") == "tpe",
        "pruning": as_dict(selection.get("pruning")),
        "figure": plots.sweep_scores(variants, selection.get("metric"), selection.get("winner")) if variants else None,
        "ensemble": ensemble(inputs),
    }


def ensemble(inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ensemble (rule `ensemble`) beside the winner: its members, val/test accuracy and macro F1 of both, the
    variants skipped (another input) and the verdict; None when the rule did not run."""
    summary = as_dict(inputs.get("ensemble"))
    if not summary:
        return None
    members = [m for m in as_list(summary.get("members")) if isinstance(m, dict)]
    winner = as_dict(summary.get("winner"))
    keys = ("val_accuracy", "val_f1_macro", "test_accuracy", "test_f1_macro")
    rows = [(f"ensemble of {len(members)}", as_dict(summary.get("ensemble"))), (f"winner {winner.get('variant') or ''}".strip(), winner)]
    return {
        "members": [m.get("variant") for m in members],
        "top_k": summary.get("top_k"),
        "rows": [{"label": label, **{key: row.get(key) for key in keys}} for label, row in rows],
        "skipped": [{"variant": s.get("variant"), "rank": s.get("rank"), "reason": s.get("reason")} for s in as_list(summary.get("skipped")) if isinstance(s, dict)],
        "verdict": summary.get("verdict"),
    }
