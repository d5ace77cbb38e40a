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
import dataclasses
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
from tunepipe.search import Range, Space, draw, has_ranges, parse_space

#: Sections a variant may override: the trial jobs share the upstream data, so only what training reads.
OVERRIDABLE = ("seed", "model", "train")
#: Variant name used when cross-validating the params as they are (sweep.method none, split.folds >= 2).
DEFAULT_VARIANT = "default"
NAME_PATTERN = r"[A-Za-z0-9_.+-]+"
_MAX_NAME = 80
#: Significant digits of a float in a variant name.
_NAME_DIGITS = 4


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


def sweep_enabled(params: Mapping[str, Any]) -> bool:
    """True when the DAG has sweep/CV jobs: a sweep method other than none, or k-fold CV."""
    return params["sweep"]["method"] != "none" or params["split"]["folds"] >= 2


def _check_key(key: str) -> Mapping[str, Any]:
    """Unknown keys fail here with the key named (free-form optimizer/scheduler kwargs are allowed); returns its schema."""
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
            return {}  # a keyword argument of a `_target_` object (e.g. train.optimizer.momentum)
        close = difflib.get_close_matches(part, list(props), n=1)
        hint = f"did you mean {'.'.join([*parts[:depth], close[0]])!r}? " if close else ""
        known = ", ".join(sorted(props)) or "none"
        raise ParamsError(f"sweep.parameters: unknown key {key!r}; {hint}Known keys of {'.'.join(parts[:depth]) or 'params'}: {known}.")
    if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is False:
        raise ParamsError(f"sweep.parameters: {key!r} is a section; sweep its keys (e.g. {key}.{next(iter(node['properties']))}).")
    return node


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
    if isinstance(value, float) and math.isfinite(value):
        value = float(f"{value:.{_NAME_DIGITS}g}")  # TPE's and random ranges' floats: the name rounds, the overrides keep them exact
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


def _schema_type(node: Mapping[str, Any]) -> set[str]:
    types = set()
    for option in [node, *node.get("anyOf", []), *node.get("oneOf", [])]:
        kind = option.get("type")
        types |= set(kind) if isinstance(kind, list) else ({kind} if kind else set())
    return types


def search_space(params: Mapping[str, Any]) -> Space:
    """`sweep.parameters` checked: known keys, ranges well formed (integer ranges for integer keys), every listed
    value and both ends of every range valid for its key (read as the schema reads them: "16" -> 16)."""
    sweep = params["sweep"]
    space = parse_space(sweep["parameters"])
    for key, values in space.items():
        types = _schema_type(_check_key(key))
        if isinstance(values, Range):
            if sweep["method"] == "grid":
                raise ParamsError(f"sweep.parameters: {key} is a range; grid needs a list of values (or use sweep.method random or tpe).")
            if "integer" in types and "number" not in types:
                if not values.integer:
                    raise ParamsError(f"sweep.parameters: {key} takes integers: give integer low/high (and step).")
            elif types & {"number"}:
                values = space[key] = dataclasses.replace(values, integer=False, low=float(values.low), high=float(values.high))
            for end in values.ends():
                apply_overrides(params, {key: end}, source="sweep range")
        else:
            space[key] = [_get(apply_overrides(params, {key: value}, source="sweep variant"), key) for value in values]
    return space


def _random_points(space: Space, samples: int, seed: int) -> list[dict[str, Any]]:
    """Distinct random points; lists alone: drawn without replacement from their product (never more than it holds)."""
    keys = list(space)
    if not has_ranges(space):
        values = [space[key] for key in keys]
        total = math.prod(len(options) for options in values)
        indices = random.Random(seed).sample(range(total), min(samples, total))
        return [dict(zip(keys, _combination(values, index))) for index in indices]
    rng, points, names = random.Random(seed), [], set()
    for _ in range(samples * 50):
        if len(points) == samples:
            break
        point = draw(space, rng)
        if variant_name(point) not in names:
            names.add(variant_name(point))
            points.append(point)
    return points


def expand_variants(params: Mapping[str, Any]) -> list[Variant]:
    """The variants params ask for, in a stable order; `[Variant("default")]` when only CV is on, `[]` when off.

    `tpe` also gives `[]`: its variants are asked round by round (tunepipe.search), the space is only checked here.
    """
    sweep = params["sweep"]
    if sweep["method"] == "none":
        if sweep["parameters"]:
            raise ParamsError("sweep.parameters is set but sweep.method is none: set sweep.method to grid, random or tpe.")
        return [Variant(DEFAULT_VARIANT)] if params["split"]["folds"] >= 2 else []
    if not sweep["parameters"]:
        raise ParamsError(f"sweep.method is {sweep['method']} but sweep.parameters is empty: give at least one key and its values (or a range).")
    space = search_space(params)
    if sweep["method"] == "tpe":
        if params["split"]["folds"] >= 2:
            raise ParamsError("sweep.method tpe does not cross-validate yet: set split.folds to 0, or use grid/random with folds.")
        return []
    if sweep["method"] == "grid":
        keys = list(space)
        values = [space[key] for key in keys]
        points = [dict(zip(keys, _combination(values, index))) for index in range(math.prod(len(v) for v in values))]
    else:
        points = _random_points(space, sweep["samples"], sweep["seed"])
    variants, seen = [], {}
    for overrides in points:
        apply_overrides(params, overrides, source="sweep variant")
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


#: What a tpe trial's row also records: its round and where it stopped.
_TRIAL_FACTS = ("round", "epochs_run", "max_epochs", "pruned_at_epoch")


def select(trials: Sequence[Mapping[str, Any]], metric: str, mode: str) -> dict[str, Any]:
    """Rank variants on the mean of their trials' scores; ties go to the variant listed first.

    Each trial is `{"variant", "overrides", "fold", "score"}` (fold None without CV), and for tpe also `round`,
    `epochs_run`, `max_epochs` and `pruned_at_epoch` (kept in the variant's row): a pruned trial competes with its
    best score before it was stopped. Returns the selection record written to results/select/selection.json.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be max or min, not {mode!r}")
    by_variant: dict[str, dict[str, Any]] = {}
    for trial in trials:
        entry = by_variant.setdefault(trial["variant"], {"name": trial["variant"], "overrides": dict(trial["overrides"]), "folds": [], "scores": []})
        entry["folds"].append(trial["fold"])
        entry["scores"].append(float(trial["score"]))
        entry.update({key: trial[key] for key in _TRIAL_FACTS if key in trial})
    if not by_variant:
        raise ValueError("no trials to select from")
    rows = []
    for order, entry in enumerate(by_variant.values()):
        facts = {key: entry[key] for key in _TRIAL_FACTS if key in entry}
        pairs = sorted(zip(entry["folds"], entry["scores"]), key=lambda pair: -1 if pair[0] is None else pair[0])
        scores = [score for _, score in pairs]
        rows.append({
            "name": entry["name"],
            "overrides": entry["overrides"],
            "folds": [fold for fold, _ in pairs],
            "scores": scores,
            "mean": statistics.fmean(scores),
            "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            **facts,
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
