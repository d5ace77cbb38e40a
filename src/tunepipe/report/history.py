"""Earlier runs' headline metrics, for the report's history section.

Each commit that changed `dvc.lock` records a run: the lock file gives the md5 of that run's
`results/evaluate/metrics.json` and the params it ran with, and the DVC cache holds the file itself.
Everything is read locally (git and the cache folder), so it works offline and never waits on a remote;
a run whose metrics are not in the local cache is listed as such (`dvc fetch` brings them).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

LOCK_FILE = "dvc.lock"
METRICS_PATH = "results/evaluate/metrics.json"
PARAMS_FILE = "params.yaml"
HEADLINE = ("accuracy", "f1_macro", "baseline_accuracy", "baseline_f1_macro")
DEFAULT_LIMIT = 20
MAX_CHANGES = 6


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def cache_dir(root: Path) -> Path:
    """The DVC cache folder of the project at `root` (`cache.dir` from its config, else `.dvc/cache`)."""
    try:
        from dvc.config import Config

        configured = Config(dvc_dir=str(root / ".dvc"), validate=False).get("cache", {}).get("dir")
    except Exception:  # noqa: BLE001 - a broken or missing config only means the default location
        configured = None
    return Path(configured) if configured else root / ".dvc" / "cache"


def cached_object(cache: Path, md5: str) -> Path | None:
    """Where the cache keeps the file with this md5 (DVC 3 layout, then DVC 2), or None."""
    for path in (cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]):
        if path.is_file():
            return path
    return None


def recorded_run(lock_text: str | None, metrics_path: str = METRICS_PATH) -> tuple[str | None, dict[str, Any]]:
    """(md5 of the metrics file, params) that a dvc.lock records; (None, {}) when it records no run."""
    try:
        lock = yaml.safe_load(lock_text or "") or {}
    except yaml.YAMLError:
        return None, {}
    stages = lock.get("stages") if isinstance(lock, dict) else None
    for stage in (stages or {}).values():
        if not isinstance(stage, dict):
            continue
        for out in stage.get("outs") or []:
            if isinstance(out, dict) and out.get("path") == metrics_path and out.get("md5"):
                params = (stage.get("params") or {}).get(PARAMS_FILE) or {}
                return str(out["md5"]), params if isinstance(params, dict) else {}
    return None, {}


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


def collect(
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
    if _git(["rev-parse", "--is-inside-work-tree"], root) is None:
        return {"available": False, "reason": "This project is not in a git repository (or git is not installed), "
                "so there are no earlier runs to compare with.", "entries": []}
    log = _git(["log", f"-n{limit}", "--format=%H%x1f%h%x1f%cs%x1f%s", "--", LOCK_FILE], root)
    if not (log or "").strip():
        return {"available": False, "reason": f"No commit records a pipeline run yet: commit {LOCK_FILE} after a run "
                "(`dvc repro` or `dvc exp run`) to start the history.", "entries": []}
    cache = cache_dir(root)
    current_headline = {key: current.get(key) for key in HEADLINE} if isinstance(current, Mapping) else None
    entries: list[dict[str, Any]] = []
    for line in log.splitlines():
        commit, short, date, subject = (line.split("\x1f", 3) + ["", "", ""])[:4]
        md5, params = recorded_run(_git(["show", f"{commit}:./{LOCK_FILE}"], root))
        entry: dict[str, Any] = {"commit": commit, "short": short, "date": date, "subject": subject,
                                 "metrics": None, "status": None, "params": params, "changes": []}
        if md5 is None:
            entry["status"] = "no metrics recorded"
        elif (path := cached_object(cache, md5)) is None:
            entry["status"] = "not in the local DVC cache (`dvc fetch` gets it)"
        else:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict):
                entry["metrics"] = {key: data.get(key) for key in HEADLINE}
            else:
                entry["status"] = "metrics file unreadable"
        entry["same_as_current"] = entry["metrics"] is not None and entry["metrics"] == current_headline
        entries.append(entry)
    for newer, older in zip(entries, entries[1:]):
        if newer["params"] and older["params"]:
            newer["changes"] = param_changes(older["params"], newer["params"])
    since_last = None
    if current_params is not None and entries and entries[0]["params"]:
        since_last = param_changes(_with_defaults(entries[0]["params"]), _with_defaults(current_params))
    for entry in entries:
        del entry["params"]
    return {"available": True, "reason": None, "entries": entries, "since_last": since_last}


__all__ = ["HEADLINE", "METRICS_PATH", "cache_dir", "cached_object", "collect", "param_changes", "recorded_run"]
