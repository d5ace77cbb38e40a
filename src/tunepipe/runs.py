"""Earlier recorded runs' headline metrics, for the report's "earlier runs" section.

Each commit that changed `dvc.lock` records a run: the lock gives the md5 of that run's
`results/evaluate/metrics.json` (as an out of its own, or inside the `results/evaluate` directory out)
and the params it ran with, and the DVC cache holds the file itself. Everything is read locally (git and
the cache folder), so it works offline and never waits on a remote; a run whose metrics are not in the
local cache is listed as such (`dvc fetch` brings them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunepipe.vcs import LOCK_FILE, cache_dir, cached_object, git, read_lock, recorded_run

HEADLINE = ("accuracy", "f1_macro", "baseline_accuracy", "baseline_f1_macro")
DEFAULT_LIMIT = 20
MAX_CHANGES = 6
NOT_CACHED = "not in the local DVC cache (`dvc fetch` gets it)"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def param_changes(before: Mapping[str, Any], after: Mapping[str, Any], limit: int = MAX_CHANGES) -> list[str]:
    """`key: old → new` for each param that differs (dotted keys, sorted), at most `limit` plus a count."""
    old, new = _flatten(dict(before)), _flatten(dict(after))
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key, "∅") != new.get(key, "∅")]
    lines = [f"{key}: {json.dumps(old.get(key))} → {json.dumps(new.get(key))}" for key in changed[:limit]]
    if len(changed) > limit:
        lines.append(f"… and {len(changed) - limit} more")
    return lines


def _with_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as the pipeline reads them (schema defaults filled in), or as given when they no longer validate."""
    from tunepipe.config import validate_params
    from tunepipe.errors import ParamsError

    try:
        return validate_params(dict(params))
    except (ParamsError, ValueError, TypeError):
        return dict(params)


def _read_metrics(cache: Path, md5: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(headline metrics, None) or (None, why they cannot be shown)."""
    path = cached_object(cache, md5) if md5 else None
    if path is None:
        return None, NOT_CACHED
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        return None, "metrics file unreadable"
    return {key: data.get(key) for key in HEADLINE}, None


def earlier_runs(
    root: Path | str = ".",
    current: Mapping[str, Any] | None = None,
    *,
    current_params: Mapping[str, Any] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The last `limit` commits that recorded a run, newest first, with their headline metrics.

    Returns `{"available": bool, "reason": str | None, "entries": [...]}`; each entry has commit, short,
    date, subject, metrics (headline keys, or None), status (None when the metrics were read) and
    changes (params that differ from the next older entry). `current` (this run's metrics) marks the
    entries whose metrics are the same as this run's. With `current_params` (this run's params), `since_last`
    lists the params that differ between the newest recorded run and this one (schema defaults filled in
    on both sides, so a key left out of an older params.yaml is not a change).
    """
    root = Path(root).resolve()
    if git(["rev-parse", "--is-inside-work-tree"], root) is None:
        return {"available": False, "reason": "This project is not in a git repository (or git is not installed), "
                "so there are no earlier runs to compare with.", "entries": []}
    log = git(["log", f"-n{limit}", "--format=%H%x1f%h%x1f%cs%x1f%s", "--", LOCK_FILE], root)
    if not (log or "").strip():
        return {"available": False, "reason": f"No commit records a pipeline run yet: commit {LOCK_FILE} after a run "
                "(`dvc repro` or `dvc exp run`) to start the history.", "entries": []}
    cache = cache_dir(root)
    current_headline = {key: current.get(key) for key in HEADLINE} if isinstance(current, Mapping) else None
    entries: list[dict[str, Any]] = []
    for line in log.splitlines():
        commit, short, date, subject = (line.split("\x1f", 3) + ["", "", ""])[:4]
        run = recorded_run(read_lock(git(["show", f"{commit}:./{LOCK_FILE}"], root)), cache)
        metrics, status = _read_metrics(cache, run.md5) if run.recorded else (None, "no metrics recorded")
        entries.append({"commit": commit, "short": short, "date": date, "subject": subject, "metrics": metrics,
                        "status": status, "params": run.params, "changes": [],
                        "same_as_current": metrics is not None and metrics == current_headline})
    for newer, older in zip(entries, entries[1:]):
        if newer["params"] and older["params"]:
            newer["changes"] = param_changes(older["params"], newer["params"])
    since_last = None
    if current_params is not None and entries and entries[0]["params"]:
        since_last = param_changes(_with_defaults(entries[0]["params"]), _with_defaults(current_params))
    for entry in entries:
        del entry["params"]
    return {"available": True, "reason": None, "entries": entries, "since_last": since_last}


__all__ = ["HEADLINE", "earlier_runs", "param_changes"]
