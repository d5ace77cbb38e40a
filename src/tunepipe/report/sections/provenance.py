"""Section 9: what produced this run: git commit, packages, platform, the data file, training hardware,
wall time per rule and every param."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list

#: Keys of `tunepipe.report.provenance.collect()`'s record shown as they are.
RECORD_KEYS = ("python", "python_implementation", "platform", "machine", "cpu_count", "generated_at")


def _timings(inputs: Mapping[str, Any]) -> dict[str, Any]:
    rows = [row for row in as_list(inputs.get("timings")) if isinstance(row, dict)]
    seconds = [number(row.get("seconds")) for row in rows]
    measured = [value for value in seconds if value is not None]
    slowest = max(measured, default=None)
    return {
        "rows": [dict(row, share=value / slowest if value is not None and slowest else None) for row, value in zip(rows, seconds)],
        "total": sum(measured) if rows else None,
    }


def _params_yaml(params: Mapping[str, Any]) -> str:
    import yaml

    try:
        return yaml.safe_dump(dict(params), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100).rstrip()
    except yaml.YAMLError:
        return json.dumps(params, indent=2, ensure_ascii=False, default=str)


def provenance(params: Mapping[str, Any], inputs: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    prepare = as_dict(inputs.get("prepare"))
    train = as_dict(inputs.get("train"))
    return {
        "timings": _timings(inputs),
        "data": {key: prepare.get(key) for key in ("source", "path", "sha256", "rows")},
        "hardware": {key: train.get(key) for key in ("device", "accelerator", "precision", "threads")},
        "git": as_dict(record.get("git")),
        "packages": as_dict(record.get("packages")),
        **{key: record.get(key) for key in RECORD_KEYS},
        "params_yaml": _params_yaml(params),
    }
