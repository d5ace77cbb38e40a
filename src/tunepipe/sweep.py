"""Hyper-parameter sweeps and cross-validation: which variants to train, and which one wins.

A variant is a set of overrides of dotted params keys (`{"train.encoder_lr": 2e-5}`). Its name is made from
the keys and values it sets, so it is stable across runs and machines and names its output folder
(results/sweep/<name>/). Expansion is deterministic (grid: the declared key order, values in order; random:
seeded draw without replacement) and every variant's params are validated against the schema
(`validate_run_params`: the params and every variant they ask for). Importing this module is cheap (no
torch): the Snakefile calls it to build the DAG.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import random
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunepipe.config import load_schema, validate_params
from tunepipe.errors import ParamsError

#: Sections a variant may override: the trial jobs share the upstream data, so only what training reads.
OVERRIDABLE = ("seed", "model", "train")
#: Variant name used when cross-validating the params as they are (sweep.method none, split.folds >= 2).
DEFAULT_VARIANT = "default"
NAME_PATTERN = r"[A-Za-z0-9_.+-]+"
_MAX_NAME = 80


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


def sweep_enabled(params: Mapping[str, Any]) -> bool:
    """True when the DAG has sweep/CV jobs: a sweep method other than none, or k-fold CV."""
    return params["sweep"]["method"] != "none" or params["split"]["folds"] >= 2


def _check_key(key: str) -> None:
    """Unknown keys fail here with the key named (free-form optimizer/scheduler kwargs are allowed)."""
    parts = key.split(".")
    if parts[0] not in OVERRIDABLE:
        raise ParamsError(
            f"sweep.parameters: {key!r} cannot be swept: variants share the data steps, so only `seed`, "
            "`model.*` and `train.*` keys can vary."
        )
    node: Mapping[str, Any] = load_schema()
    for depth, part in enumerate(parts):
        props = node.get("properties", {})
        if part in props:
            node = props[part]
            continue
        free_form = node.get("type") in ("object", ["object", "null"]) and node.get("additionalProperties", True) is not False
        if free_form and depth == len(parts) - 1 and depth > 1:
            return  # a keyword argument of a `_target_` object (e.g. train.optimizer.momentum)
        close = difflib.get_close_matches(part, list(props), n=1)
        hint = f"did you mean {'.'.join([*parts[:depth], close[0]])!r}? " if close else ""
        known = ", ".join(sorted(props)) or "none"
        raise ParamsError(f"sweep.parameters: unknown key {key!r}; {hint}Known keys of {'.'.join(parts[:depth]) or 'params'}: {known}.")
    if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is False:
        raise ParamsError(f"sweep.parameters: {key!r} is a section; sweep its keys (e.g. {key}.{next(iter(node['properties']))}).")


def apply_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any], source: str = "sweep variant") -> dict[str, Any]:
    """A validated copy of params with dotted-key overrides applied (schema limits checked on the result)."""
    result = copy.deepcopy(dict(params))
    for key, value in overrides.items():
        _check_key(key)
        *parents, last = key.split(".")
        node = result
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = copy.deepcopy(value)
    try:
        return validate_params(result, source=source)
    except ParamsError as exc:
        problems = [line.strip()[2:] for line in str(exc).splitlines() if line.strip().startswith("- ")]
        raise ParamsError(f"{source} ({json.dumps(dict(overrides), default=str)}): " + "; ".join(problems)) from None


def _get(params: Mapping[str, Any], key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        node = node[part]
    return node


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = text.rsplit(".", 1)[-1] if isinstance(value, str) and re.fullmatch(r"[\w.]+\.[A-Za-z_]\w*", value) else text
    return re.sub(r"[^A-Za-z0-9_.+-]+", "", text.replace(" ", "")) or "x"


def variant_name(overrides: Mapping[str, Any]) -> str:
    """`encoder_lr-2e-05__batch_size-16`: the last part of each key and its value; a hash when that is ambiguous or long."""
    if not overrides:
        return DEFAULT_VARIANT
    tails = [key.rsplit(".", 1)[-1] for key in overrides]
    labels = tails if len(set(tails)) == len(tails) else [key.replace(".", "_") for key in overrides]
    name = "__".join(f"{label}-{_slug(value)}" for label, value in zip(labels, overrides.values()))
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:10]
        name = f"{name[: _MAX_NAME - 12]}__{digest}"
    return name


def _combination(values: Sequence[Sequence[Any]], index: int) -> list[Any]:
    """The index-th element of the product of `values` (last key varies fastest, like itertools.product)."""
    picked = []
    for options in reversed(values):
        index, position = divmod(index, len(options))
        picked.append(options[position])
    return picked[::-1]


def expand_variants(params: Mapping[str, Any]) -> list[Variant]:
    """The variants params ask for, in a stable order; `[Variant("default")]` when only CV is on, `[]` when off."""
    sweep = params["sweep"]
    grid = sweep["parameters"]
    if sweep["method"] == "none":
        if grid:
            raise ParamsError("sweep.parameters is set but sweep.method is none: set sweep.method to grid or random.")
        return [Variant(DEFAULT_VARIANT)] if params["split"]["folds"] >= 2 else []
    if not grid:
        raise ParamsError(f"sweep.method is {sweep['method']} but sweep.parameters is empty: give at least one key and its values.")
    keys = list(grid)
    for key in keys:
        _check_key(key)
    values = [list(grid[key]) for key in keys]
    total = math.prod(len(options) for options in values)
    if sweep["method"] == "grid":
        indices = list(range(total))
    else:
        indices = random.Random(sweep["seed"]).sample(range(total), min(sweep["samples"], total))
    variants, seen = [], {}
    for index in indices:
        overrides = dict(zip(keys, _combination(values, index)))
        resolved = apply_overrides(params, overrides, source="sweep variant")
        overrides = {key: _get(resolved, key) for key in keys}  # as the schema reads them ("16" -> 16)
        name = variant_name(overrides)
        if name in seen:
            raise ParamsError(f"sweep.parameters: variants {seen[name]} and {overrides} get the same name {name!r}; remove the duplicate value.")
        seen[name] = overrides
        variants.append(Variant(name, overrides))
    return variants


def validate_run_params(raw: Mapping[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """`validate_params`, then every sweep variant expanded and validated: what a run (or `tunepipe validate`) needs."""
    params = validate_params(raw, source=source)
    try:
        expand_variants(params)
    except ParamsError as exc:
        raise ParamsError(f"invalid parameters in {source} (or a --config/--configfile override):\n  - {exc}") from None
    return params


def fold_indices(params: Mapping[str, Any]) -> list[int]:
    """Fold numbers each variant is trained on; `[]` means no CV (one run on the whole training split)."""
    folds = params["split"]["folds"]
    return list(range(folds)) if folds >= 2 else []


# ------------------------------------------------------------------------------------------- selection


def score_at_best_epoch(history: Sequence[Mapping[str, Any]], best_epoch: int, metric: str) -> float:
    """The value of `metric` in the epoch whose checkpoint was kept."""
    for row in history:
        if int(row["epoch"]) == int(best_epoch) and row.get(metric) is not None:
            return float(row[metric])
    raise ValueError(f"no {metric} recorded for epoch {best_epoch}")


def select(trials: Sequence[Mapping[str, Any]], metric: str, mode: str) -> dict[str, Any]:
    """Rank variants on the mean of their trials' scores; ties go to the variant listed first.

    Each trial is `{"variant", "overrides", "fold", "score"}` (fold None without CV). Returns the
    selection record written to results/select/selection.json.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be max or min, not {mode!r}")
    by_variant: dict[str, dict[str, Any]] = {}
    for trial in trials:
        entry = by_variant.setdefault(trial["variant"], {"name": trial["variant"], "overrides": dict(trial["overrides"]), "folds": [], "scores": []})
        entry["folds"].append(trial["fold"])
        entry["scores"].append(float(trial["score"]))
    if not by_variant:
        raise ValueError("no trials to select from")
    rows = []
    for order, entry in enumerate(by_variant.values()):
        pairs = sorted(zip(entry["folds"], entry["scores"]), key=lambda pair: -1 if pair[0] is None else pair[0])
        scores = [score for _, score in pairs]
        rows.append({
            "name": entry["name"],
            "overrides": entry["overrides"],
            "folds": [fold for fold, _ in pairs],
            "scores": scores,
            "mean": statistics.fmean(scores),
            "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "order": order,
        })
    sign = -1.0 if mode == "max" else 1.0
    ranked = sorted(rows, key=lambda row: (sign * row["mean"], row["order"]))
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
        row["winner"] = rank == 1
        del row["order"]
    winner = ranked[0]
    return {"metric": metric, "mode": mode, "winner": winner["name"], "overrides": winner["overrides"], "mean": winner["mean"],
            "std": winner["std"], "variants": sorted(ranked, key=lambda row: row["rank"])}
