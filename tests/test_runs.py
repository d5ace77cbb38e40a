"""Earlier runs are read from git and the local DVC cache, whether a revision versioned files or folders."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tunepipe.runs import HEADLINE, earlier_runs, param_changes


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def cache_object(project: Path, data: bytes, suffix: str = "") -> str:
    md5 = hashlib.md5(data).hexdigest() + suffix
    obj = project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(data)
    return md5


def record_run(project: Path, metrics: dict | None, params: dict, message: str, cache: bool = True, folders: bool = False) -> None:
    """What `dvc repro` + `git commit` leave behind: dvc.lock with the metrics' md5, the file in the cache.

    `folders`: the lock versions results/evaluate as a directory (a `.dir` manifest), as dvc.yaml does now.
    """
    outs = []
    if metrics is not None:
        data = json.dumps(metrics).encode()
        md5 = cache_object(project, data) if cache else hashlib.md5(data).hexdigest()
        if folders:
            manifest = json.dumps([{"md5": "0" * 32, "relpath": "confusion.json"}, {"md5": md5, "relpath": "metrics.json"}]).encode()
            dir_md5 = cache_object(project, manifest, ".dir") if cache else hashlib.md5(manifest).hexdigest() + ".dir"
            outs.append({"path": "results/evaluate", "hash": "md5", "md5": dir_md5, "size": len(data), "nfiles": 2})
        else:
            outs.append({"path": "results/evaluate/metrics.json", "hash": "md5", "md5": md5, "size": len(data)})
    lock = {"schema": "2.0", "stages": {"pipeline": {"cmd": "snakemake", "params": {"params.yaml": params}, "outs": outs}}}
    (project / "dvc.lock").write_text(yaml.safe_dump(lock))
    git(project, "add", "dvc.lock")
    git(project, "commit", "-qm", message)


@pytest.mark.parametrize("folders", [False, True], ids=["file-outs", "folder-outs"])
def test_earlier_runs_are_read_from_git_and_the_local_dvc_cache(tmp_path, folders):
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    assert earlier_runs(project)["available"] is False  # not a git repository yet
    git(project, "init", "-q")
    (project / "README").write_text("x")
    git(project, "add", "README")
    git(project, "commit", "-qm", "no run yet")
    empty = earlier_runs(project)
    assert empty["available"] is False and "No commit records a pipeline run" in empty["reason"]

    first = {"accuracy": 0.75, "f1_macro": 0.74, "baseline_accuracy": 0.7, "baseline_f1_macro": 0.69, "auroc": 0.8}
    second = dict(first, accuracy=0.78)
    record_run(project, first, {"seed": 42, "train": {"encoder_lr": 5e-05}}, "first run", folders=folders)
    record_run(project, second, {"seed": 42, "train": {"encoder_lr": 1e-04}}, "higher lr", folders=folders)
    record_run(project, dict(second, accuracy=0.5), {"seed": 7, "train": {"encoder_lr": 1e-04}}, "not pushed", cache=False, folders=folders)
    record_run(project, None, {"seed": 7}, "lock without metrics", folders=folders)

    record = earlier_runs(project, current=second)
    assert record["available"] is True
    entries = {e["subject"]: e for e in record["entries"]}
    assert [e["subject"] for e in record["entries"]] == ["lock without metrics", "not pushed", "higher lr", "first run"]
    assert entries["first run"]["metrics"] == {k: first[k] for k in HEADLINE}
    assert entries["higher lr"]["same_as_current"] and not entries["first run"]["same_as_current"]
    assert entries["higher lr"]["changes"] == ["train.encoder_lr: 5e-05 → 0.0001"]
    assert entries["not pushed"]["metrics"] is None and "not in the local DVC cache" in entries["not pushed"]["status"]
    assert entries["not pushed"]["changes"] == ["seed: 42 → 7"]
    assert entries["lock without metrics"]["status"] == "no metrics recorded"
    assert len(earlier_runs(project, limit=2)["entries"]) == 2


def test_earlier_runs_list_what_changed_since_the_newest_recorded_run(tmp_path):
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    git(project, "init", "-q")
    metrics = {"accuracy": 0.75, "f1_macro": 0.74, "baseline_accuracy": 0.7, "baseline_f1_macro": 0.69}
    record_run(project, metrics, {"seed": 42}, "older")
    record_run(project, metrics, {"seed": 7, "train": {"encoder_lr": 5e-05}}, "newest")

    record = earlier_runs(project, current=metrics, current_params={"seed": 7, "train": {"encoder_lr": 1e-04, "max_epochs": 3}})

    # Defaults are filled in on both sides: the newest run left max_epochs out (default auto), this run sets 3.
    assert record["since_last"] == ["train.encoder_lr: 5e-05 → 0.0001", 'train.max_epochs: "auto" → 3']


def test_param_changes_are_capped_with_a_count():
    before = {f"k{i}": i for i in range(9)}
    lines = param_changes(before, {key: value + 1 for key, value in before.items()}, limit=6)
    assert lines[0] == "k0: 0 → 1" and len(lines) == 7 and lines[-1] == "… and 3 more"
