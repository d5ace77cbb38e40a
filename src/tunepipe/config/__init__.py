"""Load params, fill defaults, and validate them against the one schema, with messages a person can act on.

The schema (params.schema.yaml, beside this file, shipped with the package) is the single source of truth
for every parameter: its types and limits drive validation, its defaults fill missing keys, and its
descriptions become the parameter reference (`tunepipe params`). Importing this module is cheap (no torch).
Sweep variants are validated one level up (tunepipe.sweep.validate_run_params), so this never imports sweep.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tunepipe.errors import ParamsError
from tunepipe.targets import TARGET_KEYS, check_target

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")


@cache
def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_params(path: Path) -> dict[str, Any]:
    """Read a params YAML file and validate it (defaults filled in)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    return validate_params(raw, source=str(path))


def _fill_defaults(instance: Any, schema: Mapping[str, Any]) -> Any:
    """Return a copy of `instance` with schema defaults filled in, recursively through objects."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return instance
    filled = dict(instance)
    for key, sub in schema.get("properties", {}).items():
        if key not in filled and "default" in sub:
            filled[key] = copy.deepcopy(sub["default"])
        if key in filled:
            filled[key] = _fill_defaults(filled[key], sub)
    return filled


_JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None), "array": list, "object": dict}


def _allowed_types(schema: Mapping[str, Any]) -> set[str]:
    kinds = schema.get("type", [])
    allowed = set([kinds] if isinstance(kinds, str) else kinds)
    for alternative in schema.get("anyOf", []):
        allowed |= _allowed_types(alternative)
    return allowed


def _coerce(instance: Any, schema: Mapping[str, Any]) -> Any:
    """Turn strings into the type the schema asks for where the text says so ("4" -> 4, "[0.3]" -> [0.3]).

    Snakemake hands nested `--config` values over as strings (`--config train='{max_epochs: 3}'` gives "3").
    """
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else {}
        return {key: _coerce(value, props.get(key, extra)) for key, value in instance.items()}
    if isinstance(instance, list):
        return [_coerce(item, schema.get("items", {})) for item in instance]
    if isinstance(instance, str):
        wanted = _allowed_types(schema) - {"string"}
        if not wanted:
            return instance
        try:
            parsed = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        for kind in wanted:
            python_type = _JSON_TYPES.get(kind)
            if python_type and isinstance(parsed, python_type) and not (kind in ("integer", "number") and isinstance(parsed, bool)):
                return _coerce(parsed, schema)
    return instance


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _schema_at(schema: Mapping[str, Any], path: Iterable[Any]) -> Mapping[str, Any]:
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return node


def _alternative(alt: Mapping[str, Any]) -> str:
    """One branch of an `anyOf` in words: `an integer from 8 to 512`, `"auto"`, `null`."""
    if "enum" in alt:
        return " or ".join(json.dumps(value) for value in alt["enum"])
    kind = alt.get("type", "a value")
    if kind == "null":
        return "null"
    words = {"integer": "an integer", "number": "a number", "string": "a string", "array": "a list", "object": "a mapping", "boolean": "true/false"}
    text = words.get(kind, kind)
    low, high = alt.get("minimum", alt.get("exclusiveMinimum")), alt.get("maximum")
    if low is not None and high is not None:
        return f"{text} from {low} to {high}"
    if low is not None:
        return f"{text} {'>' if 'exclusiveMinimum' in alt else '>='} {low}"
    return text


def _describe_error(error: jsonschema.ValidationError, schema: Mapping[str, Any]) -> str:
    where = _dotted(error.absolute_path)
    node = _schema_at(schema, error.absolute_path)
    hint = f" ({node['description'].strip()})" if node.get("description") else ""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extras = sorted(set(error.instance) - set(allowed))
        lines = []
        for extra in extras:
            key = f"{where}.{extra}" if error.absolute_path else extra
            close = difflib.get_close_matches(extra, allowed, n=1)
            guess = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"{key}: unknown key{guess or '.'} Allowed here: {', '.join(allowed)}.")
        return "\n  - ".join(lines)
    if error.validator == "enum":
        allowed = ", ".join(json.dumps(value) for value in error.validator_value)
        return f"{where}: {json.dumps(error.instance)} is not allowed. Use one of: {allowed}.{hint}"
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{where}: expected {wanted}, got {json.dumps(error.instance)} ({type(error.instance).__name__}).{hint}"
    if error.validator in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "minLength", "uniqueItems", "pattern"}:
        return f"{where}: {error.message}.{hint}"
    if error.validator == "anyOf":
        wanted = " or ".join(_alternative(alt) for alt in error.validator_value)
        return f"{where}: expected {wanted}, got {json.dumps(error.instance)}.{hint}"
    if error.validator == "required":
        return f"{where}: {error.message}.{hint}"
    return f"{where}: {error.message}"


#: The label set of a bundled dataset when `data.labels` is null (rotten_tomatoes also holds plot summaries, left out).
BUNDLED_LABELS = {"rotten_tomatoes": ["fresh", "rotten"]}


def _check_task(params: Mapping[str, Any]) -> list[str]:
    """The task's own checks, and the metrics early stopping and sweeps follow against what the task logs."""
    from tunepipe.tasks import get_task

    task = get_task(params["task"]["type"])
    problems = list(task.check_params(dict(params)))
    logged = ["val_loss", *(f"val_{name}" for name in task.val_metrics)]
    for key, value in (("train.monitor", params["train"]["monitor"]), ("sweep.metric", params["sweep"]["metric"])):
        if value != "auto" and value not in logged:
            problems.append(f"{key}: {value!r} is not logged for task.type {task.name}; use auto or one of: {', '.join(logged)}.")
    return problems


