"""Earlier recorded runs' headline metrics, for the report's "earlier runs" section.

Each commit that changed `dvc.lock` records a run: the lock gives the md5 of that run's
`results/evaluate/metrics.json` (as an out of its own, or inside the `results/evaluate` directory out)
and the params it ran with, and the DVC cache holds the file itself. Everything is read locally (git and
the cache folder), so it works offline and never waits on a remote; a run whose metrics are not in the
local cache is listed as such (`dvc fetch` brings them).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunepipe.io import read_csv_rows
from tunepipe.vcs import LOCK_FILE, cache_dir, cached_object, git, read_lock, recorded_md5, recorded_run, recording_stage

HEADLINE = ("accuracy", "f1_macro", "baseline_accuracy", "baseline_f1_macro")
DEFAULT_LIMIT = 20
MAX_CHANGES = 6
NOT_CACHED = "not in the local DVC cache (`dvc fetch` gets it)"
PREDICTIONS_PATH = "results/evaluate/predictions.csv"


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


def read_predictions(path: Path) -> list[dict[str, str]]:
    """A predictions table (results/evaluate/predictions.csv) as rows of text cells."""
    return read_csv_rows(path)


def predictions_task(rows: list[dict[str, str]]) -> Any:
    """The task whose `prediction_table` wrote these rows, told by their columns (`Task.trust_owns_table`); the default one
    for an empty table."""
    from tunepipe.tasks import DEFAULT, NAMES, get_task

    fields = list(rows[0]) if rows else []
    return next((get_task(name) for name in NAMES if get_task(name).trust_owns_table(fields)), get_task(DEFAULT))


def compare_predictions(a: list[dict[str, str]], b: list[dict[str, str]], *, alpha: float, resamples: int, seed: int) -> dict[str, Any]:
    """Two runs' predictions tables, A against B, in their task's terms (`tunepipe.trust.significance.compare_tables`);
    tables of two different tasks are not paired."""
    from tunepipe.trust.significance import compare_tables

    task_a, task_b = predictions_task(a), predictions_task(b)
    if task_a is not task_b:
        return {"paired": False, "reason": f"the runs are of different tasks ({task_a.title} and {task_b.title}), so they are not paired",
                "a": {"rows": len(a)}, "b": {"rows": len(b)}, "alpha": alpha}
    return compare_tables(a, b, resamples=resamples, seed=seed, alpha=alpha, task=task_a)


def recorded_predictions(lock: Mapping[str, Any], cache: Path) -> tuple[list[dict[str, str]] | None, str | None]:
    """(the predictions table a dvc.lock records, None) or (None, why it cannot be read): found through the lock's
    md5 of results/evaluate/predictions.csv (its own out or an entry of the results/evaluate manifest) in the cache."""
    md5 = recorded_md5(lock, PREDICTIONS_PATH, cache)
    path = cached_object(cache, md5) if md5 else None
    if path is None:
        return None, "its test predictions are " + ("not in the local DVC cache (`dvc fetch` gets them)" if recording_stage(lock, PREDICTIONS_PATH)
                                                     else "not recorded")
    try:
        rows = read_predictions(path)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None, "its test predictions cannot be read"
    if not rows or not {"id", "label", "predicted"} <= set(rows[0]):
        return None, "its test predictions have no id, label and predicted columns"
    return rows, None


def _since_last_comparison(lock: Mapping[str, Any], cache: Path, current: list[dict[str, str]], *, alpha: float, resamples: int,
                           seed: int) -> dict[str, Any]:
    from tunepipe.trust.significance import sentence

    earlier, reason = recorded_predictions(lock, cache)
    if earlier is None:
        return {"paired": False, "reason": reason, "sentence": f"No paired test against the last recorded run: {reason}."}
    result = compare_predictions(current, earlier, resamples=resamples, seed=seed, alpha=alpha)
    result["sentence"] = sentence(result, "this run", "the last recorded run")
    return result


def earlier_runs(
    root: Path | str = ".",
    current: Mapping[str, Any] | None = None,
    *,
    current_params: Mapping[str, Any] | None = None,
    current_predictions: list[dict[str, str]] | None = None,
    alpha: float = 0.05,
    resamples: int = 1000,
    seed: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The last `limit` commits that recorded a run, newest first, with their headline metrics.

    Returns `{"available": bool, "reason": str | None, "entries": [...]}`; each entry has commit, short,
    date, subject, metrics (headline keys, or None), status (None when the metrics were read) and
    changes (params that differ from the next older entry). `current` (this run's metrics) marks the
    entries whose metrics are the same as this run's. With `current_params` (this run's params), `since_last`
    lists the params that differ between the newest recorded run and this one (schema defaults filled in
    on both sides, so a key left out of an older params.yaml is not a change). With `current_predictions` (this run's
    results/evaluate/predictions.csv rows), `since_last_comparison` is the paired test of this run against the newest
    recorded run on the same test rows (`compare_predictions`, in the task's terms, with a `sentence`).
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
    locks = []
    for line in log.splitlines():
        commit, short, date, subject = (line.split("\x1f", 3) + ["", "", ""])[:4]
        locks.append(read_lock(git(["show", f"{commit}:./{LOCK_FILE}"], root)))
        run = recorded_run(locks[-1], cache)
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
    comparison = None
    if current_predictions is not None and entries:
        comparison = _since_last_comparison(locks[0], cache, current_predictions, alpha=alpha, resamples=resamples, seed=seed)
    for entry in entries:
        del entry["params"]
    return {"available": True, "reason": None, "entries": entries, "since_last": since_last, "since_last_comparison": comparison}


__all__ = ["HEADLINE", "PREDICTIONS_PATH", "compare_predictions", "earlier_runs", "param_changes", "predictions_task", "read_predictions",
           "recorded_predictions"]
