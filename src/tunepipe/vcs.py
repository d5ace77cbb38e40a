"""git and the DVC cache, read locally: the one place that runs git and reads dvc.lock and cached objects.

A dvc.lock records a file either as an out of its own (older revisions: `results/evaluate/metrics.json`)
or inside a directory out (`results/evaluate`, md5 `<md5>.dir`): the cache then holds the directory's
manifest, a JSON list of `{"md5", "relpath"}`, and `recorded_md5` reads the file's md5 from it.
Nothing here reaches a DVC remote.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunepipe.errors import TunepipeError

LOCK_FILE = "dvc.lock"
PARAMS_FILE = "params.yaml"
METRICS_PATH = "results/evaluate/metrics.json"


class GitError(TunepipeError):
    """A git command that had to succeed failed (its message is git's own)."""


def git(args: Sequence[str], cwd: Path | str | None, *, check: bool = False, timeout: float = 30) -> str | None:
    """git's stdout; None when git fails or is missing (with `check`, a GitError saying why instead)."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        if check:
            raise GitError(f"git {' '.join(args)} failed: {exc}") from None
        return None
    if done.returncode != 0:
        if check:
            raise GitError(f"git {' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")
        return None
    return done.stdout


def cache_dir(root: Path) -> Path:
    """The DVC cache folder of the project at `root` (`cache.dir` from its config, else `.dvc/cache`)."""
    try:
        from dvc.config import Config

        configured = Config(dvc_dir=str(root / ".dvc"), validate=False).get("cache", {}).get("dir")
    except Exception:  # noqa: BLE001 - a broken or missing config only means the default location
        configured = None
    return Path(configured) if configured else root / ".dvc" / "cache"


def cached_object(cache: Path, md5: str) -> Path | None:
    """Where the cache keeps the object with this md5 (a `.dir` manifest too; DVC 3 layout, then DVC 2), or None."""
    for path in (cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]):
        if path.is_file():
            return path
    return None


def read_lock(text: str | None) -> dict[str, Any]:
    """A dvc.lock's content; {} when it is missing or not YAML."""
    try:
        lock = yaml.safe_load(text or "")
    except yaml.YAMLError:
        return {}
    return lock if isinstance(lock, dict) else {}


def lock_outs(lock: Mapping[str, Any]) -> dict[str, str]:
    """path -> md5 of every out a dvc.lock records (a directory's md5 ends in `.dir`)."""
    outs: dict[str, str] = {}
    for stage in _stages(lock):
        outs.update(_stage_outs(stage))
    return outs


def _stage_outs(stage: Mapping[str, Any]) -> dict[str, str]:
    return {str(out["path"]): str(out["md5"]) for out in stage.get("outs") or [] if isinstance(out, dict) and out.get("path") and out.get("md5")}


def _stages(lock: Mapping[str, Any]) -> list[dict[str, Any]]:
    stages = lock.get("stages") if isinstance(lock, Mapping) else None
    return [stage for stage in (stages or {}).values() if isinstance(stage, dict)] if isinstance(stages, dict) else []


def holding_out(outs: Mapping[str, str], path: str) -> str | None:
    """The recorded out that is `path` or the directory holding it; None when the lock does not version it."""
    if path in outs:
        return path
    parents = [out for out in outs if path.startswith(out.rstrip("/") + "/")]
    return max(parents, key=len) if parents else None


def recording_stage(lock: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    """The lock's stage whose outs hold `path` (as a file out or inside a directory out)."""
    for stage in _stages(lock):
        if holding_out(_stage_outs(stage), path) is not None:
            return stage
    return None


def recorded_md5(lock: Mapping[str, Any], path: str, cache: Path) -> str | None:
    """The md5 a dvc.lock records for the file `path`: its own out's, or its entry in the directory out's manifest.

    None when the lock does not record it, or its directory's manifest is not in the local cache.
    """
    outs = lock_outs(lock)
    out = holding_out(outs, path)
    if out is None:
        return None
    md5 = outs[out]
    if out == path:
        return md5
    relpath = path[len(out.rstrip("/")) + 1:]
    return dir_entries(cache, md5).get(relpath)


def dir_entries(cache: Path, md5: str) -> dict[str, str]:
    """relpath -> md5 of the files in a cached directory manifest; {} when it is not cached or unreadable."""
    manifest = cached_object(cache, md5) if md5.endswith(".dir") else None
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8")) if manifest else []
    except (OSError, ValueError):
        return {}
    return {str(e["relpath"]): str(e["md5"]) for e in entries if isinstance(e, dict) and e.get("relpath") and e.get("md5")}


@dataclass
class RecordedRun:
    """What one dvc.lock says about a run: whether it versions the metrics file, its md5 (when known) and params."""
    recorded: bool
    md5: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def recorded_run(lock: Mapping[str, Any], cache: Path, metrics_path: str = METRICS_PATH) -> RecordedRun:
    """The run a dvc.lock records: `recorded` False when no stage versions `metrics_path`.

    `md5` is None though `recorded` when the metrics sit in a directory whose manifest is not in the local cache.
    """
    stage = recording_stage(lock, metrics_path)
    if stage is None:
        return RecordedRun(recorded=False)
    params = (stage.get("params") or {}).get(PARAMS_FILE) or {}
    return RecordedRun(recorded=True, md5=recorded_md5(lock, metrics_path, cache), params=params if isinstance(params, dict) else {})


__all__ = ["LOCK_FILE", "METRICS_PATH", "GitError", "RecordedRun", "cache_dir", "cached_object", "dir_entries", "git",
           "holding_out", "lock_outs", "read_lock", "recorded_md5", "recorded_run", "recording_stage"]