def _resolve_auto(params: dict[str, Any]) -> dict[str, Any]:
    """The `auto` choices that depend on the task and the source, made concrete once, so every rule sees the values used."""
    from tunepipe.tasks import get_task

    task = get_task(params["task"]["type"])
    train, sweep, data = params["train"], params["sweep"], params["data"]
    if train["monitor"] == "auto":
        train["monitor"] = task.default_monitor
    if sweep["metric"] == "auto":
        sweep["metric"] = task.default_monitor
    if sweep["mode"] == "auto":
        sweep["mode"] = "min" if sweep["metric"] == "val_loss" else task.val_metrics[sweep["metric"].removeprefix("val_")]
    if data["labels"] is None and data["source"] in BUNDLED_LABELS:
        data["labels"] = list(BUNDLED_LABELS[data["source"]])
    return params


def _check_cross_field(params: Mapping[str, Any]) -> list[str]:
    problems = _check_task(params)
    data = params["data"]
    if data["source"] == "file" and not data["path"]:
        problems.append("data.path: required when data.source is 'file' (a CSV, JSONL or Parquet file).")
    split = params["split"]
    if split["val_fraction"] + split["test_fraction"] >= 0.8:
        problems.append(
            "split.val_fraction + split.test_fraction: must leave at least 20% of rows for training "
            f"(now {split['val_fraction']} + {split['test_fraction']})."
        )
    for key in TARGET_KEYS:
        section, name = key.split(".")
        built = params[section][name]
        if built is None:
            continue
        try:
            check_target(f"{key}._target_", built["_target_"])
        except ParamsError as exc:
            problems.append(str(exc))
        problems.extend(f"{key}.{path}: nested `_target_` objects are not built; give plain keyword arguments."
                        for path in _nested_targets(built))
    return problems


def _nested_targets(node: Any, prefix: str = "") -> list[str]:
    """Keys below an optimizer/scheduler that hold their own `_target_` (Hydra would build them too)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = []
    for key, value in items:
        if isinstance(value, dict) and "_target_" in value:
            found.append(f"{prefix}{key}")
        else:
            found += _nested_targets(value, f"{prefix}{key}.")
    return found


def validate_params(raw: Mapping[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """Fill defaults and validate; raise ParamsError listing every problem with its key and what is allowed.

    Sweep variants are not expanded here: tunepipe.sweep.validate_run_params checks them as well.
    """
    schema = load_schema()
    params = _fill_defaults(_coerce(dict(raw), schema), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    problems = [_describe_error(error, schema) for error in errors]
    if not problems:
        problems = _check_cross_field(params)
    if problems:
        listing = "\n  - ".join(problems)
        raise ParamsError(
            f"invalid parameters in {source} (or a --config/--configfile override):\n  - {listing}\n"
            "See README.md 'Parameters' or run `tunepipe params` for every key."
        )
    return _resolve_auto(params)


def sections(params: Mapping[str, Any], *names: str) -> str:
    """The JSON a rule passes to its stage: just the sections it reads (so Snakemake reruns only what a change affects)."""
    return json.dumps({name: params[name] for name in names}, sort_keys=True)


def reference_markdown(schema: Mapping[str, Any] | None = None) -> str:
    """The parameter reference table, generated from the schema (kept in README.md, checked by a test)."""
    schema = schema or load_schema()
    rows = ["| key | type | default | description |", "|---|---|---|---|"]

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, sub in node.get("properties", {}).items():
            dotted = f"{prefix}{key}"
            if sub.get("type") == "object" and "properties" in sub and dotted.count(".") == 0 and key not in {"optimizer", "scheduler"}:
                walk(sub, f"{dotted}.")
                continue
            kind = sub.get("type", "")
            if "anyOf" in sub:
                kind = " or ".join(alt.get("type", "") for alt in sub["anyOf"])
            if isinstance(kind, list):
                kind = " or ".join(kind)
            if "enum" in sub:
                kind = " \\| ".join(f"`{value}`" for value in sub["enum"])
            default = json.dumps(sub.get("default"))
            description = " ".join(sub.get("description", "").split()).replace("|", "\\|")
            rows.append(f"| `{dotted}` | {kind} | `{default}` | {description} |")

    walk(schema, "")
    return "\n".join(rows) + "\n"
